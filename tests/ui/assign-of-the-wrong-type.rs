use pipewright::pipeline;

fn main() {
    let _p = pipeline!(|count: u32, _ctx: &()| {
        count = count.to_string();
    });
}
