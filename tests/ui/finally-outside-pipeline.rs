fn main() {
    let _x = pipewright::finally!(|error| { 1; });
}
