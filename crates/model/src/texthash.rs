//! Hash maps keyed by text that clients choose: device ids, metric and segment values,
//! event keys, query parameter names, app keys.
//!
//! Such a map must not let crafted keys collide, or one request could make a batch
//! quadratic. std's SipHash is keyed per process and does that, but it was about a tenth
//! of the group commit's CPU on the write path (README, "Measured figures"). These maps use
//! foldhash instead (already in the tree through actix), keyed with 64 bits from the
//! operating system's random generator once per process plus a fresh random seed per map,
//! so crafting collisions takes a key that never leaves the process. foldhash's own
//! `RandomState` seeds itself from addresses and the clock, which is why Tally seeds it
//! here. foldhash is not a cryptographic hash, so every map of this kind is also bounded:
//! a batch by `TALLY_FLUSH_MAX_REQUESTS`, a request by its limits.

use foldhash::fast::{FoldHasher, SeedableRandomState};
use foldhash::SharedSeed;
use std::collections::{HashMap, HashSet};
use std::hash::BuildHasher;
use std::sync::OnceLock;

/// The hasher of [`TextMap`] and [`TextSet`]: foldhash with the process's random key.
#[derive(Clone, Debug)]
pub struct TextState(SeedableRandomState);

impl Default for TextState {
    fn default() -> Self {
        static SHARED: OnceLock<SharedSeed> = OnceLock::new();
        let shared = SHARED.get_or_init(|| SharedSeed::from_u64(rand::random()));
        TextState(SeedableRandomState::with_seed(rand::random(), shared))
    }
}

impl BuildHasher for TextState {
    type Hasher = FoldHasher<'static>;

    fn build_hasher(&self) -> Self::Hasher {
        self.0.build_hasher()
    }
}

pub type TextMap<K, V> = HashMap<K, V, TextState>;
pub type TextSet<K> = HashSet<K, TextState>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_are_keyed_apart() {
        // Two maps hash the same text differently (their seeds differ), so a collision
        // found against one map says nothing about another.
        let (a, b) = (TextState::default(), TextState::default());
        let same = (0..64)
            .filter(|i| a.hash_one(format!("device-{i}")) == b.hash_one(format!("device-{i}")))
            .count();
        assert_eq!(same, 0);
        let mut m: TextMap<String, u32> = TextMap::default();
        for i in 0..1000 {
            m.insert(format!("v{i}"), i);
        }
        assert_eq!(m.get("v999"), Some(&999));
        assert_eq!(m.len(), 1000);
    }
}
