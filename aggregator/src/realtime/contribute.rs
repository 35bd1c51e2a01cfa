//! The consumer's side of realtime reports: what a batch of stream entries adds to each
//! report's per-minute data, written in the same transaction as the batch's rollups and
//! acknowledgement (so exactly once).

use super::{Agg, Report};
use crate::filter::Expr;
use crate::rollup::{Entry, Retention};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use tally_model::keys::{self, AppId};

/// A column's value for an event.
pub fn column(e: &Entry, name: &str) -> Option<String> {
    match name {
        "count" => Some(e.count.to_string()),
        "sum" => e.sum.map(|v| v.to_string()),
        "dur" => e.dur.map(|v| v.to_string()),
        "device_id" => Some(e.device.clone()),
        "event" => Some(e.key.clone()),
        seg => e.segmentation.get(seg).and_then(|v| match v {
            Value::String(s) => Some(s.clone()),
            Value::Null => None,
            other => Some(other.to_string()),
        }),
    }
}

/// Dimension values joined with U+001F (which values cannot contain: it is removed).
fn combo(values: &[String]) -> String {
    values
        .iter()
        .map(|v| v.replace('\u{1f}', ""))
        .collect::<Vec<_>>()
        .join("\u{1f}")
}

fn field(combo: &str, measure: usize, part: &str) -> String {
    format!("{combo}\u{1e}{measure}\u{1e}{part}")
}

/// The writes of the reports for a batch of one app's entries.
#[derive(Debug, Default)]
pub struct RtWrites {
    pub ints: BTreeMap<(String, String), i64>,
    pub floats: BTreeMap<(String, String), f64>,
    pub mins: BTreeMap<(String, String), f64>,
    pub maxs: BTreeMap<(String, String), f64>,
    pub sets: BTreeMap<String, BTreeSet<String>>,
    pub hlls: BTreeMap<String, BTreeSet<String>>,
    pub expire_in: BTreeMap<String, i64>,
}

/// What the reports of an app make of a batch of its entries.
pub fn contribute(
    app: &AppId,
    reports: &[(Report, Option<Expr>)],
    entries: &[Entry],
    keep: Retention,
    now_secs: i64,
) -> RtWrites {
    let mut w = RtWrites::default();
    for e in entries.iter().filter(|e| e.kind == "e") {
        let minute = e.ts.div_euclid(60_000);
        let expire = minute * 60 + 60 + keep.minute_secs - now_secs;
        if expire <= 0 {
            continue;
        }
        for (r, f) in reports {
            if e.received < r.created || !r.collections.contains(&e.key) {
                continue;
            }
            let get = |n: &str| column(e, n);
            if f.as_ref().is_some_and(|f| !f.eval(&get)) {
                continue;
            }
            let dims: Vec<String> = r
                .dimensions
                .iter()
                .map(|d| column(e, d).unwrap_or_default())
                .collect();
            let c = combo(&dims);
            let hash = keys::realtime_minute(app, &r.table_name, minute);
            w.expire_in.insert(hash.clone(), expire);
            for (i, m) in r.measures.iter().enumerate() {
                let value = column(e, &m.column);
                let num = value
                    .as_deref()
                    .and_then(|v| v.parse::<f64>().ok())
                    .filter(|v| v.is_finite());
                match m.aggregation {
                    Agg::Count => {
                        if value.is_some() || m.column == "*" {
                            *w.ints.entry((hash.clone(), field(&c, i, "c"))).or_default() +=
                                e.count;
                        }
                    }
                    Agg::Sum | Agg::Average => {
                        if let Some(v) = num {
                            *w.floats
                                .entry((hash.clone(), field(&c, i, "s")))
                                .or_default() += v;
                            *w.ints.entry((hash.clone(), field(&c, i, "n"))).or_default() += 1;
                        }
                    }
                    Agg::Minimum => {
                        if let Some(v) = num {
                            let slot = w
                                .mins
                                .entry((hash.clone(), field(&c, i, "min")))
                                .or_insert(v);
                            *slot = slot.min(v);
                        }
                    }
                    Agg::Maximum => {
                        if let Some(v) = num {
                            let slot = w
                                .maxs
                                .entry((hash.clone(), field(&c, i, "max")))
                                .or_insert(v);
                            *slot = slot.max(v);
                        }
                    }
                    Agg::CountUnique => {
                        if let Some(v) = value {
                            let k = keys::realtime_unique(app, &r.table_name, minute, i);
                            w.expire_in.insert(k.clone(), expire);
                            w.sets.entry(k).or_default().insert(format!("{c}\u{1e}{v}"));
                        }
                    }
                    Agg::ApproximateUnique => {
                        if let Some(v) = value {
                            let k = keys::realtime_hll(app, &r.table_name, minute, i, &c);
                            w.expire_in.insert(k.clone(), expire);
                            w.hlls.entry(k).or_default().insert(v);
                            // Marks the dimension values present, for the query to find.
                            *w.ints.entry((hash.clone(), field(&c, i, "h"))).or_default() += 1;
                        }
                    }
                }
            }
        }
    }
    w
}

/// Keeps the smaller (or larger) number in a hash field: one key, atomic. Redis has no
/// command for it; the scripts live next to this file.
const MIN_SCRIPT: &str = include_str!("min.lua");
const MAX_SCRIPT: &str = include_str!("max.lua");

/// Adds the report writes to a transaction.
pub fn write(pipe: &mut redis::Pipeline, w: &RtWrites) {
    for ((k, f), v) in &w.ints {
        pipe.cmd("HINCRBY").arg(k).arg(f).arg(*v).ignore();
    }
    for ((k, f), v) in &w.floats {
        pipe.cmd("HINCRBYFLOAT").arg(k).arg(f).arg(*v).ignore();
    }
    for ((k, f), v) in &w.mins {
        pipe.cmd("EVAL")
            .arg(MIN_SCRIPT)
            .arg(1)
            .arg(k)
            .arg(f)
            .arg(*v)
            .ignore();
    }
    for ((k, f), v) in &w.maxs {
        pipe.cmd("EVAL")
            .arg(MAX_SCRIPT)
            .arg(1)
            .arg(k)
            .arg(f)
            .arg(*v)
            .ignore();
    }
    for (k, members) in &w.sets {
        pipe.cmd("SADD")
            .arg(k)
            .arg(members.iter().collect::<Vec<_>>())
            .ignore();
    }
    for (k, members) in &w.hlls {
        pipe.cmd("PFADD")
            .arg(k)
            .arg(members.iter().collect::<Vec<_>>())
            .ignore();
    }
    for (k, secs) in &w.expire_in {
        pipe.cmd("EXPIRE").arg(k).arg(*secs).ignore();
    }
}
