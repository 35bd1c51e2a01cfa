//! Realtime reports (Rakam-style `/realtime/*`): per-minute aggregates of chosen events,
//! maintained by the stream consumer from the moment a report is created.
//!
//! A report names its events (`collections`), its `measures` (`{column, aggregation}`),
//! optional `dimensions` (segmentation keys to group by) and an optional `filter`
//! ([`crate::filter`]). A column is a segmentation key or one of `count`, `sum`, `dur`,
//! `device_id`, `event`. Per minute the consumer keeps, per dimension values:
//! COUNT (occurrences: the events' `count`, where the column has a value), SUM, AVERAGE
//! (sum and rows), MINIMUM and MAXIMUM (single-key Lua scripts), COUNT_UNIQUE (exact: a set
//! of values) and APPROXIMATE_UNIQUE (a HyperLogLog, an estimate with ~0.8% standard
//! error). Data is kept as long as minute rollups (`TALLY_ROLLUP_MINUTE_SECS`).

//!
//! - this module: a report's definition ([`Report`]) and loading an app's reports;
//! - [`contribute`]: what a batch of stream entries adds to the reports (the consumer's
//!   side, written in the consumer's transaction);
//! - [`routes`]: `/realtime/create`, `get`, `list`, `delete`.

mod contribute;
mod routes;

pub use contribute::{column, contribute, write, RtWrites};
pub use routes::{create, delete, get, list};

use crate::filter::{self, Expr};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tally_model::keys::{self, AppId};

/// Reports one app may have.
pub const MAX_REPORTS: usize = 50;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Agg {
    Count,
    CountUnique,
    Sum,
    Minimum,
    Maximum,
    Average,
    ApproximateUnique,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Measure {
    pub column: String,
    pub aggregation: Agg,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub name: String,
    pub table_name: String,
    pub collections: Vec<String>,
    pub measures: Vec<Measure>,
    #[serde(default)]
    pub dimensions: Vec<String>,
    #[serde(default)]
    pub filter: Option<String>,
    /// When it was created (ms): only events received since count.
    #[serde(default)]
    pub created: i64,
}

impl Report {
    /// Checks a definition; returns its parsed filter.
    pub fn validate(&self) -> Result<Option<Expr>, String> {
        if self.name.trim().is_empty() || self.name.len() > 200 {
            return Err("name: 1 to 200 characters".into());
        }
        let t = &self.table_name;
        if t.is_empty()
            || t.len() > 64
            || !t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            return Err("table_name: 1 to 64 letters, digits or _".into());
        }
        if self.collections.is_empty()
            || self.collections.len() > 50
            || self.collections.iter().any(|c| c.is_empty())
        {
            return Err("collections: 1 to 50 event keys".into());
        }
        if self.measures.is_empty()
            || self.measures.len() > 20
            || self.measures.iter().any(|m| m.column.is_empty())
        {
            return Err("measures: 1 to 20, each with a column".into());
        }
        if self.dimensions.len() > 5 || self.dimensions.iter().any(|d| d.is_empty()) {
            return Err("dimensions: at most 5 names".into());
        }
        self.filter
            .as_deref()
            .filter(|f| !f.trim().is_empty())
            .map(filter::parse)
            .transpose()
            .map_err(|e| format!("filter: {e}"))
    }

    /// A readable SQL-like spelling, for `/realtime/list`.
    pub fn query(&self) -> String {
        let m: Vec<String> = self
            .measures
            .iter()
            .map(|m| {
                let agg = serde_json::to_value(m.aggregation).ok();
                format!(
                    "{}({})",
                    agg.as_ref().and_then(Value::as_str).unwrap_or("?"),
                    m.column
                )
            })
            .collect();
        let mut q = format!(
            "SELECT {} FROM {}",
            m.join(", "),
            self.collections.join(", ")
        );
        if let Some(f) = self.filter.as_deref().filter(|f| !f.trim().is_empty()) {
            q.push_str(&format!(" WHERE {f}"));
        }
        if !self.dimensions.is_empty() {
            q.push_str(&format!(" GROUP BY {}", self.dimensions.join(", ")));
        }
        q
    }
}

/// The app's reports with their parsed filters.
pub async fn load(
    pool: &tally_redis::Pool,
    app: &AppId,
) -> Result<Vec<(Report, Option<Expr>)>, tally_model::StoreError> {
    let mut pipe = redis::pipe();
    pipe.cmd("HVALS").arg(keys::realtime_defs(app));
    let (defs,): (Vec<String>,) = pool.run(keys::route(app), &pipe).await?;
    Ok(parse_defs(&defs))
}

/// Stored definitions (JSON) with their parsed filters; unreadable ones are skipped.
pub fn parse_defs(defs: &[String]) -> Vec<(Report, Option<Expr>)> {
    defs.iter()
        .filter_map(|d| serde_json::from_str::<Report>(d).ok())
        .filter_map(|r| r.validate().ok().map(|f| (r, f)))
        .collect()
}

// ---- HTTP ----

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definitions_are_checked_and_spelled() {
        let r = Report {
            name: "Sales".into(),
            table_name: "sales_by_country".into(),
            collections: vec!["buy".into()],
            measures: vec![Measure {
                column: "sum".into(),
                aggregation: Agg::Sum,
            }],
            dimensions: vec!["country".into()],
            filter: Some("platform in ('ios', 'android')".into()),
            created: 0,
        };
        assert!(r.validate().is_ok());
        assert_eq!(
            r.query(),
            "SELECT SUM(sum) FROM buy WHERE platform in ('ios', 'android') GROUP BY country"
        );
        let mut bad = r.clone();
        bad.table_name = "no spaces".into();
        assert!(bad.validate().is_err());
        let mut bad = r.clone();
        bad.filter = Some("country =".into());
        assert!(bad.validate().is_err());
        let mut bad = r;
        bad.measures.clear();
        assert!(bad.validate().is_err());
    }
}
