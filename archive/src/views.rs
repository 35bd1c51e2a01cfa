//! Materialized views (Rakam's `/materialized-view/*`): a query's result kept as one
//! Parquet file in the archive (`app=<id>/view=<table>/data.parquet`), readable by its
//! table name in SQL, and computed again by the archiver once its update interval has
//! passed. A refresh computes the whole query again (no incremental maintenance yet) and
//! replaces the file at once, so readers see the old result or the new one, never a mix.

use crate::layout;
use crate::sql::{Engine, Mode, Outcome, QueryError};
use crate::store::Archive;
use crate::Error;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::object_store::path::Path;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::time::Duration;
use tally_model::apps::App;
use tally_model::views as defs;
use tally_redis::Pool;

/// A view's definition, as Rakam's `MaterializedView` (plus when it was computed).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct View {
    pub table_name: String,
    pub name: String,
    pub query: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_interval: Option<String>,
    #[serde(default)]
    pub incremental: bool,
    #[serde(default)]
    pub options: Map<String, Value>,
    /// When its result was last computed (ms since the epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_update: Option<i64>,
}

/// Reads an update interval: an ISO 8601 duration (`PT15M`, `PT1H`, `P1D`, `P1DT12H`), a
/// number of seconds, or `N unit` (`30 minutes`, `1 hour`, `2 days`).
pub fn parse_interval(s: &str) -> Option<Duration> {
    let s = s.trim();
    if let Ok(n) = s.parse::<u64>() {
        return Some(Duration::from_secs(n));
    }
    if let Some(iso) = s.strip_prefix('P').or_else(|| s.strip_prefix('p')) {
        let (days, time) = iso.split_once(['T', 't']).unwrap_or((iso, ""));
        let mut secs = 0u64;
        let mut add = |part: &str, units: &[(char, u64)]| -> Option<()> {
            let mut num = String::new();
            for c in part.chars() {
                if c.is_ascii_digit() {
                    num.push(c);
                } else {
                    let mult = units.iter().find(|(u, _)| u.eq_ignore_ascii_case(&c))?.1;
                    secs = secs.checked_add(num.parse::<u64>().ok()?.checked_mul(mult)?)?;
                    num.clear();
                }
            }
            num.is_empty().then_some(())
        };
        add(days, &[('D', 86_400), ('W', 7 * 86_400)])?;
        add(time, &[('H', 3600), ('M', 60), ('S', 1)])?;
        return (secs > 0).then(|| Duration::from_secs(secs));
    }
    let (n, unit) = s.split_once(' ')?;
    let n: u64 = n.trim().parse().ok()?;
    let mult = match unit
        .trim()
        .trim_end_matches('s')
        .to_ascii_lowercase()
        .as_str()
    {
        "second" | "sec" => 1,
        "minute" | "min" => 60,
        "hour" => 3600,
        "day" => 86_400,
        "week" => 7 * 86_400,
        _ => return None,
    };
    n.checked_mul(mult).map(Duration::from_secs)
}

impl View {
    /// How long its result stands before the archiver computes it again.
    pub fn interval(&self, default: Duration, min: Duration) -> Duration {
        self.update_interval
            .as_deref()
            .and_then(parse_interval)
            .unwrap_or(default)
            .max(min)
    }

    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

/// Computes a view's query and replaces its file; returns its rows' count.
pub async fn compute(
    engine: &Engine,
    archive: &Archive,
    pool: &Pool,
    app: &App,
    view: &View,
) -> Result<usize, QueryError> {
    let limit = engine.view_max_rows();
    let Outcome::Batches(schema, batches) = engine
        .query(pool, app, &view.query, Mode::Batches { limit })
        .await?
    else {
        return Err(QueryError::Failed(Error::Config(
            "unexpected answer".into(),
        )));
    };
    let rows = batches.iter().map(|b| b.num_rows()).sum();
    let bytes = crate::archiver::parquet_bytes(&schema, &batches)?;
    archive
        .put(&layout::view_file(&app.id, &view.table_name), bytes)
        .await?;
    Ok(rows)
}

/// Computes again every view of the app whose interval has passed (`now_ms`), and
/// records when. A view whose query fails now (a collection gone, a limit) keeps its last
/// result and is tried again next time.
pub async fn refresh_due(
    engine: &Engine,
    archive: &Archive,
    pool: &Pool,
    app: &App,
    now_ms: i64,
) -> Result<usize, Error> {
    let mut done = 0;
    for (table, json) in defs::all(pool, &app.id).await? {
        let Ok(mut view) = serde_json::from_str::<View>(&json) else {
            continue;
        };
        let every = view.interval(engine.view_interval(), engine.view_min_interval());
        let due = view
            .last_update
            .is_none_or(|t| now_ms - t >= every.as_millis() as i64);
        if !due {
            continue;
        }
        match compute(engine, archive, pool, app, &view).await {
            Ok(_) => {
                view.last_update = Some(now_ms);
                if defs::replace(pool, &app.id, &table, &view.to_json().to_string()).await? {
                    done += 1;
                } else {
                    // Deleted while it was computed: its new file must not outlive it.
                    archive
                        .delete(&layout::view_file(&app.id, &view.table_name))
                        .await?;
                }
            }
            Err(e) => tracing::warn!(view = %table, error = %e, "materialized view not refreshed"),
        }
    }
    Ok(done)
}

/// The schema of a view's file.
pub async fn schema_of(archive: &Archive, path: &Path) -> Result<SchemaRef, Error> {
    let bytes = archive.get(path).await?;
    Ok(ParquetRecordBatchReaderBuilder::try_new(bytes)?
        .schema()
        .clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals() {
        let s = |n| Some(Duration::from_secs(n));
        assert_eq!(parse_interval("PT15M"), s(900));
        assert_eq!(parse_interval("PT1H30M"), s(5400));
        assert_eq!(parse_interval("P1DT12H"), s(129_600));
        assert_eq!(parse_interval("P1W"), s(604_800));
        assert_eq!(parse_interval("3600"), s(3600));
        assert_eq!(parse_interval("30 minutes"), s(1800));
        assert_eq!(parse_interval("1 hour"), s(3600));
        assert_eq!(parse_interval("PT"), None);
        assert_eq!(parse_interval("P1X"), None);
        assert_eq!(parse_interval("soon"), None);
    }
}
