//! Why an instance was cancelled ([SEMANTICS 4]): each source of cancellation gives its
//! reason to the caller (`Error::Cancelled { reason, by_parent }`), to the instance's
//! `finally!` (its `error`) and to the watcher (`Cancelling` then `Cancelled`, with the
//! same fields). In a tree, every instance gets the source's reason: the instance named
//! and the parents the cancellation climbs through directly, every other one by its
//! parent.
//!
//! [SEMANTICS 4]: pipewright::semantics#4-cancellation

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pipewright::{
    pipeline, CancelReason, Error, EventKind, Ident, Pipeline, Runtime, RuntimeBuilder,
};
use tokio::time::sleep;

/// A cancellation's reason, and whether it came by the instance's parent.
type Told = (CancelReason, bool);

/// Told directly: the instance named, or a parent the cancellation climbed through.
fn direct(reason: CancelReason) -> Option<Told> {
    Some((reason, false))
}

/// Told by its parent.
fn by_parent(reason: CancelReason) -> Option<Told> {
    Some((reason, true))
}

/// What an error says of a cancellation (`None`: not one).
fn told_by(error: &Error) -> Option<Told> {
    match error {
        Error::Cancelled { reason, by_parent } => Some((*reason, *by_parent)),
        _ => None,
    }
}

/// What the instances and the watcher saw, by the name each instance was given.
#[derive(Default)]
struct Probe {
    /// The ident of each named instance, noted by its first step.
    idents: Mutex<HashMap<String, Ident>>,
    /// What each named instance's `finally!` was given.
    finally: Mutex<HashMap<String, Option<Told>>>,
    /// Every `Cancelling` and `Cancelled` event, by instance id.
    events: Mutex<Vec<(u64, String)>>,
}

type Ctx = Arc<Probe>;

impl Probe {
    fn note_ident(&self, name: &str, ident: &Ident) {
        let mut idents = self.idents.lock().unwrap();
        idents.insert(name.to_owned(), ident.clone());
    }

    fn note_finally(&self, name: &str, error: Option<&Error>) {
        let told = error.and_then(told_by);
        let mut finally = self.finally.lock().unwrap();
        let before = finally.insert(name.to_owned(), told);
        assert!(before.is_none(), "finally! of {name} ran twice");
    }

    fn ident(&self, name: &str) -> Ident {
        self.idents.lock().unwrap()[name].clone()
    }

    /// What `finally!` of `name` was told (`None`: not a cancellation).
    fn finally_of(&self, name: &str) -> Option<Told> {
        *self
            .finally
            .lock()
            .unwrap()
            .get(name)
            .unwrap_or_else(|| panic!("finally! of {name} did not run"))
    }

    /// `finally!` of `name` and the watcher were both told `told`.
    fn assert_saw(&self, name: &str, told: Option<Told>) {
        assert_eq!(self.finally_of(name), told, "finally! of {name}");
        assert_eq!(
            self.told(&self.ident(name)),
            told_for(told),
            "events of {name}"
        );
    }

    fn ran_finally(&self, name: &str) -> bool {
        self.finally.lock().unwrap().contains_key(name)
    }

    /// The cancellation events told about the instance `ident`, in order.
    fn told(&self, ident: &Ident) -> Vec<String> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter(|(id, _)| *id == ident.id())
            .map(|(_, kind)| kind.clone())
            .collect()
    }
}

/// A runtime whose watcher keeps every cancellation event in the probe.
fn watched(probe: &Ctx) -> RuntimeBuilder<Ctx> {
    let sink = Arc::clone(probe);
    Runtime::builder(Arc::clone(probe)).watcher(move |event| match event.kind() {
        EventKind::Cancelling { .. } | EventKind::Cancelled { .. } => sink
            .events
            .lock()
            .unwrap()
            .push((event.ident().id(), format!("{:?}", event.kind()))),
        _ => {}
    })
}

/// What the watcher is told about an instance cancelled as `told` says.
fn told_for(told: Option<Told>) -> Vec<String> {
    let (reason, by_parent) = told.expect("a cancellation");
    let fields = format!("{{ reason: {reason:?}, by_parent: {by_parent} }}");
    vec![
        format!("Cancelling {fields}"),
        format!("Cancelled {fields}"),
    ]
}

