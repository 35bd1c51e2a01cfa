//! What can go wrong in the data model: the transport's failures, and the model's own.

/// A failure of the data model. Mapped to HTTP in one place (`tally-service`).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Redis(#[from] tally_redis::Error),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("the write queue is closed (shutting down)")]
    Closed,
    #[error("the write queue is full")]
    Overloaded,
    /// Other writers kept changing the same device states; the batch gave up (503, retry).
    #[error("too many concurrent changes to the same devices")]
    Contention,
    /// A bug in Tally (a panic while planning writes); nothing of the batch was written.
    #[error("internal error: {0}")]
    Bug(String),
}
