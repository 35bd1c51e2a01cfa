//! From a validated request and the device's state to counter increments: Countly's
//! aggregation rules as plain functions over a [`Batch`].
//!
//! Levels: `Y` year, `M` month, `W` Countly week, `D` day, `H` hour. What goes where:
//!
//! | field | levels | when |
//! |-------|--------|------|
//! | `t` sessions | D H | each begin_session (not one within the cooldown) |
//! | `n` new users | D H | the device's first session |
//! | `u` unique users | Y M W D H | the device's first session in that bucket |
//! | `e` requests | D H | each request of a device that has had a session |
//! | `d` duration | D H | each `session_duration` |
//! | `f.<r>` frequency | W D | each session: hours since the previous one |
//! | `l.<r>` loyalty | Y M W D | where the session is unique: the session number |
//! | `ds.<r>` duration range | W D | each session end: its length |
//! | `<CC>.t/n/u` country | D (+Y M W for u) | like t/n/u |
//! | metric `<v>.t/n/u` | D (+Y M W for u) | like t/n/u; a changed value counts as unique |
//! | event `c`, `s`, `dur` | D H | each event, at its own time |
//! | segment `<v>.c/s/dur` | D | each event, per segmentation value |
//!
//! An additive counter has no month or year field: as in Countly, its totals are the sums
//! of the days a read loads, which the reader adds up ([`tally_model::counters::summed`]). Unique users and loyalty do not add up over days,
//! so they keep theirs. For a begin_session with metrics that is about a third fewer fields
//! for each group commit to send, and for Redis to parse, apply and append to its AOF.
//! Weeks keep their frequency and duration ranges: a week spans two months.

use crate::request::{Event, WriteRequest};
use crate::sanitize::COUNTRY_SLOT;
use std::sync::Arc;
use tally_config::{Limits, Retention};
use tally_model::apps::App;
use tally_model::commit::{Batch, HashId, NameId, Outcome, PlacesId, Prefix, ReadSet, Work};
use tally_model::device::CITY_SLOT;
use tally_model::device::{DeviceState, Uniques, SNAPSHOTS};
use tally_model::keys::{self, Family, Period};
use tally_model::time::Buckets;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    Y,
    M,
    W,
    D,
    H,
}
use Level::*;

/// The counter hashes of one family at one instant, as numbered in the batch. Fields get
/// their level's prefix (none, `10.`, `w43.`, `22.`, and `14.` in the day's hour hash)
/// when the transaction is packed.
struct Target<'a> {
    year: HashId,
    month: HashId,
    /// Only families with hour counters (sessions, events) have one.
    hours: Option<HashId>,
    at: &'a Buckets,
    /// Where the batch's memo ([`Known`]) keeps this target, if it has room.
    slot: Option<usize>,
}

/// A set of levels as a bit mask.
fn mask(levels: &[Level]) -> usize {
    levels.iter().fold(0, |m, &l| m | 1 << l as usize)
}

const ALL: [Level; 5] = [Y, M, W, D, H];

/// A target the batch has numbered already, with the sets of levels numbered so far. Most
/// requests of a batch share their app, families and hour, so building and numbering a
/// request's dozen-odd counter keys happens about once per batch, not once per request.
struct Known {
    app: keys::AppId,
    family: String,
    hourly: bool,
    when: (i32, u32, u32, u32),
    ids: (HashId, HashId, Option<HashId>),
    places: [Option<PlacesId>; 32],
}

/// What the collector works out once per batch ([`Work::Memo`]): the [`Known`] targets,
/// the session rollups of each app and minute ([`Rolled`]) and the names every request
/// uses. Bounded: a batch over many apps or hours plans the rest without it.
#[derive(Default)]
pub struct Memo {
    targets: Vec<Known>,
    rolled: Vec<Rolled>,
    names: Option<Names>,
    /// Names spelled by literals, by the literal's address and length ([`fixed`]).
    fixed: Vec<((usize, usize), NameId)>,
    /// The last value admitted in each metric slot ([`admit_value`]).
    values: [Option<Admitted>; SNAPSHOTS],
    /// Where in `targets` the next lookup most likely finds its target: requests of a
    /// batch ask for their targets in the same order ([`Target::numbered`]).
    next_target: usize,
}

