//! Per-device state: what decides new users, exact unique users, session ranges and
//! duplicate requests.
//!
//! # The uniqueness scheme
//!
//! A device is unique in a bucket (hour, day, week, month, year) when it has at least one
//! session there. Countly decides this by comparing the last session time `ls` with "now",
//! which over-counts as soon as an offline SDK queue replays an old session after a newer
//! one. Tally instead remembers *which* buckets the device was active in, as one rolling
//! bitmap per level, anchored at the newest bucket seen:
//!
//! | level | window | bytes |
//! |-------|--------|-------|
//! | hour  | 864 hours (36 days) | 108 |
//! | day   | 64 days   | 8 |
//! | week  | 64 weeks  | 8 |
//! | month | 32 months | 4 |
//! | year  | 64 years  | 8 |
//!
//! A session is unique at a level exactly when its bucket's bit was not yet set, whatever
//! the order the sessions arrive in, as long as the session is no older than the window
//! (at least 36 days at every level). A session older than a level's window is not counted
//! as unique at that level: Tally would rather miss a unique than count one twice.
//!
//! # Layout and memory
//!
//! The state is one Redis string (a packed little-endian blob, version byte first), read
//! with GET and written with SET inside the group-commit transaction (see
//! [`crate::commit`]). A window is stored as the distances of its set bits from its anchor
//! when that is shorter than its bitmap, so a device with a few sessions a day takes
//! about 80 bytes, and none more than [`MAX_ENCODED_LEN`]. The measured Redis memory per
//! device (key, value and allocator overhead) is reported by `deploy/bench`.

use crate::time::Buckets;

/// A rolling bitmap over a monotonic index: bit `i` lives at position `i % BITS` and is
/// meaningful only while `anchor - BITS < i <= anchor`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window<const BYTES: usize> {
    /// The newest index ever set (0 while empty).
    pub anchor: u32,
    pub bits: [u8; BYTES],
}

impl<const BYTES: usize> Default for Window<BYTES> {
    fn default() -> Self {
        Window {
            anchor: 0,
            bits: [0; BYTES],
        }
    }
}

impl<const BYTES: usize> Window<BYTES> {
    const BITS: u32 = (BYTES * 8) as u32;

    fn pos(i: u32) -> (usize, u8) {
        let p = i % Self::BITS;
        ((p / 8) as usize, 1u8 << (p % 8))
    }

    /// Whether `i` was already set; `None` when `i` is older than the window.
    pub fn get(&self, i: u32) -> Option<bool> {
        if i > self.anchor {
            return Some(false);
        }
        if self.anchor - i >= Self::BITS {
            return None;
        }
        let (byte, mask) = Self::pos(i);
        Some(self.bits[byte] & mask != 0)
    }

    /// Marks `i` active. Returns `Some(true)` when it was not active before (the device is
    /// unique in that bucket), `Some(false)` when it was, `None` when `i` is too old to tell.
    pub fn mark(&mut self, i: u32) -> Option<bool> {
        if i > self.anchor {
            let advance = i - self.anchor;
            if advance >= Self::BITS || self.anchor == 0 {
                self.bits = [0; BYTES];
            } else {
                for j in self.anchor + 1..=i {
                    let (byte, mask) = Self::pos(j);
                    self.bits[byte] &= !mask;
                }
            }
            self.anchor = i;
        }
        let was = self.get(i)?;
        let (byte, mask) = Self::pos(i);
        self.bits[byte] |= mask;
        Some(!was)
    }
}

impl<const BYTES: usize> Window<BYTES> {
    /// Marks every index `other` has marked (those still inside this window): the union of
    /// two devices' activity, when one device becomes another.
    pub fn absorb(&mut self, other: &Window<BYTES>) {
        if other.anchor == 0 {
            return;
        }
        let oldest = other.anchor.saturating_sub(Self::BITS - 1).max(1);
        // Newest first: marking the newest moves the anchor once, then older ones fill in.
        for i in (oldest..=other.anchor).rev() {
            if other.get(i) == Some(true) {
                self.mark(i);
            }
        }
    }
}

/// Which buckets a session is the device's first in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Uniques {
    pub hour: bool,
    pub day: bool,
    pub week: bool,
    pub month: bool,
    pub year: bool,
}

