//! The committer tasks: they take queued work off one channel in batches and hand each
//! batch to [`super::transaction`], one transaction per slot; and the counters they keep
//! for `/metrics`.

use super::transaction::flush;
use super::{Outcome, Work};
use crate::error::StoreError;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use rustc_hash::FxHashMap as HashMap;
use std::sync::Arc;
use tally_config::CommitConfig;
use tally_redis::{Pool, Route};
use tokio::sync::{mpsc, oneshot, watch, Mutex};

/// Counters for `/metrics` and the benchmark.
#[derive(Debug)]
pub struct CommitStats {
    pub batches: Counter,
    pub requests: Counter,
    pub conflicts: Counter,
    pub failures: Counter,
    pub counter_writes: Counter,
    pub corrupt_states: Counter,
    pub flush_micros: Counter,
    /// Requests recognised as retries of requests already counted.
    pub duplicates: Counter,
    /// Values not stored because a capped list (event keys, segments, metric values) was full.
    pub limit_drops: Counter,
    /// Requests per transaction.
    pub batch_size: Histogram,
    /// Seconds per transaction, both round trips.
    pub flush_seconds: Histogram,
    /// Exchanges with Redis (two a flush; three when a capped set gets a new member).
    pub round_trips: Counter,
}

/// Bucket bounds of the batch-size histogram (requests per transaction).
const BATCH_BOUNDS: [f64; 11] = [
    1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0,
];

/// Bucket bounds of the flush-time histogram, in seconds.
const FLUSH_BOUNDS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

impl Default for CommitStats {
    fn default() -> Self {
        CommitStats {
            batches: Counter::default(),
            round_trips: Counter::default(),
            requests: Counter::default(),
            conflicts: Counter::default(),
            failures: Counter::default(),
            counter_writes: Counter::default(),
            corrupt_states: Counter::default(),
            flush_micros: Counter::default(),
            duplicates: Counter::default(),
            limit_drops: Counter::default(),
            batch_size: Histogram::new(BATCH_BOUNDS),
            flush_seconds: Histogram::new(FLUSH_BOUNDS),
        }
    }
}

impl CommitStats {
    /// Shows the counters on `/metrics` (counters get their `_total` suffix there).
    pub fn register(&self, reg: &mut Registry) {
        let counters = [
            ("tally_commit_batches", "Group-commit flushes", &self.batches),
            (
                "tally_commit_round_trips",
                "Group-commit exchanges with Redis: two a flush, three when a capped list gets a new member",
                &self.round_trips,
            ),
            ("tally_commit_requests", "Requests written by group commit", &self.requests),
            (
                "tally_commit_conflicts",
                "Flushes planned again after a WATCH conflict",
                &self.conflicts,
            ),
            (
                "tally_commit_failures",
                "Flushes that failed (their requests got 503)",
                &self.failures,
            ),
            (
                "tally_commit_counter_writes",
                "Distinct counter fields incremented",
                &self.counter_writes,
            ),
            (
                "tally_commit_corrupt_states",
                "Device states that could not be decoded",
                &self.corrupt_states,
            ),
            (
                "tally_commit_flush_microseconds",
                "Time spent flushing",
                &self.flush_micros,
            ),
            (
                "tally_dedup_hits",
                "Requests recognised as retries of counted requests (acknowledged, not counted again)",
                &self.duplicates,
            ),
            (
                "tally_limit_drops",
                "Values not stored because an event-key, segment or metric-value limit was reached",
                &self.limit_drops,
            ),
        ];
        for (name, help, c) in counters {
            reg.register(name, help, c.clone());
        }
        reg.register(
            "tally_commit_batch_requests",
            "Requests per group-commit transaction",
            self.batch_size.clone(),
        );
        reg.register(
            "tally_commit_flush_seconds",
            "Duration of one group-commit transaction (both round trips)",
            self.flush_seconds.clone(),
        );
    }
}

type Reply = oneshot::Sender<Result<Vec<Outcome>, StoreError>>;

pub(super) struct Item<W> {
    pub(super) work: W,
    pub(super) weight: usize,
    pub(super) reply: Reply,
}

