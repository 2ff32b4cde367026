use pipewright::pipeline;

fn main() {
    let _p = pipeline!(|value: i32| {
        let x = 1;
        rescue!(|error| { 0; });
        value + x;
    });
}
