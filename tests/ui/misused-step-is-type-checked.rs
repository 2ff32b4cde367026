use pipewright::pipeline;

struct Config {
    name: String,
}

fn main() {
    // A statement that is not a step (here a `let`) is still type-checked with the
    // header's bindings at their types: its own type error is reported with the misuse.
    let _p = pipeline!(|value: u32, config: &Config| {
        let limit: u32 = config.name;
        value.min(limit);
    });
}
