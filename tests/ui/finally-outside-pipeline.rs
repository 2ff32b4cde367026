fn main() {
    let _x = pipelines::finally!(|error| { 1; });
}