/// The handle request handlers submit work through. Cheap to clone.
#[derive(Clone)]
pub struct Committer<W> {
    tx: mpsc::Sender<Item<W>>,
    pub stats: Arc<CommitStats>,
}

impl<W: Work> Committer<W> {
    /// Starts the committer tasks on the current runtime. They run until every handle is
    /// dropped or [`Stopper::stop`] is called, and then flush what is queued first.
    pub fn start(pool: Pool, cfg: CommitConfig) -> (Committer<W>, Stopper) {
        let (tx, rx) = mpsc::channel(cfg.queue.max(1));
        let (stop_tx, stop_rx) = watch::channel(false);
        let stats = Arc::new(CommitStats::default());
        let rx = Arc::new(Mutex::new(rx));
        let tasks = (0..cfg.committers.max(1))
            .map(|_| {
                tokio::spawn(run::<W>(
                    rx.clone(),
                    stop_rx.clone(),
                    pool.clone(),
                    cfg.clone(),
                    stats.clone(),
                ))
            })
            .collect();
        (
            Committer { tx, stats },
            Stopper {
                stop: stop_tx,
                tasks,
            },
        )
    }

    /// Queues `work` and waits until its batch is committed. `weight` is how many requests
    /// it stands for (a bulk counts its items).
    pub async fn submit(&self, work: W, weight: usize) -> Result<Vec<Outcome>, StoreError> {
        let rx = self.enqueue(work, weight)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Puts one unit on the queue without waiting: a full queue is refused at once (503).
    fn enqueue(
        &self,
        work: W,
        weight: usize,
    ) -> Result<oneshot::Receiver<Result<Vec<Outcome>, StoreError>>, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .try_send(Item {
                work,
                weight,
                reply,
            })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => StoreError::Overloaded,
                mpsc::error::TrySendError::Closed(_) => StoreError::Closed,
            })?;
        Ok(rx)
    }

    /// Queues several units at once (so they can share one flush) and waits for all of
    /// them. Their outcomes come back in order; the first failure fails the whole call,
    /// while the units that did commit stay committed (a retry is then deduplicated).
    pub async fn submit_all(&self, units: Vec<(W, usize)>) -> Result<Vec<Outcome>, StoreError> {
        let mut waiting = Vec::with_capacity(units.len());
        for (work, weight) in units {
            waiting.push(self.enqueue(work, weight)?);
        }
        let mut out = Vec::new();
        let mut first_err = None;
        for rx in waiting {
            match rx.await.map_err(|_| StoreError::Closed).and_then(|r| r) {
                Ok(o) => out.extend(o),
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }
}

/// Stops the committers after they have flushed everything already queued.
pub struct Stopper {
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Stopper {
    /// Refuses new work, flushes what is queued, and returns when the committers are done.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// Takes the next batch off the shared queue; `None` when the queue is closed and empty.
async fn next_batch<W>(
    rx: &Mutex<mpsc::Receiver<Item<W>>>,
    stop: &mut watch::Receiver<bool>,
    cfg: &CommitConfig,
) -> Option<(Vec<Item<W>>, usize)> {
    let mut rx = rx.lock().await;
    let first = if *stop.borrow() {
        rx.close();
        rx.recv().await?
    } else {
        tokio::select! {
            item = rx.recv() => item?,
            _ = stop.changed() => {
                // No new work; what is queued is still flushed.
                rx.close();
                rx.recv().await?
            }
        }
    };
    let mut weight = first.weight;
    let mut items = vec![first];
    let deadline = tokio::time::Instant::now() + cfg.linger;
    while weight < cfg.max_batch {
        let next = match rx.try_recv() {
            Ok(item) => Some(item),
            Err(mpsc::error::TryRecvError::Disconnected) => None,
            Err(mpsc::error::TryRecvError::Empty) if cfg.linger.is_zero() => None,
            Err(mpsc::error::TryRecvError::Empty) => tokio::time::timeout_at(deadline, rx.recv())
                .await
                .ok()
                .flatten(),
        };
        match next {
            Some(item) => {
                weight += item.weight;
                items.push(item);
            }
            None => break,
        }
    }
    Some((items, weight))
}

async fn run<W: Work>(
    rx: Arc<Mutex<mpsc::Receiver<Item<W>>>>,
    mut stop: watch::Receiver<bool>,
    pool: Pool,
    cfg: CommitConfig,
    stats: Arc<CommitStats>,
) {
    while let Some((items, weight)) = next_batch(&rx, &mut stop, &cfg).await {
        let started = std::time::Instant::now();
        let results = flush_all(&pool, &cfg, &stats, &items).await;
        stats
            .flush_micros
            .inc_by(started.elapsed().as_micros() as u64);
        stats.requests.inc_by(weight as u64);
        for (item, result) in items.into_iter().zip(results) {
            let _ = item.reply.send(result);
        }
    }
}

/// Commits a batch: as one transaction on standalone Redis; on a cluster as one per slot
/// (one per app), concurrently, each on a connection to the slot's master. A failed
/// transaction fails only its own requests.
async fn flush_all<W: Work>(
    pool: &Pool,
    cfg: &CommitConfig,
    stats: &CommitStats,
    items: &[Item<W>],
) -> Vec<Result<Vec<Outcome>, StoreError>> {
    let mut groups: Vec<(Option<u16>, Vec<usize>)> = Vec::new();
    if pool.is_cluster() {
        let mut by_slot: HashMap<u16, usize> = HashMap::default();
        for (i, item) in items.iter().enumerate() {
            let s = Route::Tag(item.work.route()).slot().unwrap_or(0);
            let g = *by_slot.entry(s).or_insert_with(|| {
                groups.push((Some(s), Vec::new()));
                groups.len() - 1
            });
            groups[g].1.push(i);
        }
    } else {
        groups.push((None, (0..items.len()).collect()));
    }
    let flushes = groups.iter().map(|(_, idx)| {
        let group: Vec<&Item<W>> = idx.iter().map(|&i| &items[i]).collect();
        async move {
            let route = group
                .first()
                .map_or(Route::Any, |i| Route::Tag(i.work.route()));
            let started = std::time::Instant::now();
            let result = flush(pool, route, cfg, stats, &group).await;
            stats.flush_seconds.observe(started.elapsed().as_secs_f64());
            let weight: usize = group.iter().map(|i| i.weight).sum();
            stats.batch_size.observe(weight as f64);
            result
        }
    });
    let done = futures_util::future::join_all(flushes).await;
    let mut out: Vec<Option<Result<Vec<Outcome>, StoreError>>> =
        (0..items.len()).map(|_| None).collect();
    for ((_, idx), result) in groups.iter().zip(done) {
        stats.batches.inc_by(1);
        match result {
            Ok(outcomes) => {
                let dups = outcomes
                    .iter()
                    .flatten()
                    .filter(|o| **o == Outcome::Duplicate)
                    .count();
                stats.duplicates.inc_by(dups as u64);
                for (&i, o) in idx.iter().zip(outcomes) {
                    out[i] = Some(Ok(o));
                }
            }
            Err(e) => {
                stats.failures.inc_by(1);
                tracing::warn!(error = %e, requests = idx.len(), "group commit failed");
                for &i in idx {
                    out[i] = Some(Err(clone_err(&e)));
                }
            }
        }
    }
    out.into_iter()
        .map(|r| {
            r.unwrap_or(Err(StoreError::Bug(
                "a request was left out of a flush".into(),
            )))
        })
        .collect()
}

/// One transaction's failure, for each of its requests (the error itself is not `Clone`:
/// it may hold an I/O error). Every kind keeps its HTTP answer.
fn clone_err(e: &StoreError) -> StoreError {
    match e {
        StoreError::Redis(tally_redis::Error::Timeout) => {
            StoreError::Redis(tally_redis::Error::Timeout)
        }
        StoreError::Closed => StoreError::Closed,
        StoreError::Overloaded => StoreError::Overloaded,
        StoreError::Bug(m) => StoreError::Bug(m.clone()),
        StoreError::Corrupt(m) => StoreError::Corrupt(m.clone()),
        StoreError::Contention => StoreError::Contention,
        StoreError::Redis(other) => StoreError::Redis(tally_redis::Error::Pool(other.to_string())),
    }
}
