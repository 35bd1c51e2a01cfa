//! Reading counters and meta lists back: any mix of hashes and sets in one pipelined
//! round trip.

use crate::error::StoreError;
use crate::redis::{run, Pool};
use redis::Value;

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

    pub async fn run(self, pool: &Pool) -> Result<Answers, StoreError> {
        if self.n == 0 {
            return Ok(Answers(Vec::new()));
        }
        let values: Vec<Value> = run(pool, &self.pipe).await?;
        Ok(Answers(values))
    }
}

pub struct Answers(Vec<Value>);

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        Value::Double(d) => Some(d.to_string()),
        _ => None,
    }
}

fn as_str(v: &Value) -> Option<&str> {
    match v {
        Value::BulkString(b) => std::str::from_utf8(b).ok(),
        Value::SimpleString(s) => Some(s),
        _ => None,
    }
}

impl Answers {
    /// The (field, value) pairs of a hash read, borrowed from the reply (no copies).
    pub fn hash_pairs(&self, slot: Slot) -> Vec<(&str, &str)> {
        match self.0.get(slot.0) {
            Some(Value::Array(items)) => items
                .chunks_exact(2)
                .filter_map(|kv| Some((as_str(&kv[0])?, as_str(&kv[1])?)))
                .collect(),
            Some(Value::Map(pairs)) => pairs
                .iter()
                .filter_map(|(k, v)| Some((as_str(k)?, as_str(v)?)))
                .collect(),
            _ => Vec::new(),
        }
    }

    /// An integer answer (0 when absent).
    pub fn int(&self, slot: Slot) -> i64 {
        match self.0.get(slot.0) {
            Some(Value::Int(i)) => *i,
            Some(v) => text(v).and_then(|t| t.parse().ok()).unwrap_or(0),
            None => 0,
        }
    }

    /// The members of a set read, sorted.
    pub fn set(&self, slot: Slot) -> Vec<String> {
        let mut out: Vec<String> = match self.0.get(slot.0) {
            Some(Value::Array(items)) | Some(Value::Set(items)) => {
                items.iter().filter_map(text).collect()
            }
            _ => Vec::new(),
        };
        out.sort();
        out
    }
}
