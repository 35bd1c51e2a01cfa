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
//! Both round trips go over a plain pooled socket ([`crate::redis::RawConn`]); Tally packs
//! the commands and parses the answers itself ([`crate::resp`]).
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

use crate::device::DeviceState;
use crate::error::StoreError;
use crate::http::Histogram;
use crate::redis::{exchange, is_redirect_reply, is_transport_error, slot, Pool, RawConn};
use crate::resp::{Packer, Replies};
use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
// Maps keyed by text that clients choose (device ids, metric and segment values, event
// keys) are keyed per process ([`crate::texthash`]), so crafted collisions cannot make a
// batch quadratic. Maps keyed by the batch's own numbers use the faster FxHash.
use crate::texthash::{TextMap, TextSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch, Mutex};

/// What became of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Applied,
    /// A retry of a request already counted: nothing written.
    Duplicate,
}

/// The keys an item needs read before it can plan.
#[derive(Default)]
pub struct ReadSet {
    devices: Vec<String>,
    /// Sets and the members to ask about, each once (most requests of a batch ask about
    /// the same few values, so a copy is made only the first time).
    members: Vec<(String, TextSet<String>)>,
    sets: SetIndex,
}

impl ReadSet {
    pub fn device(&mut self, key: String) {
        self.devices.push(key);
    }

    /// `member` may be added to the capped set `set`.
    pub fn member(&mut self, set: &str, member: &str) {
        let i = self.sets.of(set, &mut self.members, TextSet::default);
        self.ask(i, member);
    }

    /// `member` may be added to the app's meta list `list` ([`crate::keys::meta`]).
    pub fn meta_member(&mut self, app: &crate::keys::AppId, list: &'static str, member: &str) {
        let i = self
            .sets
            .of_meta(app, list, &mut self.members, TextSet::default);
        self.ask(i, member);
    }

    fn ask(&mut self, i: usize, member: &str) {
        let ms = &mut self.members[i].1;
        if !ms.contains(member) {
            ms.insert(member.to_string());
        }
    }
}

/// Where each set of a batch is in a list of sets, by key, and for the meta lists also by
/// (app, list name): a request asks about a dozen meta lists, and that second index lets
/// it neither build nor hash their keys. It keeps at most [`SetIndex::META_SEEN`] pairs;
/// beyond that, meta lists are found by key.
#[derive(Default)]
struct SetIndex {
    by_key: TextMap<String, usize>,
    meta: Vec<(crate::keys::AppId, &'static str, usize)>,
    buf: String,
}

impl SetIndex {
    const META_SEEN: usize = 64;

    /// The index of `key` in `list`, appended with `empty()` if new.
    fn of<T>(
        &mut self,
        key: &str,
        list: &mut Vec<(String, T)>,
        empty: impl FnOnce() -> T,
    ) -> usize {
        if let Some(&i) = self.by_key.get(key) {
            return i;
        }
        list.push((key.to_string(), empty()));
        self.by_key.insert(key.to_string(), list.len() - 1);
        list.len() - 1
    }

    fn of_meta<T>(
        &mut self,
        app: &crate::keys::AppId,
        name: &'static str,
        list: &mut Vec<(String, T)>,
        empty: impl FnOnce() -> T,
    ) -> usize {
        // The names are literals of the planner's: told apart by address, not by content.
        // The same name at another address only misses here and is found by key below.
        if let Some(&(_, _, i)) = self
            .meta
            .iter()
            .find(|(a, n, _)| std::ptr::eq(*n, name) && a == app)
        {
            return i;
        }
        let mut key = std::mem::take(&mut self.buf);
        crate::keys::meta_into(&mut key, app, name);
        let i = self.of(&key, list, empty);
        self.buf = key;
        if self.meta.len() < Self::META_SEEN {
            self.meta.push((app.clone(), name, i));
        }
        i
    }
}

/// A unit of work for the committer: one request (or one bulk of them).
pub trait Work: Send + Sync + 'static {
    /// A key of the work's app: on a cluster, the work is committed on that key's slot, so
    /// every key it reads or writes must share the key's hash tag.
    fn route(&self) -> &[u8];
    fn reads(&self, r: &mut ReadSet);
    /// Plans the writes. Must depend only on `self` and `batch`: after a transaction
    /// conflict it runs again on fresh state.
    fn plan(&self, batch: &mut Batch) -> Vec<Outcome>;
}

#[derive(Debug, Clone, Copy)]
enum Num {
    Int(i64),
    Float(f64),
}

impl Num {
    fn plus(self, other: Num) -> Num {
        match (self, other) {
            (Num::Int(a), Num::Int(b)) => Num::Int(a.saturating_add(b)),
            (Num::Int(a), Num::Float(b)) | (Num::Float(b), Num::Int(a)) => Num::Float(a as f64 + b),
            (Num::Float(a), Num::Float(b)) => Num::Float(a + b),
        }
    }
}

