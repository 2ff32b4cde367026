//! Fleet-wide queues against a real redis-server: several runtimes, each its own fleet
//! member (its own connection and member id), in one test process. The cases that need
//! separate OS processes are in `tests/processes.rs`.

mod support;

mod enqueued;
mod outage;
mod stress;
mod timelines;
mod use_existing;
