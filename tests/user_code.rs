//! Promise: user code the runtime calls in its own bookkeeping (`Clone` of the result,
//! `Hash`/`Eq` of a `use_existing` argument, a per-key queue function, `Drop` of a value
//! it kept) cannot leak a slot or change another instance's outcome: a panic there is
//! the instance's error (or a refused invocation), reported once, and everything is
//! released.

use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use pipewright::{pipeline, Error, Ident, InvokeError, Runtime};

/// A value whose `Clone` panics when it holds 13.
#[derive(Debug, PartialEq, Eq)]
struct CloneBomb(u32);

impl Clone for CloneBomb {
    fn clone(&self) -> Self {
        assert!(self.0 != 13, "cloning 13");
        CloneBomb(self.0)
    }
}

#[derive(Default)]
struct Counts {
    finally: AtomicUsize,
}

fn reporter(
    reports: &Arc<Mutex<Vec<(Ident, String)>>>,
) -> impl Fn(&Ident, &Error) + Send + Sync + 'static {
    let reports = reports.clone();
    move |ident, error| {
        reports
            .lock()
            .unwrap()
            .push((ident.clone(), format!("{error:#}")))
    }
}

#[test]
fn a_result_whose_clone_panics_fails_its_instance_and_frees_its_slot() {
    let bump = pipeline!(|value: &CloneBomb, ctx: &Counts| {
        value = CloneBomb(value.0 + 1);
        finally!(|error| {
            {
                ctx.finally.fetch_add(1, Ordering::SeqCst);
            };
        });
    })
    .enqueued()
    .max(1);
    let reports = Arc::new(Mutex::new(Vec::new()));
    let runtime = Runtime::builder(Counts::default())
        .register("bump", bump)
        .error_reporter(reporter(&reports))
        .start()
        .unwrap();

    // 12 + 1 = 13: the runtime's clone for the queue's statistics panics.
    let mut failed = runtime.invoke("bump", CloneBomb(12)).unwrap();
    let error = failed.try_result().unwrap().unwrap_err();
    assert!(error.is_panic(), "{error:#}");
    assert!(format!("{error:#}").contains("cloning 13"), "{error:#}");
    assert_eq!(runtime.context().finally.load(Ordering::SeqCst), 1);
    assert_eq!(reports.lock().unwrap().len(), 1, "reported once");
    assert_eq!(&reports.lock().unwrap()[0].0, failed.ident());

    // The slot was freed: the next invocation of the enqueued queue starts and finishes.
    assert!(runtime.active().is_empty());
    assert_eq!(runtime.live_counts().0, 0);
    let mut next = runtime.invoke("bump", CloneBomb(1)).unwrap();
    assert_eq!(next.try_result().unwrap().unwrap(), CloneBomb(2));
    let queue = runtime.queue_info("bump").unwrap();
    assert_eq!(queue.running(), 0);
    assert!(queue.last_error().unwrap().is_panic());
}

/// A key whose `Hash` panics for 13 and whose `Eq` panics when comparing 7s.
#[derive(Debug, Clone)]
struct Touchy(u32);

impl Hash for Touchy {
    fn hash<H: Hasher>(&self, state: &mut H) {
        assert!(self.0 != 13, "hashing 13");
        // Every value in one bucket, so that `Eq` is always asked.
        0_u32.hash(state);
    }
}

impl PartialEq for Touchy {
    fn eq(&self, other: &Self) -> bool {
        assert!(!(self.0 == 7 && other.0 == 7), "comparing 7s");
        self.0 == other.0
    }
}

impl Eq for Touchy {}

#[tokio::test(start_paused = true)]
async fn a_panicking_hash_or_eq_of_a_use_existing_argument_refuses_the_invocation() {
    let fetch = pipeline!(|value: Touchy, _ctx: &()| {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    })
    .use_existing();
    let runtime = Runtime::builder(())
        .register("fetch", fetch)
        .start()
        .unwrap();

    let error = runtime.invoke("fetch", Touchy(13)).unwrap_err();
    assert_eq!(
        error,
        InvokeError::ArgumentPanicked {
            operation: "hash",
            message: "hashing 13".into()
        }
    );
    assert_eq!(
        format!("{error:#}"),
        "hash of the argument panicked: hashing 13"
    );
    assert_eq!(runtime.live_counts().0, 0);

    let first = runtime.invoke("fetch", Touchy(7)).unwrap();
    let error = runtime.invoke("fetch", Touchy(7)).unwrap_err();
    assert!(matches!(
        *error,
        InvokeError::ArgumentPanicked {
            operation: "eq",
            ..
        }
    ));
    // The live instance is untouched and still shared by equal arguments that compare.
    let other = runtime.invoke("fetch", Touchy(8)).unwrap();
    assert_eq!(first.await.unwrap().0, 7);
    assert_eq!(other.await.unwrap().0, 8);
    assert_eq!(runtime.live_counts().0, 0);
}

