//! What Redis itself records of a fleet queue: counters kept by the scripts (the most
//! live holders ever seen, admissions, expiries...) and, for an audited queue, a log of
//! every admission in order. Tests and the example check the fleet's guarantees here.

use redis::AsyncCommands;

use super::scripts::prefix;
use super::Fleet;
use crate::error::FleetError;

/// A fleet queue's counters, as Redis keeps them (forgotten a day after the queue idles).
///
/// ```no_run
/// # async fn run(fleet: pipewright_redis::Fleet) -> Result<(), pipewright_redis::FleetError> {
/// let stats = fleet.stats("saves").await?;
/// assert!(stats.peak <= 1, "an enqueued max-1 queue never had two holders");
/// # Ok(())
/// # }
/// # let _ = run;
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FleetStats {
    /// Holders now.
    pub live: u64,
    /// Instances waiting now.
    pub waiting: u64,
    /// The most holders there ever were at once.
    pub peak: u64,
    /// Admissions in excess of the queue's max (0 unless something is badly wrong).
    pub over: u64,
    /// Slots given.
    pub admitted: u64,
    /// Slots released by their holders.
    pub released: u64,
    /// Leases and waiting places that expired (their member stopped renewing them).
    pub expired: u64,
    /// Invocations refused (dropping).
    pub dropped: u64,
    /// Cancellations asked by restartable admissions.
    pub restarted: u64,
    /// Waiting instances replaced (keep-latest).
    pub replaced: u64,
    /// Invocations that shared a leader's run (use-existing).
    pub shared: u64,
}

/// One line of an audited queue's log ([`FleetQueue::audit`](crate::FleetQueue::audit)),
/// in the order Redis ran them. `seq` is the invocation's place in the fleet's arrival
/// order; `id` its id (`member.ttl.n`: the member, the lease ttl in ms it asked for, a
/// number).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuditEntry {
    /// Given a slot, with its token; `live` holders after.
    Admitted {
        /// Arrival order.
        seq: u64,
        /// Who.
        id: String,
        /// Its fencing token.
        token: u64,
        /// Holders after this admission.
        live: u64,
    },
    /// Started waiting.
    Waiting {
        /// Arrival order.
        seq: u64,
        /// Who.
        id: String,
    },
    /// Refused.
    Dropped {
        /// Arrival order.
        seq: u64,
        /// Who.
        id: String,
    },
    /// Asked to stop (restartable, keep-latest).
    CancelRequested {
        /// Who.
        id: String,
    },
    /// Released its slot.
    Released {
        /// Who.
        id: String,
        /// The token it held.
        token: u64,
    },
    /// Left its waiting place (cancelled locally).
    Withdrawn {
        /// Who.
        id: String,
    },
    /// Its lease (or waiting place) expired.
    Expired {
        /// Who.
        id: String,
    },
}

impl AuditEntry {
    fn parse(line: &str) -> Option<AuditEntry> {
        let parts: Vec<&str> = line.split(' ').collect();
        let number = |text: &str| text.parse::<u64>().ok();
        Some(match parts.as_slice() {
            ["a", seq, id, token, live] => AuditEntry::Admitted {
                seq: number(seq)?,
                id: (*id).to_owned(),
                token: number(token)?,
                live: number(live)?,
            },
            ["w", seq, id] => AuditEntry::Waiting {
                seq: number(seq)?,
                id: (*id).to_owned(),
            },
            ["d", seq, id] => AuditEntry::Dropped {
                seq: number(seq)?,
                id: (*id).to_owned(),
            },
            ["c", id] => AuditEntry::CancelRequested {
                id: (*id).to_owned(),
            },
            ["r", id, token] => AuditEntry::Released {
                id: (*id).to_owned(),
                token: number(token)?,
            },
            ["q", id] => AuditEntry::Withdrawn {
                id: (*id).to_owned(),
            },
            ["x" | "y", id] => AuditEntry::Expired {
                id: (*id).to_owned(),
            },
            _ => return None,
        })
    }
}

impl Fleet {
    /// The counters Redis keeps for the fleet queue `queue` (`name:key` for a per-key one).
    ///
    /// # Errors
    ///
    /// [`FleetError::Read`] when Redis cannot be read.
    pub async fn stats(&self, queue: &str) -> Result<FleetStats, FleetError> {
        let read = |source| FleetError::Read {
            queue: queue.to_owned(),
            source,
        };
        const COUNTERS: [&str; 9] = [
            "peak",
            "over",
            "admitted",
            "released",
            "expired",
            "dropped",
            "restarted",
            "replaced",
            "shared",
        ];
        let prefix = prefix(queue);
        let mut connection = self.connection();
        let counters: Vec<Option<u64>> = connection
            .hget(format!("{prefix}:m"), &COUNTERS[..])
            .await
            .map_err(read)?;
        let live: u64 = connection.hlen(format!("{prefix}:h")).await.map_err(read)?;
        let waiting: u64 = connection
            .zcard(format!("{prefix}:w"))
            .await
            .map_err(read)?;
        let get = |name: &str| {
            COUNTERS
                .iter()
                .position(|counter| *counter == name)
                .and_then(|at| counters.get(at).copied().flatten())
                .unwrap_or(0)
        };
        Ok(FleetStats {
            live,
            waiting,
            peak: get("peak"),
            over: get("over"),
            admitted: get("admitted"),
            released: get("released"),
            expired: get("expired"),
            dropped: get("dropped"),
            restarted: get("restarted"),
            replaced: get("replaced"),
            shared: get("shared"),
        })
    }

    /// The audit log of the fleet queue `queue` (empty unless it is
    /// [audited](crate::FleetQueue::audit)).
    ///
    /// # Errors
    ///
    /// [`FleetError::Read`] when Redis cannot be read.
    pub async fn audit_log(&self, queue: &str) -> Result<Vec<AuditEntry>, FleetError> {
        let lines: Vec<String> = self
            .connection()
            .lrange(format!("{}:log", prefix(queue)), 0, -1)
            .await
            .map_err(|source| FleetError::Read {
                queue: queue.to_owned(),
                source,
            })?;
        Ok(lines
            .iter()
            .filter_map(|line| AuditEntry::parse(line))
            .collect())
    }
}
