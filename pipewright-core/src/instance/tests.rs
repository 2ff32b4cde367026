//! The state machine driven directly, with hand-written step closures.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use crate::error::Error;
use crate::invocation::Invocation;
use crate::outcome::Outcome;
use crate::pipeline::{Layout, Pipeline, Site, StepCall};
use crate::runtime::Runtime;

static SITE: Site = Site::new("pipeline@unit");

/// A pipeline whose steps are given as `(section, index) -> outcome`, section being
/// 0 main, 1 rescue, 2 finally. Each call is recorded into the context.
fn pipeline(
    layout: Layout,
    step: impl Fn(u8, usize, i32, Option<&Error>) -> Outcome<i32, Calls> + Send + Sync + 'static,
) -> Pipeline<i32, Calls> {
    Pipeline::__from_steps(
        &SITE,
        layout,
        move |call: StepCall<'_, i32, Calls>| match call {
            StepCall::Main {
                index, value, ctx, ..
            } => {
                ctx.record(0, index, *value);
                step(0, index, *value, None)
            }
            StepCall::Rescue {
                index,
                value,
                ctx,
                error,
                ..
            } => {
                ctx.record(1, index, *value);
                step(1, index, *value, Some(error))
            }
            StepCall::Finally {
                index,
                value,
                ctx,
                error,
                ..
            } => {
                ctx.record(2, index, *value);
                step(2, index, *value, error)
            }
        },
    )
}

#[derive(Default)]
struct Calls(std::sync::Mutex<Vec<(u8, usize, i32)>>);

impl Calls {
    fn record(&self, section: u8, index: usize, value: i32) {
        self.0.lock().unwrap().push((section, index, value));
    }
    fn take(&self) -> Vec<(u8, usize, i32)> {
        std::mem::take(&mut self.0.lock().unwrap())
    }
}

fn layout(main: usize, rescue: Option<usize>, finally: Option<usize>) -> Layout {
    Layout {
        main,
        rescue,
        finally,
        current: false,
    }
}

/// Invokes `pipeline` on a fresh runtime whose context records the calls.
fn run(pipeline: &Pipeline<i32, Calls>, value: i32) -> (Runtime<Calls>, Invocation<i32>) {
    let runtime = Runtime::builder(Calls::default()).start().unwrap();
    let handle = runtime.invoke_pipeline(pipeline, value).unwrap();
    (runtime, handle)
}

fn finished(handle: &mut Invocation<i32>) -> i32 {
    match handle.try_result() {
        Some(Ok(value)) => value,
        other => panic!("expected a value, got {other:?}"),
    }
}

#[test]
fn main_steps_thread_the_value_then_finally_runs() {
    let p = pipeline(layout(2, None, Some(1)), |section, _, value, error| {
        assert!(error.is_none());
        match section {
            0 => Outcome::Value(value + 1),
            _ => Outcome::Keep,
        }
    });
    let (runtime, mut handle) = run(&p, 0);
    assert_eq!(finished(&mut handle), 2);
    assert_eq!(runtime.context().take(), [(0, 0, 0), (0, 1, 1), (2, 0, 2)]);
}

#[test]
fn an_error_jumps_to_rescue_with_the_previous_value() {
    let p = pipeline(
        layout(3, Some(1), Some(1)),
        |section, index, value, error| match (section, index) {
            (0, 1) => Outcome::Error(Error::new("boom")),
            (1, _) => {
                assert_eq!(format!("{:#}", error.unwrap()), "step failed: boom");
                Outcome::Value(value * 10)
            }
            (2, _) => {
                assert!(error.is_some(), "finally sees the handled error");
                Outcome::Keep
            }
            _ => Outcome::Value(value + 1),
        },
    );
    let (runtime, mut handle) = run(&p, 1);
    assert_eq!(finished(&mut handle), 20);
    assert_eq!(
        runtime.context().take(),
        [(0, 0, 1), (0, 1, 2), (1, 0, 2), (2, 0, 20)]
    );
}

