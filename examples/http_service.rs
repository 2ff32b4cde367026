//! A pipeline served over HTTP with tower and hyper: `GET /export?rows=N` runs a dropping
//! "export" pipeline (one export at a time) as a `tower::Service`. Behind `LoadShed`, a
//! request that comes while an export runs is answered 503 at once instead of waiting;
//! otherwise the answer is 200 with the export, 400 for a bad request, 500 if the export
//! failed.
//!
//! An export asks a warehouse for its rows. Here the demo plays the warehouse: it sees
//! each ask and decides when to answer, so every run goes the same way. The client and
//! the server (on 127.0.0.1, port chosen by the OS) talk real HTTP.
//!
//! Run with `cargo run --example http_service`; it checks every answer and exits.

use std::convert::Infallible;
use std::error::Error as StdError;
use std::fmt;
use std::net::SocketAddr;

use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use pipewright::service::ServiceError;
use pipewright::{pipeline, InvokeError, Runtime};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tower::load_shed::error::Overloaded;
use tower::{service_fn, BoxError, ServiceBuilder, ServiceExt};

/// What the pipeline threads: how many rows were asked for, then the rows as CSV.
#[derive(Debug, Clone)]
pub(crate) struct Export {
    rows: u32,
    csv: String,
}

/// An export's request for rows, and where the warehouse answers it.
pub(crate) struct Ask {
    pub(crate) rows: u32,
    pub(crate) answer: oneshot::Sender<Vec<String>>,
}

/// The runtime's context: where exports send their asks.
pub(crate) struct Warehouse {
    asks: mpsc::UnboundedSender<Ask>,
}

impl Warehouse {
    /// Asks for the export's rows and waits for them.
    async fn fill(&self, export: &Export) -> Result<Export, String> {
        let (answer, rows) = oneshot::channel();
        let ask = Ask {
            rows: export.rows,
            answer,
        };
        self.asks
            .send(ask)
            .map_err(|_| "the warehouse is closed".to_owned())?;
        let rows = rows.await.map_err(|_| "the warehouse hung up".to_owned())?;
        Ok(Export {
            rows: export.rows,
            csv: rows.join("\n"),
        })
    }
}

/// The runtime with its "export" pipeline (dropping: one export at a time, any other
/// refused), and the warehouse's end of the asks.
pub(crate) fn runtime() -> (Runtime<Warehouse>, mpsc::UnboundedReceiver<Ask>) {
    let (asks, warehouse) = mpsc::unbounded_channel();
    let export = pipeline!(|export: Export, warehouse: &Warehouse| {
        export = warehouse.fill(&export).await;
    })
    .dropping();
    let runtime = Runtime::builder(Warehouse { asks })
        .register("export", export)
        .start()
        .expect("the runtime starts");
    (runtime, warehouse)
}

/// A request the route cannot turn into an export (answered 400).
#[derive(Debug)]
struct BadRequest(String);

impl fmt::Display for BadRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl StdError for BadRequest {}

/// `GET /export?rows=N`, as the pipeline's argument.
fn export_of(request: Request<Incoming>) -> Result<Export, BadRequest> {
    if request.uri().path() != "/export" {
        return Err(BadRequest(format!("no route {}", request.uri().path())));
    }
    let rows = request.uri().query().unwrap_or_default();
    let rows = rows
        .strip_prefix("rows=")
        .and_then(|rows| rows.parse().ok())
        .ok_or_else(|| BadRequest(format!("`{rows}` is not rows=<count>")))?;
    Ok(Export {
        rows,
        csv: String::new(),
    })
}

/// The HTTP answer to what the service stack gave.
fn answer(result: Result<Export, BoxError>) -> Response<Full<Bytes>> {
    let (status, body) = match result {
        Ok(export) => (StatusCode::OK, export.csv),
        // The queue was full when `LoadShed` asked: refused at once.
        Err(error) if error.is::<Overloaded>() => (
            StatusCode::SERVICE_UNAVAILABLE,
            "an export is running, try again later".to_owned(),
        ),
        Err(error) => match (
            error.downcast_ref::<BadRequest>(),
            error.downcast_ref::<ServiceError>(),
        ) {
            (Some(bad), _) => (StatusCode::BAD_REQUEST, bad.to_string()),
            // Readiness reserves no slot: a call can still find the queue full.
            (_, Some(error)) if error.is_dropped() => (
                StatusCode::SERVICE_UNAVAILABLE,
                "an export is running, try again later".to_owned(),
            ),
            (
                _,
                Some(ServiceError::Invoke {
                    source: InvokeError::Stopped,
                    ..
                }),
            ) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "the server is stopping".to_owned(),
            ),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, chain(&*error)),
        },
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
}

