//! Random traces against the reference model. Proptest generates a
//! configuration (behaviour, max 1..4, use_existing, nesting, nesting reached through a
//! resumed continuation, per-key queues) and a
//! sequence of events (invocations, cancellations, stop, time passing); the real runtime
//! runs them under tokio's paused clock, and what its callers and its watcher saw must
//! equal what `model::expected` says. Every trace is also checked for the invariants:
//! never more than `max` live in a queue, enqueued instances start in arrival order,
//! every handle resolves exactly once, every started instance runs `finally!` exactly
//! once, every future a step created is dropped, and nothing is left in the runtime.
//!
//! 2,000 cases by default; `PIPELINES_MODEL_CASES=100000 cargo test --test model_check`
//! for a long run. Failing cases shrink to a minimal trace, which proptest keeps in
//! `tests/model_check.proptest-regressions` and replays first on every run.

mod model;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use model::{Behaviour, Config, Event, Expected, Op, Outcome, GRID};
use pipewright::{pipeline, Error, EventKind, Ident, Invocation, Pipeline, Runtime};
use proptest::prelude::*;
use tokio::time::Instant;

/// Counts what the instances did, to check the invariants.
#[derive(Default)]
struct Ctx {
    finally_runs: AtomicU64,
    futures_created: AtomicU64,
    futures_dropped: AtomicU64,
}

/// Held by every step future: counts its creation and its drop.
struct Token(Arc<Ctx>);

impl Token {
    fn new(ctx: &Arc<Ctx>) -> Self {
        ctx.futures_created.fetch_add(1, Ordering::SeqCst);
        Token(ctx.clone())
    }
}

impl Drop for Token {
    fn drop(&mut self) {
        self.0.futures_dropped.fetch_add(1, Ordering::SeqCst);
    }
}

type Shared = Arc<Ctx>;

fn work_pipeline(config: Config) -> Pipeline<u8, Shared> {
    let work = pipeline!(|value: u8, ctx: &Shared| {
        {
            let token = Token::new(ctx);
            async move {
                tokio::time::sleep(Duration::from_millis(model::work(value))).await;
                drop(token);
            }
        }
        .await;
        finally!(|error| {
            {
                ctx.finally_runs.fetch_add(1, Ordering::SeqCst);
            };
        });
    });
    let work = match config.behaviour {
        Behaviour::Unrestricted => work,
        Behaviour::Restartable => work.restartable(),
        Behaviour::Dropping => work.dropping(),
        Behaviour::Enqueued => work.enqueued(),
        Behaviour::KeepLatest => work.keep_latest(),
    }
    .max(config.max);
    let work = if config.use_existing {
        work.use_existing()
    } else {
        work
    };
    if config.keyed {
        work.queue_by(|value: &u8| format!("key-{}", model::key(*value)))
    } else {
        work
    }
}

/// What the watcher saw: per ident, when it started and how it ended; per queue, the
/// admission and start orders.
#[derive(Default)]
struct Seen {
    started: HashMap<Ident, u64>,
    ended: HashMap<Ident, u64>,
    dropped: HashMap<Ident, u64>,
    admitted_order: HashMap<String, Vec<Ident>>,
    started_order: HashMap<String, Vec<Ident>>,
}

struct Observed {
    expected_view: Expected,
    invariants: Vec<String>,
}