#[derive(Default)]
struct SetSlot {
    card: usize,
    present: TextSet<String>,
    added: Vec<String>,
}

struct DeviceSlot {
    original: Option<Vec<u8>>,
    state: DeviceState,
}

/// A device key's place in the batch ([`Batch::device_id`]): a request looks its device
/// up once, not on every read and write of its state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceId(usize);

/// A key the batch writes (a counter hash, or a HyperLogLog), by number: hashing and
/// comparing a number, not a key of some fifty bytes, on every one of a request's
/// hundred-odd increments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct HashId(u32);

/// A name used in counter fields (a metric value, `t`, `f.3`), by number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NameId(u32);

/// What comes before a field's name: nothing, a number and a dot (`10.`), or `w`, a
/// number and a dot (`w43.`). Countly's levels: year, month or day, week.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Prefix {
    None,
    Num(u32),
    Week(u32),
}

/// The places a field is counted at: a few (hash, prefix) pairs, such as a request's
/// year, month, day and hour, by number. One increment of a field at all its levels is one
/// map update while planning, spread over its places once per batch when packed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PlacesId(u32);

/// An increment as planned: `<name><suffix>` at every place of `places`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Cell {
    places: PlacesId,
    name: NameId,
    suffix: NameId,
}

/// One counter field in parts: `<prefix><name><suffix>` of a hash. Its text is written
/// once per batch, when the transaction is packed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Field {
    hash: HashId,
    prefix: Prefix,
    name: NameId,
    suffix: NameId,
}

/// Strings numbered in the order they were first seen.
#[derive(Default)]
struct Interner {
    ids: TextMap<String, u32>,
    names: Vec<String>,
}

impl Interner {
    fn id(&mut self, s: &str) -> u32 {
        if let Some(&id) = self.ids.get(s) {
            return id;
        }
        let id = self.names.len() as u32;
        self.ids.insert(s.to_string(), id);
        self.names.push(s.to_string());
        id
    }

    fn get(&self, id: u32) -> &str {
        self.names.get(id as usize).map_or("", String::as_str)
    }
}

