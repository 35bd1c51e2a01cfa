//! The Redis key layout. This module is the only place in Tally that spells a key.
//!
//! | key | type | what |
//! |-----|------|------|
//! | `{tally}:apps` | set | every app id |
//! | `{tally}:app:{id}` | hash | the app record (name, timezone, keys, salt, flags) |
//! | `{tally}:appkey:{write_key}` | string | app id for a write key (`app_key`) |
//! | `{id}:dev:{h}` | string | one device's packed state ([`crate::device`]); `h` = hash of the device id |
//! | `{id}:c:{family}:{Y}` | hash | year-level counters: year, month and week totals and uniques |
//! | `{id}:c:{family}:{Y}:{M}` | hash | month-level counters: days |
//! | `{id}:c:{family}:{Y}:{M}:{D}:h` | hash | the day's hour counters (`H.field`) |
//! | `{id}:m:{list}` | set | capped meta lists: countries, os, devices, ..., event keys |
//! | `{id}:m:segs:{e}` / `{id}:m:segv:{e}:{s}` | set | segment keys of an event / values of a segment |
//! | `{id}:schema:{e}` | hash | a collection's typed fields (name -> Rakam type) |
//! | `{id}:up:{h}` / `{id}:users` / `{id}:uschema` | hash, set, hash | a user's profile; the users with one; the profiles' typed fields |
//! | `{id}:stream` | stream | the raw events and session begins/ends, for the aggregator |
//! | `{id}:arc` | hash | the archive's progress: `done` (last archived entry id), `intent` (the batch being written) |
//! | `{id}:arc:lease` | string | which archiver works the app now (expires) |
//! | `{id}:arc:forget` | set | forgotten devices whose rows the archive still holds |
//! | `{id}:mv` | hash | materialized views: table name -> definition and last refresh (JSON) |
//! | `{id}:r:m:{minute}` / `{id}:r:h:{hour}` | hash | minute (UTC) / hour (app-local) rollups |
//! | `{id}:r:u:{minute}` | HyperLogLog | active devices of a minute |
//! | `{id}:r:apps` / `{id}:r:keys:{app_name}` | set | `app_name` values / event keys per `app_name` |
//! | `{id}:r:epoch` | string | bumped when an aggregator takes over another's entries |
//! | `{id}:rtdef` | hash | realtime report definitions |
//! | `{id}:r:rt:{t}:{minute}[...]` | hash, set, HyperLogLog | realtime report data per minute |
//! | `{tally}:appkey2:{key}` | string | app id for a read or master key |
//!
//! Counter families are `users` (sessions, users, locations), the metric families
//! (`devices`, `carriers`, `device_details`, `density`, `langs`, ...), `e:{e}` for an event
//! and `s:{e}:{s}` for one segment of an event, where `{e}` and `{s}` are 64-bit hashes of
//! the event key and segment key (user strings never become key names; their readable
//! forms live in the meta sets).
//!
//! Every key of an app starts with the hash tag `{id}`, so on a Redis Cluster all of one
//! app's keys share one slot. That is what lets a group-commit flush be one MULTI/EXEC per
//! app (see [`crate::commit`]) and the aggregator acknowledge stream entries in the same
//! transaction as their rollups; the trade-off is that one app's load lands on one master
//! (a very large app is bounded by one Redis node), while different apps spread across the
//! cluster. The app registry has its own tag, `{tally}`.

use sha1::{Digest, Sha1};
use std::fmt;
use tally_redis::Route;

/// Where an app's keys live: they all share its hash tag, so one route serves them all
/// (a transaction, a pipeline of reads, a `SCAN` of the app's keys).
pub fn route(app: &AppId) -> Route<'_> {
    Route::Tag(app.as_str())
}

/// Where the app registry lives: its keys share the tag `{tally}`.
pub const REGISTRY: Route<'static> = Route::Tag("tally");

/// An app id: 24 lowercase hex characters, like Countly's ObjectId-based app ids.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AppId(String);