/// A metric (or country) value admitted to its meta list in this batch, with its number
/// and its snapshot: the requests of a batch mostly carry the values of the one before.
struct Admitted {
    app: keys::AppId,
    list: &'static str,
    text: String,
    name: NameId,
    snapshot: u32,
}

/// Names most requests use, numbered once per batch.
#[derive(Clone, Copy)]
struct Names {
    none: NameId,
    t: NameId,
    n: NameId,
    u: NameId,
}

fn names(b: &mut Planning) -> Names {
    if let Some(n) = b.memo.names {
        return n;
    }
    let n = Names {
        none: b.name(""),
        t: b.name(".t"),
        n: b.name(".n"),
        u: b.name(".u"),
    };
    b.memo.names = Some(n);
    n
}

/// The number of a name the planner spells with a literal, looked up by the literal's
/// address instead of hashing its text: a begin_session adds a dozen such fields. Two
/// literals of the same text are two entries with one number, as the batch numbers text.
fn fixed(b: &mut Planning, name: &'static str) -> NameId {
    let at = (name.as_ptr() as usize, name.len());
    if let Some(&(_, id)) = b.memo.fixed.iter().find(|(k, _)| *k == at) {
        return id;
    }
    let id = b.name(name);
    b.memo.fixed.push((at, id));
    id
}

/// The session rollups of one app, minute and local hour, already numbered and given their
/// expiry in this batch.
struct Rolled {
    app: keys::AppId,
    minute: i64,
    hour: u32,
    /// The minute rollup's places and the minute's active-devices key, unless past retention.
    minute_at: Option<(PlacesId, HashId)>,
    hour_at: Option<PlacesId>,
}

const KNOWN_TARGETS: usize = 256;

/// A batch with the collector's memo of it, so the planner reaches both as it plans
/// one unit.
struct Planning<'b> {
    batch: &'b mut Batch,
    memo: &'b mut Memo,
}

// The planner calls the batch's own methods through a `Planning` as it would on the
// batch: the memo is the only thing it adds.
impl std::ops::Deref for Planning<'_> {
    type Target = Batch;
    fn deref(&self) -> &Batch {
        self.batch
    }
}

impl std::ops::DerefMut for Planning<'_> {
    fn deref_mut(&mut self) -> &mut Batch {
        self.batch
    }
}

