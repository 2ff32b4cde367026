use pipewright::pipeline;

fn main() {
    let _p = pipeline!(|value: i32, _ctx: &()| {
        let doubled = value * 2;
        doubled + 1;
    });
}
