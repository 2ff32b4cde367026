//! A tour of the concurrency behaviours: the same burst of invocations, six arrivals
//! 20 ms apart (the 4th and 5th together) on a pipeline that works 250 ms, run through
//! each behaviour, with max 1 and max 3. It runs in virtual time (tokio's paused clock),
//! so it takes well under a second; it prints each timeline and writes each as an SVG
//! picture under `target/pipelines-tour/`.
//!
//! Run with `cargo run --example tour`. `tests/tour.rs` checks the printed timelines
//! against `tests/golden/tour/` and the pictures' structure.

use std::path::PathBuf;
use std::time::Duration;

use pipewright::{pipeline, Pipeline, Runtime, Timeline};

/// One behaviour of the tour.
pub(crate) struct Scenario {
    /// File name and title.
    pub(crate) name: &'static str,
    pub(crate) description: &'static str,
    configure: fn(Pipeline<u32, ()>) -> Pipeline<u32, ()>,
    /// The arguments of the six arrivals.
    arguments: [u32; 6],
}

const DISTINCT: [u32; 6] = [1, 2, 3, 4, 5, 6];
/// For use_existing: repeated arguments share the live instance.
const REPEATED: [u32; 6] = [1, 1, 2, 1, 2, 3];

pub(crate) fn scenarios() -> Vec<Scenario> {
    vec![
        Scenario {
            name: "unrestricted",
            description: "every invocation starts at once",
            configure: |p| p,
            arguments: DISTINCT,
        },
        Scenario {
            name: "restartable",
            description: "a new invocation cancels the one in flight",
            configure: |p| p.restartable(),
            arguments: DISTINCT,
        },
        Scenario {
            name: "restartable-max-3",
            description: "the oldest of three live instances is cancelled for the new one",
            configure: |p| p.restartable().max(3),
            arguments: DISTINCT,
        },
        Scenario {
            name: "dropping",
            description: "invocations arriving while one runs are dropped",
            configure: |p| p.dropping(),
            arguments: DISTINCT,
        },
        Scenario {
            name: "dropping-max-3",
            description: "invocations arriving while three run are dropped",
            configure: |p| p.dropping().max(3),
            arguments: DISTINCT,
        },
        Scenario {
            name: "enqueued",
            description: "invocations wait and run one at a time, in order",
            configure: |p| p.enqueued(),
            arguments: DISTINCT,
        },
        Scenario {
            name: "enqueued-max-3",
            description: "invocations wait and run three at a time, in order",
            configure: |p| p.enqueued().max(3),
            arguments: DISTINCT,
        },
        Scenario {
            name: "keep-latest",
            description: "only the latest waiting invocation is kept",
            configure: |p| p.keep_latest(),
            arguments: DISTINCT,
        },
        Scenario {
            name: "keep-latest-max-3",
            description: "three run; only the latest waiting invocation is kept",
            configure: |p| p.keep_latest().max(3),
            arguments: DISTINCT,
        },
        Scenario {
            name: "use-existing",
            description: "arguments 1 1 2 1 2 3: equal arguments share the live instance",
            configure: |p| p.use_existing(),
            arguments: REPEATED,
        },
        Scenario {
            name: "use-existing-enqueued-max-3",
            description: "arguments 1 1 2 1 2 3, enqueued with max 3, sharing equal ones",
            configure: |p| p.enqueued().max(3).use_existing(),
            arguments: REPEATED,
        },
    ]
}

/// Runs one scenario in virtual time and returns its timeline.
pub(crate) async fn run(scenario: &Scenario) -> Timeline {
    let work = pipeline!(|value: u32, _ctx: &()| {
        tokio::time::sleep(Duration::from_millis(250)).await;
    });
    let timeline = Timeline::new();
    let runtime = Runtime::builder(())
        .register("work", (scenario.configure)(work))
        .watcher(timeline.watcher())
        .start()
        .expect("the runtime starts");
    let mut handles = Vec::new();
    for (arrival, argument) in scenario.arguments.into_iter().enumerate() {
        handles.push(runtime.invoke("work", argument).expect("registered"));
        // 20 ms apart, the 4th and 5th together.
        if arrival != 3 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    for handle in handles {
        // Cancelled and dropped invocations are part of the picture.
        let _ = handle.await;
    }
    timeline
}

/// The heading and ASCII timeline the tour prints for a scenario.
pub(crate) fn chart(scenario: &Scenario, timeline: &Timeline) -> String {
    format!(
        "{}: {}\n{}",
        scenario.name,
        scenario.description,
        timeline.ascii(Duration::from_millis(20))
    )
}

/// The title of a scenario's picture.
pub(crate) fn title(scenario: &Scenario) -> String {
    format!("{}: {}", scenario.name, scenario.description)
}

#[allow(dead_code)] // `tests/tour.rs` includes this file for the functions above.
#[tokio::main(flavor = "current_thread", start_paused = true)]
async fn main() -> std::io::Result<()> {
    let directory = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/pipelines-tour");
    std::fs::create_dir_all(&directory)?;
    println!("Six arrivals 20 ms apart (the 4th and 5th together), each working 250 ms;");
    println!("one column is 20 ms.\n");
    let mut written = Vec::new();
    for scenario in scenarios() {
        let timeline = run(&scenario).await;
        println!("{}", chart(&scenario, &timeline));
        let path = directory.join(format!("{}.svg", scenario.name));
        std::fs::write(&path, timeline.svg(&title(&scenario)))?;
        written.push(path);
    }
    println!("Wrote:");
    for path in written {
        println!("  {}", path.display());
    }
    Ok(())
}
