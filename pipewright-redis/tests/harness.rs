//! The test harness itself: a server starts on a free port, answers, restarts empty on the
//! same port, and is gone once dropped.

use pipewright_redis::testing::RedisServer;

#[tokio::test]
async fn starts_restarts_and_stops() {
    let Some(mut server) = RedisServer::start_or_skip().unwrap() else {
        return;
    };
    let client = redis::Client::open(server.url()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let () = redis::cmd("SET")
        .arg("k")
        .arg("v")
        .query_async(&mut connection)
        .await
        .unwrap();
    let port = server.port();

    server.restart().unwrap();
    assert_eq!(server.port(), port);
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let value: Option<String> = redis::cmd("GET")
        .arg("k")
        .query_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(value, None, "a restarted server keeps nothing");

    drop(server);
    assert!(client.get_multiplexed_async_connection().await.is_err());
}
