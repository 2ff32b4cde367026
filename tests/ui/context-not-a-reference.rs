use pipewright::pipeline;

fn main() {
    let _p = pipeline!(|value: i32, ctx: ()| {
        value = value + 1;
    });
}
