use pipewright::pipeline;

fn main() {
    let _p = pipeline!(|value: i32, _ctx: &()| {
        finally!(|error| { (); });
        value = value + 2;
    });
}
