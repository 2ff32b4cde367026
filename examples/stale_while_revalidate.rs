//! Stale-while-revalidate with a continuation: a lookup answers at once from its cache,
//! and refetches in the background by forking the rest of its own pipeline, detached,
//! with the cached answer taken out: the fork fetches, and the remaining steps run again
//! with the fresh value (remember it, show it).
//!
//! The origin takes 300 ms and its data changes over time (`v1`, `v2`, ...). The
//! timeline, on tokio's paused clock:
//! - t=0: the first lookup has no cached value: its caller waits for the fetch (300 ms);
//! - t=300: the second lookup answers synchronously with the cached `v1`, and starts a
//!   background refetch;
//! - t=600: the refetch brings `v2`, which the remaining steps remember and show.
//!
//! Run with `cargo run --example stale_while_revalidate`; it checks its own timeline.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use pipewright::{pipeline, Runtime};
use tokio::time::Instant;

const FETCH: Duration = Duration::from_millis(300);

/// What a lookup carries from step to step.
#[derive(Debug, Clone)]
struct Lookup {
    key: String,
    /// The answer so far: from the cache (`stale`) or from the origin.
    data: Option<String>,
    stale: bool,
}

impl Lookup {
    fn of(key: &str) -> Self {
        Lookup {
            key: key.to_owned(),
            data: None,
            stale: false,
        }
    }
}

struct App {
    start: Instant,
    cache: Mutex<HashMap<String, String>>,
    /// How many times the origin was asked: its data changes with each fetch.
    fetches: AtomicU32,
    /// What was shown, and when (ms since the start).
    screen: Mutex<Vec<(u128, String)>>,
}

impl App {
    fn cached(&self, key: &str) -> Option<String> {
        self.cache.lock().unwrap().get(key).cloned()
    }

    fn show(&self, lookup: &Lookup) {
        let data = lookup.data.clone().unwrap_or_default();
        let line = format!(
            "{} = {data}{}",
            lookup.key,
            if lookup.stale { " (stale)" } else { "" }
        );
        let at = self.start.elapsed().as_millis();
        println!("t={at:>4} ms  show {line}");
        self.screen.lock().unwrap().push((at, line));
    }
}

/// The origin: answers after `FETCH` with the data's next version.
async fn fetch_if_missing(mut lookup: Lookup, fetches: &AtomicU32) -> Lookup {
    if lookup.data.is_none() {
        let version = fetches.fetch_add(1, Ordering::SeqCst) + 1;
        tokio::time::sleep(FETCH).await;
        lookup.data = Some(format!("v{version}"));
        lookup.stale = false;
    }
    lookup
}

#[tokio::main(flavor = "current_thread", start_paused = true)]
async fn main() {
    let lookup = pipeline!(|lookup: Lookup, app: &App, current| {
        // Answer from the cache; if it did, refetch in the background: the rest of this
        // pipeline, run again without the cached answer, as a detached fork.
        lookup = {
            match app.cached(&lookup.key) {
                Some(cached) => {
                    let refetch = current.continuation().with_value(Lookup::of(&lookup.key));
                    current.fork_detached(refetch)?;
                    Lookup {
                        data: Some(cached),
                        stale: true,
                        ..lookup
                    }
                }
                None => lookup,
            }
        };
        // Ready at once when the cache answered: no suspension, the caller gets it now.
        lookup = fetch_if_missing(lookup, &app.fetches).await;
        {
            if !lookup.stale {
                let data = lookup.data.clone().unwrap_or_default();
                app.cache.lock().unwrap().insert(lookup.key.clone(), data);
            }
            app.show(&lookup);
        };
    });
    let app = App {
        start: Instant::now(),
        cache: Mutex::default(),
        fetches: AtomicU32::new(0),
        screen: Mutex::default(),
    };
    let runtime = Runtime::builder(app)
        .register("lookup", lookup)
        .start()
        .unwrap();

    // 1. Nothing cached: the caller waits for the origin.
    let mut first = runtime.invoke("lookup", Lookup::of("user:7")).unwrap();
    assert!(first.try_result().is_none(), "the first lookup must wait");
    let answer = first.await.unwrap();
    assert_eq!(answer.data.as_deref(), Some("v1"));

    // 2. Cached: answered synchronously with the stale value, refetched in the background.
    let mut second = runtime.invoke("lookup", Lookup::of("user:7")).unwrap();
    let answer = second
        .try_result()
        .expect("answered from the cache")
        .unwrap();
    assert_eq!((answer.data.as_deref(), answer.stale), (Some("v1"), true));

    // 3. One fetch later, the fork has shown and remembered the fresh value.
    tokio::time::sleep(FETCH).await;
    tokio::task::yield_now().await;
    let app = runtime.context();
    assert_eq!(app.cached("user:7").as_deref(), Some("v2"));
    assert_eq!(
        *app.screen.lock().unwrap(),
        [
            (300, "user:7 = v1".to_owned()),
            (300, "user:7 = v1 (stale)".to_owned()),
            (600, "user:7 = v2".to_owned()),
        ]
    );
    assert_eq!(app.fetches.load(Ordering::SeqCst), 2);
    assert_eq!(runtime.live_counts().0, 0, "the background refetch is over");
    println!("stale-while-revalidate: the timeline checks out");
}
