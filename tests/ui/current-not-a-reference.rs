use pipelines::pipeline;

fn main() {
    let _p = pipeline!(|value: i32, _ctx: &(), current: pipelines::Current<i32, ()>| {
        value = value + 1;
    });
}
