//! Which queue an instance joins ([SEMANTICS 3.1]): implicit queues, renaming at
//! registration, explicit and per-key queues, shared queues and their configuration
//! errors, and the `Queue` value.
//!
//! [SEMANTICS 3.1]: pipewright::semantics#31-which-queue-an-instance-joins

use std::sync::{Arc, Mutex};
use std::time::Duration;

use pipewright::{
    pipeline, Behaviour, Concurrency, InvokeError, Pipeline, Queue, Runtime, StartError,
};
use tokio::time::sleep;

type Log = Arc<Mutex<Vec<String>>>;

fn slow(tag: &'static str) -> Pipeline<u32, Log> {
    pipeline!(|value: u32, log: &Log| {
        sleep(Duration::from_millis(100)).await;
        log.lock().unwrap().push(format!("{tag} {value}"));
    })
}

fn quick() -> Pipeline<u32, Log> {
    pipeline!(|value: u32, _log: &Log| {
        value = value + 1;
    })
}

#[test]
fn an_unregistered_pipeline_runs_in_the_implicit_queue_of_its_site() {
    let p = quick();
    let runtime = Runtime::builder(Log::default()).start().unwrap();
    let handle = runtime.invoke_pipeline(&p, 1).unwrap();
    assert_eq!(handle.ident().name(), p.site_name());
    let queue = runtime.queue_info(p.site_name()).unwrap();
    assert_eq!(queue.performed(), 1);
    assert!(p.site_name().starts_with("pipeline@tests/queues.rs:"));
}

#[test]
fn registration_renames_the_implicit_queue_and_two_names_make_two_queues() {
    let p = quick();
    let runtime = Runtime::builder(Log::default())
        .register("a", p.clone())
        .register("b", p.clone())
        .start()
        .unwrap();
    runtime.invoke("a", 1_u32).unwrap();
    runtime.invoke("a", 2_u32).unwrap();
    runtime.invoke("b", 3_u32).unwrap();
    assert_eq!(runtime.queue_info("a").unwrap().performed(), 2);
    assert_eq!(runtime.queue_info("b").unwrap().performed(), 1);
    // The value itself keeps its implicit queue.
    runtime.invoke_pipeline(&p, 4).unwrap();
    assert_eq!(runtime.queue_info(p.site_name()).unwrap().performed(), 1);
}

#[test]
fn an_explicit_queue_is_kept_when_registered() {
    let runtime = Runtime::builder(Log::default())
        .register("named", quick().queue("explicit"))
        .start()
        .unwrap();
    let handle = runtime.invoke("named", 1_u32).unwrap();
    assert_eq!(handle.ident().name(), "named");
    assert_eq!(runtime.queue_info("explicit").unwrap().performed(), 1);
    assert!(runtime.queue_info("named").is_none());
}

#[tokio::test(start_paused = true)]
async fn a_nested_pipeline_keeps_its_own_queue() {
    let inner = slow("inner").enqueued().queue("inner-queue");
    let outer = pipeline!(|value: u32, _log: &Log| {
        value = &inner;
    });
    let log = Log::default();
    let runtime = Runtime::builder(log.clone())
        .register("outer", outer)
        .start()
        .unwrap();
    let first = runtime.invoke("outer", 1_u32).unwrap();
    let second = runtime.invoke("outer", 2_u32).unwrap();
    tokio::task::yield_now().await;
    let inner_queue = runtime.queue_info("inner-queue").unwrap();
    assert_eq!((inner_queue.running(), inner_queue.waiting()), (1, 1));
    assert_eq!(runtime.queue_info("outer").unwrap().running(), 2);
    assert_eq!((first.await.unwrap(), second.await.unwrap()), (1, 2));
    assert_eq!(*log.lock().unwrap(), ["inner 1", "inner 2"]);
}

#[tokio::test(start_paused = true)]
async fn pipelines_with_the_same_configuration_share_a_queue() {
    let saves = Queue::new("saves").enqueued();
    let log = Log::default();
    let runtime = Runtime::builder(log.clone())
        .register("save-title", slow("title").in_queue(&saves))
        .register("save-body", slow("body").enqueued().queue("saves"))
        .start()
        .unwrap();
    let a = runtime.invoke("save-title", 1_u32).unwrap();
    let b = runtime.invoke("save-body", 2_u32).unwrap();
    let c = runtime.invoke("save-title", 3_u32).unwrap();
    let queue = runtime.queue_info("saves").unwrap();
    assert_eq!((queue.running(), queue.waiting()), (1, 2));
    assert_eq!(queue.concurrency(), saves.concurrency());
    for handle in [a, b, c] {
        handle.await.unwrap();
    }
    // One at a time, in arrival order, across both pipelines.
    assert_eq!(*log.lock().unwrap(), ["title 1", "body 2", "title 3"]);
}

#[test]
fn a_shared_queue_with_differing_configurations_is_refused_at_start() {
    let error = Runtime::builder(Log::default())
        .register("a", quick().queue("q").enqueued())
        .register("b", quick().queue("q").restartable().max(2))
        .start()
        .unwrap_err();
    match &error {
        StartError::Queue(InvokeError::QueueMismatch {
            queue,
            existing,
            existing_by,
            requested,
            requested_by,
        }) => {
            assert_eq!(queue, "q");
            assert_eq!(*existing, Concurrency::new(Behaviour::Enqueued));
            assert_eq!(existing_by, "a");
            assert_eq!(
                *requested,
                Concurrency::new(Behaviour::Restartable).with_max(2)
            );
            assert_eq!(requested_by, "b");
        }
        other => panic!("expected a queue mismatch, got {other:?}"),
    }
    assert_eq!(
        format!("{error:#}"),
        "queue `q` is enqueued(max 1) (set by `a`), not restartable(max 2) (asked by `b`)"
    );
}

