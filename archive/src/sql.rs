//! SQL over one app's data on Apache DataFusion.
//!
//! Every query gets a session of its own in which only its app's tables exist: each
//! collection the query names is registered as the union of its archived files (those
//! committed, [`layout::select`]) and the stream's entries after the archive's `done`
//! mark, read in the same breath, so an acknowledged event is seen at once and exactly
//! once; `_users` is the app's profiles. Nothing else is reachable: no table functions,
//! no URL tables, no `CREATE EXTERNAL TABLE` or `COPY`, no DDL or DML, and the archive's
//! store answers to a URL no query can name.
//!
//! Limits (each in `tally_config::SqlConfig`): time, memory (a DataFusion memory pool of
//! its own per query, no spilling), rows returned, queries at once per app and per process,
//! and how much of the stream's tail a query may read.

use crate::layout;
use crate::rows;
use crate::store::{self, Archive};
use crate::Error;
use chrono::{DateTime, Utc};
use datafusion::arrow::array::Array;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::MemTable;
use datafusion::common::{DataFusionError, ScalarValue, TableReference};
use datafusion::config::Dialect;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::SessionStateBuilder;
use datafusion::object_store::ObjectStoreExt;
use datafusion::physical_plan::displayable;
use datafusion::prelude::{DataFrame, SQLOptions, SessionConfig, SessionContext};
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::Statement;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use tally_config::SqlConfig;
use tally_model::archive::{self as progress, EntryId};
use tally_model::keys::AppId;
use tally_model::schema::{self, FieldType};
use tally_model::stream::Entry;
use tally_model::{apps::App, profiles};
use tally_redis::Pool;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The table of the app's user profiles.
pub const USERS: &str = "_users";

/// Why a query was not answered.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The query is wrong or not allowed (400).
    #[error("{0}")]
    Bad(String),
    /// Too many queries running (429).
    #[error("{0}")]
    Busy(String),
    /// Storage failed (503/500).
    #[error(transparent)]
    Failed(#[from] Error),
}

impl From<tally_model::StoreError> for QueryError {
    fn from(e: tally_model::StoreError) -> Self {
        QueryError::Failed(e.into())
    }
}

/// A query's answer: its columns (name, Rakam type) and rows.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub columns: Vec<(String, String)>,
    pub rows: Vec<Vec<Value>>,
}

/// The SQL engine of a process: the archive it reads and the limits it keeps.
pub struct Engine {
    archive: Option<Archive>,
    cfg: SqlConfig,
    process: Arc<Semaphore>,
    per_app: Mutex<HashMap<AppId, Arc<Semaphore>>>,
}

/// What a query holds while it runs.
struct Permits(
    #[allow(dead_code)] OwnedSemaphorePermit,
    #[allow(dead_code)] OwnedSemaphorePermit,
);

/// How a query is to be answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Run {
        limit: usize,
    },
    /// Run, answering Arrow batches (for materialized views).
    Batches {
        limit: usize,
    },
    Explain,
    Metadata,
}

/// What a query came to.
pub enum Outcome {
    Rows(Answer),
    Batches(SchemaRef, Vec<RecordBatch>),
    Plan { logical: String, physical: String },
    Columns(Vec<(String, String)>),
}

impl Engine {
    pub fn new(archive: Option<Archive>, cfg: SqlConfig) -> Engine {
        Engine {
            archive,
            process: Arc::new(Semaphore::new(cfg.per_process.max(1))),
            per_app: Mutex::new(HashMap::new()),
            cfg,
        }
    }

    pub fn max_rows(&self) -> usize {
        self.cfg.max_rows
    }

    pub fn archive(&self) -> Option<&Archive> {
        self.archive.as_ref()
    }

    pub fn max_views(&self) -> usize {
        self.cfg.views
    }

    pub fn view_max_rows(&self) -> usize {
        self.cfg.view_max_rows
    }

    pub fn view_interval(&self) -> std::time::Duration {
        self.cfg.view_interval
    }

    pub fn view_min_interval(&self) -> std::time::Duration {
        self.cfg.view_min_interval
    }