impl<'a> Target<'a> {
    /// A family without hour counters (metrics, segments).
    fn new(b: &mut Planning, app: &App, family: &Family, at: &'a Buckets) -> Target<'a> {
        Target::numbered(b, app, family, at, false)
    }

    /// A family with hour counters (sessions, events).
    fn hourly(b: &mut Planning, app: &App, family: &Family, at: &'a Buckets) -> Target<'a> {
        Target::numbered(b, app, family, at, true)
    }

    fn numbered(
        b: &mut Planning,
        app: &App,
        family: &Family,
        at: &'a Buckets,
        hourly: bool,
    ) -> Target<'a> {
        let when = (at.year, at.month, at.day, at.hour);
        let is = |k: &Known| {
            k.when == when && k.hourly == hourly && k.family == family.name() && k.app == app.id
        };
        let targets = &b.memo.targets;
        let hint = b.memo.next_target;
        let known = match targets.get(hint) {
            Some(k) if is(k) => Some(hint),
            _ => targets.iter().position(is),
        };
        if let Some(i) = known {
            b.memo.next_target = i + 1;
            if let Some(k) = b.memo.targets.get(i) {
                let (year, month, hours) = k.ids;
                return Target {
                    year,
                    month,
                    hours,
                    at,
                    slot: Some(i),
                };
            }
        }
        let year = b.hash(&keys::counters(&app.id, family, Period::Year(at.year)));
        let month = b.hash(&keys::counters(
            &app.id,
            family,
            Period::Month(at.year, at.month),
        ));
        let hours = hourly.then(|| {
            b.hash(&keys::counters(
                &app.id,
                family,
                Period::Hours(at.year, at.month, at.day),
            ))
        });
        let memo = &mut b.memo.targets;
        let slot = (memo.len() < KNOWN_TARGETS).then(|| {
            memo.push(Known {
                app: app.id.clone(),
                family: family.name().to_string(),
                hourly,
                when,
                ids: (year, month, hours),
                places: [None; 32],
            });
            memo.len() - 1
        });
        // The next request asks for the target after this one, which comes next.
        b.memo.next_target = slot.map_or(0, |i| i + 1);
        Target {
            year,
            month,
            hours,
            at,
            slot,
        }
    }

    /// The hash and field prefix of a level. An hour level on a family without hour
    /// counters is a bug in the caller: `None`, never misplaced.
    fn cell(&self, level: Level) -> Option<(HashId, Prefix)> {
        let at = self.at;
        Some(match level {
            Y => (self.year, Prefix::None),
            M => (self.year, Prefix::Num(at.month)),
            W => (self.year, Prefix::Week(at.week)),
            D => (self.month, Prefix::Num(at.day)),
            H => match self.hours {
                Some(h) => (h, Prefix::Num(at.hour)),
                None => {
                    debug_assert!(false, "hour level on a family without hours");
                    return None;
                }
            },
        })
    }

    /// The batch's number for the levels of `mask`, worked out once per batch and target.
    fn places(&self, b: &mut Planning, mask: usize) -> PlacesId {
        let mask = mask & 31;
        if let Some(i) = self.slot {
            if let Some(Some(id)) = b.memo.targets.get(i).map(|k| k.places[mask]) {
                return id;
            }
        }
        let mut at = [(HashId::default(), Prefix::None); 5];
        let mut n = 0;
        for level in ALL {
            if mask & (1 << level as usize) != 0 {
                if let Some(c) = self.cell(level) {
                    at[n] = c;
                    n += 1;
                }
            }
        }
        let id = b.places(&at[..n]);
        if let Some(k) = self.slot.and_then(|i| b.memo.targets.get_mut(i)) {
            k.places[mask] = Some(id);
        }
        id
    }

    /// Adds `by` to `<name><suffix>` at each level.
    fn add_to(&self, b: &mut Planning, levels: &[Level], name: NameId, suffix: NameId, by: i64) {
        let places = self.places(b, mask(levels));
        b.incr_at(places, name, suffix, by);
    }

    fn add_float_to(
        &self,
        b: &mut Planning,
        levels: &[Level],
        name: NameId,
        suffix: NameId,
        by: f64,
    ) {
        let places = self.places(b, mask(levels));
        b.incr_float_at(places, name, suffix, by);
    }

    fn add(&self, b: &mut Planning, levels: &[Level], field: &'static str, by: i64) {
        let (name, none) = (fixed(b, field), names(b).none);
        self.add_to(b, levels, name, none, by);
    }

    fn add_float(&self, b: &mut Planning, levels: &[Level], field: &'static str, by: f64) {
        let (name, none) = (fixed(b, field), names(b).none);
        self.add_float_to(b, levels, name, none, by);
    }

    /// `<name><suffix>` at Y M W D where the device is unique (or `always`), as for `u`.
    fn add_unique(
        &self,
        b: &mut Planning,
        u: &Uniques,
        always: bool,
        name: NameId,
        suffix: NameId,
    ) {
        let mut m = 0;
        for (level, unique) in [(Y, u.year), (M, u.month), (W, u.week), (D, u.day)] {
            if unique || always {
                m |= 1 << level as usize;
            }
        }
        if m != 0 {
            let places = self.places(b, m);
            b.incr_at(places, name, suffix, 1);
        }
    }
}

/// Countly's session duration ranges (seconds).
pub fn duration_range(secs: u32) -> u32 {
    match secs {
        0..=10 => 0,
        11..=30 => 1,
        31..=60 => 2,
        61..=180 => 3,
        181..=600 => 4,
        601..=1800 => 5,
        1801..=3600 => 6,
        _ => 7,
    }
}

/// Countly's frequency ranges: hours since the previous session. 0 is the first session.
/// Countly's code gives 10 for 744 h and more (an off-by-one against its own 12 labels);
/// Tally gives 11 there, the range the dashboard labels "30+ days".
pub fn frequency_range(hours_since: Option<i64>) -> u32 {
    match hours_since {
        None => 0,
        Some(h) if h < 24 => 1,
        Some(h) if h < 192 => 1 + (h / 24) as u32,
        Some(h) if h < 360 => 9,
        Some(h) if h < 744 => 10,
        Some(_) => 11,
    }
}

/// The range numbers as text, and as the field names of duration (`ds.`), frequency
/// (`f.`) and loyalty (`l.`) ranges: spelled once, not formatted on every session.
const RANGES: [&str; 12] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11"];
const DURATION_NAMES: [&str; 8] = [
    "ds.0", "ds.1", "ds.2", "ds.3", "ds.4", "ds.5", "ds.6", "ds.7",
];
const FREQUENCY_NAMES: [&str; 12] = [
    "f.0", "f.1", "f.2", "f.3", "f.4", "f.5", "f.6", "f.7", "f.8", "f.9", "f.10", "f.11",
];
const LOYALTY_NAMES: [&str; 12] = [
    "l.0", "l.1", "l.2", "l.3", "l.4", "l.5", "l.6", "l.7", "l.8", "l.9", "l.10", "l.11",
];

/// Countly's loyalty ranges: the session number.
pub fn loyalty_range(session_number: u32) -> u32 {
    match session_number {
        0 | 1 => 0,
        2 => 1,
        3..=5 => 2,
        6..=9 => 3,
        10..=19 => 4,
        20..=49 => 5,
        50..=99 => 6,
        100..=499 => 7,
        _ => 8,
    }
}

fn snapshot(v: &str) -> u32 {
    tally_model::device::fingerprint(v)
}

/// One request ready for the committer.
pub struct Item {
    pub app: Arc<App>,
    pub req: WriteRequest,
    /// Server time of arrival (UNIX seconds): the clock of the duplicate window.
    pub received: i64,
    /// The same in milliseconds, for the raw stream.
    pub received_ms: i64,
    pub device_key: String,
    /// The state key of `old_device_id`, when the request merges an old id into this one.
    pub old_device_key: Option<String>,
}

impl Item {
    pub fn new(app: Arc<App>, req: WriteRequest, received_ms: i64) -> Item {
        let device_key = keys::device(&app.id, &req.device_id);
        let old_device_key = req
            .old_device_id
            .as_deref()
            .map(|old| keys::device(&app.id, old));
        Item {
            app,
            req,
            received: received_ms.div_euclid(1000),
            received_ms,
            device_key,
            old_device_key,
        }
    }
}

/// A request, or the valid requests of a bulk for one app, as one unit of group-commit
/// work. All items belong to one app: on a cluster the unit commits in its app's slot.
pub struct Ingest {
    pub items: Vec<Item>,
    pub limits: Arc<Limits>,
    /// How long the session rollups are kept.
    pub keep: Retention,
}

impl Work for Ingest {
    type Memo = Memo;