#[test]
fn a_panicking_queue_key_function_refuses_the_invocation() {
    let save = pipeline!(|value: u32, _ctx: &()| {
        value = value;
    })
    .queue_by(|value: &u32| {
        assert!(*value != 0, "no key for 0");
        format!("doc-{value}")
    });
    let runtime = Runtime::builder(()).register("save", save).start().unwrap();
    let error = runtime.invoke("save", 0_u32).unwrap_err();
    assert_eq!(
        error,
        InvokeError::ArgumentPanicked {
            operation: "queue key",
            message: "no key for 0".into()
        }
    );
    assert_eq!(runtime.live_counts().0, 0);
    let mut saved = runtime.invoke("save", 1_u32).unwrap();
    assert_eq!(saved.try_result().unwrap().unwrap(), 1);
}

#[test]
fn a_panicking_nested_argument_clone_is_the_parent_step_error() {
    let child = pipeline!(|value: CloneBomb, _ctx: &()| {
        value = CloneBomb(value.0);
    })
    .queue_by(|value: &CloneBomb| format!("child-{}", value.0));
    let parent = pipeline!(|value: &CloneBomb, _ctx: &()| {
        value = CloneBomb(13);
        value = &child;
        rescue!(|error| {
            value = CloneBomb(if format!("{error:#}").contains("cloning 13") {
                100
            } else {
                0
            });
        });
    });
    let runtime = Runtime::builder(())
        .register("parent", parent)
        .start()
        .unwrap();
    // The parent's value 13 cannot be handed to the child: the step fails and rescue!
    // sees the panic.
    let mut handle = runtime.invoke("parent", CloneBomb(1)).unwrap();
    assert_eq!(handle.try_result().unwrap().unwrap(), CloneBomb(100));
    assert_eq!(runtime.live_counts().0, 0);
}

/// A value whose `Drop` panics once, when it holds 13 and the bomb is armed.
#[derive(Debug, Clone, PartialEq)]
struct DropBomb(u32);

static ARMED: AtomicBool = AtomicBool::new(false);

impl Drop for DropBomb {
    fn drop(&mut self) {
        if self.0 == 13 && ARMED.swap(false, Ordering::SeqCst) {
            panic!("dropping 13");
        }
    }
}

#[test]
fn a_panicking_drop_of_a_kept_result_is_reported_and_changes_no_outcome() {
    let keep = pipeline!(|value: DropBomb, _ctx: &()| {
        value = value.clone();
    });
    let reports = Arc::new(Mutex::new(Vec::new()));
    let runtime = Runtime::builder(())
        .register("keep", keep)
        .error_reporter(reporter(&reports))
        .start()
        .unwrap();

    let mut first = runtime.invoke("keep", DropBomb(13)).unwrap();
    std::mem::forget(first.try_result().unwrap().unwrap());
    drop(first);
    // The queue's statistics now hold the only copies of 13 (argument and result).
    ARMED.store(true, Ordering::SeqCst);
    let mut second = runtime.invoke("keep", DropBomb(1)).unwrap();
    // Replacing the kept result dropped 13, whose `Drop` panicked: reported for the
    // instance whose end let go of it, whose own outcome is untouched.
    assert_eq!(second.try_result().unwrap().unwrap(), DropBomb(1));
    assert!(!ARMED.load(Ordering::SeqCst), "the bomb went off");
    let reports = reports.lock().unwrap();
    assert_eq!(reports.len(), 1, "{reports:?}");
    assert_eq!(&reports[0].0, second.ident());
    assert!(reports[0].1.contains("dropping 13"), "{}", reports[0].1);
    assert_eq!(runtime.live_counts().0, 0);
}