    fn permits(&self, app: &AppId) -> Result<Permits, QueryError> {
        let process = self.process.clone().try_acquire_owned().map_err(|_| {
            QueryError::Busy(format!(
                "Too many queries are running in this process (TALLY_SQL_CONCURRENT = {}); try again shortly",
                self.cfg.per_process
            ))
        })?;
        let sem = {
            let mut map = self.per_app.lock().unwrap_or_else(|p| p.into_inner());
            // Forget apps with nothing running, so the map stays as small as the work.
            map.retain(|_, s| Arc::strong_count(s) > 1);
            map.entry(app.clone())
                .or_insert_with(|| Arc::new(Semaphore::new(self.cfg.per_app.max(1))))
                .clone()
        };
        let app_permit = sem.try_acquire_owned().map_err(|_| {
            QueryError::Busy(format!(
                "Too many queries are running for this project (TALLY_SQL_CONCURRENT_PER_APP = {}); try again shortly",
                self.cfg.per_app
            ))
        })?;
        Ok(Permits(process, app_permit))
    }

    fn context(&self) -> Result<SessionContext, QueryError> {
        let mut config = SessionConfig::new()
            .with_information_schema(false)
            .with_target_partitions(2);
        // Names are matched as written: a collection `Purchase` is `Purchase`, quoted or not.
        config.options_mut().sql_parser.enable_ident_normalization = false;
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_limit(self.cfg.memory_bytes, 1.0)
            .with_disk_manager_builder(
                DiskManagerBuilder::default().with_mode(DiskManagerMode::Disabled),
            )
            .build_arc()
            .map_err(|e| QueryError::Failed(Error::Config(e.to_string())))?;
        if let Some(a) = &self.archive {
            runtime.register_object_store(store::store_url().as_ref(), a.store.clone());
        }
        let state = SessionStateBuilder::new()
            .with_config(config)
            .with_runtime_env(runtime)
            .with_default_features()
            // No table functions and no table factories: nothing but the app's tables.
            .with_table_functions(HashMap::new())
            .with_table_factories(HashMap::new())
            .build();
        Ok(SessionContext::new_with_state(state))
    }

    /// Runs (or explains, or describes) `sql` over `app`'s tables, within the limits.
    pub async fn query(
        &self,
        pool: &Pool,
        app: &App,
        sql: &str,
        mode: Mode,
    ) -> Result<Outcome, QueryError> {
        if let Mode::Run { limit } = mode {
            if limit > self.cfg.max_rows {
                return Err(QueryError::Bad(format!(
                    "limit {limit} is over the maximum of {} rows (TALLY_SQL_MAX_ROWS)",
                    self.cfg.max_rows
                )));
            }
        }
        // Shared with the execution task: a query cancelled in the middle of an operator
        // that does not yield (DataFusion stops a plan only where it yields) runs on until
        // it does, and counts against the limits until then.
        let permits = Arc::new(self.permits(&app.id)?);
        let work = async {
            // A compaction may remove a file between listing and reading: list again.
            let mut tries = 0;
            loop {
                tries += 1;
                match self.query_once(pool, app, sql, mode, &permits).await {
                    Err(QueryError::Bad(m))
                        if tries < 3 && m.contains("not found") && m.contains("part-") => {}
                    other => return other,
                }
            }
        };
        match tokio::time::timeout(self.cfg.timeout, work).await {
            Ok(r) => r,
            Err(_) => Err(QueryError::Bad(format!(
                "The query took longer than {} ms and was cancelled (TALLY_SQL_TIMEOUT_MS)",
                self.cfg.timeout.as_millis()
            ))),
        }
    }

