//! Snapshots of the registry for introspection: the live instances by queue, one
//! instance, a queue's counts and statistics.

use std::sync::Arc;

use super::view::View;
use super::{Entry, Place, QueueId};
use crate::ident::Name;
use crate::introspection::{ActiveQueue, InstanceInfo, InstanceState, QueueInfo, Value};
use crate::queue::FastMap;

impl View<'_> {
    pub(super) fn info(&self, entry: &Entry) -> InstanceInfo {
        InstanceInfo {
            ident: entry.ident.clone(),
            queue: self.queue_name(entry.queue),
            // Suspensions are in the control block (the driver sets them without the
            // lock); the registry's own state wins once it says anything else.
            state: match entry.state {
                InstanceState::Running if entry.control.is_suspended() => InstanceState::Suspended,
                state => state,
            },
            parent: entry
                .parent
                .get()
                .and_then(|parent| self.entry(parent))
                .map(|parent| parent.ident.clone()),
            detached: entry.detached,
            argument: Value::argument(Arc::clone(&entry.control)),
        }
    }

    pub(super) fn queue_name(&self, queue: QueueId) -> String {
        self.queue(queue)
            .map(|state| state.name.to_string())
            .unwrap_or_default()
    }

    /// Active instances grouped by queue (queues by name; in each, slot holders, then
    /// waiting ones, by id: arrival order among one thread's invocations). A cancelled instance has
    /// given its slot back and is not listed, though it is live (and [`instance`] finds
    /// it) until its `finally!` is done.
    ///
    /// [`instance`]: View::instance
    pub(super) fn active(&self) -> Vec<ActiveQueue> {
        let mut by_queue: FastMap<QueueId, Vec<&Entry>> = FastMap::default();
        for entry in self.entries() {
            if entry.place != Place::None {
                by_queue.entry(entry.queue).or_default().push(entry);
            }
        }
        let mut active: Vec<ActiveQueue> = by_queue
            .into_iter()
            .map(|(queue, mut entries)| {
                entries.sort_by_key(|entry| (entry.place == Place::Waiting, entry.ident.id()));
                ActiveQueue {
                    name: self.queue_name(queue),
                    instances: entries.into_iter().map(|entry| self.info(entry)).collect(),
                }
            })
            .collect();
        active.sort_by(|a, b| a.name.cmp(&b.name));
        active
    }

    pub(super) fn instance(&self, id: u64) -> Option<InstanceInfo> {
        self.entry(id).map(|entry| self.info(entry))
    }

    pub(super) fn queue_info(&self, name: &Name) -> Option<QueueInfo> {
        let state = self.queue_named(name)?;
        let stats = state.gauge.stats();
        Some(QueueInfo {
            name: name.to_string(),
            concurrency: state.concurrency,
            running: state.gauge.running(),
            waiting: state.waiting.len,
            performed: stats.performed,
            last_result: stats.last_result.as_ref().map(Value::result),
            last_error: stats.last_error.clone(),
            last_cancelled: stats.last_cancelled.clone(),
        })
    }
}