impl AppId {
    /// Parses an app id, refusing anything that is not 24 hex characters.
    pub fn parse(s: &str) -> Option<AppId> {
        (s.len() == 24 && s.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| AppId(s.to_ascii_lowercase()))
    }

    /// A fresh random app id.
    pub fn generate() -> AppId {
        AppId(random_hex(12))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AppId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `n` random bytes as lowercase hex.
pub fn random_hex(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    rand::fill(&mut bytes[..]);
    hex(&bytes)
}

pub fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    push_hex(&mut s, bytes);
    s
}

/// [`hex`], appended to `out`.
fn push_hex(out: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 15) as usize] as char);
    }
}

/// FNV-1a, 64 bit: names in keys must hash the same in every build and on every
/// platform, which `std`'s hasher does not promise; and it is cheap on the write path.
pub fn hash64(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// A counter family: which kind of data a counter hash holds.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Family(std::borrow::Cow<'static, str>);

impl Family {
    /// The family's name as it appears in its keys.
    pub fn name(&self) -> &str {
        &self.0
    }

    /// Sessions, users and locations (Countly's `users` collection).
    pub fn users() -> Family {
        Family("users".into())
    }
    /// A metric family such as `devices` or `device_details` (a fixed name from code).
    pub fn metric(name: &'static str) -> Family {
        Family(std::borrow::Cow::Borrowed(name))
    }
    /// One event key's totals.
    pub fn event(event: &str) -> Family {
        // Built by hand, not with format!: the write path builds one or more per event.
        let mut f = String::with_capacity(18);
        f.push_str("e:");
        push_hex(&mut f, &hash64(event).to_be_bytes());
        Family(f.into())
    }
    /// One segmentation key of one event.
    pub fn segment(event: &str, segment: &str) -> Family {
        let mut f = String::with_capacity(35);
        f.push_str("s:");
        push_hex(&mut f, &hash64(event).to_be_bytes());
        f.push(':');
        push_hex(&mut f, &hash64(segment).to_be_bytes());
        Family(f.into())
    }
}

/// Which counter hash of a family: the year hash (year, month and week counters), a month
/// hash (day counters) or a day's hour hash (hour counters, kept apart so that a read
/// fetches only the hours it answers; small, so Redis keeps it compact).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Period {
    Year(i32),
    Month(i32, u32),
    Hours(i32, u32, u32),
}

pub fn counters(app: &AppId, family: &Family, period: Period) -> String {
    // Built by hand, not with format!: the write path builds dozens per request.
    let mut k = tagged(app, family.0.len() + 20);
    k.push_str(":c:");
    k.push_str(&family.0);
    k.push(':');
    match period {
        Period::Year(y) => push_int(&mut k, i64::from(y)),
        Period::Month(y, m) => {
            push_int(&mut k, i64::from(y));
            k.push(':');
            push_int(&mut k, i64::from(m));
        }
        Period::Hours(y, m, d) => {
            push_int(&mut k, i64::from(y));
            k.push(':');
            push_int(&mut k, i64::from(m));
            k.push(':');
            push_int(&mut k, i64::from(d));
            k.push_str(":h");
        }
    }
    k
}

/// `{app}` with room for `more` bytes.
fn tagged(app: &AppId, more: usize) -> String {
    let mut k = String::with_capacity(app.0.len() + 2 + more);
    push_tag(&mut k, app);
    k
}

/// Appends `{app}`, the hash tag every key of the app starts with.
fn push_tag(out: &mut String, app: &AppId) {
    out.push('{');
    out.push_str(&app.0);
    out.push('}');
}

/// Appends the decimal digits of `n` (no allocation, unlike `to_string`).
pub fn push_int(s: &mut String, n: i64) {
    if n < 0 {
        s.push('-');
    }
    let mut v = n.unsigned_abs();
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    // Only ASCII digits were written.
    for &b in &buf[i..] {
        s.push(char::from(b));
    }
}