    async fn query_once(
        &self,
        pool: &Pool,
        app: &App,
        sql: &str,
        mode: Mode,
        permits: &Arc<Permits>,
    ) -> Result<Outcome, QueryError> {
        let ctx = self.context()?;
        let state = ctx.state();
        let stmt = state
            .sql_to_statement(sql, &Dialect::Generic)
            .map_err(bad)?;
        match &stmt {
            DfStatement::Statement(s) if matches!(**s, Statement::Query(_)) => {}
            _ => {
                return Err(QueryError::Bad(
                    "Only queries (SELECT, WITH ... SELECT, VALUES) can be run; DDL, DML, COPY, EXPLAIN and SET are not allowed".into(),
                ))
            }
        }
        let refs = state.resolve_table_references(&stmt).map_err(bad)?;
        self.register(&ctx, pool, app, &refs).await?;
        let plan = state.statement_to_plan(stmt).await.map_err(bad)?;
        SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false)
            .verify_plan(&plan)
            .map_err(bad)?;
        match mode {
            Mode::Metadata => Ok(Outcome::Columns(columns(plan.schema().as_arrow()))),
            Mode::Explain => {
                let logical = plan.display_indent().to_string();
                let df = ctx.execute_logical_plan(plan).await.map_err(bad)?;
                let physical = df.create_physical_plan().await.map_err(bad)?;
                let physical = displayable(physical.as_ref()).indent(true).to_string();
                Ok(Outcome::Plan { logical, physical })
            }
            Mode::Run { limit } => {
                let df = ctx.execute_logical_plan(plan).await.map_err(bad)?;
                let df = df.limit(0, Some(limit)).map_err(bad)?;
                let cols = columns(df.schema().as_arrow());
                let batches = execute(df, permits.clone()).await?;
                Ok(Outcome::Rows(Answer {
                    columns: cols,
                    rows: rows_of(&batches)?,
                }))
            }
            Mode::Batches { limit } => {
                let df = ctx.execute_logical_plan(plan).await.map_err(bad)?;
                let df = df.limit(0, Some(limit + 1)).map_err(bad)?;
                let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
                let batches = execute(df, permits.clone()).await?;
                if batches.iter().map(RecordBatch::num_rows).sum::<usize>() > limit {
                    return Err(QueryError::Bad(format!(
                        "The query answers more than {limit} rows, more than a materialized view may hold (TALLY_VIEW_MAX_ROWS)"
                    )));
                }
                Ok(Outcome::Batches(schema, batches))
            }
        }
    }

    /// Registers the tables a query names: the app's collections and `_users`.
    async fn register(
        &self,
        ctx: &SessionContext,
        pool: &Pool,
        app: &App,
        refs: &[TableReference],
    ) -> Result<(), QueryError> {
        let mut names: Vec<String> = Vec::new();
        for r in refs {
            if r.catalog().is_some() || r.schema().is_some_and(|s| s != "public") {
                return Err(QueryError::Bad(format!(
                    "Table \"{r}\" does not exist: a query reads its project's collections and {USERS}, by their names alone"
                )));
            }
            if !names.iter().any(|n| n == r.table()) {
                names.push(r.table().to_string());
            }
        }
        if names.is_empty() {
            return Ok(());
        }
        let known = collections(pool, &app.id).await?;
        let mut wanted: Vec<String> = Vec::new();
        for n in &names {
            if n == USERS {
                let t = self.users_table(pool, app).await?;
                ctx.register_table(USERS, t).map_err(bad)?;
            } else if known.iter().any(|k| k == n) {
                wanted.push(n.clone());
            } else if let Some(t) = self.view_table(pool, &app.id, n).await? {
                ctx.register_table(n.as_str(), t).map_err(bad)?;
            } else {
                return Err(QueryError::Bad(format!(
                    "Table \"{n}\" does not exist: the project's tables are its collections, its materialized views and {USERS}"
                )));
            }
        }
        if wanted.is_empty() {
            return Ok(());
        }
        let fields = schema::collection_fields(pool, &app.id, &wanted).await?;
        let schemas: BTreeMap<&str, SchemaRef> = wanted
            .iter()
            .map(String::as_str)
            .zip(fields.iter().map(rows::table_schema))
            .collect();
        let by_name: BTreeMap<&str, &BTreeMap<String, FieldType>> = wanted
            .iter()
            .map(String::as_str)
            .zip(fields.iter())
            .collect();
        let (done, tail) = self.tail(pool, &app.id).await?;
        for name in &wanted {
            let schema = schemas[name.as_str()].clone();
            let f = by_name[name.as_str()];
            let rows: Vec<Value> = tail
                .iter()
                .filter(|e| e.key == *name)
                .map(|e| rows::row(e, f))
                .collect();
            let recent = rows::batch(&schema, &rows)?;
            let mem = MemTable::try_new(schema.clone(), vec![vec![recent]]).map_err(bad)?;
            let mut df: DataFrame = ctx.read_table(Arc::new(mem)).map_err(bad)?;
            if let Some(archived) = self.archived_table(&app.id, name, &schema, done).await? {
                df = ctx
                    .read_table(archived)
                    .map_err(bad)?
                    .union(df)
                    .map_err(bad)?;
            }
            ctx.register_table(name.as_str(), df.into_view())
                .map_err(bad)?;
        }
        Ok(())
    }

    /// The archive's `done` mark and the stream's events after it, read so that the two
    /// agree (the mark read again after the entries; a move means a new read).
    async fn tail(&self, pool: &Pool, app: &AppId) -> Result<(EntryId, Vec<Entry>), QueryError> {
        for _ in 0..5 {
            let done = if self.archive.is_some() {
                progress::state(pool, app).await?.done
            } else {
                EntryId::default()
            };
            let raw = progress::read(pool, app, done, None, self.cfg.tail_entries + 1).await?;
            if raw.len() > self.cfg.tail_entries {
                return Err(QueryError::Bad(format!(
                    "More than {} events are waiting to be archived (TALLY_SQL_TAIL_ENTRIES); try again once the archiver has caught up",
                    self.cfg.tail_entries
                )));
            }
            let again = if self.archive.is_some() {
                progress::state(pool, app).await?.done
            } else {
                EntryId::default()
            };
            if again == done {
                let entries = raw
                    .iter()
                    .flat_map(|(id, f)| Entry::parse_all(id, f))
                    .filter(|e| e.kind == "e")
                    .collect();
                return Ok((done, entries));
            }
        }
        Err(QueryError::Failed(Error::Config(
            "the archive moved on while the query read it; try again".into(),
        )))
    }

    /// The committed archived files of a collection as one table, if it has any.
    async fn archived_table(
        &self,
        app: &AppId,
        collection: &str,
        schema: &SchemaRef,
        done: EntryId,
    ) -> Result<Option<Arc<ListingTable>>, QueryError> {
        let Some(archive) = &self.archive else {
            return Ok(None);
        };
        let all = archive
            .files(&layout::collection_prefix(app, collection))
            .await?;
        let files = layout::select(all, done);
        if files.is_empty() {
            return Ok(None);
        }
        let urls = files
            .iter()
            .map(|f| file_url(&f.path))
            .collect::<Result<Vec<_>, _>>()?;
        let options =
            ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension(".parquet");
        let config = ListingTableConfig::new_with_multi_paths(urls)
            .with_listing_options(options)
            .with_schema(schema.clone());
        Ok(Some(Arc::new(ListingTable::try_new(config).map_err(bad)?)))
    }

    /// A materialized view's last result, when the app has a view of that name.
    async fn view_table(
        &self,
        pool: &Pool,
        app: &AppId,
        name: &str,
    ) -> Result<Option<Arc<ListingTable>>, QueryError> {
        let (Some(archive), Some(_)) = (
            &self.archive,
            tally_model::views::get(pool, app, name).await?,
        ) else {
            return Ok(None);
        };
        let path = layout::view_file(app, name);
        let meta = match archive.store.head(&path).await {
            Ok(m) => m,
            Err(datafusion::object_store::Error::NotFound { .. }) => {
                return Err(QueryError::Bad(format!(
                    "The materialized view \"{name}\" has not been computed yet"
                )))
            }
            Err(e) => return Err(QueryError::Failed(e.into())),
        };
        let options =
            ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension(".parquet");
        let schema = crate::views::schema_of(archive, &meta.location).await?;
        let config = ListingTableConfig::new_with_multi_paths(vec![file_url(&meta.location)?])
            .with_listing_options(options)
            .with_schema(schema);
        Ok(Some(Arc::new(ListingTable::try_new(config).map_err(bad)?)))
    }

    /// The app's profiles as a table: `id`, then the typed properties.
    async fn users_table(&self, pool: &Pool, app: &App) -> Result<Arc<MemTable>, QueryError> {
        let types = schema::load_profiles(pool, &app.id).await?;
        let mut fields: BTreeMap<String, FieldType> = types.fields;
        fields.remove("id");
        let mut cols = vec![Field::new("id", DataType::Utf8, false)];
        cols.extend(
            fields
                .iter()
                .map(|(n, t)| Field::new(n.as_str(), rows::arrow_type(*t), true)),
        );
        let schema: SchemaRef = Arc::new(Schema::new(cols));
        let mut rows_out: Vec<Value> = Vec::new();
        let mut cursor = 0;
        loop {
            let (next, ids) = profiles::page(pool, &app.id, cursor, 1000).await?;
            let found = profiles::get(pool, &app.id, &ids).await?;
            for (id, p) in ids.into_iter().zip(found) {
                let Some(p) = p else { continue };
                let mut row = Map::new();
                row.insert("id".into(), Value::String(id));
                for (k, v) in p {
                    if let Some(t) = fields.get(&k) {
                        let x = rows::fit(*t, &v);
                        if !x.is_null() {
                            row.insert(k, x);
                        }
                    }
                }
                rows_out.push(Value::Object(row));
                if rows_out.len() > self.cfg.users {
                    return Err(QueryError::Bad(format!(
                        "The project has more than {} user profiles, more than a query may read (TALLY_SQL_USERS)",
                        self.cfg.users
                    )));
                }
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
        let batch = rows::batch(&schema, &rows_out)?;
        Ok(Arc::new(
            MemTable::try_new(schema, vec![vec![batch]]).map_err(bad)?,
        ))
    }
}

/// Plans `df` here and runs the plan on the SQL runtime ([`runtime`]), holding the
/// query's permits until it has stopped. Cancelled when the caller stops waiting (the
/// query's timeout).
async fn execute(df: DataFrame, permits: Arc<Permits>) -> Result<Vec<RecordBatch>, QueryError> {
    let task = df.task_ctx();
    let plan = df.create_physical_plan().await.map_err(bad)?;
    let handle = runtime().spawn(async move {
        let _permits = permits;
        datafusion::physical_plan::collect(plan, Arc::new(task)).await
    });
    let _abort = AbortOnDrop(handle.abort_handle());
    match handle.await {
        Ok(r) => r.map_err(bad),
        Err(e) => Err(QueryError::Failed(Error::Config(format!(
            "the query stopped: {e}"
        )))),
    }
}

struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The runtime queries execute on: one worker a core, apart from the HTTP workers.
/// An HTTP worker is a single-threaded runtime, and DataFusion runs a plan's partitions
/// as tasks of the runtime it is polled on, so on a worker every query would use one
/// core; here its partitions run in parallel, and a long scan does not hold up the
/// worker's other requests. Measured in docs/benchmarks.md ("The archive and SQL").
fn runtime() -> &'static tokio::runtime::Handle {
    static RUNTIME: std::sync::OnceLock<tokio::runtime::Handle> = std::sync::OnceLock::new();
    RUNTIME.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name("sql".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .thread_name("sql")
                    .enable_all()
                    .build();
                match rt {
                    Ok(rt) => {
                        // Lives as long as the process: parks this thread forever.
                        let _ = tx.send(Some(rt.handle().clone()));
                        rt.block_on(std::future::pending::<()>());
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "the SQL runtime did not start; queries run on the caller's");
                        let _ = tx.send(None);
                    }
                }
            });
        let started = spawned.ok().and_then(|_| rx.recv().ok().flatten());
        started.unwrap_or_else(tokio::runtime::Handle::current)
    })
}