/// Notes its ident as `name`, then waits `millis` (an hour if 0); its `finally!` notes
/// what it was given.
fn waiting(name: &'static str, millis: u64) -> Pipeline<u32, Ctx> {
    pipeline!(|value: u32, probe: &Ctx, current| {
        probe.note_ident(name, current.ident());
        // 0: an hour, as good as forever in these tests.
        sleep(Duration::from_millis(if millis == 0 {
            3_600_000
        } else {
            millis
        }))
        .await;
        finally!(|error| {
            probe.note_finally(name, error);
        });
    })
}

/// Notes its ident as `name`, runs `child` as a step (waiting for it), and notes what
/// its `finally!` was given.
fn parent_of(name: &'static str, child: Pipeline<u32, Ctx>) -> Pipeline<u32, Ctx> {
    pipeline!(|value: u32, probe: &Ctx, current| {
        probe.note_ident(name, current.ident());
        value = child.clone();
        finally!(|error| {
            probe.note_finally(name, error);
        });
    })
}

async fn settle() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_restartable_queue_tells_the_instance_it_replaced() {
    let probe = Ctx::default();
    let runtime = watched(&probe).start().unwrap();
    let first = waiting("first", 0).restartable().queue("search");
    let second = waiting("second", 10).restartable().queue("search");
    let replaced = runtime.invoke_pipeline(&first, 1).unwrap();
    settle().await;
    let newer = runtime.invoke_pipeline(&second, 2).unwrap();
    let error = replaced.await.unwrap_err();
    assert_eq!(error.cancel_reason(), Some(CancelReason::Replaced));
    assert_eq!(
        error.to_string(),
        "instance cancelled: replaced by a newer instance"
    );
    probe.assert_saw("first", direct(CancelReason::Replaced));
    assert_eq!(newer.await.unwrap(), 2);
    assert_eq!(probe.finally_of("second"), None);
}

#[tokio::test(start_paused = true)]
async fn a_keep_latest_queue_tells_the_waiting_instance_it_replaced() {
    let probe = Ctx::default();
    let runtime = watched(&probe).start().unwrap();
    let refresh = |name| waiting(name, 10).keep_latest().queue("refresh");
    let running = runtime.invoke_pipeline(&refresh("running"), 1).unwrap();
    let waiting_one = runtime.invoke_pipeline(&refresh("waiting"), 2).unwrap();
    let waiting_ident = waiting_one.ident().clone();
    let latest = runtime.invoke_pipeline(&refresh("latest"), 3).unwrap();
    let error = waiting_one.await.unwrap_err();
    assert!(
        matches!(
            error,
            Error::Cancelled {
                reason: CancelReason::Replaced,
                by_parent: false
            }
        ),
        "{error:?}"
    );
    // It never started: no `finally!`, and the watcher is told as for any cancellation.
    assert!(!probe.ran_finally("waiting"));
    assert_eq!(
        probe.told(&waiting_ident),
        told_for(direct(CancelReason::Replaced))
    );
    assert_eq!(running.await.unwrap(), 1);
    assert_eq!(latest.await.unwrap(), 3);
}

