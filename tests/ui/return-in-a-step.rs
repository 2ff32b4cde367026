use pipewright::pipeline;

fn main() {
    let _p = pipeline!(|value: i32, _ctx: &()| {
        if value > 3 {
            return pipewright::Outcome::Keep;
        } else {
            value + 1
        };
    });
}