/// The state an item plans against and the writes it accumulates.
#[derive(Default)]
pub struct Batch {
    /// Device key -> its slot in `devices`.
    device_index: TextMap<String, usize>,
    devices: Vec<DeviceSlot>,
    sets: Vec<(String, SetSlot)>,
    set_index: SetIndex,
    hashes: Interner,
    names: Interner,
    places: Vec<Vec<(HashId, Prefix)>>,
    place_ids: HashMap<Vec<(HashId, Prefix)>, u32>,
    incrs: HashMap<Cell, Num>,
    /// Stream appends, in order: (stream key, fields).
    appends: Vec<(String, Vec<(&'static str, String)>)>,
    /// HyperLogLog key -> members to add.
    hll: HashMap<HashId, Vec<String>>,
    /// Key -> seconds it has left to live (the longest asked for).
    expire: HashMap<String, i64>,
    /// The planner's own memo for this batch (see [`Batch::take_memo`]).
    memo: Option<Box<dyn std::any::Any + Send + Sync>>,
    corrupt_states: u64,
    limit_drops: u64,
}

impl Batch {
    /// The place of a device key the item declared in [`Work::reads`] (the read phase
    /// has put every declared key in already; an undeclared one starts afresh).
    pub fn device_id(&mut self, key: &str) -> DeviceId {
        if let Some(&i) = self.device_index.get(key) {
            return DeviceId(i);
        }
        self.add_device(key.to_string(), None, DeviceState::default())
    }

    /// The state of a device, to read or change.
    pub fn device(&mut self, id: DeviceId) -> &mut DeviceState {
        &mut self.devices[id.0].state
    }

    fn add_device(
        &mut self,
        key: String,
        original: Option<Vec<u8>>,
        state: DeviceState,
    ) -> DeviceId {
        let i = self.devices.len();
        self.devices.push(DeviceSlot { original, state });
        self.device_index.insert(key, i);
        DeviceId(i)
    }

    /// Whether `member` is (or may now become) part of the capped set: true when it is
    /// already there or the set has room, in which case it is added with the batch.
    pub fn admit(&mut self, set: &str, member: &str, cap: usize) -> bool {
        let i = self.set_index.of(set, &mut self.sets, SetSlot::default);
        self.admit_at(i, member, cap)
    }

    /// [`Batch::admit`] for the app's meta list `list` ([`crate::keys::meta`]), without
    /// building its key anew for every request.
    pub fn admit_meta(
        &mut self,
        app: &crate::keys::AppId,
        list: &'static str,
        member: &str,
        cap: usize,
    ) -> bool {
        let i = self
            .set_index
            .of_meta(app, list, &mut self.sets, SetSlot::default);
        self.admit_at(i, member, cap)
    }

    fn admit_at(&mut self, i: usize, member: &str, cap: usize) -> bool {
        let slot = &mut self.sets[i].1;
        if slot.present.contains(member) {
            return true;
        }
        if slot.card >= cap {
            self.limit_drops += 1;
            return false;
        }
        slot.card += 1;
        slot.present.insert(member.to_string());
        slot.added.push(member.to_string());
        true
    }

    /// Adds `member` to the app's meta list `list`, uncapped: for lists small by
    /// construction (range lists) or counted elsewhere (internal events).
    pub fn add_meta_member(&mut self, app: &crate::keys::AppId, list: &'static str, member: &str) {
        self.admit_meta(app, list, member, usize::MAX);
    }

    /// The number of `key` (a counter hash, or a HyperLogLog for [`Batch::pfadd`]) in this
    /// batch.
    pub fn hash(&mut self, key: &str) -> HashId {
        HashId(self.hashes.id(key))
    }

    /// The number of `name` in this batch.
    pub fn name(&mut self, name: &str) -> NameId {
        NameId(self.names.id(name))
    }

    /// The number of a set of places.
    pub fn places(&mut self, at: &[(HashId, Prefix)]) -> PlacesId {
        if let Some(&id) = self.place_ids.get(at) {
            return PlacesId(id);
        }
        let id = self.places.len() as u32;
        self.places.push(at.to_vec());
        self.place_ids.insert(at.to_vec(), id);
        PlacesId(id)
    }

    /// Adds `by` to field `<prefix><name><suffix>` at each of the places.
    pub fn incr_at(&mut self, places: PlacesId, name: NameId, suffix: NameId, by: i64) {
        if by != 0 {
            self.add(places, name, suffix, Num::Int(by));
        }
    }

    /// As [`Batch::incr_at`], by a float (not finite: ignored).
    pub fn incr_float_at(&mut self, places: PlacesId, name: NameId, suffix: NameId, by: f64) {
        if by != 0.0 && by.is_finite() {
            self.add(places, name, suffix, Num::Float(by));
        }
    }

    fn add(&mut self, places: PlacesId, name: NameId, suffix: NameId, by: Num) {
        let cell = Cell {
            places,
            name,
            suffix,
        };
        self.incrs
            .entry(cell)
            .and_modify(|n| *n = n.plus(by))
            .or_insert(by);
    }

    /// The planned increments spread over their places: one entry per counter field.
    fn fields(&self) -> HashMap<Field, Num> {
        let mut out: HashMap<Field, Num> = HashMap::default();
        out.reserve(self.incrs.len() * 3);
        for (c, n) in &self.incrs {
            let Some(places) = self.places.get(c.places.0 as usize) else {
                continue;
            };
            for &(hash, prefix) in places {
                let f = Field {
                    hash,
                    prefix,
                    name: c.name,
                    suffix: c.suffix,
                };
                out.entry(f).and_modify(|m| *m = m.plus(*n)).or_insert(*n);
            }
        }
        out
    }

    /// Writes the text of a field into `out`.
    fn field_text(&self, f: &Field, out: &mut String) {
        out.clear();
        match f.prefix {
            Prefix::None => {}
            Prefix::Num(n) => {
                crate::keys::push_int(out, i64::from(n));
                out.push('.');
            }
            Prefix::Week(n) => {
                out.push('w');
                crate::keys::push_int(out, i64::from(n));
                out.push('.');
            }
        }
        out.push_str(self.names.get(f.name.0));
        out.push_str(self.names.get(f.suffix.0));
    }

    /// The members the batch adds to sets so far, sorted: (set key, member).
    pub fn additions(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = self
            .sets
            .iter()
            .flat_map(|(key, slot)| slot.added.iter().map(move |m| (key.clone(), m.clone())))
            .collect();
        out.sort();
        out
    }

    /// The merged increments so far, sorted: (key, field, value as text).
    pub fn increments(&self) -> Vec<(String, String, String)> {
        let mut merged: std::collections::BTreeMap<(String, String), Num> = Default::default();
        let mut text = String::new();
        for (f, n) in self.fields() {
            self.field_text(&f, &mut text);
            let key = self.hashes.get(f.hash.0).to_string();
            merged
                .entry((key, text.clone()))
                .and_modify(|m| *m = m.plus(n))
                .or_insert(n);
        }
        merged
            .into_iter()
            .map(|((k, f), n)| {
                let v = match n {
                    Num::Int(i) => i.to_string(),
                    Num::Float(x) => x.to_string(),
                };
                (k, f, v)
            })
            .collect()
    }

    /// Room for what a planner works out once per batch rather than once per request (the
    /// collector keeps the numbers of the counter hashes of each app, family and hour),
    /// taken out while a unit plans ([`Batch::put_memo`] gives it back). It lives as long
    /// as the batch: planned again after a conflict, a batch starts with an empty memo, as
    /// its numbers start afresh; so does one whose memo was of another type.
    pub fn take_memo<T: Default + Send + Sync + 'static>(&mut self) -> Box<T> {
        match self.memo.take().map(|m| m.downcast::<T>()) {
            Some(Ok(m)) => m,
            _ => Box::default(),
        }
    }

    /// Keeps a memo for the batch's next unit ([`Batch::take_memo`]).
    pub fn put_memo<T: Send + Sync + 'static>(&mut self, memo: Box<T>) {
        self.memo = Some(memo);
    }