#[tokio::test(start_paused = true)]
async fn cancelling_by_ident_tells_requested_in_every_form() {
    let probe = Ctx::default();
    let runtime = watched(&probe).start().unwrap();
    let by_runtime = runtime.invoke_pipeline(&waiting("runtime", 0), 1).unwrap();
    let by_handle = runtime.invoke_pipeline(&waiting("handle", 0), 2).unwrap();
    let by_all = runtime.invoke_pipeline(&waiting("all", 0), 3).unwrap();
    settle().await;
    runtime.cancel(by_runtime.ident()).unwrap();
    assert!(by_handle.cancel());
    assert_eq!(runtime.cancel_all([by_all.ident()]), 1);
    for (name, handle) in [
        ("runtime", by_runtime),
        ("handle", by_handle),
        ("all", by_all),
    ] {
        let ident = handle.ident().clone();
        assert_eq!(
            handle.await.unwrap_err().cancel_reason(),
            Some(CancelReason::Requested),
            "{name}"
        );
        assert_eq!(probe.finally_of(name), direct(CancelReason::Requested));
        assert_eq!(
            probe.told(&ident),
            told_for(direct(CancelReason::Requested))
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_child_of_a_cancelled_instance_gets_its_reason_by_its_parent() {
    let probe = Ctx::default();
    let runtime = watched(&probe).start().unwrap();
    let root = parent_of("root", waiting("child", 0));
    let handle = runtime.invoke_pipeline(&root, 1).unwrap();
    settle().await;
    runtime.cancel(handle.ident()).unwrap();
    assert_eq!(
        handle.await.unwrap_err().cancel_reason(),
        Some(CancelReason::Requested)
    );
    assert_eq!(probe.finally_of("root"), direct(CancelReason::Requested));
    probe.assert_saw("child", by_parent(CancelReason::Requested));
    assert_eq!(
        probe.told(&probe.ident("root")),
        told_for(direct(CancelReason::Requested))
    );
}

#[tokio::test(start_paused = true)]
async fn the_path_a_cancellation_climbs_keeps_its_reason_and_the_rest_of_the_tree_gets_it_by_its_parent(
) {
    let probe = Ctx::default();
    let runtime = watched(&probe).start().unwrap();
    // root starts a detached child (not on the path), then waits on `middle`, which waits
    // on `leaf`. Cancelling `leaf` climbs to `root` through `middle`.
    let detached = waiting("detached", 0).detached();
    let middle = parent_of("middle", waiting("leaf", 0));
    let root = pipeline!(|value: u32, probe: &Ctx, current| {
        probe.note_ident("root", current.ident());
        value = detached.clone();
        value = middle.clone();
        finally!(|error| {
            probe.note_finally("root", error);
        });
    });
    let handle = runtime.invoke_pipeline(&root, 1).unwrap();
    settle().await;
    runtime.cancel(&probe.ident("leaf")).unwrap();
    assert_eq!(
        handle.await.unwrap_err().cancel_reason(),
        Some(CancelReason::Requested)
    );
    settle().await;
    for name in ["leaf", "middle", "root"] {
        assert_eq!(
            probe.finally_of(name),
            direct(CancelReason::Requested),
            "{name}"
        );
        assert_eq!(
            probe.told(&probe.ident(name)),
            told_for(direct(CancelReason::Requested)),
            "{name}"
        );
    }
    probe.assert_saw("detached", by_parent(CancelReason::Requested));
}

#[tokio::test(start_paused = true)]
async fn stopping_the_runtime_tells_stopped() {
    let probe = Ctx::default();
    let runtime = watched(&probe).start().unwrap();
    let handle = runtime
        .invoke_pipeline(&parent_of("root", waiting("child", 0)), 1)
        .unwrap();
    settle().await;
    runtime.stop();
    let error = handle.await.unwrap_err();
    assert_eq!(error.cancel_reason(), Some(CancelReason::Stopped));
    assert_eq!(error.to_string(), "instance cancelled: the runtime stopped");
    assert_eq!(probe.finally_of("root"), direct(CancelReason::Stopped));
    assert_eq!(probe.finally_of("child"), by_parent(CancelReason::Stopped));
    assert_eq!(
        probe.told(&probe.ident("root")),
        told_for(direct(CancelReason::Stopped))
    );
}

#[tokio::test(start_paused = true)]
async fn a_shutdown_stops_first_then_its_deadline_tells_what_it_cancels() {
    let probe = Ctx::default();
    let runtime = watched(&probe).start().unwrap();
    let stopped = runtime.invoke_pipeline(&waiting("stopped", 0), 1).unwrap();
    let spared = waiting("spared", 0).cancel_on_shutdown(false);
    let forced = runtime.invoke_pipeline(&spared, 2).unwrap();
    settle().await;
    let report = runtime.shutdown(Duration::from_secs(5)).await;
    assert_eq!(report.forced(), 1);
    assert_eq!(
        stopped.await.unwrap_err().cancel_reason(),
        Some(CancelReason::Stopped)
    );
    assert_eq!(
        forced.await.unwrap_err().cancel_reason(),
        Some(CancelReason::ShutdownDeadline)
    );
    assert_eq!(probe.finally_of("stopped"), direct(CancelReason::Stopped));
    probe.assert_saw("spared", direct(CancelReason::ShutdownDeadline));
}

#[tokio::test(start_paused = true)]
async fn a_timeout_fails_its_instance_and_tells_the_child_it_cancelled() {
    let probe = Ctx::default();
    let runtime = watched(&probe).start().unwrap();
    let root = parent_of("root", waiting("child", 0)).timeout(Duration::from_millis(50));
    let handle = runtime.invoke_pipeline(&root, 1).unwrap();
    let error = handle.await.unwrap_err();
    assert!(error.is_timeout(), "{error:?}");
    probe.assert_saw("child", by_parent(CancelReason::TimedOut));
    // The timed-out instance itself was not cancelled: its `finally!` sees the timeout.
    assert_eq!(probe.finally_of("root"), None);
    assert_eq!(probe.told(&probe.ident("root")), Vec::<String>::new());
}

#[tokio::test(start_paused = true)]
async fn a_dropped_cancel_on_drop_handle_tells_handle_dropped() {
    let probe = Ctx::default();
    let runtime = watched(&probe).start().unwrap();
    let handle = runtime
        .invoke_pipeline(&waiting("request", 0), 1)
        .unwrap()
        .cancel_on_drop();
    settle().await;
    drop(handle);
    settle().await;
    probe.assert_saw("request", direct(CancelReason::HandleDropped));
}

#[tokio::test(start_paused = true)]
async fn the_cancel_marker_tells_step() {
    let probe = Ctx::default();
    let runtime = watched(&probe).start().unwrap();
    let gives_up = pipeline!(|value: u32, probe: &Ctx, current| {
        probe.note_ident("gives_up", current.ident());
        sleep(Duration::from_millis(5)).await;
        pipewright::Cancel;
        finally!(|error| {
            probe.note_finally("gives_up", error);
        });
    });
    let root = parent_of("root", gives_up);
    let handle = runtime.invoke_pipeline(&root, 1).unwrap();
    let error = handle.await.unwrap_err();
    assert_eq!(error.cancel_reason(), Some(CancelReason::Step));
    assert_eq!(probe.finally_of("gives_up"), direct(CancelReason::Step));
    // The parent it climbed through keeps the reason.
    probe.assert_saw("root", direct(CancelReason::Step));
}

#[tokio::test(start_paused = true)]
async fn a_parent_whose_child_was_dropped_is_dropped_and_the_watcher_is_told_why() {
    let probe = Ctx::default();
    let runtime = watched(&probe).start().unwrap();
    let busy = waiting("busy", 0).dropping().queue("busy");
    let occupant = runtime.invoke_pipeline(&busy, 1).unwrap();
    settle().await;
    let refused = waiting("refused", 0).dropping().queue("busy");
    let handle = runtime
        .invoke_pipeline(&parent_of("root", refused), 2)
        .unwrap();
    let error = handle.await.unwrap_err();
    assert!(error.is_dropped(), "{error:?}");
    assert!(!probe.ran_finally("refused"));
    assert!(probe.finally_of("root").is_none());
    assert_eq!(
        probe.told(&probe.ident("root")),
        told_for(direct(CancelReason::ChildDropped))
    );
    assert!(occupant.cancel());
}

#[tokio::test(start_paused = true)]
async fn cancel_with_gives_its_reason_to_the_path_and_the_first_reason_is_kept() {
    let probe = Ctx::default();
    let runtime = watched(&probe).start().unwrap();
    let handle = runtime
        .invoke_pipeline(&parent_of("root", waiting("child", 0)), 1)
        .unwrap();
    settle().await;
    runtime
        .cancel_with(&probe.ident("child"), CancelReason::LeaseLost)
        .unwrap();
    // The root is still live (cancelling): a second cancellation is accepted, and
    // changes no reason.
    runtime.cancel(handle.ident()).unwrap();
    assert_eq!(
        handle.await.unwrap_err().cancel_reason(),
        Some(CancelReason::LeaseLost)
    );
    assert_eq!(probe.finally_of("child"), direct(CancelReason::LeaseLost));
    assert_eq!(probe.finally_of("root"), direct(CancelReason::LeaseLost));
    assert_eq!(
        probe.told(&probe.ident("child")),
        told_for(direct(CancelReason::LeaseLost))
    );
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_instance_that_never_started_tells_its_caller_and_the_watcher() {
    let probe = Ctx::default();
    let runtime = watched(&probe).start().unwrap();
    let queue = waiting("slot", 0).enqueued().queue("one");
    let holder = runtime.invoke_pipeline(&queue, 1).unwrap();
    let waiter = runtime.invoke_pipeline(&queue, 2).unwrap();
    let ident = waiter.ident().clone();
    runtime.stop();
    assert_eq!(
        waiter.await.unwrap_err().cancel_reason(),
        Some(CancelReason::Stopped)
    );
    assert_eq!(probe.told(&ident), told_for(direct(CancelReason::Stopped)));
    assert_eq!(
        holder.await.unwrap_err().cancel_reason(),
        Some(CancelReason::Stopped)
    );
}