#[test]
fn without_rescue_the_error_survives_finally() {
    let p = pipeline(layout(2, None, Some(1)), |section, _, _, _| match section {
        0 => Outcome::Error(Error::new("kept")),
        _ => Outcome::Value(99),
    });
    let (runtime, mut handle) = run(&p, 0);
    let error = handle.try_result().unwrap().unwrap_err();
    assert_eq!(format!("{error:#}"), "step failed: kept");
    assert_eq!(runtime.context().take(), [(0, 0, 0), (2, 0, 0)]);
}

#[test]
fn an_error_in_finally_stops_it() {
    let p = pipeline(layout(0, None, Some(2)), |_, _, _, _| {
        Outcome::Error(Error::new("in finally"))
    });
    let (runtime, mut handle) = run(&p, 0);
    assert!(handle.try_result().unwrap().unwrap_err().is_failed());
    assert_eq!(runtime.context().take(), [(2, 0, 0)]);
}

/// A future that is pending once, then ready with its outcome.
struct PendingOnce(Option<Outcome<i32, Calls>>, bool);

impl Future for PendingOnce {
    type Output = Outcome<i32, Calls>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if self.1 {
            Poll::Ready(self.0.take().unwrap_or(Outcome::Keep))
        } else {
            self.1 = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_pending_future_suspends_and_resumes_at_the_next_step() {
    let p = pipeline(layout(3, None, None), |_, index, value, _| match index {
        1 => Outcome::from_future(PendingOnce(Some(Outcome::Value(value * 5)), false)),
        _ => Outcome::Value(value + 1),
    });
    let (runtime, mut handle) = run(&p, 1);
    assert!(handle.try_result().is_none(), "suspended");
    assert_eq!(runtime.context().take(), [(0, 0, 1), (0, 1, 2)]);
    assert_eq!(handle.await.unwrap(), 11);
    assert_eq!(runtime.context().take(), [(0, 2, 10)]);
}

#[tokio::test(flavor = "current_thread")]
async fn cancelling_a_waiting_instance_drops_the_future_and_runs_finally_once() {
    let dropped = Arc::new(());
    let witness = Arc::clone(&dropped);
    let p = pipeline(
        layout(2, Some(1), Some(1)),
        move |section, _, _, error| match section {
            0 => {
                let witness = Arc::clone(&witness);
                Outcome::from_future(async move {
                    let _witness = witness;
                    std::future::pending::<Outcome<i32, Calls>>().await
                })
            }
            _ => {
                assert!(error.unwrap().is_cancelled());
                Outcome::Keep
            }
        },
    );
    let (runtime, handle) = run(&p, 0);
    assert_eq!(
        Arc::strong_count(&dropped),
        3,
        "the pipeline and the future hold it"
    );
    assert!(handle.cancel());
    assert!(handle.await.unwrap_err().is_cancelled());
    assert_eq!(Arc::strong_count(&dropped), 2, "the future was dropped");
    assert_eq!(
        runtime.context().take(),
        [(0, 0, 0), (2, 0, 0)],
        "no rescue, one finally"
    );
}

#[test]
fn a_nested_child_runs_inline_and_its_cancellation_climbs() {
    let child = pipeline(layout(1, None, None), |_, _, _, _| {
        Outcome::Cancel(crate::CancelReason::Step)
    });
    let parent = pipeline(
        layout(2, None, Some(1)),
        move |section, index, _, _| match (section, index) {
            (0, 0) => Outcome::Nested {
                pipeline: child.clone(),
                muted: false,
            },
            _ => Outcome::Keep,
        },
    );
    let (runtime, mut handle) = run(&parent, 7);
    assert!(handle.try_result().unwrap().unwrap_err().is_cancelled());
    // Parent step 0, child step 0, then the parent's finally; parent step 1 never runs.
    assert_eq!(runtime.context().take(), [(0, 0, 7), (0, 0, 7), (2, 0, 7)]);
}

#[test]
fn a_panicking_step_is_an_error() {
    let p = pipeline(
        layout(1, Some(1), None),
        |section, _, _, error| match section {
            0 => panic!("unit panic"),
            _ => {
                assert!(error.unwrap().is_panic());
                Outcome::Value(-1)
            }
        },
    );
    let (_runtime, mut handle) = run(&p, 0);
    assert_eq!(finished(&mut handle), -1);
}

// ---- the interpreter on a fake port: no runtime at all ---------------------------------

mod on_a_fake_port {
    use std::sync::{Arc, Mutex};
    use std::task::{Context, Poll};

    use super::{layout, pipeline, Calls, PendingOnce};
    use crate::cancel_reason::{CancelReason, Cancellation};
    use crate::control::{Control, ErasedControl};
    use crate::error::Error;
    use crate::ident::{Ident, Name};
    use crate::instance::{ChildStart, Completion, Instance, Port};
    use crate::introspection::InstanceState;
    use crate::outcome::Outcome;
    use crate::pipeline::Pipeline;
    use crate::registry::{EntryRef, Recorded};
    use crate::runtime::{Current, FrameView};

    /// A port that records what the interpreter asks of it, and answers as a runtime with
    /// nothing else live would.
    #[derive(Default)]
    struct FakePort {
        context: Arc<Calls>,
        asked: Mutex<Vec<String>>,
    }

    impl FakePort {
        fn note(&self, what: String) {
            self.asked.lock().unwrap().push(what);
        }

        fn asked(&self) -> Vec<String> {
            std::mem::take(&mut self.asked.lock().unwrap())
        }
    }

    impl Port<Calls> for FakePort {
        fn context(&self) -> &Arc<Calls> {
            &self.context
        }

        fn current<'a, V>(
            &'a self,
            _at: EntryRef,
            _view: &'a FrameView<'a, V, Calls>,
        ) -> Option<Current<'a, V, Calls>> {
            None
        }

        fn start_child<V>(
            &self,
            _parent: EntryRef,
            _pipeline: Pipeline<V, Calls>,
            _value: V,
        ) -> ChildStart<V, Calls>
        where
            V: Clone + Send + Sync + 'static,
        {
            self.note("start child".into());
            ChildStart::Refused(Error::new("no children on the fake port"))
        }

        fn set_state(&self, at: EntryRef, state: InstanceState) {
            self.note(format!("state {} {state:?}", at.id));
        }

        fn cancel(&self, at: EntryRef, reason: CancelReason) -> bool {
            self.note(format!("cancel {} {reason:?}", at.id));
            true
        }

        fn cancel_below(&self, at: EntryRef, cause: Cancellation) {
            self.note(format!("cancel below {} {cause:?}", at.id));
        }

        fn withdraw(&self, at: EntryRef) {
            self.note(format!("withdraw {}", at.id));
        }

        fn finish(
            &self,
            at: EntryRef,
            ending: Recorded,
            _result: Option<Arc<dyn ErasedControl>>,
        ) -> Option<Cancellation> {
            let ending = match ending {
                Recorded::Finished => "finished".to_owned(),
                Recorded::Failed(error) => format!("failed: {error:#}"),
                Recorded::Cancelled(cause) => format!("cancelled: {cause:?}"),
            };
            self.note(format!("finish {} {ending}", at.id));
            None
        }

        fn await_children(&self, _at: EntryRef) -> bool {
            false
        }

        fn cancelled_while_waiting(&self, ident: &Ident) {
            self.note(format!("on_cancel {}", ident.id()));
        }
    }

