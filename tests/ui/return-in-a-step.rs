use pipelines::pipeline;

fn main() {
    let _p = pipeline!(|value: i32, _ctx: &()| {
        if value > 3 {
            return pipelines::Outcome::Keep;
        } else {
            value + 1
        };
    });
}
