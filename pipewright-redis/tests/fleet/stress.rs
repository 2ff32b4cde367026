//! Every behaviour under load from three runtimes over many keys: max never exceeded (as
//! Redis's counters and the observer saw it), every invocation ends (finished, cancelled
//! or dropped as its behaviour allows), every started instance's `finally!` runs once,
//! and no slot or waiting place is left behind.

use std::sync::Arc;
use std::time::Duration;

use pipewright::pipeline;
use pipewright_redis::FleetQueue;

use crate::support::{fixture, token, Ctx};

#[derive(Debug, Clone)]
struct Job {
    key: String,
    n: usize,
}

async fn stress(name: &str, max: usize, configure: impl Fn(FleetQueue) -> FleetQueue) {
    const KEYS: usize = 10;
    const PER_RUNTIME: usize = 20;
    let Some(fixture) = fixture(3).await else {
        return;
    };
    let work = pipeline!(|job: Job, ctx: &Arc<Ctx>, current| {
        ctx.push(format!("start {}:{}", job.key, job.n));
        ctx.observer.enter(&job.key, token(ctx, current), max);
        tokio::time::sleep(Duration::from_millis(1 + (job.n % 3) as u64)).await;
        finally!(|error| {
            // Counted out also when cancelled in the middle.
            ctx.observer.leave(&job.key, token(ctx, current));
            ctx.push(format!("finally {}:{}", job.key, job.n));
        });
    });
    let wrapped: Vec<_> = fixture
        .fleets
        .iter()
        .map(|fleet| {
            configure(fleet.queue(name).max(max)).wrap_by(work.clone(), |job: &Job| job.key.clone())
        })
        .collect();
    let mut handles = Vec::new();
    for n in 0..PER_RUNTIME {
        for key in 0..KEYS {
            for (runtime, pipeline) in fixture.runtimes.iter().zip(&wrapped) {
                let job = Job {
                    key: format!("{name}-{key}"),
                    n,
                };
                handles.push(runtime.invoke_pipeline(pipeline, job).unwrap());
            }
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let mut finished = 0;
    for handle in handles {
        match handle.await {
            Ok(_) => finished += 1,
            Err(error) => assert!(error.is_cancelled() || error.is_dropped(), "{error:#}"),
        }
    }
    assert!(finished > 0);
    fixture.sync().await;
    let fleet = &fixture.fleets[0];
    for key in 0..KEYS {
        let queue = format!("{name}:{name}-{key}");
        let stats = fleet.stats(&queue).await.unwrap();
        assert!(
            stats.peak as usize <= max && stats.over == 0,
            "{queue}: {stats:?}"
        );
        assert_eq!(
            (stats.live, stats.waiting, stats.expired),
            (0, 0, 0),
            "{queue}: {stats:?}"
        );
        let peak = fixture.runtimes[0]
            .context()
            .observer
            .peak(&format!("{name}-{key}"));
        assert!(peak <= max, "{queue}: observed {peak}");
    }
    for runtime in &fixture.runtimes {
        let log = runtime.context().log.lock().unwrap().clone();
        let starts: Vec<&str> = log
            .iter()
            .filter_map(|e| e.strip_prefix("start "))
            .collect();
        for started in &starts {
            let finallies = log
                .iter()
                .filter(|e| e.strip_prefix("finally ") == Some(started))
                .count();
            assert_eq!(finallies, 1, "{started}: {log:?}");
        }
        // An instance cancelled after its slot was given but before its first step ran
        // logs no start and still runs its `finally!` (a slot given counts as started):
        // every other entry is a `finally!`, each of one instance, once.
        let finallies: Vec<&str> = log
            .iter()
            .filter_map(|e| e.strip_prefix("finally "))
            .collect();
        let distinct: std::collections::HashSet<&&str> = finallies.iter().collect();
        assert_eq!(
            distinct.len(),
            finallies.len(),
            "a finally! ran twice: {log:?}"
        );
        assert_eq!(starts.len() + finallies.len(), log.len(), "{log:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restartable_under_load() {
    stress("restart", 2, FleetQueue::restartable).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_latest_under_load() {
    stress("latest", 1, FleetQueue::keep_latest).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_under_load() {
    stress("drop", 2, FleetQueue::dropping).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enqueued_under_load() {
    stress("enqueue", 2, FleetQueue::enqueued).await;
}
