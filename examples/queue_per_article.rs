//! Seed README, "queue per article": an enqueued upvote pipeline with one queue per
//! article, so upvoting one article never waits for another.
//!
//! Run with `cargo run --example queue_per_article`; it checks its own results.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use pipewright::{pipeline, Runtime};
use tokio::time::Instant;

#[derive(Debug, Clone)]
struct Article {
    id: u32,
    title: &'static str,
}

type Votes = Mutex<BTreeMap<u32, Vec<u128>>>;

#[tokio::main(flavor = "current_thread", start_paused = true)]
async fn main() {
    let start = Instant::now();
    let upvote = pipeline!(|article: Article, votes: &Votes| {
        tokio::time::sleep(Duration::from_millis(100)).await;
        {
            let at = start.elapsed().as_millis();
            votes
                .lock()
                .unwrap()
                .entry(article.id)
                .or_default()
                .push(at);
        };
    })
    .enqueued()
    .queue_by(|article: &Article| format!("upvote-{}", article.id));
    let runtime = Runtime::builder(Votes::default())
        .register("upvote", upvote)
        .start()
        .unwrap();
    let first = Article {
        id: 1,
        title: "My first article",
    };
    let second = Article {
        id: 2,
        title: "My second article",
    };
    let handles = [
        runtime.invoke("upvote", first.clone()).unwrap(),
        runtime.invoke("upvote", first.clone()).unwrap(),
        runtime.invoke("upvote", second.clone()).unwrap(),
    ];
    for handle in handles {
        let article = handle.await.unwrap();
        println!("upvoted {:?}", article.title);
    }
    let votes = runtime.context().lock().unwrap().clone();
    println!("votes at (ms): {votes:?}");
    // Article 1's two upvotes ran one after the other; article 2's did not wait for them.
    assert_eq!(votes[&1], [100, 200]);
    assert_eq!(votes[&2], [100]);
    assert!(
        runtime.queue_info("upvote-1").is_none(),
        "per-key queues are forgotten when empty"
    );
}
