//! `Runtime::events()`: the runtime's events as a `futures::Stream`, opted in
//! with `RuntimeBuilder::event_stream(capacity)`. Each subscriber gets every event from its
//! subscription on, in the order the watcher sees them; one that falls behind is told how
//! many it missed (`EventKind::Lagged`); dropping one affects no other; a runtime without
//! the opt-in records nothing and keeps its quick runs.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use pipewright::{
    pipeline, Event, EventKind, EventStream, Ident, Pipeline, Runtime, StartError, SubscribeError,
    WeakRuntime,
};
use tokio::time::sleep;

/// `(ident, kind)` of an event, the kind as its debug text.
fn seen(event: &Event) -> (Ident, String) {
    (event.ident().clone(), format!("{:?}", event.kind()))
}

/// The events the stream has ready now, without waiting.
fn ready(events: &mut EventStream) -> Vec<(Ident, String)> {
    let mut ready = Vec::new();
    while let Some(Some(event)) = events.next().now_or_never() {
        ready.push(seen(&event));
    }
    ready
}

/// The kinds of `events` that are about `ident`.
fn kinds_of(events: &[(Ident, String)], ident: &Ident) -> Vec<String> {
    events
        .iter()
        .filter(|(about, _)| about == ident)
        .map(|(_, kind)| kind.clone())
        .collect()
}

fn inc() -> Pipeline<u32, ()> {
    pipeline!(|value: u32, _ctx: &()| {
        value = value + 1;
    })
}

/// What a watcher was told, as `(ident, kind)`.
type Watched = Arc<Mutex<Vec<(Ident, String)>>>;

/// A watcher that keeps what it is told.
fn recorder() -> (Watched, impl Fn(&Event) + Send + Sync + 'static) {
    let log = Watched::default();
    let sink = log.clone();
    (log, move |event: &Event| {
        sink.lock().unwrap().push(seen(event))
    })
}

#[test]
fn the_events_of_a_synchronous_invocation_are_in_the_stream_in_order_when_invoke_returns() {
    let failing = pipeline!(|value: u32, _ctx: &()| {
        value = Err::<u32, _>("no");
    });
    let runtime = Runtime::builder(())
        .register("inc", inc())
        .register("failing", failing)
        .event_stream(64)
        .start()
        .unwrap();
    let mut events = runtime.events().unwrap();
    let mut handle = runtime.invoke("inc", 1_u32).unwrap();
    assert_eq!(handle.try_result().unwrap().unwrap(), 2);
    let ident = handle.ident().clone();
    let failed = runtime.invoke("failing", 1_u32).unwrap().ident().clone();
    let expected = [
        (ident.clone(), "Admitted"),
        (ident.clone(), "Started"),
        (ident, "Finished"),
        (failed.clone(), "Admitted"),
        (failed.clone(), "Started"),
        (failed, "Failed(Failed(\"no\"))"),
    ]
    .map(|(ident, kind)| (ident, kind.to_owned()));
    assert_eq!(ready(&mut events), expected);
}

#[tokio::test(start_paused = true)]
async fn the_events_of_waiting_pipelines_arrive_in_the_order_the_watcher_sees_them() {
    let save = pipeline!(|value: u32, _ctx: &()| {
        sleep(Duration::from_millis(100)).await;
        value = value * 2;
    })
    .enqueued();
    let (watched, watcher) = recorder();
    let runtime = Runtime::builder(())
        .register("save", save)
        .watcher(watcher)
        .event_stream(64)
        .start()
        .unwrap();
    let mut events = runtime.events().unwrap();
    let first = runtime.invoke("save", 1_u32).unwrap();
    let second = runtime.invoke("save", 2_u32).unwrap();
    let (one, two) = (first.ident().clone(), second.ident().clone());
    assert_eq!((first.await.unwrap(), second.await.unwrap()), (2, 4));
    let streamed: Vec<_> = events.by_ref().take(11).map(|e| seen(&e)).collect().await;
    assert_eq!(streamed, *watched.lock().unwrap());
    let order: Vec<(&Ident, &str)> = streamed.iter().map(|(i, k)| (i, k.as_str())).collect();
    assert_eq!(
        order,
        [
            (&one, "Admitted"),
            (&one, "Started"),
            (&one, "Suspended"),
            (&two, "Admitted"),
            (&two, "Waiting"),
            (&one, "Resumed"),
            (&one, "Finished"),
            (&two, "Started"),
            (&two, "Suspended"),
            (&two, "Resumed"),
            (&two, "Finished"),
        ]
    );
    assert!(ready(&mut events).is_empty());
}

