//! Group commit: many requests, one atomic Redis transaction.
//!
//! Each accepted write request becomes a [`Work`] item sent to the committer task of the
//! process. The committer takes whatever is queued (waiting up to `linger` for more, up to
//! `max_batch` items), and for the whole batch:
//!
//! 1. **Read** (one round trip): `WATCH` every device key and meta set the batch touches,
//!    `MGET` the device states (with an `EXISTS` that tells a key of another type from a
//!    missing one), `SMISMEMBER` the meta sets; a set's `SCARD` only when a member is new,
//!    in a second exchange under the same `WATCH`.
//! 2. **Plan** (no I/O): each item, in arrival order, reads and updates device states and
//!    meta admissions through a [`Batch`] and adds counter increments to it. Increments of
//!    the same key and field from different requests merge into one. Hashes, names and
//!    sets of levels are numbered within the batch ([`Batch::hash`], [`Batch::name`],
//!    [`Batch::places`]), so an increment costs one lookup of a few integers; the fields'
//!    text is written once per batch, into the packed transaction.
//! 3. **Write** (one round trip): `MULTI`, the changed device states (one `MSET`), the new
//!    meta members, one `HINCRBY`/`HINCRBYFLOAT` per distinct counter field, the stream
//!    appends, `EXEC`.
//!
//! Both round trips go over a plain pooled socket ([`tally_redis::Conn`]); Tally packs
//! the commands and parses the answers itself ([`tally_redis::resp`]).
//!
//! If another process changed a watched key in between, `EXEC` aborts, nothing is written,
//! and the batch is planned again from fresh reads. Every request of the batch is answered
//! only after `EXEC` succeeded; if Redis fails, every request of the batch gets the error
//! (503) and nothing of the batch was applied. So a duplicate-request claim (kept in the
//! device state) and the counters it guards commit together or not at all: a request whose
//! write failed and is retried is counted exactly once.
//!
//! On a Redis Cluster a transaction must stay in one slot; all keys of one app share the
//! `{app}` hash tag (see [`crate::keys`]), so there a batch is split into one transaction
//! per slot ([`Work::route`]), committed concurrently on the slot's master, and a failure
//! fails only that transaction's requests. On standalone Redis a batch is one transaction.
//!
//! - [`batch`]: what a batch reads first and plans into ([`ReadSet`], [`Batch`]).
//! - [`committer`]: the queue, the committer tasks and their counters.
//! - [`transaction`]: one batch's read, plan and write phases against Redis.

mod batch;
mod committer;
mod transaction;

pub use batch::{Batch, HashId, NameId, PlacesId, Prefix, ReadSet, SlotIndex};
pub use committer::{CommitStats, Committer, Stopper};
pub use tally_config::CommitConfig;

/// What became of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Applied,
    /// A retry of a request already counted: nothing written.
    Duplicate,
}

/// A unit of work for the committer: one request (or one bulk of them).
pub trait Work: Send + Sync + 'static {
    /// What a planner works out once per batch rather than once per request (the
    /// collector keeps the numbers of the counter hashes of each app, family and hour).
    /// A fresh one for every planning of a batch: after a conflict the batch's numbers
    /// start afresh, and so does the memo.
    type Memo: Default + Send;

    /// The hash tag every key of the work shares (its app's id): on a cluster the work is
    /// committed on that tag's slot.
    fn route(&self) -> &str;
    fn reads(&self, r: &mut ReadSet);
    /// Plans the writes. Must depend only on `self`, `batch` and `memo`: after a
    /// transaction conflict it runs again on fresh state.
    fn plan(&self, batch: &mut Batch, memo: &mut Self::Memo) -> Vec<Outcome>;
}
