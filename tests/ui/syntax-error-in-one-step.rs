use pipewright::pipeline;

fn main() {
    // A step that does not parse costs only that step: the others are still expanded
    // and type-checked.
    let _p = pipeline!(|value: i32, _ctx: &()| {
        value +;
        value = "not an i32";
    });
}
