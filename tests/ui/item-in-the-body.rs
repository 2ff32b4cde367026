use pipewright::pipeline;

fn main() {
    let _p = pipeline!(|value: i32, _ctx: &()| {
        fn helper(value: i32) -> i32 {
            value
        }
        value = value + 1;
    });
}