#[test]
fn a_subscriber_gets_the_events_from_its_subscription_on() {
    let runtime = Runtime::builder(()).event_stream(64).start().unwrap();
    let before = runtime.invoke_pipeline(&inc(), 1).unwrap();
    let mut early = runtime.events().unwrap();
    let middle = runtime.invoke_pipeline(&inc(), 2).unwrap();
    let mut late = runtime.events().unwrap();
    let after = runtime.invoke_pipeline(&inc(), 3).unwrap();
    let early = ready(&mut early);
    let late = ready(&mut late);
    assert!(kinds_of(&early, before.ident()).is_empty());
    assert_eq!(kinds_of(&early, middle.ident()).len(), 3);
    assert_eq!(kinds_of(&early, after.ident()).len(), 3);
    assert_eq!(early.len(), 6);
    assert_eq!(
        kinds_of(&late, after.ident()),
        ["Admitted", "Started", "Finished"]
    );
    assert_eq!(late.len(), 3);
}

#[test]
fn a_slow_subscriber_is_told_how_many_events_it_missed_and_a_fast_one_misses_none() {
    // Room for 4 events per subscriber; 10 invocations make 30 events.
    let runtime = Runtime::builder(()).event_stream(4).start().unwrap();
    let mut fast = runtime.events().unwrap();
    let mut slow = runtime.events().unwrap();
    let mut idents = Vec::new();
    let mut fast_seen = Vec::new();
    for value in 0..10 {
        idents.push(
            runtime
                .invoke_pipeline(&inc(), value)
                .unwrap()
                .ident()
                .clone(),
        );
        fast_seen.extend(ready(&mut fast));
    }
    assert_eq!(fast_seen.len(), 30);
    assert!(fast_seen
        .iter()
        .all(|(_, kind)| !kind.starts_with("Lagged")));
    // The slow one lost the oldest 26: it is told so, with the ident of the event that
    // follows (the ninth invocation's end), then reads the 4 kept.
    let slow_seen = ready(&mut slow);
    let expected = [
        (&idents[8], "Lagged { missed: 26 }"),
        (&idents[8], "Finished"),
        (&idents[9], "Admitted"),
        (&idents[9], "Started"),
        (&idents[9], "Finished"),
    ];
    let slow_order: Vec<(&Ident, &str)> = slow_seen.iter().map(|(i, k)| (i, k.as_str())).collect();
    assert_eq!(slow_order, expected);
    // Caught up, it misses nothing more.
    let next = runtime.invoke_pipeline(&inc(), 10).unwrap().ident().clone();
    assert_eq!(
        kinds_of(&ready(&mut slow), &next),
        ["Admitted", "Started", "Finished"]
    );
}

#[test]
fn dropping_a_subscriber_does_not_affect_the_others() {
    let runtime = Runtime::builder(()).event_stream(4).start().unwrap();
    let mut kept = runtime.events().unwrap();
    let mut dropped = runtime.events().unwrap();
    let mut kept_seen = Vec::new();
    runtime.invoke_pipeline(&inc(), 0).unwrap();
    kept_seen.extend(ready(&mut kept));
    // Dropped with events it did not read, and one of its reads half done.
    assert!(dropped.next().now_or_never().is_some());
    runtime.invoke_pipeline(&inc(), 1).unwrap();
    drop(dropped);
    kept_seen.extend(ready(&mut kept));
    for value in 2..6 {
        runtime.invoke_pipeline(&inc(), value).unwrap();
        kept_seen.extend(ready(&mut kept));
    }
    assert_eq!(kept_seen.len(), 18);
    assert!(kept_seen
        .iter()
        .all(|(_, kind)| !kind.starts_with("Lagged")));
    // A new subscriber after the drop gets what follows.
    let mut new = runtime.events().unwrap();
    runtime.invoke_pipeline(&inc(), 6).unwrap();
    assert_eq!(ready(&mut new).len(), 3);
    assert_eq!(ready(&mut kept).len(), 3);
}

