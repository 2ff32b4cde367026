use pipewright::pipeline;

fn main() {
    let _p = pipeline!(|value: i32, _ctx: &(), current, extra: u8| {
        value = value + 1;
    });
}
