//! The `tracing` feature (enabled for the test suite): one span per instance, nested
//! under its parent's span, with an event per state change.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pipewright::{pipeline, Runtime};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

/// What the subscriber saw: spans as `(id, parent id, "name=… queue=…")`, events as
/// `(span id, state)`.
#[derive(Default)]
struct Seen {
    spans: Vec<(u64, Option<u64>, String)>,
    events: Vec<(u64, String)>,
}

/// A minimal subscriber: records spans and events, tracks the current span per thread.
#[derive(Clone, Default)]
struct Recorder {
    seen: Arc<Mutex<Seen>>,
    next: Arc<AtomicU64>,
}

thread_local! {
    static CURRENT: std::cell::RefCell<Vec<u64>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Collects `name=value` pairs.
struct Fields(String);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() != "message" {
            self.0.push_str(&format!("{}={:?} ", field.name(), value));
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() != "message" {
            self.0.push_str(&format!("{}={} ", field.name(), value));
        }
    }
}

impl Subscriber for Recorder {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }

    fn new_span(&self, span: &Attributes<'_>) -> Id {
        let id = self.next.fetch_add(1, Ordering::SeqCst) + 1;
        let mut fields = Fields(String::new());
        span.record(&mut fields);
        let parent = span
            .parent()
            .map(Id::into_u64)
            .or_else(|| CURRENT.with(|current| current.borrow().last().copied()));
        let name = span.metadata().name();
        self.seen
            .lock()
            .unwrap()
            .spans
            .push((id, parent, format!("{name} {}", fields.0.trim())));
        Id::from_u64(id)
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let mut fields = Fields(String::new());
        event.record(&mut fields);
        if let Some(parent) = event.parent() {
            self.seen
                .lock()
                .unwrap()
                .events
                .push((parent.into_u64(), fields.0.trim().to_owned()));
        }
    }

    fn enter(&self, span: &Id) {
        CURRENT.with(|current| current.borrow_mut().push(span.into_u64()));
    }

    fn exit(&self, _: &Id) {
        CURRENT.with(|current| current.borrow_mut().pop());
    }
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn each_instance_has_a_span_under_its_parent_with_its_state_changes() {
    let recorder = Recorder::default();
    let _guard = tracing::subscriber::set_default(recorder.clone());
    let child = pipeline!(|value: u32, _ctx: &()| {
        tokio::time::sleep(Duration::from_millis(10)).await;
        value = value + 1;
    })
    .queue("children");
    let parent = pipeline!(|value: u32, _ctx: &()| {
        value = &child;
    });
    let runtime = Runtime::builder(())
        .register("parent", parent)
        .start()
        .unwrap();
    let handle = runtime.invoke("parent", 1_u32).unwrap();
    let parent_id = handle.ident().id();
    assert_eq!(handle.await.unwrap(), 2);

    let seen = recorder.seen.lock().unwrap();
    assert_eq!(seen.spans.len(), 2);
    let (parent_span, _, parent_fields) = &seen.spans[0];
    assert_eq!(
        parent_fields,
        &format!("pipeline name=parent id={parent_id} queue=parent")
    );
    let (child_span, child_parent, child_fields) = &seen.spans[1];
    assert_eq!(
        child_parent,
        &Some(*parent_span),
        "the child's span nests in the parent's"
    );
    assert!(child_fields.ends_with("queue=children"), "{child_fields}");
    let states = |span: u64| -> Vec<String> {
        seen.events
            .iter()
            .filter(|(parent, _)| *parent == span)
            .map(|(_, state)| state.clone())
            .collect()
    };
    assert_eq!(
        states(*child_span),
        [
            "state=started",
            "state=suspended",
            "state=resumed",
            "state=finished"
        ]
    );
    assert_eq!(
        states(*parent_span),
        [
            "state=started",
            "state=suspended",
            "state=resumed",
            "state=finished"
        ]
    );
}