#[tokio::test(start_paused = true)]
async fn a_subscriber_waiting_for_events_is_woken_and_the_stream_ends_with_the_runtime() {
    let slow = pipeline!(|value: u32, _ctx: &()| {
        sleep(Duration::from_millis(50)).await;
    });
    let runtime = Runtime::builder(()).event_stream(16).start().unwrap();
    let events = runtime.events().unwrap();
    let reader = tokio::spawn(events.map(|event| seen(&event).1).collect::<Vec<_>>());
    runtime.invoke_pipeline(&slow, 1).unwrap().await.unwrap();
    drop(runtime);
    assert_eq!(
        reader.await.unwrap(),
        ["Admitted", "Started", "Suspended", "Resumed", "Finished"]
    );
}

#[test]
fn without_the_opt_in_nothing_is_recorded_and_synchronous_runs_stay_quick() {
    #[derive(Default)]
    struct Ctx {
        runtime: OnceLock<WeakRuntime<Ctx>>,
        listed: Mutex<Vec<usize>>,
    }
    // A quick run has no registry entry, but a step that asks sees its own instance
    // either way (asking makes it an ordinary instance, `tests/fast_paths.rs`).
    let looks = pipeline!(|value: u32, ctx: &Ctx| {
        {
            let runtime = ctx.runtime.get().and_then(WeakRuntime::upgrade).unwrap();
            let listed = runtime.active().iter().map(|q| q.instances().len()).sum();
            ctx.listed.lock().unwrap().push(listed);
        };
    });
    for with_events in [false, true] {
        let mut builder = Runtime::builder(Ctx::default());
        if with_events {
            builder = builder.event_stream(16);
        }
        let runtime = builder.start().unwrap();
        runtime.context().runtime.set(runtime.downgrade()).unwrap();
        let subscription = runtime.events();
        runtime.invoke_pipeline(&looks, 1).unwrap();
        let listed = runtime.context().listed.lock().unwrap().clone();
        assert_eq!(listed, [1]);
        if with_events {
            assert_eq!(ready(&mut subscription.unwrap()).len(), 3);
        } else {
            assert_eq!(subscription.unwrap_err(), SubscribeError::NotEnabled);
        }
    }
}

#[test]
fn the_capacity_must_be_from_1_to_65536() {
    for capacity in [0, 65_537, usize::MAX] {
        let error = Runtime::builder(())
            .event_stream(capacity)
            .start()
            .unwrap_err();
        assert_eq!(error, StartError::EventCapacity { capacity });
    }
    assert_eq!(
        StartError::EventCapacity { capacity: 0 }.to_string(),
        "event stream capacity 0 is outside 1..=65536"
    );
    for capacity in [1, 3, 65_536] {
        let runtime = Runtime::builder(()).event_stream(capacity).start().unwrap();
        assert!(runtime.events().is_ok());
    }
}

#[test]
fn an_event_stream_is_send_sync_and_unpin() {
    fn assert_traits<T: Send + Sync + Unpin + std::fmt::Debug + 'static>() {}
    assert_traits::<EventStream>();
    assert_traits::<SubscribeError>();
}

