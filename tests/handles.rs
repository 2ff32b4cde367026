//! Typed handles (`Runtime::handle`): a registered pipeline resolved once.

use pipewright::{pipeline, InvokeError, PipelineHandle, Runtime};

fn runtime() -> Runtime<()> {
    Runtime::builder(())
        .register(
            "inc",
            pipeline!(|value: u64, _ctx: &()| {
                value = value + 1;
            }),
        )
        .register(
            "wait",
            pipeline!(|value: u64, _ctx: &()| {
                tokio::task::yield_now().await;
                value = value * 10;
            })
            .enqueued(),
        )
        .start()
        .unwrap()
}

#[test]
fn a_handle_invokes_like_the_name_does() {
    let runtime = runtime();
    let inc = runtime.handle::<u64>("inc").unwrap();
    let by_handle = inc.invoke(1).unwrap();
    assert_eq!(by_handle.ident().name(), "inc");
    let mut by_handle = by_handle;
    assert_eq!(by_handle.try_result().unwrap().unwrap(), 2);
    let mut by_name = runtime.invoke("inc", 1_u64).unwrap();
    assert_eq!(by_name.try_result().unwrap().unwrap(), 2);
    // Both counted in the same queue.
    assert_eq!(runtime.queue_info("inc").unwrap().performed(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_handle_shares_the_queue_with_invocations_by_name() {
    let runtime = runtime();
    let wait = runtime.handle::<u64>("wait").unwrap();
    let first = wait.invoke(1).unwrap();
    let second = runtime.invoke("wait", 2_u64).unwrap();
    let third = wait.clone().invoke(3).unwrap();
    assert_eq!(runtime.queue_info("wait").unwrap().running(), 1);
    assert_eq!(runtime.queue_info("wait").unwrap().waiting(), 2);
    assert_eq!(first.await.unwrap(), 10);
    assert_eq!(second.await.unwrap(), 20);
    assert_eq!(third.await.unwrap(), 30);
}

#[test]
fn resolving_an_unknown_name_or_the_wrong_type_fails_once() {
    let runtime = runtime();
    assert_eq!(
        runtime.handle::<u64>("nope").unwrap_err(),
        InvokeError::UnknownPipeline {
            name: "nope".into()
        }
    );
    assert!(matches!(
        runtime.handle::<i32>("inc").unwrap_err(),
        InvokeError::WrongArgumentType {
            expected: "u64",
            found: "i32",
            ..
        }
    ));
}

#[test]
fn a_handle_of_a_stopped_runtime_refuses() {
    let runtime = runtime();
    let inc = runtime.handle::<u64>("inc").unwrap();
    runtime.stop();
    assert_eq!(inc.invoke(1).unwrap_err(), InvokeError::Stopped);
}

#[test]
fn a_handle_is_send_sync_and_works_from_other_threads() {
    fn send_sync<T: Send + Sync>(_: &T) {}
    let runtime = runtime();
    let inc: PipelineHandle<u64, ()> = runtime.handle("inc").unwrap();
    send_sync(&inc);
    let threads: Vec<_> = (0..4_u64)
        .map(|n| {
            let inc = inc.clone();
            std::thread::spawn(move || inc.invoke(n).unwrap().try_result().unwrap().unwrap())
        })
        .collect();
    let mut results: Vec<u64> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    results.sort_unstable();
    assert_eq!(results, [1, 2, 3, 4]);
    assert_eq!(
        format!("{inc:?}"),
        r#"PipelineHandle { name: "inc", value_type: "u64" }"#
    );
}
