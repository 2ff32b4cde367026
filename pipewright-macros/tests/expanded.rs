//! The checked-in expansion snapshots (`tests/expand/*.expanded.rs`, see
//! `src/snapshots.rs`) are real code: each compiles as written and behaves as the
//! `pipeline!` it was expanded from. (`misuse.rs` has errors: it is only a snapshot.)

use pipewright::{Behaviour, Pipeline, Runtime};

macro_rules! both {
    ($name:ident) => {
        mod $name {
            pub(crate) mod from_macro {
                include!(concat!("expand/", stringify!($name), ".rs"));
            }
            // Generated code, written out: lints that the macro's own expansion escapes
            // (code from a macro) apply to it here.
            #[allow(clippy::all, unused_imports, unused_variables, unused_mut)]
            pub(crate) mod expanded {
                include!(concat!("expand/", stringify!($name), ".expanded.rs"));
            }
        }
    };
}

both!(sync);
both!(waiting);
both!(current_and_queue);

/// The result of running `pipeline` on `value`, synchronously (every step here is ready
/// at once).
fn run<C: Send + Sync + 'static>(
    ctx: C,
    pipeline: &Pipeline<i32, C>,
    value: i32,
) -> Result<i32, String> {
    let runtime = Runtime::builder(ctx).start().unwrap();
    let mut invocation = runtime.invoke_pipeline(pipeline, value).unwrap();
    let result = invocation
        .try_result()
        .expect("every step is ready at once");
    result.map_err(|error| format!("{error:#}"))
}

#[test]
fn sync_expanded_runs_as_the_macro() {
    for value in [-5, 0, 3, 20] {
        let from_macro = run((), &sync::from_macro::pipeline(), value);
        assert_eq!(run((), &sync::expanded::pipeline(), value), from_macro);
    }
    assert_eq!(run((), &sync::expanded::pipeline(), 3), Ok(7));
    assert!(run((), &sync::expanded::pipeline(), -5).is_err());
}

#[test]
fn waiting_expanded_runs_as_the_macro() {
    for value in [-4, 3, 8] {
        let from_macro = run((), &waiting::from_macro::pipeline(), value);
        assert_eq!(run((), &waiting::expanded::pipeline(), value), from_macro);
    }
    assert_eq!(run((), &waiting::expanded::pipeline(), 8), Ok(50));
    assert_eq!(run((), &waiting::expanded::pipeline(), 3), Ok(-101));
}

#[test]
fn current_and_queue_expanded_runs_as_the_macro() {
    use current_and_queue::{expanded, from_macro};
    for value in [0, 2, 7] {
        let from_macro = run(
            from_macro::Config { factor: 3 },
            &from_macro::pipeline(),
            value,
        );
        let expanded = run(expanded::Config { factor: 3 }, &expanded::pipeline(), value);
        assert_eq!(expanded, from_macro);
    }
    assert_eq!(
        run(expanded::Config { factor: 3 }, &expanded::pipeline(), 2),
        Ok(14)
    );
    // The configuration after the macro applies to the expanded pipeline too.
    let pipeline = expanded::pipeline();
    assert_eq!(pipeline.concurrency().behaviour(), Behaviour::Restartable);
    let runtime = Runtime::builder(expanded::Config { factor: 1 })
        .start()
        .unwrap();
    runtime.invoke_pipeline(&pipeline, 1).unwrap();
    assert_eq!(runtime.queue_info("scale").unwrap().performed(), 1);
}
