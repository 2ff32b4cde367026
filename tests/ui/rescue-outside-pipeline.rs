fn main() {
    let _x = pipelines::rescue!(|error| { 1; });
}