/// How many metric snapshots a device keeps (see [`DeviceState::snapshots`]).
pub const SNAPSHOTS: usize = 12;
/// How many recent request fingerprints a device keeps for duplicate detection.
pub const DEDUP_SLOTS: usize = 2;

/// Everything Tally remembers about one device of one app.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceState {
    /// A session is open (begin_session seen, end_session not yet).
    pub session_open: bool,
    /// First session (UNIX seconds); 0 = never had a session.
    pub first_seen: u32,
    /// Latest session start (UNIX seconds), only moves forward.
    pub last_session: u32,
    /// Latest end_session (UNIX seconds): the start of the session cooldown.
    pub last_end: u32,
    /// Seconds of the open session so far.
    pub session_secs: u32,
    /// Sessions ever.
    pub session_count: u32,
    /// Total session seconds ever.
    pub total_secs: u32,
    /// Requests received before the device's first session. Countly does not show a
    /// device's requests (`e`) until it has had a session; they are added then.
    pub pending_requests: u16,
    pub hours: Window<108>,
    pub days: Window<8>,
    pub weeks: Window<8>,
    pub months: Window<4>,
    pub years: Window<8>,
    /// 32-bit fingerprints of the device's last value per metric (and country), to count a
    /// changed value as unique, as Countly does. 0 = none yet.
    pub snapshots: [u32; SNAPSHOTS],
    /// (fingerprint, receive time) of the last requests, newest first.
    pub recent: [(u64, u32); DEDUP_SLOTS],
}

const VERSION: u8 = 2;
/// Largest encoded state in bytes (every window dense, every slot used). A device with a
/// few sessions a day encodes to well under half of it.
pub const MAX_ENCODED_LEN: usize = 2 // version, flags
    + 6 * 4 + 2 // counters and pending requests
    + 5 * (4 + 1) + 108 + 8 + 8 + 4 + 8 // windows: anchor, tag, bitmap
    + 2 + SNAPSHOTS * 4 // presence mask, snapshots
    + 1 + DEDUP_SLOTS * 12; // count, fingerprints

/// The stored blob is not a device state this version can read.
#[derive(Debug, thiserror::Error)]
#[error("device state blob is corrupt or of an unknown version")]
pub struct CorruptState;

struct Writer(Vec<u8>);
impl Writer {
    fn u8(&mut self, v: u8) {
        self.0.push(v)
    }
    fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_le_bytes())
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes())
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes())
    }
    /// A window as its anchor, then either the distances back from the anchor of its set
    /// bits (when that is shorter) or `0xFF` and the whole bitmap.
    fn window<const N: usize>(&mut self, w: &Window<N>) {
        self.u32(w.anchor);
        let wide = Window::<N>::BITS > 256;
        let bits = Window::<N>::BITS;
        let mut set: Vec<u32> = Vec::new();
        for (i, byte) in w.bits.iter().enumerate().filter(|(_, b)| **b != 0) {
            for k in (0..8).filter(|k| byte & (1 << k) != 0) {
                let p = (i * 8 + k) as u32;
                let d = (w.anchor % bits + bits - p) % bits;
                if d <= w.anchor {
                    set.push(d);
                }
            }
        }
        let width = if wide { 2 } else { 1 };
        if set.len() < 0xFF && set.len() * width < N {
            self.u8(set.len() as u8);
            for d in set {
                if wide {
                    self.u16(d as u16);
                } else {
                    self.u8(d as u8);
                }
            }
        } else {
            self.u8(0xFF);
            self.0.extend_from_slice(&w.bits);
        }
    }
}