/// Many threads invoke at once, some instances waiting on the executor: every subscriber
/// reads exactly what the watcher was told, in the same order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_concurrent_use_every_subscriber_reads_the_watcher_s_sequence() {
    let work = pipeline!(|value: u32, _ctx: &()| {
        value = value + 1;
        async move {
            if value % 3 == 0 {
                tokio::task::yield_now().await;
            }
        }
        .await;
    })
    .enqueued()
    .max(2);
    let (watched, watcher) = recorder();
    let runtime = Runtime::builder(())
        .register("work", work)
        .watcher(watcher)
        .event_stream(1 << 14)
        .start()
        .unwrap();
    let subscribers: Vec<_> = (0..3).map(|_| runtime.events().unwrap()).collect();
    let threads: Vec<_> = (0..4_u32)
        .map(|thread| {
            let runtime = runtime.clone();
            let executor = tokio::runtime::Handle::current();
            std::thread::spawn(move || {
                let _entered = executor.enter();
                (0..200)
                    .map(|n| runtime.invoke("work", thread * 1000 + n).unwrap())
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    for thread in threads {
        for handle in thread.join().unwrap() {
            handle.await.unwrap();
        }
    }
    drop(runtime);
    // Each stream ends once the runtime is gone and every event was delivered.
    for events in subscribers {
        let streamed: Vec<_> = events.map(|event| seen(&event)).collect().await;
        let watched = watched.lock().unwrap();
        assert_eq!(streamed.len(), watched.len());
        assert!(streamed == *watched, "the stream and the watcher disagree");
    }
    let watched = watched.lock().unwrap();
    let finished = watched
        .iter()
        .filter(|(_, kind)| kind == "Finished")
        .count();
    assert_eq!(finished, 800);
}

/// An event stream is given `Lagged` the same way the watcher is given it by the runtime's
/// backlog: before the next event kept, with that event's ident and queue.
#[test]
fn a_lagged_event_names_the_event_that_follows_it() {
    let runtime = Runtime::builder(()).event_stream(2).start().unwrap();
    let mut events = runtime.events().unwrap();
    let p = inc().queue("counted");
    let ident = runtime.invoke_pipeline(&p, 1).unwrap().ident().clone();
    let first = events.next().now_or_never().flatten().unwrap();
    assert!(matches!(first.kind(), EventKind::Lagged { missed: 1 }));
    assert_eq!((first.ident(), first.queue()), (&ident, "counted"));
    let next = events.next().now_or_never().flatten().unwrap();
    assert!(matches!(next.kind(), EventKind::Started));
}

/// Events given that are not `Lagged`, and the sum of the `Lagged` counts.
fn accounted<'a>(kinds: impl IntoIterator<Item = &'a EventKind>) -> (u64, u64) {
    kinds
        .into_iter()
        .fold((0, 0), |(events, lost), kind| match kind {
            EventKind::Lagged { missed } => (events, lost + missed),
            _ => (events + 1, lost),
        })
}

/// The watcher is held on the first invocation's end while 4 threads invoke: past the runtime's
/// backlog (65,536 events) every event is lost, and no event is kept after them. Once
/// everything is delivered, the watcher and a subscriber (read only at the end, so it
/// loses some of what it was sent too) have been told of every event: those given plus
/// the counts of the `Lagged` events are the events that happened.
#[test]
fn every_lost_event_is_announced_once_everything_is_delivered() {
    const THREADS: u32 = 4;
    const PER_THREAD: u32 = 6_000;
    let (told, kinds) = std::sync::mpsc::channel::<EventKind>();
    let (held_tx, held) = std::sync::mpsc::channel::<()>();
    let (release, released) = std::sync::mpsc::channel::<()>();
    let released = Mutex::new(released);
    let first = std::sync::atomic::AtomicBool::new(true);
    let runtime = Runtime::builder(())
        .register("inc", inc())
        .watcher(move |event| {
            // Held on the first invocation's last event: after the release, nothing
            // more is recorded.
            let last = matches!(event.kind(), EventKind::Finished);
            if last && first.swap(false, std::sync::atomic::Ordering::SeqCst) {
                held_tx.send(()).unwrap();
                released.lock().unwrap().recv().unwrap();
            }
            told.send(event.kind().clone()).unwrap();
        })
        .event_stream(1 << 16)
        .start()
        .unwrap();
    let subscriber = runtime.events().unwrap();
    let first_runtime = runtime.clone();
    let first_caller = std::thread::spawn(move || {
        first_runtime.invoke("inc", 0_u32).unwrap();
    });
    held.recv().unwrap();
    let threads: Vec<_> = (0..THREADS)
        .map(|thread| {
            let runtime = runtime.clone();
            std::thread::spawn(move || {
                for n in 0..PER_THREAD {
                    runtime.invoke("inc", thread * PER_THREAD + n + 1).unwrap();
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    release.send(()).unwrap();
    first_caller.join().unwrap();
    drop(runtime);
    // The watcher's channel closes once the runtime and its delivering thread are gone.
    let watched: Vec<EventKind> = kinds.iter().collect();
    let produced = 3 * u64::from(THREADS * PER_THREAD + 1);
    let streamed: Vec<EventKind> = futures::executor::block_on(
        subscriber
            .map(|event| event.kind().clone())
            .collect::<Vec<_>>(),
    );
    let (events, lost) = accounted(&watched);
    let (streamed, streamed_lost) = accounted(&streamed);
    println!("watcher: {events} events + {lost} announced lost, of {produced}");
    println!("subscriber: {streamed} events + {streamed_lost} announced lost, of {produced}");
    assert_eq!(events + lost, produced, "the watcher's accounting");
    assert_eq!(
        streamed + streamed_lost,
        produced,
        "the subscriber's accounting"
    );
    assert!(lost > 0, "the watcher was held long enough to lose events");
}
