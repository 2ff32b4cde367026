fn main() {
    let _x = pipewright::rescue!(|error| { 1; });
}