/// A device's state key. The device id is hashed (96 bits) so that keys stay short and
/// carry no personal identifier.
pub fn device(app: &AppId, device_id: &str) -> String {
    // Written in place rather than with `format!`: every /i builds one.
    let d = Sha1::digest(device_id.as_bytes());
    let mut k = tagged(app, 29);
    k.push_str(":dev:");
    push_hex(&mut k, &d[..12]);
    k
}

/// A named meta list of an app (`countries`, `os`, `events`, `d-ranges`, ...).
pub fn meta(app: &AppId, list: &str) -> String {
    let mut k = String::new();
    meta_into(&mut k, app, list);
    k
}

/// The meta list whose members' first-seen order is kept too: the event keys.
pub const ORDERED_META: &str = "events";

/// The list of a meta set's members in the order they were first seen (beside the set,
/// on the same node: the same hash tag).
pub fn meta_order(meta_key: &str) -> String {
    format!("{meta_key}:order")
}

/// [`meta`] written into `out` (cleared first), for the hot path to reuse one buffer.
pub fn meta_into(out: &mut String, app: &AppId, list: &str) {
    out.clear();
    push_tag(out, app);
    out.push_str(":m:");
    out.push_str(list);
}

/// The segmentation keys seen for an event.
pub fn event_segments(app: &AppId, event: &str) -> String {
    // By hand: the write path builds one per event (and segment values one per segment).
    let mut k = tagged(app, 24);
    k.push_str(":m:segs:");
    push_hash(&mut k, event);
    k
}

/// The 16 hex digits of [`hash64`] of `s`, appended.
fn push_hash(out: &mut String, s: &str) {
    push_hex(out, &hash64(s).to_be_bytes());
}

/// The typed schema of a collection (an event key): field name -> Rakam type name
/// ([`crate::schema`]).
pub fn schema(app: &AppId, collection: &str) -> String {
    format!("{{{app}}}:schema:{:016x}", hash64(collection))
}

/// A user's profile (Rakam's users, Countly's user details): property -> JSON value, and
/// the profile's own `$id` and `$created`.
pub fn profile(app: &AppId, user: &str) -> String {
    format!("{{{app}}}:up:{:016x}", hash64(user))
}

/// The ids of an app's users that have a profile.
pub fn profiles(app: &AppId) -> String {
    format!("{{{app}}}:users")
}

/// Saved profile filters (Rakam's user segments): table name -> definition (JSON).
pub fn profile_segments(app: &AppId) -> String {
    format!("{{{app}}}:usegments")
}

/// The typed schema of an app's user profiles (as [`schema`] for a collection).
pub fn profile_schema(app: &AppId) -> String {
    format!("{{{app}}}:uschema")
}

/// The values seen for one segmentation key of an event.
pub fn segment_values(app: &AppId, event: &str, segment: &str) -> String {
    let mut k = tagged(app, 41);
    k.push_str(":m:segv:");
    push_hash(&mut k, event);
    k.push(':');
    push_hash(&mut k, segment);
    k
}

/// The app's raw event stream.
pub fn stream(app: &AppId) -> String {
    format!("{{{app}}}:stream")
}

/// The archive's progress through the app's stream ([`stream`]).
pub fn archive_state(app: &AppId) -> String {
    format!("{{{app}}}:arc")
}

/// Devices forgotten since the archiver last rewrote the app's files without them.
pub fn archive_forget(app: &AppId) -> String {
    format!("{{{app}}}:arc:forget")
}

/// The app's materialized views.
pub fn views(app: &AppId) -> String {
    format!("{{{app}}}:mv")
}

/// The lease of the archiver working the app.
pub fn archive_lease(app: &AppId) -> String {
    format!("{{{app}}}:arc:lease")
}

/// Minute rollup of an app: `minute` = UNIX minutes.
pub fn rollup_minute(app: &AppId, minute: i64) -> String {
    format!("{{{app}}}:r:m:{minute}")
}

/// Hour rollup of an app: `hour` = app-local wall-clock hours since 1970.
pub fn rollup_hour(app: &AppId, hour: i64) -> String {
    format!("{{{app}}}:r:h:{hour}")
}

