use pipewright::{pipeline, rescue};

fn main() {
    let _p = pipeline!(|value: i32, _ctx: &()| {
        if value > 0 {
            rescue!(|error| { 0; })
        };
    });
}
