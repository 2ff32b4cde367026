use pipewright::pipeline;

fn main() {
    let _p = pipeline!(|| {
        1;
    });
}
