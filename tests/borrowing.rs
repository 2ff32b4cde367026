//! What a waiting step may borrow: the context, the value and the section's error, inside
//! the awaited expression (a context method taking `&self` and a borrowed argument), and
//! what it captures from around the `pipeline!` (cloned into the future).

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pipewright::{pipeline, Error, Runtime};

/// A service with async methods that borrow `self` and their arguments, as users write.
#[derive(Default)]
struct Api {
    log: Mutex<Vec<String>>,
    /// Futures of `search` dropped before they finished.
    abandoned: AtomicU32,
    step: i32,
}

/// Counts an abandoned request when dropped before `finish`.
struct InFlight<'a> {
    api: &'a Api,
    done: bool,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.api.abandoned.fetch_add(1, Ordering::SeqCst);
        }
    }
}

impl Api {
    async fn search(&self, query: &str) -> String {
        let mut in_flight = InFlight {
            api: self,
            done: false,
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        in_flight.done = true;
        format!("results for {query}")
    }

    async fn save(&self, doc: &Doc) {
        self.log.lock().unwrap().push(format!("saved {}", doc.0));
    }

    async fn note(&self, line: String) {
        self.log.lock().unwrap().push(line);
    }

    fn lines(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

#[derive(Clone, Debug, PartialEq)]
struct Doc(u32);

#[tokio::test(start_paused = true)]
async fn a_context_method_borrowing_self_and_the_value_works_under_restartable_cancellation() {
    let search = pipeline!(|query: String, api: &Api| {
        query = api.search(&query).await;
    })
    .restartable();
    let runtime = Runtime::builder(Api::default()).start().unwrap();
    let first = runtime.invoke_pipeline(&search, "ru".into()).unwrap();
    tokio::time::sleep(Duration::from_millis(30)).await;
    let second = runtime.invoke_pipeline(&search, "rus".into()).unwrap();
    tokio::time::sleep(Duration::from_millis(30)).await;
    let third = runtime.invoke_pipeline(&search, "rust".into()).unwrap();

    assert!(first.await.unwrap_err().is_cancelled());
    assert!(second.await.unwrap_err().is_cancelled());
    assert_eq!(third.await.unwrap(), "results for rust");
    // The two cancelled searches' futures, which borrowed the context and the query, were
    // dropped mid-await.
    assert_eq!(runtime.context().abandoned.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn an_async_block_may_read_the_context_and_the_value() {
    let p = pipeline!(|value: i32, ctx: &Api| {
        value = async {
            tokio::time::sleep(Duration::from_millis(10)).await;
            value + ctx.step
        }
        .await;
    });
    let runtime = Runtime::builder(Api {
        step: 5,
        ..Api::default()
    })
    .start()
    .unwrap();
    assert_eq!(runtime.invoke_pipeline(&p, 1).unwrap().await.unwrap(), 6);
}

#[tokio::test(start_paused = true)]
async fn a_borrowed_value_header_lends_the_future_a_clone() {
    let save = pipeline!(|doc: &Doc, db: &Api| {
        db.save(doc).await;
    })
    .enqueued();
    let runtime = Runtime::builder(Api::default()).start().unwrap();
    let handles: Vec<_> = (1..=3)
        .map(|n| runtime.invoke_pipeline(&save, Doc(n)).unwrap())
        .collect();
    for (n, handle) in (1..=3).zip(handles) {
        assert_eq!(handle.await.unwrap(), Doc(n));
    }
    assert_eq!(runtime.context().lines(), ["saved 1", "saved 2", "saved 3"]);
}

#[test]
fn a_ready_future_that_borrows_the_context_does_not_suspend() {
    // No tokio runtime: a suspension could not be resumed, so the result must be there.
    let p = pipeline!(|value: i32, api: &Api| {
        value = async { value + api.step }.await;
    });
    let runtime = Runtime::builder(Api {
        step: 2,
        ..Api::default()
    })
    .start()
    .unwrap();
    let result = runtime.invoke_pipeline(&p, 40).unwrap().try_result();
    assert_eq!(result.unwrap().unwrap(), 42);
}

#[tokio::test(start_paused = true)]
async fn rescue_and_finally_may_borrow_their_error_in_a_waiting_step() {
    let p = pipeline!(|value: u32, api: &Api| {
        value = Err::<u32, _>(format!("no {value}"));
        rescue!(|error| {
            api.note(format!("rescued: {error:#}")).await;
        });
        finally!(|error| {
            api.note(format!("finally: {}", error.is_some())).await;
        });
    });
    let runtime = Runtime::builder(Api::default()).start().unwrap();
    assert_eq!(runtime.invoke_pipeline(&p, 7).unwrap().await.unwrap(), 7);
    assert_eq!(
        runtime.context().lines(),
        ["rescued: step failed: no 7", "finally: true"]
    );
}

#[tokio::test(start_paused = true)]
async fn a_waiting_step_naming_the_context_clones_what_it_captures() {
    let calls = Arc::new(AtomicU32::new(0));
    let counted = calls.clone();
    let prefix = String::from("seen");
    let p = pipeline!(|value: u32, api: &Api| {
        {
            counted.fetch_add(1, Ordering::SeqCst);
            api.note(format!("{prefix} {value}"))
        }
        .await;
    });
    let runtime = Runtime::builder(Api::default()).start().unwrap();
    runtime.invoke_pipeline(&p, 1).unwrap().await.unwrap();
    runtime.invoke_pipeline(&p, 2).unwrap().await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(runtime.context().lines(), ["seen 1", "seen 2"]);
}

fn parse(text: &str) -> Result<i32, std::num::ParseIntError> {
    text.parse()
}

#[test]
fn question_mark_inside_a_macro_call_takes_the_error_path() {
    let p = pipeline!(|value: Vec<i32>, _ctx: &()| {
        value = vec![parse(&value.len().to_string())?, 1];
        value = vec![parse("not a number")?, 2];
        rescue!(|error| {
            value = vec![-1, i32::from(error.is_failed())];
        });
    });
    let runtime = Runtime::builder(()).start().unwrap();
    let result = runtime.invoke_pipeline(&p, vec![]).unwrap().try_result();
    assert_eq!(result.unwrap().unwrap(), [-1, 1]);
}

#[tokio::test(start_paused = true)]
async fn question_mark_in_a_waiting_step_that_borrows_the_context() {
    let p = pipeline!(|text: String, api: &Api| {
        api.note(format!("{}", parse(&text)? * 2)).await;
    });
    let runtime = Runtime::builder(Api::default()).start().unwrap();
    runtime
        .invoke_pipeline(&p, "21".into())
        .unwrap()
        .await
        .unwrap();
    let error: Error = runtime
        .invoke_pipeline(&p, "x".into())
        .unwrap()
        .await
        .unwrap_err();
    assert!(error.is_failed());
    assert_eq!(runtime.context().lines(), ["42"]);
}

#[tokio::test(start_paused = true)]
async fn a_panic_while_building_a_borrowing_future_is_the_steps_error() {
    let p = pipeline!(|value: u32, api: &Api| {
        api.note(if value > 1 {
            panic!("too big: {value}")
        } else {
            String::new()
        })
        .await;
    });
    let runtime = Runtime::builder(Api::default()).start().unwrap();
    let error = runtime.invoke_pipeline(&p, 2).unwrap().await.unwrap_err();
    assert!(error.is_panic());
    assert!(format!("{error:#}").contains("too big: 2"), "{error:#}");
}