    fn route(&self) -> &str {
        // A unit holds one app's requests.
        self.items
            .first()
            .map(|it| it.app.id.as_str())
            .unwrap_or_default()
    }

    fn reads(&self, r: &mut ReadSet) {
        for it in &self.items {
            let app = &it.app.id;
            r.device(it.device_key.clone());
            if let Some(old) = &it.old_device_key {
                r.device(old.clone());
            }
            if it.req.begin_session {
                let cc = it.req.country.as_deref().unwrap_or("Unknown");
                r.meta_member(app, "countries", cc);
                for (spec, v) in it.req.metrics.iter() {
                    r.meta_member(app, spec.meta, v);
                }
            }
            for e in &it.req.events {
                if !e.internal {
                    r.meta_member(app, "events", &e.key);
                }
                for (k, v) in &e.segments {
                    r.member(&keys::event_segments(app, &e.key), k);
                    r.member(&keys::segment_values(app, &e.key, k), v);
                }
            }
        }
    }

    fn plan(&self, batch: &mut Batch, memo: &mut Memo) -> Vec<Outcome> {
        let mut planning = Planning { batch, memo };
        self.items
            .iter()
            .map(|it| plan_one(&mut planning, it, &self.limits, self.keep))
            .collect()
    }
}

/// Plans one request into `batch`, with the batch's `memo` (one per batch, as the
/// committer keeps it). Public for unit tests: no I/O happens here.
pub fn plan_item(
    batch: &mut Batch,
    memo: &mut Memo,
    it: &Item,
    limits: &Limits,
    keep: Retention,
) -> Outcome {
    plan_one(&mut Planning { batch, memo }, it, limits, keep)
}

fn plan_one(b: &mut Planning, it: &Item, limits: &Limits, keep: Retention) -> Outcome {
    let (app, req) = (&*it.app, &it.req);
    let received = it.received.max(0) as u32;
    let device = b.device_id(&it.device_key);
    // A device id changed with merge: the new id takes over the old one's history first,
    // and the old one is forgotten (Countly's app_users merge). Done once: a retry finds
    // the old id gone (and is recognised as a duplicate below).
    if let Some(old_key) = &it.old_device_key {
        let old = b.device_id(old_key);
        let old_state = b.device(old).clone();
        if !old_state.is_blank() {
            b.device(device).absorb(&old_state);
            b.forget_device(old);
        }
    }
    let mut dev: DeviceState = b.device(device).clone();
    if let Some(fp) = req.fingerprint {
        if dev.is_duplicate(fp, received, limits.dedup_window_secs) {
            return Outcome::Duplicate;
        }
        dev.remember_request(fp, received);
    }
    if !req.counted {
        *b.device(device) = dev;
        return Outcome::Applied;
    }

    let at = Buckets::at(req.time, app.timezone);
    let users = Target::hourly(b, app, &Family::users(), &at);
    let t = req.time.max(0) as u32;

    let mut requests: i64 = 0;
    let (mut began, mut ended) = (false, false);
    if dev.first_seen != 0 || req.begin_session {
        requests = 1;
    } else {
        dev.pending_requests = dev.pending_requests.saturating_add(1);
    }

    if req.begin_session {
        // Strictly within the cooldown, as Countly's `(ts - lest) < session_cooldown`.
        let cooldown = !dev.session_open
            && dev.last_end != 0
            && t >= dev.last_end
            && t - dev.last_end < limits.session_cooldown_secs;
        if cooldown {
            // Nothing of a begin is counted, not even the request (Countly's extension).
            requests = 0;
            // The session that just ended goes on: take back the duration range its end
            // recorded; its end will be recorded again, with the whole length.
            let ended = Buckets::at(i64::from(dev.last_end), app.timezone);
            let prev = Target::hourly(b, app, &Family::users(), &ended);
            let r = duration_range(dev.session_secs) as usize % DURATION_NAMES.len();
            prev.add(b, &[W, D], DURATION_NAMES[r], -1);
            dev.session_open = true;
            dev.last_end = 0;
        } else {
            if dev.session_open {
                close_session(b, app, &users, &mut dev);
            }
            begin_session(b, it, &users, &mut dev, limits);
            began = true;
            requests += i64::from(dev.pending_requests);
            dev.pending_requests = 0;
        }
    }

    if req.session_duration > 0 {
        let d = i64::from(req.session_duration);
        users.add(b, &[D, H], "d", d);
        dev.session_secs = dev.session_secs.saturating_add(req.session_duration);
        dev.total_secs = dev.total_secs.saturating_add(req.session_duration);
    }

    if req.end_session && dev.session_open {
        ended = true;
        close_session(b, app, &users, &mut dev);
        dev.session_open = false;
        dev.last_end = t;
    }

    users.add(b, &[D, H], "e", requests);
    // Countly keeps a device's metric values from every request that carries them, so a
    // later begin_session compares with the newest (a value seen between sessions is no
    // longer a change then).
    if !began {
        for (spec, v) in req.metrics.iter() {
            dev.snapshots[spec.slot] = snapshot(v);
        }
    }

    let mut events = Vec::new();
    for e in &req.events {
        if plan_event(b, app, e, &at, limits) {
            events.push(raw_event(e));
        }
    }
    if began {
        roll_session(b, it, &at, "sb", keep);
    }
    if ended {
        roll_session(b, it, &at, "se", keep);
    }
    if !events.is_empty() {
        append(b, it, events);
    }

    *b.device(device) = dev;
    Outcome::Applied
}

/// Records the length of the open session; the seconds stay in the state so a
/// begin_session within the cooldown can continue it.
fn close_session(b: &mut Planning, app: &App, users: &Target, dev: &mut DeviceState) {
    let r = duration_range(dev.session_secs) as usize % DURATION_NAMES.len();
    users.add(b, &[W, D], DURATION_NAMES[r], 1);
    b.add_meta_member(&app.id, "d-ranges", RANGES[r]);
    dev.session_open = false;
}

fn begin_session(
    b: &mut Planning,
    it: &Item,
    users: &Target,
    dev: &mut DeviceState,
    limits: &Limits,
) {
    let (app, req) = (&*it.app, &it.req);
    let t = req.time.max(0) as u32;
    let is_new = dev.is_new();
    let freq = frequency_range(
        (!is_new).then(|| (i64::from(t) - i64::from(dev.last_session)).max(0) / 3600),
    );
    let uniq = dev.mark_session(users.at);
    dev.session_count = dev.session_count.saturating_add(1);
    dev.session_secs = 0;
    dev.session_open = true;
    dev.first_seen = if is_new { t } else { dev.first_seen.min(t) };
    dev.last_session = dev.last_session.max(t);

    users.add(b, &[D, H], "t", 1);
    if is_new {
        users.add(b, &[D, H], "n", 1);
    }
    for (level, unique) in [
        (Y, uniq.year),
        (M, uniq.month),
        (W, uniq.week),
        (D, uniq.day),
        (H, uniq.hour),
    ] {
        if unique {
            users.add(b, &[level], "u", 1);
        }
    }
    let f = freq as usize % RANGES.len();
    users.add(b, &[W, D], FREQUENCY_NAMES[f], 1);
    b.add_meta_member(&app.id, "f-ranges", RANGES[f]);
    let loyalty = loyalty_range(dev.session_count);
    let l = loyalty as usize % RANGES.len();
    let (l_name, none) = (fixed(b, LOYALTY_NAMES[l]), names(b).none);
    users.add_unique(b, &uniq, false, l_name, none);
    if uniq.year || uniq.month || uniq.week || uniq.day {
        b.add_meta_member(&app.id, "l-ranges", RANGES[l]);
    }

    // Country: a value of the users family, with Countly's uniqueness rule for values.
    let cc = req.country.as_deref().unwrap_or("Unknown");
    let cap = limits.values_per_metric;
    if let Some(value) = admit_value(b, app, "countries", COUNTRY_SLOT, cc, cap) {
        count_value(b, users, dev, COUNTRY_SLOT, value, is_new, &uniq);
    }

    // City: a metric family of its own (Countly's `cities`), counted when known.
    if let Some(city) = req.city.as_deref() {
        if let Some(value) = admit_value(b, app, "cities", CITY_SLOT, city, cap) {
            let target = Target::new(b, app, &Family::metric("cities"), users.at);
            count_value(b, &target, dev, CITY_SLOT, value, is_new, &uniq);
        }
    }

    for (spec, v) in req.metrics.iter() {
        let Some(value) = admit_value(b, app, spec.meta, spec.slot, v, cap) else {
            continue;
        };
        let target = Target::new(b, app, &Family::metric(spec.family), users.at);
        count_value(b, &target, dev, spec.slot, value, is_new, &uniq);
    }
}

/// [`Batch::admit_meta`] of value `v` of metric slot `slot` (whose meta list is `list`),
/// and the value's number and snapshot; `None` when the list is full. A value admitted
/// already in this batch stays admitted (a batch adds to its lists, never removes), so the
/// slot's last admitted value is answered without hashing it again.
fn admit_value(
    b: &mut Planning,
    app: &App,
    list: &'static str,
    slot: usize,
    v: &str,
    cap: usize,
) -> Option<(NameId, u32)> {
    let same = |a: &Admitted| a.text == v && a.app == app.id && std::ptr::eq(a.list, list);
    if let Some(Some(a)) = b.memo.values.get(slot) {
        if same(a) {
            return Some((a.name, a.snapshot));
        }
    }
    if !b.admit_meta(&app.id, list, v, cap) {
        return None;
    }
    let (name, snapshot) = (b.name(v), snapshot(v));
    if let Some(last) = b.memo.values.get_mut(slot) {
        match last {
            Some(a) if a.app == app.id => {
                a.text.clear();
                a.text.push_str(v);
                (a.list, a.name, a.snapshot) = (list, name, snapshot);
            }
            _ => {
                *last = Some(Admitted {
                    app: app.id.clone(),
                    list,
                    text: v.to_string(),
                    name,
                    snapshot,
                })
            }
        }
    }
    Some((name, snapshot))
}

/// `<v>.t`, `<v>.n` and `<v>.u` of one value (its number and snapshot from
/// [`admit_value`]). A value that differs from the device's last one counts as unique at
/// every level, as in Countly.
fn count_value(
    b: &mut Planning,
    target: &Target,
    dev: &mut DeviceState,
    slot: usize,
    (name, fp): (NameId, u32),
    is_new: bool,
    uniq: &Uniques,
) {
    let changed = dev.snapshots[slot] != fp;
    dev.snapshots[slot] = fp;
    let k = names(b);
    target.add_to(b, &[D], name, k.t, 1);
    if is_new {
        target.add_to(b, &[D], name, k.n, 1);
    }
    target.add_unique(b, uniq, changed, name, k.u);
}

/// An event as the raw stream keeps it: key, count, sum, duration, segmentation as sent,
/// time (ms). Serialized straight from the request's event, no JSON tree in between.
#[derive(serde::Serialize)]
struct RawEvent<'a> {
    k: &'a str,
    c: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    u: Option<f64>,
    #[serde(skip_serializing_if = "serde_json::Map::is_empty")]
    g: &'a serde_json::Map<String, serde_json::Value>,
    ts: i64,
}

