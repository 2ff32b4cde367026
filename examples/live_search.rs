//! Live search over real HTTP: a local search server (on 127.0.0.1, port chosen by the OS)
//! answers each query after a delay; a client drives a restartable, debounced search
//! pipeline with a scripted burst of keystrokes. Each keystroke cancels the search in
//! flight: the pipeline drops its HTTP request future, which closes the connection, and
//! the server logs the request as abandoned. So cancellation stops real work in flight.
//!
//! Run with `cargo run --example live_search` (about two seconds, real time); it checks
//! that the server saw abandoned requests and that the last query got its results.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Bytes;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use pipewright::{pipeline, Runtime};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{sleep, Instant};

/// What the server saw, in order: `served <query>` or `abandoned <query>`.
type ServerLog = Arc<Mutex<Vec<String>>>;

/// Logs the request as abandoned if the handler is dropped before it answered.
struct InFlight {
    query: String,
    log: ServerLog,
    answered: bool,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if !self.answered {
            let entry = format!("abandoned {}", self.query);
            println!("server: {entry}");
            self.log.lock().unwrap().push(entry);
        }
    }
}

const SERVER_LATENCY: Duration = Duration::from_millis(400);
const WORDS: [&str; 6] = ["pipe", "pipeline", "pipelines", "piper", "pipette", "pip"];

async fn search(
    request: Request<hyper::body::Incoming>,
    log: ServerLog,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let query = request
        .uri()
        .query()
        .and_then(|query| query.strip_prefix("q="))
        .unwrap_or_default()
        .to_owned();
    let mut in_flight = InFlight {
        query: query.clone(),
        log: log.clone(),
        answered: false,
    };
    // The "search": slow, so that impatient typing abandons it.
    sleep(SERVER_LATENCY).await;
    let results: Vec<&str> = WORDS
        .iter()
        .copied()
        .filter(|word| word.starts_with(&query))
        .collect();
    in_flight.answered = true;
    let entry = format!("served {query}");
    println!("server: {entry}");
    log.lock().unwrap().push(entry);
    Ok(Response::new(Full::new(Bytes::from(results.join(",")))))
}

async fn serve(listener: TcpListener, log: ServerLog) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        let log = log.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| search(request, log.clone()));
            // A client that goes away ends the connection, which drops the handler.
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// One GET over its own connection: the matching words, comma-separated. Dropping this
/// future closes the connection.
async fn get(
    address: SocketAddr,
    query: String,
) -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
    let stream = TcpStream::connect(address).await?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    let request = Request::get(format!("/search?q={query}"))
        .header("host", address.to_string())
        .body(Empty::<Bytes>::new())?;
    // Drive the connection and the request together, in this future: nothing outlives it.
    let response = tokio::select! {
        response = sender.send_request(request) => response?,
        closed = connection => {
            closed?;
            return Err("the server closed the connection".into());
        }
    };
    let body = response.into_body().collect().await?.to_bytes();
    Ok(String::from_utf8(body.to_vec())?)
}

/// The client's context: where the server is.
struct Client {
    server: SocketAddr,
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a local port");
    let address = listener.local_addr().expect("an address");
    let server_log = ServerLog::default();
    tokio::spawn(serve(listener, server_log.clone()));
    println!("server listening on {address}");

    // Wait for typing to pause (debounce), then search; a new keystroke restarts it.
    let search = pipeline!(|query: String, client: &Client| {
        sleep(Duration::from_millis(50)).await;
        query = get(client.server, query.clone()).await;
    })
    .restartable();
    let runtime = Runtime::builder(Client { server: address })
        .register("search", search)
        .on_cancel(|ident| println!("client: cancelled {} while it waited", ident))
        .start()
        .expect("the runtime starts");

    let start = Instant::now();
    // (delay before the keystroke, text in the box): quick typing, a pause, more typing.
    let script = [
        (0, "p"),
        (150, "pi"),
        (150, "pip"),
        (150, "pipe"),
        (700, "pipel"),
        (30, "pipeline"),
    ];
    let mut searches = Vec::new();
    for (delay, text) in script {
        sleep(Duration::from_millis(delay)).await;
        println!(
            "client: {:>4} ms typed {text:?}",
            start.elapsed().as_millis()
        );
        searches.push((
            text,
            runtime
                .invoke("search", text.to_owned())
                .expect("registered"),
        ));
    }
    let mut outcomes = Vec::new();
    for (text, handle) in searches {
        let outcome = match handle.await {
            Ok(results) => format!("results [{results}]"),
            Err(error) if error.is_cancelled() => "cancelled".to_owned(),
            Err(error) => format!("failed: {error:#}"),
        };
        println!("client: {text:?} -> {outcome}");
        outcomes.push(outcome);
    }
    sleep(Duration::from_millis(100)).await; // let the server notice closed connections

    let log = server_log.lock().unwrap().clone();
    let abandoned = log
        .iter()
        .filter(|entry| entry.starts_with("abandoned"))
        .count();
    println!("server log: {log:?}");
    println!("{abandoned} requests were abandoned by the client while the server worked on them");
    assert!(abandoned >= 1, "cancellation reached requests in flight");
    assert!(
        log.contains(&"served pipe".to_owned()),
        "a paused query completes"
    );
    assert!(log.contains(&"abandoned p".to_owned()) || log.contains(&"abandoned pi".to_owned()));
    assert_eq!(
        outcomes.last().map(String::as_str),
        Some("results [pipeline,pipelines]")
    );
}