async fn run_trace(config: Config, events: &[Event]) -> Observed {
    let origin = Instant::now();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let sink = seen.clone();
    let ctx: Shared = Arc::default();
    let work = work_pipeline(config);
    let child = work.clone();
    let outer = pipeline!(|value: u8, ctx: &Shared| {
        value = &child;
        finally!(|error| {
            {
                ctx.finally_runs.fetch_add(1, Ordering::SeqCst);
            };
        });
    });
    let resumed_child = work.clone();
    let resumed = pipeline!(|value: u8, ctx: &Shared, current| {
        current.continuation();
        value = &resumed_child;
        finally!(|error| {
            {
                ctx.finally_runs.fetch_add(1, Ordering::SeqCst);
            };
        });
    });
    let entry = match (config.nested, config.resumed) {
        (true, false) => outer,
        (true, true) => resumed,
        (false, _) => work,
    };
    let runtime = Runtime::builder(ctx.clone())
        .register("entry", entry)
        .watcher(move |event| {
            let at = origin.elapsed().as_millis() as u64;
            let mut seen = sink.lock().unwrap();
            let ident = event.ident().clone();
            let queue = event.queue().to_owned();
            match event.kind() {
                EventKind::Admitted => seen.admitted_order.entry(queue).or_default().push(ident),
                EventKind::Started => {
                    seen.started.insert(ident.clone(), at);
                    seen.started_order.entry(queue).or_default().push(ident);
                }
                EventKind::Finished | EventKind::Failed(_) | EventKind::Cancelled { .. } => {
                    seen.ended.insert(ident, at);
                }
                EventKind::Dropped => {
                    seen.dropped.insert(ident, at);
                }
                _ => {}
            }
        })
        .start()
        .unwrap();

    let mut invariants = Vec::new();
    let mut handles: Vec<Option<Invocation<u8>>> = Vec::new();
    let mut idents: Vec<Option<Ident>> = Vec::new();
    for event in events {
        tokio::time::sleep(Duration::from_millis(event.gap * GRID)).await;
        match event.op {
            Op::Invoke(argument) => match runtime.invoke("entry", argument) {
                Ok(handle) => {
                    idents.push(Some(handle.ident().clone()));
                    handles.push(Some(handle));
                }
                Err(_) => {
                    idents.push(None);
                    handles.push(None);
                }
            },
            Op::Cancel(index) => {
                if !handles.is_empty() {
                    if let Some(handle) = &handles[index % handles.len()] {
                        handle.cancel();
                    }
                }
            }
            Op::Stop => runtime.stop(),
        }
        // Never more than `max` instances hold a slot in a queue.
        if !matches!(config.behaviour, Behaviour::Unrestricted) {
            for queue in runtime.active() {
                if let Some(info) = runtime.queue_info(queue.name()) {
                    let limited =
                        info.concurrency().behaviour() != pipewright::Behaviour::Unrestricted;
                    if limited && info.running() > info.concurrency().max() {
                        invariants.push(format!(
                            "queue {} has {} live",
                            queue.name(),
                            info.running()
                        ));
                    }
                }
            }
        }
    }

    let mut results: Vec<Option<Result<u8, Error>>> = Vec::new();
    for handle in &mut handles {
        match handle {
            Some(handle) => {
                let result = tokio::time::timeout(Duration::from_secs(3600), &mut *handle)
                    .await
                    .unwrap_or_else(|_| Err(Error::new("the handle never resolved")));
                // Exactly once: the result is gone after it was taken.
                if handle.try_result().is_some() {
                    invariants.push("a handle resolved twice".to_owned());
                }
                results.push(Some(result));
            }
            None => results.push(None),
        }
    }
    // Let cancelled instances finish their `finally!` and the registry settle.
    tokio::time::sleep(Duration::from_secs(10)).await;

    let seen = seen.lock().unwrap();
    let mut owner_of: HashMap<Ident, usize> = HashMap::new();
    let mut outcomes = Vec::new();
    let mut shared_with = Vec::new();
    for (index, (ident, result)) in idents.iter().zip(&results).enumerate() {
        let (Some(ident), Some(result)) = (ident, result) else {
            outcomes.push(Outcome::Refused);
            shared_with.push(None);
            continue;
        };
        let owner = *owner_of.entry(ident.clone()).or_insert(index);
        shared_with.push((owner != index).then_some(owner));
        let started = seen.started.get(ident).copied();
        let ended = seen.ended.get(ident).copied();
        outcomes.push(match result {
            Ok(_) => Outcome::Finished {
                started: started.unwrap_or(u64::MAX),
                ended: ended.unwrap_or(u64::MAX),
            },
            Err(error) if error.is_dropped() => Outcome::Dropped {
                at: seen
                    .dropped
                    .get(ident)
                    .copied()
                    .or(ended)
                    .unwrap_or(u64::MAX),
            },
            Err(error) if error.is_cancelled() => Outcome::Cancelled {
                started,
                ended: ended.unwrap_or(u64::MAX),
            },
            Err(error) => panic!("unexpected failure: {error:#}"),
        });
    }

    // Enqueued and keep-latest instances start in arrival order.
    if matches!(
        config.behaviour,
        Behaviour::Enqueued | Behaviour::KeepLatest
    ) {
        for (queue, started) in &seen.started_order {
            let admitted: Vec<&Ident> = seen.admitted_order[queue]
                .iter()
                .filter(|ident| started.contains(ident))
                .collect();
            if admitted != started.iter().collect::<Vec<_>>() {
                invariants.push(format!("queue {queue} started out of arrival order"));
            }
        }
    }
    // Every started instance ran `finally!` exactly once.
    let started = seen.started.len() as u64;
    let finally_runs = ctx.finally_runs.load(Ordering::SeqCst);
    if finally_runs != started {
        invariants.push(format!("{started} started, {finally_runs} finally! runs"));
    }
    // Every future a step created was dropped.
    let (created, dropped) = (
        ctx.futures_created.load(Ordering::SeqCst),
        ctx.futures_dropped.load(Ordering::SeqCst),
    );
    if created != dropped {
        invariants.push(format!("{created} step futures created, {dropped} dropped"));
    }
    // Nothing is left: no instance, and no per-key queue.
    let (live, queues) = runtime.live_counts();
    let fixed_queues = usize::from(!config.keyed) + usize::from(config.nested);
    if live != 0 || queues > fixed_queues {
        invariants.push(format!("left behind: {live} instances, {queues} queues"));
    }
    Observed {
        expected_view: Expected {
            outcomes,
            shared_with,
        },
        invariants,
    }
}