struct Reader<'a>(&'a [u8]);
impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], CorruptState> {
        if self.0.len() < N {
            return Err(CorruptState);
        }
        let (head, rest) = self.0.split_at(N);
        self.0 = rest;
        head.try_into().map_err(|_| CorruptState)
    }
    fn u8(&mut self) -> Result<u8, CorruptState> {
        Ok(self.take::<1>()?[0])
    }
    fn u16(&mut self) -> Result<u16, CorruptState> {
        Ok(u16::from_le_bytes(self.take()?))
    }
    fn u32(&mut self) -> Result<u32, CorruptState> {
        Ok(u32::from_le_bytes(self.take()?))
    }
    fn u64(&mut self) -> Result<u64, CorruptState> {
        Ok(u64::from_le_bytes(self.take()?))
    }
    fn window<const N: usize>(&mut self) -> Result<Window<N>, CorruptState> {
        let anchor = self.u32()?;
        let n = self.u8()?;
        if n == 0xFF {
            return Ok(Window {
                anchor,
                bits: self.take()?,
            });
        }
        let mut w = Window {
            anchor,
            bits: [0; N],
        };
        for _ in 0..n {
            let d = if Window::<N>::BITS > 256 {
                u32::from(self.u16()?)
            } else {
                u32::from(self.u8()?)
            };
            if d >= Window::<N>::BITS || d > anchor {
                return Err(CorruptState);
            }
            let (byte, mask) = Window::<N>::pos(anchor - d);
            w.bits[byte] |= mask;
        }
        Ok(w)
    }
}

impl DeviceState {
    pub fn is_new(&self) -> bool {
        self.first_seen == 0
    }

    /// Records a session at `b` and reports in which buckets it is the device's first.
    pub fn mark_session(&mut self, b: &Buckets) -> Uniques {
        Uniques {
            hour: self.hours.mark(b.hour_index).unwrap_or(false),
            day: self.days.mark(b.day_index).unwrap_or(false),
            week: self.weeks.mark(b.week_index).unwrap_or(false),
            month: self.months.mark(b.month_index).unwrap_or(false),
            year: self.years.mark(b.year_index).unwrap_or(false),
        }
    }

    /// Whether `fingerprint` was seen within `window_secs` before `now`.
    pub fn is_duplicate(&self, fingerprint: u64, now: u32, window_secs: u32) -> bool {
        self.recent
            .iter()
            .any(|&(f, at)| f == fingerprint && at != 0 && now.saturating_sub(at) <= window_secs)
    }

    pub fn remember_request(&mut self, fingerprint: u64, now: u32) {
        self.recent.rotate_right(1);
        self.recent[0] = (fingerprint, now);
    }

    /// Whether this is the state of a device never seen.
    pub fn is_blank(&self) -> bool {
        *self == DeviceState::default()
    }