/// Whether the app has a collection of that name.
pub async fn is_collection(pool: &Pool, app: &AppId, name: &str) -> Result<bool, QueryError> {
    Ok(collections(pool, app).await?.iter().any(|c| c == name))
}

/// The app's collections (its event keys).
async fn collections(pool: &Pool, app: &AppId) -> Result<Vec<String>, QueryError> {
    let mut pipe = redis::pipe();
    pipe.cmd("SMEMBERS")
        .arg(tally_model::keys::meta(app, "events"));
    let (names,): (Vec<String>,) = pool
        .run(tally_model::keys::route(app), &pipe)
        .await
        .map_err(|e| QueryError::Failed(tally_model::StoreError::from(e).into()))?;
    Ok(names)
}

/// The URL of an archived file in the archive's store. The store's paths are already
/// percent-encoded where a name needs it; a URL's path is decoded once on the way back,
/// so `%` is encoded once more here.
fn file_url(path: &datafusion::object_store::path::Path) -> Result<ListingTableUrl, QueryError> {
    let mut url = url::Url::parse(store::store_url().as_str()).map_err(|e| bad(e.to_string()))?;
    url.set_path(&path.as_ref().replace('%', "%25"));
    ListingTableUrl::try_new(url, None).map_err(bad)
}

fn bad(e: impl std::fmt::Display) -> QueryError {
    // DataFusion's memory pool says "Resources exhausted"; say which limit.
    let m = e.to_string();
    if m.contains("Resources exhausted") {
        return QueryError::Bad(format!(
            "The query needs more memory than a query may use (TALLY_SQL_MEMORY_MB): {m}"
        ));
    }
    QueryError::Bad(m.trim_start_matches("Error during planning: ").to_string())
}

