//! Reading counters and meta lists back: any mix of hashes and sets in one pipelined
//! round trip.

use crate::error::StoreError;
use crate::redis::{run_reads, Pool};
use crate::resp::Replies;

/// An `XRANGE`/`XREVRANGE` page: (entry id, fields).
pub type StreamPage = Vec<(String, Vec<(String, String)>)>;

/// A batch of reads, answered together.
#[derive(Default)]
pub struct Reads {
    pipe: redis::Pipeline,
    n: usize,
}

/// A handle to one read's answer in [`Answers`].
#[derive(Debug, Clone, Copy)]
pub struct Slot(usize);

impl Reads {
    pub fn new() -> Reads {
        Reads::default()
    }

    /// All fields of a hash.
    pub fn hash(&mut self, key: &str) -> Slot {
        self.pipe.cmd("HGETALL").arg(key);
        self.push()
    }

    /// All members of a set.
    pub fn set(&mut self, key: &str) -> Slot {
        self.pipe.cmd("SMEMBERS").arg(key);
        self.push()
    }

    /// The estimated cardinality of a HyperLogLog.
    pub fn pfcount(&mut self, key: &str) -> Slot {
        self.pipe.cmd("PFCOUNT").arg(key);
        self.push()
    }

    fn push(&mut self) -> Slot {
        self.n += 1;
        Slot(self.n - 1)
    }

    /// Reads everything in one round trip. The replies are parsed in place
    /// ([`crate::resp`]): a year of counters is thousands of fields, none copied.
    pub async fn run(self, pool: &Pool) -> Result<Answers, StoreError> {
        if self.n == 0 {
            return Ok(Answers(Replies::default()));
        }
        Ok(Answers(run_reads(pool, &self.pipe).await?))
    }
}

pub struct Answers(Replies);

impl Answers {
    /// The (field, value) pairs of a hash read, borrowed from the reply (no copies).
    pub fn hash_pairs(&self, slot: Slot) -> Vec<(&str, &str)> {
        self.0.pairs(slot.0)
    }

    /// An integer answer (0 when absent).
    pub fn int(&self, slot: Slot) -> i64 {
        self.0.int(slot.0).unwrap_or(0)
    }

    /// The members of a set read, sorted.
    pub fn set(&self, slot: Slot) -> Vec<String> {
        let mut out: Vec<String> = self
            .0
            .strings(slot.0)
            .into_iter()
            .map(String::from)
            .collect();
        out.sort();
        out
    }
}