    /// An admitted instance of `pipeline` with id 7, as the runtime would build it.
    fn instance(pipeline: Pipeline<i32, Calls>, value: i32) -> Instance<i32, Calls> {
        let ident = Ident {
            name: Name::Static("fake"),
            id: 7,
        };
        let at = EntryRef { id: 7, shard: 0 };
        let control = Arc::new(Control::new(value, true));
        Instance::new(
            pipeline,
            at,
            ident,
            control,
            value,
            &Name::Static("q"),
            true,
        )
    }

    fn drive(instance: &mut Instance<i32, Calls>, port: &FakePort) -> Poll<()> {
        let mut cx = Context::from_waker(futures::task::noop_waker_ref());
        instance.drive(port, &mut cx, None)
    }

    fn value_of(instance: Instance<i32, Calls>) -> i32 {
        match instance.into_completion() {
            Completion::Finished(value) => value,
            other => panic!("expected a value, got {other:?}"),
        }
    }

    #[test]
    fn a_synchronous_run_asks_the_port_only_to_record_its_end() {
        let port = FakePort::default();
        let p = pipeline(
            layout(2, None, Some(1)),
            |section, _, value, _| match section {
                0 => Outcome::Value(value + 1),
                _ => Outcome::Keep,
            },
        );
        let mut instance = instance(p, 1);
        assert!(drive(&mut instance, &port).is_ready());
        assert_eq!(port.asked(), ["finish 7 finished"]);
        assert_eq!(port.context.take(), [(0, 0, 1), (0, 1, 2), (2, 0, 3)]);
        assert_eq!(value_of(instance), 3);
    }

