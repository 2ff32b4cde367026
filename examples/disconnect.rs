//! A client that goes away stops the work behind its request: an axum service whose
//! `GET /search?q=...` handler runs a slow search pipeline through a handle tied to it
//! (`Invocation::cancel_on_drop`). axum drops a handler's future when its client
//! disconnects; the dropped handle cancels the search, whose `finally!` reports it, with
//! the reason it was given (`CancelReason::HandleDropped`).
//!
//! A real client (a TCP connection on 127.0.0.1, port chosen by the OS) sends a request,
//! waits until the search has started, and hangs up. The example checks that the search
//! was cancelled (not finished) and that its queue is free again, then exits.
//!
//! Run with `cargo run --example disconnect`.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::routing::get;
use axum::Router;
use pipewright::{pipeline, Runtime};
use serde::Deserialize;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// What the search tells the demo: it started, it ended (and how).
struct Backend {
    events: mpsc::UnboundedSender<String>,
}

#[derive(Deserialize)]
struct Search {
    q: String,
}

async fn search(
    State(runtime): State<Runtime<Arc<Backend>>>,
    Query(search): Query<Search>,
) -> String {
    let handle = match runtime.invoke("search", search.q) {
        Ok(handle) => handle.cancel_on_drop(),
        Err(refused) => return format!("refused: {}", *refused),
    };
    // If the client goes away, axum drops this future, and the handle with it.
    match handle.await {
        Ok(results) => results,
        Err(error) => format!("failed: {error:#}"),
    }
}

/// What the search tells next (a generous bound: a missed event fails the example).
async fn next(
    told: &mut mpsc::UnboundedReceiver<String>,
) -> Result<Option<String>, tokio::time::error::Elapsed> {
    tokio::time::timeout(Duration::from_secs(10), told.recv()).await
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (events, mut told) = mpsc::unbounded_channel();
    let slow_search = pipeline!(|query: String, backend: &Arc<Backend>| {
        let _ = backend.events.send(format!("searching {query}"));
        // A slow backend: far longer than the client waits.
        tokio::time::sleep(Duration::from_secs(30)).await;
        query = format!("results for {query}");
        finally!(|error| {
            {
                let ending = match error.map(|error| (error, error.cancel_reason())) {
                    Some((_, Some(reason))) => format!("cancelled ({reason})"),
                    Some((error, None)) => format!("failed: {error}"),
                    None => "finished".to_owned(),
                };
                let _ = backend.events.send(format!("search {query} {ending}"));
            };
        });
    })
    .enqueued();
    let runtime = Runtime::builder(Arc::new(Backend { events }))
        .register("search", slow_search)
        .start()?;

    let app = Router::new()
        .route("/search", get(search))
        .with_state(runtime.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });

    // The client: a request, then it hangs up once the search runs.
    let mut client = TcpStream::connect(address).await?;
    client
        .write_all(b"GET /search?q=rust HTTP/1.1\r\nhost: localhost\r\n\r\n")
        .await?;
    assert_eq!(next(&mut told).await?.as_deref(), Some("searching rust"));
    println!("client: the search started; hanging up");
    drop(client);

    assert_eq!(
        next(&mut told).await?.as_deref(),
        Some("search rust cancelled (its handle was dropped)")
    );
    println!("server: the search stopped with its client");
    let queue = runtime.queue_info("search").ok_or("no search queue")?;
    assert_eq!(
        (queue.running(), queue.waiting()),
        (0, 0),
        "the slot is free again"
    );
    println!("ok");
    Ok(())
}
