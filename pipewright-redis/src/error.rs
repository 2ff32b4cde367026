//! What can go wrong with a fleet: Redis out of reach, a configuration the fleet does not
//! share, an argument or a result that does not cross the wire, a leader that failed or
//! was lost.

/// Why a fleet operation failed.
///
/// An invocation of a fleet-wide pipeline that fails for one of these reasons fails with
/// [`pipewright::Error::Failed`], whose source is this error (`error.downcast_ref::<FleetError>()`).
///
/// # Examples
///
/// ```
/// use pipewright_redis::FleetError;
///
/// let error = FleetError::LeaderLost { queue: "load".into() };
/// assert_eq!(error.to_string(), "the leader of fleet queue `load` was lost");
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FleetError {
    /// The first connection to Redis failed (a wrong URL, a server that is down or
    /// refuses the credentials, or one older than Redis 7.0, which fleet queues need for
    /// Redis Functions). Check the URL and that the server runs; later disconnections are
    /// not this error: the client reconnects by itself.
    #[error("cannot connect to redis")]
    Connect(#[source] redis::RedisError),
    /// Redis could not be reached (or did not answer in time) when the fleet queue was
    /// asked for a slot: nothing ran. The client reconnects by itself; invoke again once
    /// Redis is back.
    #[error("fleet queue `{queue}` unreachable")]
    Unavailable {
        /// The fleet queue's name.
        queue: String,
        /// What the client said.
        #[source]
        source: redis::RedisError,
    },
    /// Another member of the fleet uses this queue with another configuration while it
    /// has live instances. Members sharing a queue must configure it identically (the
    /// configuration is forgotten once the queue is idle, so a rolling change works once
    /// the old members' instances are done).
    #[error("fleet queue `{queue}` is {existing} in the fleet, not {requested}")]
    Mismatch {
        /// The fleet queue's name.
        queue: String,
        /// The configuration in force.
        existing: String,
        /// The configuration that was refused.
        requested: String,
    },
    /// A use-existing fleet queue could not serialize the argument (to compare it across
    /// the fleet) or the result (to share it). Give the value type a `Serialize`
    /// implementation that cannot fail (no maps with non-string keys, for example).
    #[error("fleet queue `{queue}` could not encode a value")]
    Encode {
        /// The fleet queue's name.
        queue: String,
        /// What serde said.
        #[source]
        source: serde_json::Error,
    },
    /// The result a leader shared could not be read back as the pipeline's value type:
    /// members of the fleet run different versions of the value type. Deploy one
    /// version, or give the queue another name when the type changes.
    #[error("fleet queue `{queue}` could not decode a shared result")]
    Decode {
        /// The fleet queue's name.
        queue: String,
        /// What serde said.
        #[source]
        source: serde_json::Error,
    },
    /// The run this invocation shared (use-existing) failed; `message` is its error's
    /// text. Handle it as the leader's own callers do.
    #[error("the leader of fleet queue `{queue}` failed: {message}")]
    LeaderFailed {
        /// The fleet queue's name.
        queue: String,
        /// The leader's error, as text (errors do not cross the wire).
        message: String,
    },
    /// The run this invocation shared (use-existing) was lost: its member stopped
    /// renewing its lease (a crash, a partition) or its result expired unread. Invoke
    /// again.
    #[error("the leader of fleet queue `{queue}` was lost")]
    LeaderLost {
        /// The fleet queue's name.
        queue: String,
    },
    /// Redis answered a fleet function with something this version does not understand
    /// (another version of this crate in the same keys). Run one version per Redis.
    #[error("fleet queue `{queue}` got an unexpected reply `{reply}`")]
    Protocol {
        /// The fleet queue's name.
        queue: String,
        /// The reply, as text.
        reply: String,
    },
    /// Redis did not answer a [`Fleet::sync`](crate::Fleet::sync). The client reconnects
    /// by itself; what this member sent before may or may not have run (a release that
    /// did not leaves its slot to expire with its lease).
    #[error("redis unreachable")]
    Unreachable(#[source] redis::RedisError),
    /// A read of the fleet's records (statistics, audit log) failed.
    #[error("reading fleet queue `{queue}` failed")]
    Read {
        /// The fleet queue's name.
        queue: String,
        /// What the client said.
        #[source]
        source: redis::RedisError,
    },
}
