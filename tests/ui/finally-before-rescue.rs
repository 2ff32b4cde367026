use pipewright::pipeline;

fn main() {
    let _p = pipeline!(|value: i32, _ctx: &()| {
        value = value + 1;
        finally!(|error| { (); });
        rescue!(|error| { 0; });
    });
}