/// Active devices (HyperLogLog) of one minute.
pub fn active_minute(app: &AppId, minute: i64) -> String {
    format!("{{{app}}}:r:u:{minute}")
}

/// The rollups something that happened at `secs` counts in, each with the seconds its key
/// has left to live; a rollup already past its retention is left out (it would expire at
/// once). Shared by the aggregator (events) and the collector (session begins and ends).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RollupsAt {
    /// (minute rollup, the minute's active devices, seconds to live).
    pub minute: Option<(String, String, i64)>,
    /// (hour rollup in the app's timezone, seconds to live).
    pub hour: Option<(String, i64)>,
}

pub fn rollups_at(
    app: &AppId,
    tz: chrono_tz::Tz,
    secs: i64,
    keep: tally_config::Retention,
    now_secs: i64,
) -> RollupsAt {
    let minute = secs.div_euclid(60);
    let m_expire = minute * 60 + 60 + keep.minute_secs;
    let hour = i64::from(crate::time::Buckets::at(secs, tz).hour_index);
    // The hour's start in UTC seconds is within a day of `hour * 3600`.
    let h_expire = hour * 3600 + 3600 + 86_400 + keep.hour_secs;
    RollupsAt {
        minute: (m_expire > now_secs).then(|| {
            (
                rollup_minute(app, minute),
                active_minute(app, minute),
                m_expire - now_secs,
            )
        }),
        hour: (h_expire > now_secs).then(|| (rollup_hour(app, hour), h_expire - now_secs)),
    }
}

/// The `app_name` segmentation values seen in events.
pub fn rollup_app_names(app: &AppId) -> String {
    format!("{{{app}}}:r:apps")
}

/// The event keys seen with one `app_name`.
pub fn rollup_keys_by_app(app: &AppId, app_name: &str) -> String {
    format!("{{{app}}}:r:keys:{:016x}", hash64(app_name))
}

/// Bumped whenever an aggregator claims another's pending entries of this app.
pub fn aggregator_epoch(app: &AppId) -> String {
    format!("{{{app}}}:r:epoch")
}

/// Every rollup key of an app (not the stream, not the Countly counters).
pub fn rollup_pattern(app: &AppId) -> String {
    format!("{{{app}}}:r:*")
}

/// The glob that matches every key of an app (for SCAN-based deletion).
pub fn app_pattern(app: &AppId) -> String {
    format!("{{{app}}}:*")
}

/// The app's devices' current consents: device id -> JSON object.
pub fn consents(app: &AppId) -> String {
    let mut k = tagged(app, 10);
    k.push_str(":consents");
    k
}

/// The app's event groups: group id -> its JSON document.
pub fn event_groups(app: &AppId) -> String {
    let mut k = tagged(app, 14);
    k.push_str(":event_groups");
    k
}

/// Every device state key of an app, for SCAN ([`device`]).
pub fn device_pattern(app: &AppId) -> String {
    format!("{{{app}}}:dev:*")
}

/// Every app id. The registry keys share the `{tally}` hash tag so that creating or
/// deleting an app is one transaction on a cluster too; they are read once per app per
/// process (then cached), so their one slot is no hot spot.
pub const APPS: &str = "{tally}:apps";

pub fn app_record(app: &AppId) -> String {
    format!("{{tally}}:app:{app}")
}

pub fn app_by_write_key(write_key: &str) -> String {
    format!("{{tally}}:appkey:{write_key}")
}

/// App id for a read or master key (the Rakam-style routes send only a key).
pub fn app_by_other_key(key: &str) -> String {
    format!("{{tally}}:appkey2:{key}")
}

/// The app's realtime report definitions: table name -> JSON.
pub fn realtime_defs(app: &AppId) -> String {
    format!("{{{app}}}:rtdef")
}

/// One realtime report's sums, counts, minima and maxima of one minute.
pub fn realtime_minute(app: &AppId, table: &str, minute: i64) -> String {
    format!("{{{app}}}:r:rt:{:016x}:{minute}", hash64(table))
}