/// An error and its sources, on one line.
fn chain(error: &dyn StdError) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Serves the route on `listener` until it fails.
pub(crate) async fn serve(listener: TcpListener, runtime: Runtime<Warehouse>) {
    let export = runtime
        .handle::<Export>("export")
        .expect("registered")
        .into_service();
    // The request becomes the argument (or a 400); `LoadShed` turns "not ready" (a full
    // dropping queue) into an immediate `Overloaded`.
    let exports = ServiceBuilder::new()
        .filter(export_of)
        .load_shed()
        .service(export);
    // Every outcome becomes an answer, a refusal from `poll_ready` included: each request
    // drives its own clone of the stack (`oneshot`: ready, then call).
    let route = service_fn(move |request: Request<Incoming>| {
        let exports = exports.clone();
        async move { Ok::<_, Infallible>(answer(exports.oneshot(request).await)) }
    });
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        let service = TowerToHyperService::new(route.clone());
        tokio::spawn(async move {
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// One GET over its own connection: the status and the body.
pub(crate) async fn get(address: SocketAddr, path: &str) -> (StatusCode, String) {
    let stream = TcpStream::connect(address).await.expect("connects");
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("an HTTP connection");
    tokio::spawn(connection);
    let request = Request::get(path)
        .header("host", address.to_string())
        .body(Empty::<Bytes>::new())
        .expect("a request");
    let response = sender.send_request(request).await.expect("an answer");
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("a body")
        .to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// The rows the demo's warehouse answers with.
pub(crate) fn rows(count: u32) -> Vec<String> {
    (1..=count).map(|row| format!("row {row}")).collect()
}

/// Serves, then plays the client and the warehouse, checking every answer.
pub(crate) async fn demo() {
    let (runtime, mut warehouse) = runtime();
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a local port");
    let address = listener.local_addr().expect("an address");
    tokio::spawn(serve(listener, runtime.clone()));
    println!("serving exports on http://{address}/export");

    // An export starts: it holds the queue's one slot while it waits for the warehouse.
    let first = tokio::spawn(get(address, "/export?rows=3"));
    let ask = warehouse.recv().await.expect("the export asks for rows");
    println!("warehouse: asked for {} rows", ask.rows);
    assert_eq!(ask.rows, 3);

    // Meanwhile, another export is refused at once, and a bad request never runs.
    let busy = get(address, "/export?rows=5").await;
    println!("while busy: {busy:?}");
    assert_eq!(busy.0, StatusCode::SERVICE_UNAVAILABLE);
    let bad = get(address, "/export?rows=many").await;
    println!("bad request: {bad:?}");
    assert_eq!(bad.0, StatusCode::BAD_REQUEST);

    // The warehouse answers: the first export completes.
    ask.answer.send(rows(3)).expect("the export waits");
    let done = first.await.expect("the client ran");
    println!("first export: {done:?}");
    assert_eq!(done, (StatusCode::OK, "row 1\nrow 2\nrow 3".to_owned()));

    // The slot is free again: the next export runs. This time the warehouse hangs up.
    let second = tokio::spawn(get(address, "/export?rows=2"));
    drop(warehouse.recv().await.expect("the export asks for rows"));
    let failed = second.await.expect("the client ran");
    println!("second export: {failed:?}");
    assert_eq!(failed.0, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(failed.1.ends_with("step failed: the warehouse hung up"));

    // Once the runtime stops, the service refuses from `poll_ready`: 503.
    runtime.stop();
    let stopped = get(address, "/export?rows=1").await;
    println!("after stop: {stopped:?}");
    assert_eq!(
        stopped,
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "the server is stopping".to_owned()
        )
    );
    println!("every answer was as expected");
}

#[allow(dead_code)] // `tests/http_service.rs` includes this file for the functions above.
#[tokio::main(flavor = "current_thread")]
async fn main() {
    demo().await;
}