impl From<DataFusionError> for QueryError {
    fn from(e: DataFusionError) -> Self {
        bad(e)
    }
}

/// Each column's name and Rakam type.
fn columns(schema: &Schema) -> Vec<(String, String)> {
    schema
        .fields()
        .iter()
        .map(|f| (f.name().clone(), rows::rakam_type(f.data_type())))
        .collect()
}

/// Record batches as rows of JSON cells.
fn rows_of(batches: &[RecordBatch]) -> Result<Vec<Vec<Value>>, QueryError> {
    let mut out = Vec::new();
    for b in batches {
        for r in 0..b.num_rows() {
            let row = b
                .columns()
                .iter()
                .map(|c| cell(c.as_ref(), r))
                .collect::<Result<Vec<_>, _>>()?;
            out.push(row);
        }
    }
    Ok(out)
}

/// One cell as JSON, as Rakam's clients read each type: numbers as numbers, decimals as
/// numbers, dates `YYYY-MM-DD`, times `HH:MM:SS.ffffff`, timestamps ISO 8601 in UTC,
/// arrays as arrays, maps as objects, anything else as its text.
pub fn cell(array: &dyn Array, row: usize) -> Result<Value, QueryError> {
    let v = ScalarValue::try_from_array(array, row).map_err(bad)?;
    Ok(scalar_json(&v))
}

