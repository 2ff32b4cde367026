use pipelines::pipeline;

fn main() {
    let _p = pipeline!(|| {
        1;
    });
}