#[test]
fn a_shared_queue_mismatch_only_knowable_at_invoke_is_refused_there() {
    // Unregistered pipelines: the runtime learns their queues when they are invoked.
    let first = quick().queue("late").dropping();
    let second = quick().queue("late").enqueued();
    let runtime = Runtime::builder(Log::default()).start().unwrap();
    runtime.invoke_pipeline(&first, 1).unwrap();
    let error = runtime.invoke_pipeline(&second, 1).unwrap_err();
    assert!(matches!(*error, InvokeError::QueueMismatch { .. }));
    assert!(format!("{error:#}")
        .starts_with("queue `late` is dropping(max 1) (set by `pipeline@tests/queues.rs:"));
}

#[tokio::test(start_paused = true)]
async fn a_nested_child_whose_queue_mismatches_fails_the_step() {
    let child = quick().queue("clash").enqueued();
    let parent = pipeline!(|value: u32, _log: &Log| {
        value = &child;
        rescue!(|error| {
            value = format!("{error:#}").len() as u32;
        });
    });
    let runtime = Runtime::builder(Log::default())
        .register("owner", quick().queue("clash").dropping())
        .start()
        .unwrap();
    let handled = runtime.invoke_pipeline(&parent, 0).unwrap().await.unwrap();
    assert!(handled > 0, "the mismatch reached rescue!");
}

#[test]
fn a_max_of_zero_is_refused_with_a_clear_error() {
    let error = Runtime::builder(Log::default())
        .register("never", quick().enqueued().max(0))
        .start()
        .unwrap_err();
    assert_eq!(
        format!("{error:#}"),
        "queue `never` cannot use enqueued(max 0): max is 0, nothing could run"
    );
    let runtime = Runtime::builder(Log::default()).start().unwrap();
    let error = runtime
        .invoke_pipeline(&quick().dropping().max(0), 1)
        .unwrap_err();
    assert!(matches!(*error, InvokeError::InvalidConcurrency { .. }));
}

#[test]
fn a_use_existing_queue_needs_a_pipeline_that_compares_arguments() {
    let shared = Queue::new("shared").use_existing();
    let runtime = Runtime::builder(Log::default()).start().unwrap();
    let error = runtime
        .invoke_pipeline(&quick().in_queue(&shared), 1)
        .unwrap_err();
    assert!(error.to_string().ends_with("arguments cannot be compared"));
    let fixed = quick().in_queue(&shared).use_existing();
    assert_eq!(
        runtime
            .invoke_pipeline(&fixed, 1)
            .unwrap()
            .try_result()
            .unwrap()
            .unwrap(),
        2
    );
}

#[tokio::test(start_paused = true)]
async fn a_queue_per_key_isolates_keys_and_is_forgotten_when_empty() {
    let upvote = slow("upvote")
        .dropping()
        .queue_by(|article: &u32| format!("upvote-{article}"));
    let log = Log::default();
    let runtime = Runtime::builder(log.clone())
        .register("upvote", upvote)
        .start()
        .unwrap();
    let one = runtime.invoke("upvote", 1_u32).unwrap();
    let two = runtime.invoke("upvote", 2_u32).unwrap();
    let one_again = runtime.invoke("upvote", 1_u32).unwrap();
    assert!(runtime.queue_info("upvote-1").is_some());
    assert!(one_again.await.unwrap_err().is_dropped());
    assert_eq!((one.await.unwrap(), two.await.unwrap()), (1, 2));
    assert_eq!(*log.lock().unwrap(), ["upvote 1", "upvote 2"]);
    assert!(
        runtime.queue_info("upvote-1").is_none(),
        "per-key queues are forgotten"
    );
    assert_eq!(runtime.live_counts(), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn many_distinct_keys_leave_nothing_behind() {
    let per_user = pipeline!(|user: u32, _log: &Log| {
        tokio::task::yield_now().await;
    })
    .enqueued()
    .queue_by(|user: &u32| format!("user-{user}"));
    let runtime = Runtime::builder(Log::default()).start().unwrap();
    let handles: Vec<_> = (0..1000)
        .map(|user| runtime.invoke_pipeline(&per_user, user).unwrap())
        .collect();
    assert_eq!(runtime.live_counts(), (1000, 1000));
    for handle in handles {
        handle.await.unwrap();
    }
    assert_eq!(runtime.live_counts(), (0, 0));
}

#[test]
fn a_million_distinct_per_key_queues_leave_nothing_behind() {
    let per_key = pipeline!(|value: u32, _log: &Log| {
        value = value + 1;
    })
    .enqueued()
    .queue_by(|key: &u32| format!("key-{key}"));
    let runtime = Runtime::builder(Log::default()).start().unwrap();
    for key in 0..1_000_000 {
        let mut handle = runtime.invoke_pipeline(&per_key, key).unwrap();
        assert_eq!(handle.try_result().unwrap().unwrap(), key + 1);
    }
    assert_eq!(runtime.live_counts(), (0, 0), "no instance, no queue");
}

#[test]
#[allow(deprecated)]
fn the_former_queue_setters_still_work() {
    let named = quick().set_queue("former");
    let keyed = quick().set_queue_by(|value: &u32| format!("former-{value}"));
    let runtime = Runtime::builder(Log::default()).start().unwrap();
    runtime.invoke_pipeline(&named, 1).unwrap();
    assert_eq!(runtime.queue_info("former").unwrap().performed(), 1);
    let handle = runtime.invoke_pipeline(&keyed, 2).unwrap();
    assert!(handle.is_finished());
}