    #[test]
    fn a_waiting_step_is_told_as_a_suspension_then_a_resumption() {
        let port = FakePort::default();
        let p = pipeline(layout(2, None, None), |_, index, value, _| match index {
            0 => Outcome::from_future(PendingOnce(Some(Outcome::Value(value * 5)), false)),
            _ => Outcome::Value(value + 1),
        });
        let mut instance = instance(p, 2);
        assert!(drive(&mut instance, &port).is_pending());
        assert_eq!(port.asked(), ["state 7 Suspended"]);
        assert!(drive(&mut instance, &port).is_ready());
        assert_eq!(port.asked(), ["state 7 Running", "finish 7 finished"]);
        assert_eq!(value_of(instance), 11);
    }

    #[test]
    fn the_cancel_marker_asks_the_port_to_cancel_the_tree_and_finally_sees_why() {
        let port = FakePort::default();
        let seen = Arc::new(Mutex::new(None));
        let kept = Arc::clone(&seen);
        let p = pipeline(
            layout(2, None, Some(1)),
            move |section, _, _, error| match section {
                0 => Outcome::Cancel(CancelReason::Step),
                _ => {
                    *kept.lock().unwrap() = error.map(ToString::to_string);
                    Outcome::Keep
                }
            },
        );
        let mut instance = instance(p, 0);
        assert!(drive(&mut instance, &port).is_ready());
        assert_eq!(
            port.asked(),
            [
                "cancel 7 Step",
                "finish 7 cancelled: Cancellation { reason: Step, by_parent: false }"
            ]
        );
        // One main step ran; the second never did.
        assert_eq!(port.context.take(), [(0, 0, 0), (2, 0, 0)]);
        assert_eq!(
            seen.lock().unwrap().as_deref(),
            Some("instance cancelled: a step cancelled it")
        );
        assert!(matches!(
            instance.into_completion(),
            Completion::Cancelled(cause) if cause == Cancellation::direct(CancelReason::Step)
        ));
    }

    #[test]
    fn a_failed_step_without_rescue_is_recorded_as_failed() {
        let port = FakePort::default();
        let p = pipeline(layout(1, None, None), |_, _, _, _| {
            Outcome::Error(Error::new("no disk"))
        });
        let mut instance = instance(p, 0);
        assert!(drive(&mut instance, &port).is_ready());
        assert_eq!(port.asked(), ["finish 7 failed: step failed: no disk"]);
    }
}