fn raw_event(e: &Event) -> RawEvent<'_> {
    RawEvent {
        k: &e.key,
        c: e.count,
        s: e.sum,
        u: e.dur,
        g: &e.raw_segments,
        ts: e.time * 1000,
    }
}

/// Appends the request's events to the app's raw stream, in the same transaction as its
/// counters: one entry a request (`t` = `r`) with its events (`ev`, a JSON array), so a
/// request costs one XADD however many events it has. (Entries written before session
/// begins and ends were rolled up by the collector carry them as `b` and `x`; the
/// aggregator still counts those.)
fn append(b: &mut Planning, it: &Item, events: Vec<RawEvent<'_>>) {
    let f: Vec<(&'static str, String)> = vec![
        ("t", "r".to_string()),
        ("d", it.req.device_id.clone()),
        ("rt", it.received_ms.to_string()),
        ("ts", (it.req.time * 1000).to_string()),
        (
            "ev",
            serde_json::to_string(&events).unwrap_or_else(|_| "[]".into()),
        ),
    ];
    b.append(&keys::stream(&it.app.id), f);
}

/// A session begin (`sb`) or end (`se`) into the minute and hour rollups and the minute's
/// active devices, in the request's own transaction. It carries nothing else the raw
/// stream serves (the raw-events API and the realtime reports read events), so it costs
/// no stream entry, and no read and acknowledgement by the aggregator: for a
/// begin_session with metrics that was a fifth of the machine.
fn roll_session(b: &mut Planning, it: &Item, at: &Buckets, field: &'static str, keep: Retention) {
    let (app, minute, hour) = (&it.app, it.req.time.div_euclid(60), at.hour_index);
    let found = b
        .memo
        .rolled
        .iter()
        .position(|r| r.minute == minute && r.hour == hour && r.app == app.id);
    let i = match found {
        Some(i) => i,
        None => {
            // First in this batch: number the keys and give them their expiry once.
            let r = keys::rollups_at(&app.id, app.timezone, it.req.time, keep, it.received);
            let minute_at = r.minute.map(|(key, hll, ttl)| {
                let h = b.hash(&key);
                b.expire(&key, ttl);
                b.expire(&hll, ttl);
                (b.places(&[(h, Prefix::None)]), b.hash(&hll))
            });
            let hour_at = r.hour.map(|(key, ttl)| {
                let h = b.hash(&key);
                b.expire(&key, ttl);
                b.places(&[(h, Prefix::None)])
            });
            let rolled = &mut b.memo.rolled;
            rolled.push(Rolled {
                app: app.id.clone(),
                minute,
                hour,
                minute_at,
                hour_at,
            });
            rolled.len() - 1
        }
    };
    let (name, none) = (fixed(b, field), names(b).none);
    let Some(r) = b.memo.rolled.get(i) else {
        return;
    };
    let (minute_at, hour_at) = (r.minute_at, r.hour_at);
    if let Some((places, hll)) = minute_at {
        b.incr_at(places, name, none, 1);
        b.pfadd(hll, &it.req.device_id);
    }
    if let Some(places) = hour_at {
        b.incr_at(places, name, none, 1);
    }
}

