//! `examples/http_service.rs` over real HTTP on localhost: a dropping pipeline served as
//! a tower service behind `LoadShed`. Real sockets and real time, but no assertion on
//! speed: the example's warehouse lets each export end only when the test says so.

#[path = "../examples/http_service.rs"]
mod http_service;

use http_service::{get, rows, runtime, serve};
use hyper::StatusCode;
use tokio::net::TcpListener;

#[tokio::test(flavor = "current_thread")]
async fn the_example_gets_every_answer_it_expects() {
    http_service::demo().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_while_an_export_runs_is_refused_at_once_and_the_next_one_is_served() {
    let (runtime, mut warehouse) = runtime();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(serve(listener, runtime.clone()));

    let running = tokio::spawn(get(address, "/export?rows=1"));
    let ask = warehouse.recv().await.unwrap();
    // Ten clients at once, each on its own connection: all refused while the slot is held
    // (each answer arrives while the export still waits for the warehouse).
    let burst: Vec<_> = (0..10)
        .map(|n| {
            tokio::spawn(get(
                address,
                if n % 2 == 0 {
                    "/export?rows=2"
                } else {
                    "/export?rows=3"
                },
            ))
        })
        .collect();
    for client in burst {
        let (status, body) = client.await.unwrap();
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    }
    assert!(
        warehouse.try_recv().is_err(),
        "no refused request reached the pipeline"
    );
    assert_eq!(runtime.queue_info("export").unwrap().running(), 1);

    ask.answer.send(rows(1)).unwrap();
    assert_eq!(running.await.unwrap(), (StatusCode::OK, "row 1".to_owned()));
    let next = tokio::spawn(get(address, "/export?rows=2"));
    let ask = warehouse.recv().await.unwrap();
    assert_eq!(ask.rows, 2);
    ask.answer.send(rows(2)).unwrap();
    assert_eq!(
        next.await.unwrap(),
        (StatusCode::OK, "row 1\nrow 2".to_owned())
    );
    assert_eq!(get(address, "/nowhere").await.0, StatusCode::BAD_REQUEST);
}
