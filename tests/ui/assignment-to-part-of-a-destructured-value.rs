use pipewright::pipeline;

fn main() {
    let _p = pipeline!(|(low, high): (u32, u32), _ctx: &()| {
        low = high;
    });
}