    /// Adds `member` to the HyperLogLog at `key`.
    pub fn pfadd(&mut self, key: HashId, member: &str) {
        self.hll.entry(key).or_default().push(member.to_string());
    }

    /// Gives `key` (written in this batch) `secs` seconds to live, or the longest of the
    /// times asked for.
    pub fn expire(&mut self, key: &str, secs: i64) {
        match self.expire.get_mut(key) {
            Some(s) => *s = (*s).max(secs),
            None => {
                self.expire.insert(key.to_string(), secs);
            }
        }
    }

    /// Appends an entry to a stream in the same transaction as everything else.
    pub fn append(&mut self, stream: &str, fields: Vec<(&'static str, String)>) {
        self.appends.push((stream.to_string(), fields));
    }
}

/// How the committer batches.
#[derive(Debug, Clone)]
pub struct CommitConfig {
    /// How long the committer waits for more requests after the first of a batch.
    pub linger: Duration,
    /// Most requests in one batch.
    pub max_batch: usize,
    /// Requests waiting for the committer before new ones are refused with 503.
    pub queue: usize,
    /// Transaction conflicts tolerated for one batch before it fails.
    pub max_retries: u32,
    /// Committer tasks, each with its own connection: while one waits for Redis another
    /// plans. WATCH keeps concurrent batches exact (a conflicting batch is planned again).
    pub committers: usize,
    /// Streams are capped at about this many entries (`XADD MAXLEN ~`).
    pub stream_max_len: u64,
    /// Entries older than this are trimmed (`XTRIM MINID ~`, once per stream per flush).
    pub stream_max_age: Duration,
}

/// Counters for `/metrics` and the benchmark.
#[derive(Debug)]
pub struct CommitStats {
    pub batches: AtomicU64,
    pub requests: AtomicU64,
    pub conflicts: AtomicU64,
    pub failures: AtomicU64,
    pub counter_writes: AtomicU64,
    pub corrupt_states: AtomicU64,
    pub flush_micros: AtomicU64,
    /// Requests recognised as retries of requests already counted.
    pub duplicates: AtomicU64,
    /// Values not stored because a capped list (event keys, segments, metric values) was full.
    pub limit_drops: AtomicU64,
    /// Requests per transaction.
    pub batch_size: Histogram,
    /// Seconds per transaction, both round trips.
    pub flush_seconds: Histogram,
    /// Exchanges with Redis (two a flush; three when a capped set gets a new member).
    pub round_trips: AtomicU64,
}

/// Bucket bounds of the batch-size histogram (requests per transaction).
const BATCH_BOUNDS: [f64; 11] = [
    1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0,
];

impl Default for CommitStats {
    fn default() -> Self {
        CommitStats {
            batches: AtomicU64::default(),
            round_trips: AtomicU64::default(),
            requests: AtomicU64::default(),
            conflicts: AtomicU64::default(),
            failures: AtomicU64::default(),
            counter_writes: AtomicU64::default(),
            corrupt_states: AtomicU64::default(),
            flush_micros: AtomicU64::default(),
            duplicates: AtomicU64::default(),
            limit_drops: AtomicU64::default(),
            batch_size: Histogram::new(&BATCH_BOUNDS),
            flush_seconds: Histogram::new(&crate::http::BOUNDS),
        }
    }
}

type Reply = oneshot::Sender<Result<Vec<Outcome>, StoreError>>;

struct Item {
    work: Box<dyn Work>,
    weight: usize,
    reply: Reply,
}

/// The handle request handlers submit work through. Cheap to clone.
#[derive(Clone)]
pub struct Committer {
    tx: mpsc::Sender<Item>,
    pub stats: Arc<CommitStats>,
}

impl Committer {
    /// Starts the committer tasks on the current runtime. They run until every handle is
    /// dropped or [`Stopper::stop`] is called, and then flush what is queued first.
    pub fn start(pool: Pool, cfg: CommitConfig) -> (Committer, Stopper) {
        let (tx, rx) = mpsc::channel(cfg.queue.max(1));
        let (stop_tx, stop_rx) = watch::channel(false);
        let stats = Arc::new(CommitStats::default());
        let rx = Arc::new(Mutex::new(rx));
        let tasks = (0..cfg.committers.max(1))
            .map(|_| {
                tokio::spawn(run(
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
    pub async fn submit(
        &self,
        work: Box<dyn Work>,
        weight: usize,
    ) -> Result<Vec<Outcome>, StoreError> {
        let rx = self.enqueue(work, weight)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Puts one unit on the queue without waiting: a full queue is refused at once (503).
    fn enqueue(
        &self,
        work: Box<dyn Work>,
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
    pub async fn submit_all(
        &self,
        units: Vec<(Box<dyn Work>, usize)>,
    ) -> Result<Vec<Outcome>, StoreError> {
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
async fn next_batch(
    rx: &Mutex<mpsc::Receiver<Item>>,
    stop: &mut watch::Receiver<bool>,
    cfg: &CommitConfig,
) -> Option<(Vec<Item>, usize)> {
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

async fn run(
    rx: Arc<Mutex<mpsc::Receiver<Item>>>,
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
            .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        stats.requests.fetch_add(weight as u64, Ordering::Relaxed);
        for (item, result) in items.into_iter().zip(results) {
            let _ = item.reply.send(result);
        }
    }
}

/// Commits a batch: as one transaction on standalone Redis; on a cluster as one per slot
/// (one per app), concurrently, each on a connection to the slot's master. A failed
/// transaction fails only its own requests.
async fn flush_all(
    pool: &Pool,
    cfg: &CommitConfig,
    stats: &CommitStats,
    items: &[Item],
) -> Vec<Result<Vec<Outcome>, StoreError>> {
    let mut groups: Vec<(Option<u16>, Vec<usize>)> = Vec::new();
    if pool.is_cluster() {
        let mut by_slot: HashMap<u16, usize> = HashMap::default();
        for (i, item) in items.iter().enumerate() {
            let s = slot(item.work.route());
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
        let group: Vec<&Item> = idx.iter().map(|&i| &items[i]).collect();
        async move {
            let route = group.first().map(|i| i.work.route());
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
        stats.batches.fetch_add(1, Ordering::Relaxed);
        match result {
            Ok(outcomes) => {
                let dups = outcomes
                    .iter()
                    .flatten()
                    .filter(|o| **o == Outcome::Duplicate)
                    .count();
                stats.duplicates.fetch_add(dups as u64, Ordering::Relaxed);
                for (&i, o) in idx.iter().zip(outcomes) {
                    out[i] = Some(Ok(o));
                }
            }
            Err(e) => {
                stats.failures.fetch_add(1, Ordering::Relaxed);
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

fn clone_err(e: &StoreError) -> StoreError {
    match e {
        StoreError::Timeout => StoreError::Timeout,
        StoreError::Closed => StoreError::Closed,
        StoreError::Overloaded => StoreError::Overloaded,
        StoreError::Bug(m) => StoreError::Bug(m.clone()),
        StoreError::Contention => StoreError::Contention,
        other => StoreError::Pool(other.to_string()),
    }
}

async fn flush(
    pool: &Pool,
    route: Option<&[u8]>,
    cfg: &CommitConfig,
    stats: &CommitStats,
    items: &[&Item],
) -> Result<Vec<Vec<Outcome>>, StoreError> {
    let mut reads = ReadSet::default();
    for item in items {
        item.work.reads(&mut reads);
    }
    let devices: Vec<String> = dedup(reads.devices);
    let mut sets: Vec<(String, Vec<String>)> = reads
        .members
        .into_iter()
        .map(|(set, ms)| (set, ms.into_iter().collect()))
        .collect();
    sets.sort_unstable();

    for _ in 0..=cfg.max_retries {
        let mut conn = pool.raw(route).await?;
        let mut batch = match read_phase(pool, stats, &mut conn, &devices, &sets).await {
            Ok(b) => b,
            // A connection that went stale while idle (Redis restarted) fails on its first
            // command. Nothing has been written yet (no MULTI was sent): reconnect once.
            Err(e) => {
                let transport = matches!(&e, StoreError::Redis(r) if is_transport_error(r));
                pool.discard_raw(conn);
                if !transport {
                    return Err(e);
                }
                conn = pool.raw(route).await?;
                match read_phase(pool, stats, &mut conn, &devices, &sets).await {
                    Ok(b) => b,
                    Err(e) => {
                        pool.discard_raw(conn);
                        return Err(e);
                    }
                }
            }
        };
        // A bug in planning must fail this batch, not stop the committer for good.
        let planned = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            items
                .iter()
                .map(|i| i.work.plan(&mut batch))
                .collect::<Vec<Vec<Outcome>>>()
        }));
        let Ok(outcomes) = planned else {
            // Its keys are still watched: the socket does not go back to the pool.
            Pool::close_raw(conn);
            return Err(StoreError::Bug("planning a batch panicked".into()));
        };
        let fields = batch.fields();
        let (corrupt, drops, written) =
            (batch.corrupt_states, batch.limit_drops, fields.len() as u64);
        match write_phase(pool, stats, &mut conn, cfg, &batch, &fields).await {
            Ok(true) => {
                stats.corrupt_states.fetch_add(corrupt, Ordering::Relaxed);
                stats.limit_drops.fetch_add(drops, Ordering::Relaxed);
                stats.counter_writes.fetch_add(written, Ordering::Relaxed);
                return Ok(outcomes);
            }
            Ok(false) => {}
            Err(e) => {
                pool.discard_raw(conn);
                return Err(e);
            }
        }
        stats.conflicts.fetch_add(1, Ordering::Relaxed);
    }
    Err(StoreError::Contention)
}

fn dedup(mut v: Vec<String>) -> Vec<String> {
    v.sort_unstable();
    v.dedup();
    v
}

/// An error answer: counted, and on a cluster a redirect makes the slot map be read again.
fn reply_error(pool: &Pool, err: &str) -> StoreError {
    pool.note_error();
    if is_redirect_reply(err) {
        pool.mark_stale();
    }
    StoreError::Pool(format!("redis: {err}"))
}

/// Sends `p` and checks that no reply is an error.
async fn send(
    pool: &Pool,
    stats: &CommitStats,
    c: &mut RawConn,
    p: &Packer,
) -> Result<Replies, StoreError> {
    stats.round_trips.fetch_add(1, Ordering::Relaxed);
    let packed = p.finish().map_err(|e| StoreError::Bug(e.to_string()))?;
    let replies = exchange(pool, c, packed, p.len()).await?;
    match replies.first_error() {
        Some(err) => Err(reply_error(pool, err)),
        None => Ok(replies),
    }
}

async fn read_phase(
    pool: &Pool,
    stats: &CommitStats,
    c: &mut RawConn,
    devices: &[String],
    sets: &[(String, Vec<String>)],
) -> Result<Batch, StoreError> {
    let mut batch = Batch::default();
    if devices.is_empty() && sets.is_empty() {
        return Ok(batch);
    }
    batch.device_index.reserve(devices.len());
    batch.devices.reserve(devices.len());
    let mut p = Packer::with_capacity(64 * (devices.len() + sets.len()) + 256);
    p.cmd(1 + devices.len() + sets.len()).arg("WATCH");
    for d in devices {
        p.arg(d);
    }
    for (s, _) in sets {
        p.arg(s);
    }
    // One MGET, not a GET per device: Redis's cost is mostly per command, not per key.
    // MGET answers nil for a key of another type too, so EXISTS counts the keys: more
    // keys than values means one is not a device state (written by something else).
    if !devices.is_empty() {
        for cmd in ["MGET", "EXISTS"] {
            p.cmd(1 + devices.len()).arg(cmd);
            for d in devices {
                p.arg(d);
            }
        }
    }
    for (s, ms) in sets {
        p.cmd(2 + ms.len()).arg("SMISMEMBER").arg(s);
        for m in ms {
            p.arg(m);
        }
    }
    let replies = send(pool, stats, c, &p).await?;
    // Reply 0 is WATCH's OK.
    let mut at = 1;
    if !devices.is_empty() {
        let values = replies.items(at).filter(Option::is_some).count();
        if replies.int(at + 1).unwrap_or(0) > values as i64 {
            foreign_device_key(pool, stats, c, devices, replies.items(at)).await?;
        }
        let mut states = replies.items(at);
        for d in devices {
            let original = states.next().ok_or_else(|| {
                StoreError::Pool("redis: MGET answered fewer values than keys".into())
            })?;
            let original = original.map(<[u8]>::to_vec);
            let state = match original.as_deref().map(DeviceState::decode) {
                None => DeviceState::default(),
                Some(Ok(s)) => s,
                Some(Err(_)) => {
                    tracing::warn!(key = %d, "corrupt device state, starting the device afresh");
                    batch.corrupt_states += 1;
                    DeviceState::default()
                }
            };
            batch.add_device(d.clone(), original, state);
        }
        at += 2;
    }
    // A set's size matters only when a member is new: asked for then, in a third round
    // trip (still under the WATCH), which a warmed-up app's flushes rarely need.
    let mut new_members = Vec::new();
    for (i, (s, ms)) in sets.iter().enumerate() {
        let flags = replies.ints(at + i);
        let present: TextSet<String> = ms
            .iter()
            .zip(&flags)
            .filter(|(_, f)| **f == 1)
            .map(|(m, _)| m.clone())
            .collect();
        let slot = batch.set_index.of(s, &mut batch.sets, SetSlot::default);
        if present.len() < ms.len() {
            new_members.push(slot);
        }
        batch.sets[slot].1.present = present;
    }
    if !new_members.is_empty() {
        let mut p = Packer::with_capacity(64 * new_members.len());
        for &slot in &new_members {
            p.cmd(2).arg("SCARD").arg(&batch.sets[slot].0);
        }
        let cards = send(pool, stats, c, &p).await?;
        for (j, &slot) in new_members.iter().enumerate() {
            batch.sets[slot].1.card = cards.int(j).unwrap_or(0).max(0) as usize;
        }
    }
    Ok(batch)
}

/// A device key holds something other than a string: GET each key MGET had no value for,
/// so the batch fails with Redis's own error (`WRONGTYPE`), counted, rather than writing a
/// fresh device state over someone else's data.
async fn foreign_device_key<'a>(
    pool: &Pool,
    stats: &CommitStats,
    c: &mut RawConn,
    devices: &[String],
    values: impl Iterator<Item = Option<&'a [u8]>>,
) -> Result<(), StoreError> {
    let mut p = Packer::default();
    for (d, v) in devices.iter().zip(values) {
        if v.is_none() {
            p.cmd(2).arg("GET").arg(d);
        }
    }
    if !p.is_empty() {
        send(pool, stats, c, &p).await?;
    }
    Ok(())
}

/// Writes the batch in one transaction. `Ok(false)` when a watched key changed.
async fn write_phase(
    pool: &Pool,
    stats: &CommitStats,
    c: &mut RawConn,
    cfg: &CommitConfig,
    batch: &Batch,
    fields: &HashMap<Field, Num>,
) -> Result<bool, StoreError> {
    let mut p = Packer::with_capacity(32 * 1024);
    p.cmd(1).arg("MULTI");
    // One MSET for every changed device state (one command, one AOF record).
    let changed: Vec<(&String, Vec<u8>)> = batch
        .device_index
        .iter()
        .filter_map(|(key, &i)| {
            let slot = &batch.devices[i];
            let encoded = slot.state.encode();
            (slot.original.as_deref() != Some(&encoded[..])).then_some((key, encoded))
        })
        .collect();
    if !changed.is_empty() {
        p.cmd(1 + 2 * changed.len()).arg("MSET");
        for (key, encoded) in &changed {
            p.arg(key).arg(encoded);
        }
    }
    for (key, slot) in &batch.sets {
        if !slot.added.is_empty() {
            p.cmd(2 + slot.added.len()).arg("SADD").arg(key);
            for m in &slot.added {
                p.arg(m);
            }
        }
    }
    let (mut field, mut float) = (String::new(), String::new());
    for (f, n) in fields {
        let key = batch.hashes.get(f.hash.0);
        batch.field_text(f, &mut field);
        match *n {
            Num::Int(v) => p.cmd(4).arg("HINCRBY").arg(key).arg(&field).int(v),
            Num::Float(v) => {
                float.clear();
                let _ = std::fmt::Write::write_fmt(&mut float, format_args!("{v}"));
                p.cmd(4)
                    .arg("HINCRBYFLOAT")
                    .arg(key)
                    .arg(&field)
                    .arg(&float)
            }
        };
    }
    let mut trimmed: HashSet<&str> = HashSet::default();
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let min_id = now_ms.saturating_sub(cfg.stream_max_age.as_millis() as u64);
    let max_len = cfg.stream_max_len.min(i64::MAX as u64) as i64;
    for (stream, fields) in &batch.appends {
        p.cmd(6 + 2 * fields.len())
            .arg("XADD")
            .arg(stream)
            .arg("MAXLEN")
            .arg("~")
            .int(max_len)
            .arg("*");
        for (k, v) in fields {
            p.arg(k).arg(v);
        }
        if trimmed.insert(stream) {
            p.cmd(5)
                .arg("XTRIM")
                .arg(stream)
                .arg("MINID")
                .arg("~")
                .int(min_id.min(i64::MAX as u64) as i64);
        }
    }
    for (key, members) in &batch.hll {
        p.cmd(2 + members.len())
            .arg("PFADD")
            .arg(batch.hashes.get(key.0));
        for m in members {
            p.arg(m);
        }
    }
    // Last: an EXPIRE before the write that creates its key would do nothing.
    for (key, secs) in &batch.expire {
        p.cmd(3).arg("EXPIRE").arg(key).int(*secs);
    }
    if p.len() == 1 {
        // Nothing to write (all duplicates): drop the watches.
        let mut unwatch = Packer::default();
        unwatch.cmd(1).arg("UNWATCH");
        send(pool, stats, c, &unwatch).await?;
        return Ok(true);
    }
    p.cmd(1).arg("EXEC");
    let replies = send(pool, stats, c, &p).await?;
    let exec = p.len() - 1;
    if replies.is_nil(exec) {
        return Ok(false);
    }
    if let Some(err) = replies.any_error() {
        // A command failed inside the transaction (a key of the wrong type): Redis applied
        // the others. Only data written by something else than Tally can cause this.
        tracing::error!(
            error = err,
            "a command of a group commit failed inside EXEC"
        );
        return Err(reply_error(pool, err));
    }
    Ok(true)
}

impl crate::http::Metrics for CommitStats {
    fn render(&self, out: &mut String) {
        use crate::http::metric;
        let c = |v: &AtomicU64| v.load(Ordering::Relaxed);
        metric(
            out,
            "counter",
            "tally_commit_batches_total",
            "Group-commit flushes.",
            c(&self.batches),
        );
        metric(
            out,
            "counter",
            "tally_commit_round_trips_total",
            "Group-commit exchanges with Redis: two a flush, three when a capped list gets a new member.",
            c(&self.round_trips),
        );
        metric(
            out,
            "counter",
            "tally_commit_requests_total",
            "Requests written by group commit.",
            c(&self.requests),
        );
        metric(
            out,
            "counter",
            "tally_commit_conflicts_total",
            "Flushes planned again after a WATCH conflict.",
            c(&self.conflicts),
        );
        metric(
            out,
            "counter",
            "tally_commit_failures_total",
            "Flushes that failed (their requests got 503).",
            c(&self.failures),
        );
        metric(
            out,
            "counter",
            "tally_commit_counter_writes_total",
            "Distinct counter fields incremented.",
            c(&self.counter_writes),
        );
        metric(
            out,
            "counter",
            "tally_commit_corrupt_states_total",
            "Device states that could not be decoded.",
            c(&self.corrupt_states),
        );
        metric(
            out,
            "counter",
            "tally_commit_flush_microseconds_total",
            "Time spent flushing.",
            c(&self.flush_micros),
        );
        metric(
            out,
            "counter",
            "tally_dedup_hits_total",
            "Requests recognised as retries of counted requests (acknowledged, not counted again).",
            c(&self.duplicates),
        );
        metric(
            out,
            "counter",
            "tally_limit_drops_total",
            "Values not stored because an event-key, segment or metric-value limit was reached.",
            c(&self.limit_drops),
        );
        self.batch_size.render(
            out,
            "tally_commit_batch_requests",
            "Requests per group-commit transaction.",
        );
        self.flush_seconds.render(
            out,
            "tally_commit_flush_seconds",
            "Duration of one group-commit transaction (both round trips).",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn increments_merge_over_places_names_and_requests() {
        let mut b = Batch::default();
        let (year, month) = (b.hash("{a}:c:users:2026"), b.hash("{a}:c:users:2026:11"));
        let ymd = b.places(&[
            (year, Prefix::None),
            (year, Prefix::Num(11)),
            (month, Prefix::Num(23)),
        ]);
        let yw = b.places(&[(year, Prefix::None), (year, Prefix::Week(48))]);
        let (android, t, none) = (b.name("Android"), b.name(".t"), b.name(""));
        let whole = b.name("Android.t");
        // Two requests, and the same field reached through another set of places and
        // another split of its name: one counter each, summed.
        b.incr_at(ymd, android, t, 1);
        b.incr_at(ymd, android, t, 2);
        b.incr_at(yw, whole, none, 4);
        let sum = b.name(".s");
        b.incr_float_at(ymd, android, sum, 0.5);
        b.incr_float_at(ymd, android, none, f64::NAN);
        b.incr_at(ymd, android, none, 0);
        let got = b.increments();
        let want = [
            ("{a}:c:users:2026", "11.Android.s", "0.5"),
            ("{a}:c:users:2026", "11.Android.t", "3"),
            ("{a}:c:users:2026", "Android.s", "0.5"),
            ("{a}:c:users:2026", "Android.t", "7"),
            ("{a}:c:users:2026", "w48.Android.t", "4"),
            ("{a}:c:users:2026:11", "23.Android.s", "0.5"),
            ("{a}:c:users:2026:11", "23.Android.t", "3"),
        ];
        let got: Vec<(&str, &str, &str)> = got
            .iter()
            .map(|(k, f, v)| (k.as_str(), f.as_str(), v.as_str()))
            .collect();
        assert_eq!(got, want);
        assert_eq!(
            b.places(&[(year, Prefix::None), (year, Prefix::Week(48))]),
            yw
        );
    }
}