/// Exact distinct values of one measure of a report in one minute.
pub fn realtime_unique(app: &AppId, table: &str, minute: i64, measure: usize) -> String {
    format!("{{{app}}}:r:rt:{:016x}:{minute}:u{measure}", hash64(table))
}

/// Approximate distinct values (HyperLogLog) of one measure, minute and dimension values.
pub fn realtime_hll(app: &AppId, table: &str, minute: i64, measure: usize, combo: &str) -> String {
    format!(
        "{{{app}}}:r:rt:{:016x}:{minute}:h{measure}:{:016x}",
        hash64(table),
        hash64(combo)
    )
}

/// Every data key of one realtime report.
pub fn realtime_pattern(app: &AppId, table: &str) -> String {
    format!("{{{app}}}:r:rt:{:016x}:*", hash64(table))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash64_is_fnv1a() {
        // Published FNV-1a 64 test vectors: these values are part of the key layout.
        assert_eq!(hash64(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(hash64("a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(hash64("foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn keys_built_by_hand_match_their_layout() {
        let app = AppId("0123456789abcdef01234567".into());
        let f = Family::users();
        assert_eq!(
            counters(&app, &f, Period::Year(2024)),
            "{0123456789abcdef01234567}:c:users:2024"
        );
        assert_eq!(
            counters(&app, &f, Period::Month(2024, 3)),
            "{0123456789abcdef01234567}:c:users:2024:3"
        );
        assert_eq!(
            counters(&app, &f, Period::Hours(2024, 12, 31)),
            "{0123456789abcdef01234567}:c:users:2024:12:31:h"
        );
        assert_eq!(meta(&app, "os"), "{0123456789abcdef01234567}:m:os");
        // SHA-1("abc") = a9993e364706816aba3e25717850c26c9cd0d89d; the key keeps 96 bits.
        assert_eq!(
            device(&app, "abc"),
            "{0123456789abcdef01234567}:dev:a9993e364706816aba3e2571"
        );
        for n in [0i64, 7, 10, 99, 100, -5, i64::MAX, i64::MIN] {
            let mut s = String::new();
            push_int(&mut s, n);
            assert_eq!(s, n.to_string());
        }
        // Hashed names: as `format!("{:016x}")` spells them, which stored keys have.
        let (e, g) = (hash64("buy"), hash64("plan"));
        assert_eq!(
            event_segments(&app, "buy"),
            format!("{{0123456789abcdef01234567}}:m:segs:{e:016x}")
        );
        assert_eq!(
            segment_values(&app, "buy", "plan"),
            format!("{{0123456789abcdef01234567}}:m:segv:{e:016x}:{g:016x}")
        );
        assert_eq!(Family::event("buy").name(), format!("e:{e:016x}"));
        assert_eq!(
            Family::segment("buy", "plan").name(),
            format!("s:{e:016x}:{g:016x}")
        );
    }

    #[test]
    fn app_ids_are_24_hex() {
        let id = AppId::generate();
        assert_eq!(id.as_str().len(), 24);
        assert_eq!(AppId::parse(id.as_str()), Some(id));
        assert!(AppId::parse("xyz").is_none());
        assert!(AppId::parse("zzzzzzzzzzzzzzzzzzzzzzzz").is_none());
    }

    #[test]
    fn every_app_key_carries_the_app_hash_tag() {
        let app = AppId::parse("0123456789abcdef01234567").unwrap_or_else(AppId::generate);
        let tag = format!("{{{app}}}:");
        for k in [
            counters(&app, &Family::users(), Period::Year(2024)),
            counters(&app, &Family::event("a.b{c}"), Period::Month(2024, 3)),
            device(&app, "device with spaces"),
            meta(&app, "countries"),
            event_segments(&app, "x"),
            segment_values(&app, "x", "y"),
        ] {
            assert!(k.starts_with(&tag), "{k}");
            assert!(!k[tag.len()..].contains(['{', '}', ' ']), "{k}");
        }
    }
}
