//! What a batch plans against and accumulates: the keys to read first ([`ReadSet`]), then
//! the device states, set admissions and numbered counter increments ([`Batch`]) that the
//! transaction writes. No I/O here: [`super::transaction`] reads and writes.

use crate::device::DeviceState;
use rustc_hash::FxHashMap as HashMap;
// Maps keyed by text that clients choose (device ids, metric and segment values, event
// keys) are keyed per process ([`crate::texthash`]), so crafted collisions cannot make a
// batch quadratic. Maps keyed by the batch's own numbers use the faster FxHash.
use crate::texthash::{TextMap, TextSet};

/// The keys an item needs read before it can plan.
#[derive(Default)]
pub struct ReadSet {
    pub(super) devices: Vec<String>,
    /// Sets and the members to ask about, each once (most requests of a batch ask about
    /// the same few values, so a copy is made only the first time).
    pub(super) members: Vec<(String, TextSet<String>)>,
    pub(super) sets: SetIndex,
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

    pub(super) fn ask(&mut self, i: usize, member: &str) {
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
pub(super) struct SetIndex {
    pub(super) by_key: TextMap<String, usize>,
    pub(super) meta: Vec<(crate::keys::AppId, &'static str, usize)>,
    pub(super) buf: String,
}

impl SetIndex {
    const META_SEEN: usize = 64;

    /// The index of `key` in `list`, appended with `empty()` if new.
    pub(super) fn of<T>(
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

    pub(super) fn of_meta<T>(
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

#[derive(Debug, Clone, Copy)]
pub(super) enum Num {
    Int(i64),
    Float(f64),
}

impl Num {
    pub(super) fn plus(self, other: Num) -> Num {
        match (self, other) {
            (Num::Int(a), Num::Int(b)) => Num::Int(a.saturating_add(b)),
            (Num::Int(a), Num::Float(b)) | (Num::Float(b), Num::Int(a)) => Num::Float(a as f64 + b),
            (Num::Float(a), Num::Float(b)) => Num::Float(a + b),
        }
    }
}

#[derive(Default)]
pub(super) struct SetSlot {
    pub(super) card: usize,
    pub(super) present: TextSet<String>,
    pub(super) added: Vec<String>,
    /// The meta list keeps the order its members were first seen in (a list beside the
    /// set, [`crate::keys::meta_order`]): Countly answers the event keys in that order.
    pub(super) ordered: bool,
}

pub(super) struct DeviceSlot {
    pub(super) original: Option<Vec<u8>>,
    pub(super) state: DeviceState,
    /// The device is gone (its id changed with merge): its key is deleted.
    pub(super) forgotten: bool,
}

/// A device key's place in the batch ([`Batch::device_id`]): a request looks its device
/// up once, not on every read and write of its state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotIndex(pub(super) usize);

/// A key the batch writes (a counter hash, or a HyperLogLog), by number: hashing and
/// comparing a number, not a key of some fifty bytes, on every one of a request's
/// hundred-odd increments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct HashId(pub(super) u32);

/// A name used in counter fields (a metric value, `t`, `f.3`), by number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NameId(pub(super) u32);

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
pub struct PlacesId(pub(super) u32);

/// An increment as planned: `<name><suffix>` at every place of `places`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct Cell {
    pub(super) places: PlacesId,
    pub(super) name: NameId,
    pub(super) suffix: NameId,
}

/// One counter field in parts: `<prefix><name><suffix>` of a hash. Its text is written
/// once per batch, when the transaction is packed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct Field {
    pub(super) hash: HashId,
    pub(super) prefix: Prefix,
    pub(super) name: NameId,
    pub(super) suffix: NameId,
}

/// Strings numbered in the order they were first seen.
#[derive(Default)]
pub(super) struct Interner {
    pub(super) ids: TextMap<String, u32>,
    pub(super) names: Vec<String>,
}

impl Interner {
    pub(super) fn id(&mut self, s: &str) -> u32 {
        if let Some(&id) = self.ids.get(s) {
            return id;
        }
        let id = self.names.len() as u32;
        self.ids.insert(s.to_string(), id);
        self.names.push(s.to_string());
        id
    }

    pub(super) fn get(&self, id: u32) -> &str {
        self.names.get(id as usize).map_or("", String::as_str)
    }
}

/// The state an item plans against and the writes it accumulates.
#[derive(Default)]
pub struct Batch {
    /// Device key -> its slot in `devices`.
    pub(super) device_index: TextMap<String, usize>,
    pub(super) devices: Vec<DeviceSlot>,
    pub(super) sets: Vec<(String, SetSlot)>,
    pub(super) set_index: SetIndex,
    pub(super) hashes: Interner,
    pub(super) names: Interner,
    pub(super) places: Vec<Vec<(HashId, Prefix)>>,
    pub(super) place_ids: HashMap<Vec<(HashId, Prefix)>, u32>,
    pub(super) incrs: HashMap<Cell, Num>,
    /// Stream appends, in order: (stream key, fields).
    pub(super) appends: Vec<(String, Vec<(&'static str, String)>)>,
    /// HyperLogLog key -> members to add.
    pub(super) hll: HashMap<HashId, Vec<String>>,
    /// Key -> seconds it has left to live (the longest asked for).
    pub(super) expire: HashMap<String, i64>,
    pub(super) corrupt_states: u64,
    pub(super) limit_drops: u64,
}

impl Batch {
    /// The place of a device key the item declared in [`Work::reads`] (the read phase
    /// has put every declared key in already; an undeclared one starts afresh).
    pub fn device_id(&mut self, key: &str) -> SlotIndex {
        if let Some(&i) = self.device_index.get(key) {
            return SlotIndex(i);
        }
        self.add_device(key.to_string(), None, DeviceState::default())
    }

    /// The state of a device, to read or change.
    pub fn device(&mut self, id: SlotIndex) -> &mut DeviceState {
        &mut self.devices[id.0].state
    }

    /// Deletes a device's state with the batch (it became another device). A later item of
    /// the batch that names it again starts it afresh.
    pub fn forget_device(&mut self, id: SlotIndex) {
        let slot = &mut self.devices[id.0];
        slot.state = DeviceState::default();
        slot.forgotten = true;
    }

    pub(super) fn add_device(
        &mut self,
        key: String,
        original: Option<Vec<u8>>,
        state: DeviceState,
    ) -> SlotIndex {
        let i = self.devices.len();
        self.devices.push(DeviceSlot {
            original,
            state,
            forgotten: false,
        });
        self.device_index.insert(key, i);
        SlotIndex(i)
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
        if list == crate::keys::ORDERED_META {
            self.sets[i].1.ordered = true;
        }
        self.admit_at(i, member, cap)
    }

    pub(super) fn admit_at(&mut self, i: usize, member: &str, cap: usize) -> bool {
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

    pub(super) fn add(&mut self, places: PlacesId, name: NameId, suffix: NameId, by: Num) {
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
    pub(super) fn fields(&self) -> HashMap<Field, Num> {
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
    pub(super) fn field_text(&self, f: &Field, out: &mut String) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    pub(super) fn increments_merge_over_places_names_and_requests() {
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