fn behaviour() -> impl Strategy<Value = Behaviour> {
    prop_oneof![
        Just(Behaviour::Unrestricted),
        Just(Behaviour::Restartable),
        Just(Behaviour::Dropping),
        Just(Behaviour::Enqueued),
        Just(Behaviour::KeepLatest),
    ]
}

fn config() -> impl Strategy<Value = Config> {
    (
        behaviour(),
        1..=4_usize,
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(behaviour, max, use_existing, nested, resumed, keyed)| Config {
                behaviour,
                max,
                use_existing,
                nested,
                resumed: nested && resumed,
                keyed,
            },
        )
}

fn event() -> impl Strategy<Value = Event> {
    let op = prop_oneof![
        8 => (0..4_u8).prop_map(Op::Invoke),
        3 => (0..16_usize).prop_map(Op::Cancel),
        1 => Just(Op::Stop),
    ];
    (0..4_u64, op).prop_map(|(gap, op)| Event { gap, op })
}

fn cases() -> u32 {
    std::env::var("PIPELINES_MODEL_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(2000)
}

fn check(config: Config, events: &[Event]) -> Result<(), TestCaseError> {
    let tokio_runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    let observed = tokio_runtime.block_on(run_trace(config, events));
    let expected = model::expected(config, events);
    prop_assert_eq!(&observed.invariants, &Vec::<String>::new());
    prop_assert_eq!(&observed.expected_view, &expected);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn the_runtime_does_what_the_model_says(
        config in config(),
        events in prop::collection::vec(event(), 1..14),
    ) {
        check(config, &events)?;
    }
}

/// The configuration both regressions were found with.
fn enqueued_one_at_a_time() -> Config {
    Config {
        behaviour: Behaviour::Enqueued,
        max: 1,
        use_existing: false,
        nested: false,
        resumed: false,
        keyed: false,
    }
}

/// Found by the model: an instance given a slot and cancelled before its task ran was
/// reported started but skipped its `finally!`.
#[test]
fn regression_admitted_then_cancelled_before_running_still_runs_finally() {
    let (config, at_once) = (enqueued_one_at_a_time(), |op| Event { gap: 0, op });
    let events = [
        at_once(Op::Invoke(2)),
        at_once(Op::Invoke(0)),
        at_once(Op::Cancel(0)),
        at_once(Op::Cancel(1)),
    ];
    check(config, &events).unwrap();
}

/// Found by the model: `stop` could start a waiting instance in a slot it had just freed,
/// before cancelling that instance too.
#[test]
fn regression_stop_starts_no_waiting_instance() {
    let (config, at_once) = (enqueued_one_at_a_time(), |op| Event { gap: 0, op });
    let events = [
        at_once(Op::Invoke(0)),
        at_once(Op::Invoke(0)),
        at_once(Op::Invoke(1)),
        at_once(Op::Stop),
    ];
    check(config, &events).unwrap();
    let expected = model::expected(config, &events);
    assert!(expected.outcomes[1..].iter().all(|outcome| *outcome
        == Outcome::Cancelled {
            started: None,
            ended: 0
        }));
}