    /// Takes over `old`'s history when the device's id changes with merge (Countly's
    /// `old_device_id`): the first time it was seen, its sessions, its activity windows
    /// (so no bucket either id was active in counts it as unique again), its metric
    /// values where this device has none, its open session if it was seen last, and its
    /// recent requests (a retry sent under the old id is still recognised).
    pub fn absorb(&mut self, old: &DeviceState) {
        if old.is_blank() {
            return;
        }
        if self.is_blank() {
            *self = old.clone();
            return;
        }
        let old_is_latest = old.last_session > self.last_session;
        // The earlier first session, 0 being "none".
        self.first_seen = match (self.first_seen, old.first_seen) {
            (0, x) | (x, 0) => x,
            (a, b) => a.min(b),
        };
        self.last_session = self.last_session.max(old.last_session);
        self.last_end = self.last_end.max(old.last_end);
        self.session_count = self.session_count.saturating_add(old.session_count);
        self.total_secs = self.total_secs.saturating_add(old.total_secs);
        self.pending_requests = self.pending_requests.saturating_add(old.pending_requests);
        if old_is_latest {
            self.session_open = old.session_open;
            self.session_secs = old.session_secs;
        }
        self.hours.absorb(&old.hours);
        self.days.absorb(&old.days);
        self.weeks.absorb(&old.weeks);
        self.months.absorb(&old.months);
        self.years.absorb(&old.years);
        for (mine, theirs) in self.snapshots.iter_mut().zip(old.snapshots) {
            if *mine == 0 {
                *mine = theirs;
            }
        }
        let mut recent: Vec<(u64, u32)> = self
            .recent
            .iter()
            .chain(old.recent.iter())
            .copied()
            .filter(|(_, at)| *at != 0)
            .collect();
        recent.sort_by_key(|r| std::cmp::Reverse(r.1));
        recent.dedup_by_key(|r| r.0);
        self.recent = [(0, 0); DEDUP_SLOTS];
        for (slot, r) in self.recent.iter_mut().zip(recent) {
            *slot = r;
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer(Vec::with_capacity(MAX_ENCODED_LEN));
        w.u8(VERSION);
        w.u8(u8::from(self.session_open));
        for v in [
            self.first_seen,
            self.last_session,
            self.last_end,
            self.session_secs,
            self.session_count,
            self.total_secs,
        ] {
            w.u32(v);
        }
        w.u16(self.pending_requests);
        w.window(&self.hours);
        w.window(&self.days);
        w.window(&self.weeks);
        w.window(&self.months);
        w.window(&self.years);
        let mask = self
            .snapshots
            .iter()
            .enumerate()
            .filter(|(_, s)| **s != 0)
            .fold(0u16, |m, (i, _)| m | 1 << i);
        w.u16(mask);
        for s in self.snapshots.iter().filter(|s| **s != 0) {
            w.u32(*s);
        }
        let recent: Vec<&(u64, u32)> = self.recent.iter().filter(|(_, at)| *at != 0).collect();
        w.u8(recent.len() as u8);
        for (f, at) in recent {
            w.u64(*f);
            w.u32(*at);
        }
        w.0
    }

    pub fn decode(bytes: &[u8]) -> Result<DeviceState, CorruptState> {
        let mut r = Reader(bytes);
        if r.u8()? != VERSION {
            return Err(CorruptState);
        }
        let session_open = r.u8()? & 1 == 1;
        let mut s = DeviceState {
            session_open,
            first_seen: r.u32()?,
            last_session: r.u32()?,
            last_end: r.u32()?,
            session_secs: r.u32()?,
            session_count: r.u32()?,
            total_secs: r.u32()?,
            pending_requests: r.u16()?,
            hours: r.window()?,
            days: r.window()?,
            weeks: r.window()?,
            months: r.window()?,
            years: r.window()?,
            ..Default::default()
        };
        let mask = r.u16()?;
        for (i, slot) in s.snapshots.iter_mut().enumerate() {
            if mask & (1 << i) != 0 {
                *slot = r.u32()?;
            }
        }
        let n = usize::from(r.u8()?);
        if n > DEDUP_SLOTS {
            return Err(CorruptState);
        }
        for slot in s.recent.iter_mut().take(n) {
            *slot = (r.u64()?, r.u32()?);
        }
        if !r.0.is_empty() {
            return Err(CorruptState);
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_merged_device_keeps_both_histories() {
        let mut old = DeviceState::default();
        let b = |ts: i64| crate::time::Buckets::at(ts, chrono_tz::UTC);
        old.mark_session(&b(1_729_500_000));
        old.first_seen = 1_729_500_000;
        old.last_session = 1_729_500_000;
        old.session_count = 3;
        old.snapshots[2] = 7;
        let mut new = DeviceState::default();
        new.mark_session(&b(1_729_600_000));
        new.first_seen = 1_729_600_000;
        new.last_session = 1_729_600_000;
        new.session_count = 1;
        new.snapshots[2] = 9;
        new.absorb(&old);
        assert_eq!(new.first_seen, 1_729_500_000);
        assert_eq!(new.last_session, 1_729_600_000);
        assert_eq!(new.session_count, 4);
        assert_eq!(new.snapshots[2], 9, "the new device's value wins");
        // The old device's day is not unique again.
        assert!(!new.clone().mark_session(&b(1_729_500_100)).day);
        let mut blank = DeviceState::default();
        blank.absorb(&old);
        assert_eq!(blank, old);
    }

    #[test]
    fn window_marks_each_index_once_in_any_order() {
        let mut w = Window::<8>::default();
        assert_eq!(w.mark(100), Some(true));
        assert_eq!(w.mark(90), Some(true));
        assert_eq!(w.mark(100), Some(false));
        assert_eq!(w.mark(90), Some(false));
        assert_eq!(w.mark(37), Some(true)); // 63 back: still inside
        assert_eq!(w.mark(36), None); // 64 back: outside
        assert_eq!(w.mark(101), Some(true));
        // Moving the anchor forward forgets what slid out, and only that.
        assert_eq!(w.mark(150), Some(true));
        assert_eq!(w.mark(100), Some(false));
        assert_eq!(w.mark(90), Some(false));
        assert_eq!(w.mark(1000), Some(true));
        assert_eq!(w.mark(999), Some(true));
        assert_eq!(w.get(150), None);
    }

    #[test]
    fn state_round_trips_and_has_the_documented_size() {
        let mut s = DeviceState {
            session_open: true,
            first_seen: 1,
            last_session: 2,
            last_end: 3,
            session_secs: 4,
            session_count: 5,
            total_secs: 6,
            pending_requests: 7,
            ..Default::default()
        };
        s.hours.mark(500_000);
        s.years.mark(2024);
        s.snapshots[3] = 99;
        s.remember_request(42, 1000);
        let bytes = s.encode();
        assert!(bytes.len() < MAX_ENCODED_LEN / 2, "{} bytes", bytes.len());
        assert_eq!(DeviceState::decode(&bytes).ok(), Some(s.clone()));
        assert!(DeviceState::decode(&bytes[1..]).is_err());
        assert!(DeviceState::decode(&bytes[..bytes.len() - 1]).is_err());
        assert!(DeviceState::decode(b"").is_err());
        // A device active every hour for 36 days: dense windows, still bounded.
        for h in 0..864 {
            s.hours.mark(500_000 + h);
            s.days.mark(20_000 + h / 24);
        }
        for i in 0..SNAPSHOTS {
            s.snapshots[i] = 7;
        }
        s.remember_request(43, 1001);
        let dense = s.encode();
        assert!(dense.len() <= MAX_ENCODED_LEN, "{} bytes", dense.len());
        assert_eq!(DeviceState::decode(&dense).ok(), Some(s));
    }

    #[test]
    fn duplicates_are_remembered_within_the_window_only() {
        let mut s = DeviceState::default();
        s.remember_request(7, 1000);
        s.remember_request(8, 1001);
        assert!(s.is_duplicate(7, 1100, 600));
        assert!(!s.is_duplicate(7, 2000, 600));
        s.remember_request(9, 1002);
        assert!(!s.is_duplicate(7, 1100, 600)); // pushed out
        assert!(!s.is_duplicate(0, 1100, 600));
    }
}

/// Metrics Tally aggregates (the collector counts them; the reader groups devices by
/// them): the SDK name, the counter family, the meta list and the slot
/// of the device's snapshot used to detect a changed value.
#[derive(Debug, PartialEq, Eq)]
pub struct MetricSpec {
    pub name: &'static str,
    pub family: &'static str,
    pub meta: &'static str,
    pub slot: usize,
}

pub const METRICS: &[MetricSpec] = &[
    MetricSpec {
        name: "_os",
        family: "device_details",
        meta: "os",
        slot: 0,
    },
    MetricSpec {
        name: "_os_version",
        family: "device_details",
        meta: "os_versions",
        slot: 1,
    },
    MetricSpec {
        name: "_resolution",
        family: "device_details",
        meta: "resolutions",
        slot: 2,
    },
    MetricSpec {
        name: "_app_version",
        family: "device_details",
        meta: "app_versions",
        slot: 3,
    },
    MetricSpec {
        name: "_device_type",
        family: "device_details",
        meta: "device_type",
        slot: 4,
    },
    MetricSpec {
        name: "_device",
        family: "devices",
        meta: "devices",
        slot: 5,
    },
    MetricSpec {
        name: "_manufacturer",
        family: "devices",
        meta: "manufacturers",
        slot: 6,
    },
    MetricSpec {
        name: "_carrier",
        family: "carriers",
        meta: "carriers",
        slot: 7,
    },
    MetricSpec {
        name: "_density",
        family: "density",
        meta: "density",
        slot: 8,
    },
    MetricSpec {
        name: "_locale",
        family: "langs",
        meta: "langs",
        slot: 9,
    },
];

/// The snapshot slot of the device's country.
pub const COUNTRY_SLOT: usize = 10;

/// The snapshot slot of the device's city.
pub const CITY_SLOT: usize = 11;

// Every slot must exist in the device state.
const _: () = {
    assert!(COUNTRY_SLOT < SNAPSHOTS && CITY_SLOT < SNAPSHOTS && CITY_SLOT != COUNTRY_SLOT);
    let mut i = 0;
    while i < METRICS.len() {
        assert!(METRICS[i].slot < COUNTRY_SLOT);
        i += 1;
    }
};

/// The 32-bit fingerprint of a metric value a device state keeps (0 is "none").
pub fn fingerprint(value: &str) -> u32 {
    (crate::keys::hash64(value) as u32) | 1
}
