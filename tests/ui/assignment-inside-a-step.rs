use pipewright::pipeline;

fn main() {
    let _p = pipeline!(|value: u32, _ctx: &()| {
        if value > 10 {
            value = 10;
        };
        {
            value += 1;
        };
    });
}
