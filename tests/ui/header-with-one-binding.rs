use pipewright::pipeline;

fn main() {
    let _p = pipeline!(|value: i32| {
        value = value + 1;
    });
}
