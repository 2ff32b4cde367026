//! Three runtimes as three OS processes, one fleet: a per-document **enqueued** save
//! queue (one save at a time per document, in the fleet's arrival order) and a
//! **restartable** export queue (a new export cancels the one running, wherever it runs).
//!
//! The parent starts a throwaway redis-server (or uses `PIPELINES_REDIS_URL`), runs this
//! same program three times as workers, prints what they did in time order, and checks
//! max-live and order from Redis's own record.
//!
//! ```sh
//! cargo run -p pipewright-redis --example fleet
//! ```

use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pipewright::{pipeline, Runtime};
use pipewright_redis::testing::RedisServer;
use pipewright_redis::{AuditEntry, Fleet};

const WORKERS: usize = 3;
const DOCUMENTS: usize = 3;
const SAVES_PER_DOCUMENT: usize = 4;

#[derive(Debug, Clone)]
struct Save {
    doc: String,
    version: usize,
}

/// What the workers' steps reach: the fleet (for fencing tokens) and who they are.
struct Worker {
    fleet: Fleet,
    name: String,
}

fn stamp() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_micros())
}

fn say(worker: &Worker, what: String) {
    println!("{} {} {what}", stamp(), worker.name);
}

async fn worker(index: usize, url: &str) -> Result<(), Box<dyn std::error::Error>> {
    let fleet = Fleet::connect(url).await?;
    let save = pipeline!(|save: Save, worker: &Arc<Worker>, current| {
        say(
            worker,
            format!(
                "save {} v{} starts (token {})",
                save.doc,
                save.version,
                worker.fleet.lease(current).map_or(0, |lease| lease.token())
            ),
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
        say(worker, format!("save {} v{} done", save.doc, save.version));
    });
    let export = pipeline!(|round: usize, worker: &Arc<Worker>| {
        say(worker, format!("export {round} starts"));
        tokio::time::sleep(Duration::from_millis(150)).await;
        say(worker, format!("export {round} done"));
        finally!(|error| {
            if error.is_some_and(|e| e.is_cancelled()) {
                say(
                    worker,
                    format!("export {round} cancelled (its finally! runs here)"),
                );
            }
        });
    });
    let save = fleet
        .queue("save")
        .enqueued()
        .audit(true)
        .wrap_by(save, |save: &Save| save.doc.clone());
    let export = fleet.queue("export").restartable().audit(true).wrap(export);
    let context = Arc::new(Worker {
        fleet: fleet.clone(),
        name: format!("worker-{index}"),
    });
    let runtime = Runtime::builder(context)
        .register("save", save)
        .register("export", export)
        .start()?;
    let mut saves = Vec::new();
    let mut exports = Vec::new();
    for version in 0..SAVES_PER_DOCUMENT {
        for doc in 0..DOCUMENTS {
            let save = Save {
                doc: format!("doc-{doc}"),
                version: version * WORKERS + index,
            };
            saves.push(runtime.invoke("save", save)?);
        }
        if version % 2 == 0 {
            exports.push(runtime.invoke("export", version * WORKERS + index)?);
        }
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    for save in saves {
        save.await?;
    }
    for export in exports {
        match export.await {
            Ok(_) => {}
            Err(error) if error.is_cancelled() => {}
            Err(error) => return Err(error.into()),
        }
    }
    // Releases are not waited for by the callers: let them run before the process exits
    // (one left unsent would keep its slot until its lease expires, as after a crash).
    fleet.sync().await?;
    Ok(())
}

async fn check(url: &str) -> Result<(), Box<dyn std::error::Error>> {
    let fleet = Fleet::connect(url).await?;
    for doc in 0..DOCUMENTS {
        let queue = format!("save:doc-{doc}");
        let stats = fleet.stats(&queue).await?;
        let log = fleet.audit_log(&queue).await?;
        let admitted: Vec<u64> = log
            .iter()
            .filter_map(|entry| match entry {
                AuditEntry::Admitted { seq, .. } => Some(*seq),
                _ => None,
            })
            .collect();
        println!(
            "{queue}: {} saves, at most {} at once, admitted in arrival order: {}",
            stats.admitted,
            stats.peak,
            admitted.windows(2).all(|pair| pair[0] < pair[1])
        );
        assert_eq!(stats.peak, 1, "{queue}: {stats:?}");
        assert_eq!(stats.admitted as usize, WORKERS * SAVES_PER_DOCUMENT);
        assert!(admitted.windows(2).all(|pair| pair[0] < pair[1]), "{log:?}");
    }
    let stats = fleet.stats("export").await?;
    println!(
        "export: {} started, at most {} at once, {} restarts asked across processes",
        stats.admitted, stats.peak, stats.restarted
    );
    assert_eq!(stats.peak, 1, "{stats:?}");
    assert_eq!((stats.live, stats.waiting), (0, 0));
    Ok(())
}

fn parent() -> Result<ExitCode, Box<dyn std::error::Error>> {
    let server = match std::env::var("PIPELINES_REDIS_URL") {
        Ok(_) => None,
        Err(_) => match RedisServer::start_or_skip()? {
            Some(server) => Some(server),
            None => return Ok(ExitCode::SUCCESS),
        },
    };
    let url = match &server {
        Some(server) => server.url(),
        None => std::env::var("PIPELINES_REDIS_URL")?,
    };
    println!("redis at {url}; {WORKERS} worker processes");
    let program = std::env::current_exe()?;
    let children: Vec<_> = (0..WORKERS)
        .map(|index| {
            Command::new(&program)
                .args(["worker", &index.to_string(), &url])
                .stdout(Stdio::piped())
                .spawn()
        })
        .collect::<Result<_, _>>()?;
    let mut lines = Vec::new();
    for child in children {
        let output = child.wait_with_output()?;
        if !output.status.success() {
            return Err(format!("a worker failed: {}", output.status).into());
        }
        lines.extend(String::from_utf8(output.stdout)?.lines().map(str::to_owned));
    }
    // The interleaving, in time order (one machine, one clock).
    lines.sort_by_key(|line| {
        line.split(' ')
            .next()
            .and_then(|stamp| stamp.parse::<u128>().ok())
    });
    let start: u128 = lines
        .first()
        .and_then(|line| line.split(' ').next()?.parse().ok())
        .unwrap_or(0);
    for line in &lines {
        let (stamp, rest) = line.split_once(' ').unwrap_or(("0", line));
        let at = stamp.parse::<u128>().unwrap_or(start) - start;
        println!("{:>7.1} ms  {rest}", at as f64 / 1000.0);
    }
    tokio::runtime::Runtime::new()?.block_on(check(&url))?;
    println!("ok");
    Ok(ExitCode::SUCCESS)
}

fn main() -> Result<ExitCode, Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    match args.as_slice() {
        [_, role, index, url] if role == "worker" => {
            let index: usize = index.parse()?;
            tokio::runtime::Runtime::new()?.block_on(worker(index, url))?;
            Ok(ExitCode::SUCCESS)
        }
        _ => parent(),
    }
}