/// Plans one event; false when a limit keeps it out.
fn plan_event(
    b: &mut Planning,
    app: &App,
    e: &Event,
    request_at: &Buckets,
    limits: &Limits,
) -> bool {
    if e.internal {
        b.add_meta_member(&app.id, "internal_events", &e.key);
    } else if !b.admit_meta(&app.id, "events", &e.key, limits.event_keys) {
        return false;
    }
    let own;
    let at = if e.time == 0 || Buckets::at(e.time, app.timezone) == *request_at {
        request_at
    } else {
        own = Buckets::at(e.time, app.timezone);
        &own
    };
    let target = Target::hourly(b, app, &Family::event(&e.key), at);
    target.add(b, &[D, H], "c", e.count);
    if let Some(s) = e.sum {
        target.add_float(b, &[D, H], "s", s);
    }
    if let Some(d) = e.dur {
        target.add_float(b, &[D, H], "dur", d);
    }
    for (k, v) in &e.segments {
        if !b.admit(
            &keys::event_segments(&app.id, &e.key),
            k,
            limits.segments_per_event,
        ) {
            continue;
        }
        if !b.admit(
            &keys::segment_values(&app.id, &e.key, k),
            v,
            limits.values_per_segment,
        ) {
            continue;
        }
        let seg = Target::new(b, app, &Family::segment(&e.key, k), at);
        let name = b.name(v);
        let c = fixed(b, ".c");
        seg.add_to(b, &[D], name, c, e.count);
        if let Some(s) = e.sum {
            let suffix = fixed(b, ".s");
            seg.add_float_to(b, &[D], name, suffix, s);
        }
        if let Some(d) = e.dur {
            let suffix = fixed(b, ".dur");
            seg.add_float_to(b, &[D], name, suffix, d);
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_names_are_the_ranges_spelled() {
        for i in 0..RANGES.len() {
            assert_eq!(RANGES[i], i.to_string());
            assert_eq!(FREQUENCY_NAMES[i], format!("f.{i}"));
            assert_eq!(LOYALTY_NAMES[i], format!("l.{i}"));
        }
        for (i, name) in DURATION_NAMES.iter().enumerate() {
            assert_eq!(*name, format!("ds.{i}"));
        }
        let longest = (0..4000).chain([u32::MAX]).map(duration_range).max();
        assert!(longest.is_some_and(|m| (m as usize) < DURATION_NAMES.len()));
        // Every range either function gives has its name.
        let freq = (0..2000)
            .map(|h| frequency_range(Some(h)))
            .chain([frequency_range(None)]);
        assert!(freq.max().is_some_and(|m| (m as usize) < RANGES.len()));
        let loyal = (0..2000)
            .map(loyalty_range)
            .chain([loyalty_range(u32::MAX)]);
        assert!(loyal.max().is_some_and(|m| (m as usize) < RANGES.len()));
    }

    #[test]
    fn ranges_match_countly() {
        assert_eq!(
            [0, 10, 11, 30, 31, 60, 61, 180, 181, 600, 601, 1800, 1801, 3600, 3601]
                .map(duration_range),
            [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7]
        );
        assert_eq!(frequency_range(None), 0);
        assert_eq!(
            [0, 23, 24, 47, 48, 167, 168, 191, 192, 359, 360, 743, 744]
                .map(|h| frequency_range(Some(h))),
            [1, 1, 2, 2, 3, 7, 8, 8, 9, 9, 10, 10, 11]
        );
        assert_eq!(
            [1, 2, 3, 5, 6, 9, 10, 19, 20, 49, 50, 99, 100, 499, 500].map(loyalty_range),
            [0, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8]
        );
    }
}