fn scalar_json(v: &ScalarValue) -> Value {
    if v.is_null() {
        return Value::Null;
    }
    let ts = |n: i64, per_sec: i64| {
        let secs = n.div_euclid(per_sec);
        let nanos = (n.rem_euclid(per_sec) * (1_000_000_000 / per_sec)) as u32;
        DateTime::<Utc>::from_timestamp(secs, nanos).map_or(Value::Null, |t| {
            Value::String(t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
        })
    };
    match v {
        ScalarValue::Boolean(Some(b)) => Value::Bool(*b),
        ScalarValue::Int8(Some(n)) => (*n).into(),
        ScalarValue::Int16(Some(n)) => (*n).into(),
        ScalarValue::Int32(Some(n)) => (*n).into(),
        ScalarValue::Int64(Some(n)) => (*n).into(),
        ScalarValue::UInt8(Some(n)) => (*n).into(),
        ScalarValue::UInt16(Some(n)) => (*n).into(),
        ScalarValue::UInt32(Some(n)) => (*n).into(),
        ScalarValue::UInt64(Some(n)) => (*n).into(),
        ScalarValue::Float32(Some(f)) => finite(f64::from(*f)),
        ScalarValue::Float64(Some(f)) => finite(*f),
        ScalarValue::Decimal128(..) | ScalarValue::Decimal256(..) => {
            v.to_string().parse::<f64>().map_or(Value::Null, finite)
        }
        ScalarValue::Utf8(Some(s))
        | ScalarValue::LargeUtf8(Some(s))
        | ScalarValue::Utf8View(Some(s)) => Value::String(s.clone()),
        ScalarValue::TimestampSecond(Some(n), _) => ts(*n, 1),
        ScalarValue::TimestampMillisecond(Some(n), _) => ts(*n, 1_000),
        ScalarValue::TimestampMicrosecond(Some(n), _) => ts(*n, 1_000_000),
        ScalarValue::TimestampNanosecond(Some(n), _) => ts(*n, 1_000_000_000),
        ScalarValue::List(l) => {
            if l.is_empty() || l.is_null(0) {
                return Value::Null;
            }
            let items = l.value(0);
            Value::Array(
                (0..items.len())
                    .map(|i| cell(items.as_ref(), i).unwrap_or(Value::Null))
                    .collect(),
            )
        }
        ScalarValue::Map(m) => {
            if m.is_empty() || m.is_null(0) {
                return Value::Null;
            }
            let entries = m.value(0);
            let (keys, values) = (entries.column(0), entries.column(1));
            let mut out = Map::new();
            for i in 0..entries.len() {
                let k = match cell(keys.as_ref(), i) {
                    Ok(Value::String(s)) => s,
                    Ok(other) => other.to_string(),
                    Err(_) => continue,
                };
                out.insert(k, cell(values.as_ref(), i).unwrap_or(Value::Null));
            }
            Value::Object(out)
        }
        ScalarValue::Time64Microsecond(Some(_))
        | ScalarValue::Time64Nanosecond(Some(_))
        | ScalarValue::Time32Second(Some(_))
        | ScalarValue::Time32Millisecond(Some(_))
        | ScalarValue::Date32(Some(_))
        | ScalarValue::Date64(Some(_)) => Value::String(v.to_string()),
        other => Value::String(other.to_string()),
    }
}

fn finite(f: f64) -> Value {
    serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)
}
