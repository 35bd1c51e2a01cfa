//! Configuration shared by `tally` and the split services, from environment variables.
//!
//! A leaf: it imports nothing of Tally's, so every other crate may depend on it. Each
//! default is written once, in a `Default` impl; [`Config::from_env`] overlays the
//! environment on the defaults, and [`Config::for_tests`] overlays what tests change.
//! Every variable is listed in `docs/configuration.md`; every limit can be changed.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
#[error("invalid value for {name}: {value:?} ({why})")]
pub struct ConfigError {
    pub name: &'static str,
    pub value: String,
    pub why: String,
}

/// Input limits: what a request may carry, how long a client may hold a connection, and
/// how far an app's data may grow.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_body_bytes: usize,
    /// A request body must arrive within this, counted from its first read (zero: no
    /// limit), so a client cannot hold a request open by trickling its body.
    pub body_timeout: Duration,
    /// An idle keep-alive connection is closed after this; zero turns keep-alive off.
    pub keep_alive: Duration,
    /// A connection has this long to send a request's head (zero: no limit), so clients
    /// that open connections and trickle bytes cannot hold them for long.
    pub client_timeout: Duration,
    /// Open connections per HTTP worker; beyond it new ones wait to be accepted.
    pub max_connections: usize,
    pub max_events_per_request: usize,
    /// Events one Rakam bulk (`/event/bulk`, `/event/copy`) request may carry.
    pub max_bulk_events: usize,
    /// Fields one collection's typed schema may have.
    pub schema_fields: usize,
    /// Properties one user profile may have (also the profile schema's fields).
    pub user_properties: usize,
    /// Bytes (property names and JSON values) one user profile may hold.
    pub user_profile_bytes: usize,
    /// Profiles one `/user/search` may read before it gives up with a 400.
    pub user_search_scan: usize,
    /// Live key sets one project may have (Rakam's `/project/create-api-keys`).
    pub key_sets: usize,
    /// Device states one `/o?method=total_users` may read before it answers 400.
    pub total_users_scan: usize,
    pub max_bulk_requests: usize,
    /// Distinct event keys per app (Countly `event_limit`).
    pub event_keys: usize,
    /// Segmentation keys per event (Countly `event_segmentation_limit`).
    pub segments_per_event: usize,
    /// Values per segmentation key (Countly `event_segmentation_value_limit`).
    pub values_per_segment: usize,
    /// Values per metric (Countly `metric_limit`), also for countries.
    pub values_per_metric: usize,
    pub max_key_length: usize,
    pub max_value_length: usize,
    pub max_device_id_length: usize,
    pub max_json_depth: usize,
    /// Cap of one `session_duration` (Countly `session_duration_limit`).
    pub session_duration_limit: u32,
    /// A retry of the same request within this window is counted once.
    pub dedup_window_secs: u32,
    /// Timestamps up to this far in the future are taken as "now"; further is a 400.
    pub max_future_secs: i64,
    /// A begin_session this soon after an end_session continues that session.
    pub session_cooldown_secs: u32,
    /// `/o` answers include hour buckets for the last this many days of their period
    /// (0: none); longer periods answer days, weeks, months and years.
    pub hourly_days: i64,
    /// Requests per second one app may send to one collector process (0: no limit).
    pub rate_limit: f64,
    /// Largest burst above the rate, in requests.
    pub rate_burst: f64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 1 << 20,
            body_timeout: Duration::from_secs(60),
            keep_alive: Duration::from_secs(5),
            client_timeout: Duration::from_secs(5),
            max_connections: 25_000,
            max_events_per_request: 1000,
            max_bulk_events: 10_000,
            schema_fields: 256,
            user_properties: 256,
            user_profile_bytes: 64 * 1024,
            user_search_scan: 100_000,
            key_sets: 20,
            total_users_scan: 1_000_000,
            max_bulk_requests: 1000,
            event_keys: 500,
            segments_per_event: 100,
            values_per_segment: 1000,
            values_per_metric: 1000,
            max_key_length: 256,
            max_value_length: 1024,
            max_device_id_length: 256,
            max_json_depth: 16,
            session_duration_limit: 86_400,
            dedup_window_secs: 7 * 86_400,
            max_future_secs: 86_400,
            session_cooldown_secs: 15,
            hourly_days: 7,
            rate_limit: 20_000.0,
            rate_burst: 40_000.0,
        }
    }
}

/// How the group commit batches writes.
#[derive(Debug, Clone)]
pub struct CommitConfig {
    /// How long the committer waits for more requests after the first of a batch.
    pub linger: Duration,
    /// Most requests in one batch.
    pub max_batch: usize,
    /// Requests waiting for the committer before new ones are refused with 503.
    pub queue: usize,
    /// Transaction conflicts tolerated for one batch before it fails.
    pub max_retries: u32,
    /// Committer tasks, each with its own connection: while one waits for Redis another
    /// plans. WATCH keeps concurrent batches exact (a conflicting batch is planned again).
    pub committers: usize,
    /// Streams are capped at about this many entries (`XADD MAXLEN ~`): the hard bound on
    /// a stream's memory, reached only when the archiver falls that far behind.
    pub stream_max_len: u64,
    /// Entries older than this are trimmed (`XTRIM MINID ~`) by the archiver, and only
    /// once archived.
    pub stream_max_age: Duration,
}

impl Default for CommitConfig {
    fn default() -> Self {
        CommitConfig {
            linger: Duration::ZERO,
            max_batch: 2000,
            queue: 50_000,
            max_retries: 16,
            committers: 1,
            stream_max_len: 1_000_000,
            stream_max_age: Duration::from_secs(7 * 86_400),
        }
    }
}

/// How to reach Redis and how long to wait for it.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// `redis://host:port/db` or `redis+unix:///path/to/sock`.
    pub url: String,
    /// Seed nodes of a Redis Cluster (`REDIS_CLUSTER_URLS`); when set, `url` is unused.
    pub cluster: Vec<String>,
    /// Connections per Redis node.
    pub pool_size: usize,
    /// Longest wait for one Redis answer before the request fails with 503.
    pub timeout: Duration,
}

/// The rollup aggregator's settings.
#[derive(Debug, Clone)]
pub struct AggregatorConfig {
    /// Run the stream consumer in this process.
    pub enabled: bool,
    /// Entries read per batch.
    pub batch: usize,
    pub block: Duration,
    /// Pending entries idle this long are taken over from their consumer.
    pub claim_idle: Duration,
    /// How long minute rollups (and active-device estimates) are kept.
    pub minute_retention: Duration,
    /// How long hour rollups are kept.
    pub hour_retention: Duration,
    /// Most raw events one bucket API call returns.
    pub max_limit: usize,
    /// Most stream entries one raw-events call reads while filtering.
    pub max_scan: usize,
}

/// How long rollups are kept, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub minute_secs: i64,
    pub hour_secs: i64,
}

impl AggregatorConfig {
    pub fn retention(&self) -> Retention {
        Retention {
            minute_secs: self.minute_retention.as_secs() as i64,
            hour_secs: self.hour_retention.as_secs() as i64,
        }
    }
}

/// The Parquet archive: where it lives and how the archiver works.
#[derive(Debug, Clone)]
pub struct ArchiveConfig {
    /// `TALLY_ARCHIVE_URL`: a local directory (a path or `file://`), `off` for no archive;
    /// unset: `archive/` under the data directory.
    pub url: Option<String>,
    /// How often the archiver looks for new entries.
    pub interval: Duration,
    /// Most stream entries in one archived batch (one set of files).
    pub batch: usize,
    /// A day's folder of a collection with this many files is compacted into one.
    pub compact_files: usize,
    /// Archived days older than this many days are deleted (0: kept forever).
    pub retention_days: u64,
    /// How long an archiver's hold on an app lasts without renewal.
    pub lease: Duration,
}

impl Default for ArchiveConfig {
    fn default() -> Self {
        ArchiveConfig {
            url: None,
            interval: Duration::from_millis(1000),
            batch: 50_000,
            compact_files: 16,
            retention_days: 0,
            lease: Duration::from_secs(30),
        }
    }
}

impl ArchiveConfig {
    fn from_env() -> Result<ArchiveConfig, ConfigError> {
        let d = ArchiveConfig::default();
        Ok(ArchiveConfig {
            url: var("TALLY_ARCHIVE_URL"),
            interval: millis("TALLY_ARCHIVE_INTERVAL_MS", d.interval)?,
            batch: parse("TALLY_ARCHIVE_BATCH", d.batch)?,
            compact_files: parse("TALLY_ARCHIVE_COMPACT_FILES", d.compact_files)?,
            retention_days: parse("TALLY_ARCHIVE_RETENTION_DAYS", d.retention_days)?,
            lease: millis("TALLY_ARCHIVE_LEASE_MS", d.lease)?,
        })
    }
}

/// Limits of SQL queries (`/query/*`).
#[derive(Debug, Clone)]
pub struct SqlConfig {
    /// A query running longer is cancelled.
    pub timeout: Duration,
    /// Memory one query may hold (DataFusion's memory pool; no spilling to disk).
    pub memory_bytes: usize,
    /// Most rows one answer carries (a larger `limit` is refused).
    pub max_rows: usize,
    /// Queries running at once for one app, and in the whole process.
    pub per_app: usize,
    pub per_process: usize,
    /// Most not-yet-archived stream entries one query reads beside the archive.
    pub tail_entries: usize,
    /// Profiles the `_users` table may hold.
    pub users: usize,
    /// Materialized views one app may have.
    pub views: usize,
    /// Rows one materialized view may hold.
    pub view_max_rows: usize,
    /// How often a view is computed again when it names no `update_interval`, and the
    /// shortest interval it may name.
    pub view_interval: Duration,
    pub view_min_interval: Duration,
}

impl Default for SqlConfig {
    fn default() -> Self {
        SqlConfig {
            timeout: Duration::from_secs(30),
            memory_bytes: 512 << 20,
            max_rows: 100_000,
            per_app: 4,
            per_process: 16,
            tail_entries: 500_000,
            users: 1_000_000,
            views: 50,
            view_max_rows: 1_000_000,
            view_interval: Duration::from_secs(3600),
            view_min_interval: Duration::from_secs(10),
        }
    }
}

impl SqlConfig {
    fn from_env() -> Result<SqlConfig, ConfigError> {
        let d = SqlConfig::default();
        Ok(SqlConfig {
            timeout: millis("TALLY_SQL_TIMEOUT_MS", d.timeout)?,
            memory_bytes: parse::<usize>("TALLY_SQL_MEMORY_MB", d.memory_bytes >> 20)? << 20,
            max_rows: parse("TALLY_SQL_MAX_ROWS", d.max_rows)?,
            per_app: parse("TALLY_SQL_CONCURRENT_PER_APP", d.per_app)?,
            per_process: parse("TALLY_SQL_CONCURRENT", d.per_process)?,
            tail_entries: parse("TALLY_SQL_TAIL_ENTRIES", d.tail_entries)?,
            users: parse("TALLY_SQL_USERS", d.users)?,
            views: parse("TALLY_VIEWS", d.views)?,
            view_max_rows: parse("TALLY_VIEW_MAX_ROWS", d.view_max_rows)?,
            view_interval: secs("TALLY_VIEW_INTERVAL_SECS", d.view_interval)?,
            view_min_interval: secs("TALLY_VIEW_MIN_INTERVAL_SECS", d.view_min_interval)?,
        })
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub bind: String,
    /// External Redis; `None` starts the embedded one.
    pub redis_url: Option<String>,
    /// Seed nodes of a Redis Cluster (`REDIS_CLUSTER_URLS`, comma-separated); when set,
    /// every service uses the cluster and `redis_url` is not used.
    pub redis_cluster: Vec<String>,
    pub data_dir: PathBuf,
    /// The embedded Redis rewrites its AOF once it has grown by this many MiB
    /// (`auto-aof-rewrite-min-size`; Redis's own 64 MiB meant a rewrite, a fork and a full
    /// copy of the data, every few seconds under sustained writes).
    pub aof_rewrite_min_mb: u64,
    pub admin_key: Option<String>,
    pub redis_pool: usize,
    pub redis_timeout: Duration,
    pub app_cache_ttl: Duration,
    /// Apps the cache keeps at most, and unknown keys it remembers at most (apart, so a
    /// flood of unknown keys cannot evict the real apps).
    pub app_cache_entries: u64,
    pub commit: CommitConfig,
    pub limits: Limits,
    pub workers: usize,
    pub log_json: bool,
    /// `Access-Control-Allow-Origin` of every answer.
    pub cors_origin: String,
    /// A MaxMind-format IP-to-country database, for requests without `country_code`.
    pub geoip_db: Option<PathBuf>,
    pub aggregator: AggregatorConfig,
    pub archive: ArchiveConfig,
    pub sql: SqlConfig,
}

impl Default for AggregatorConfig {
    fn default() -> Self {
        AggregatorConfig {
            enabled: true,
            batch: 500,
            block: Duration::from_millis(1000),
            claim_idle: Duration::from_secs(30),
            minute_retention: Duration::from_secs(48 * 3600),
            hour_retention: Duration::from_secs(35 * 86_400),
            max_limit: 1000,
            max_scan: 100_000,
        }
    }
}

fn var(name: &'static str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

impl Default for Config {
    fn default() -> Self {
        Config {
            bind: "127.0.0.1:3001".into(),
            redis_url: None,
            redis_cluster: Vec::new(),
            data_dir: "./data".into(),
            aof_rewrite_min_mb: 1024,
            admin_key: None,
            redis_pool: 16,
            redis_timeout: Duration::from_millis(2000),
            app_cache_ttl: Duration::from_millis(5000),
            app_cache_entries: 10_000,
            commit: CommitConfig::default(),
            limits: Limits::default(),
            workers: std::thread::available_parallelism().map_or(2, |n| n.get()),
            log_json: false,
            cors_origin: "*".into(),
            geoip_db: None,
            aggregator: AggregatorConfig::default(),
            archive: ArchiveConfig::default(),
            sql: SqlConfig::default(),
        }
    }
}

/// Reads `name` as a `T`; unset or blank keeps `default`.
fn parse<T: FromStr>(name: &'static str, default: T) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    match var(name) {
        None => Ok(default),
        Some(v) => v.trim().parse().map_err(|e: T::Err| ConfigError {
            name,
            value: v,
            why: e.to_string(),
        }),
    }
}

fn millis(name: &'static str, default: Duration) -> Result<Duration, ConfigError> {
    Ok(Duration::from_millis(parse(
        name,
        default.as_millis() as u64,
    )?))
}

fn micros(name: &'static str, default: Duration) -> Result<Duration, ConfigError> {
    Ok(Duration::from_micros(parse(
        name,
        default.as_micros() as u64,
    )?))
}

fn secs(name: &'static str, default: Duration) -> Result<Duration, ConfigError> {
    Ok(Duration::from_secs(parse(name, default.as_secs())?))
}

impl Limits {
    fn from_env() -> Result<Limits, ConfigError> {
        let d = Limits::default();
        Ok(Limits {
            max_body_bytes: parse("TALLY_MAX_BODY_BYTES", d.max_body_bytes)?,
            body_timeout: millis("TALLY_BODY_TIMEOUT_MS", d.body_timeout)?,
            keep_alive: secs("TALLY_KEEP_ALIVE_SECS", d.keep_alive)?,
            client_timeout: millis("TALLY_CLIENT_TIMEOUT_MS", d.client_timeout)?,
            max_connections: match parse("TALLY_MAX_CONNECTIONS", d.max_connections)? {
                0 => {
                    return Err(ConfigError {
                        name: "TALLY_MAX_CONNECTIONS",
                        value: "0".into(),
                        why: "at least one connection is needed".into(),
                    })
                }
                n => n,
            },
            max_events_per_request: parse(
                "TALLY_MAX_EVENTS_PER_REQUEST",
                d.max_events_per_request,
            )?,
            max_bulk_requests: parse("TALLY_MAX_BULK_REQUESTS", d.max_bulk_requests)?,
            max_bulk_events: parse("TALLY_MAX_BULK_EVENTS", d.max_bulk_events)?,
            schema_fields: parse("TALLY_SCHEMA_FIELD_LIMIT", d.schema_fields)?,
            user_properties: parse("TALLY_USER_PROPERTY_LIMIT", d.user_properties)?,
            user_profile_bytes: parse("TALLY_USER_PROFILE_BYTES", d.user_profile_bytes)?,
            user_search_scan: parse("TALLY_USER_SEARCH_SCAN", d.user_search_scan)?,
            key_sets: parse("TALLY_KEY_SETS", d.key_sets)?,
            total_users_scan: parse("TALLY_TOTAL_USERS_SCAN", d.total_users_scan)?,
            event_keys: parse("TALLY_EVENT_LIMIT", d.event_keys)?,
            segments_per_event: parse("TALLY_SEGMENTATION_LIMIT", d.segments_per_event)?,
            values_per_segment: parse("TALLY_SEGMENTATION_VALUE_LIMIT", d.values_per_segment)?,
            values_per_metric: parse("TALLY_METRIC_LIMIT", d.values_per_metric)?,
            max_key_length: parse("TALLY_MAX_KEY_LENGTH", d.max_key_length)?,
            max_value_length: parse("TALLY_MAX_VALUE_LENGTH", d.max_value_length)?,
            max_device_id_length: parse("TALLY_MAX_DEVICE_ID_LENGTH", d.max_device_id_length)?,
            max_json_depth: parse("TALLY_MAX_JSON_DEPTH", d.max_json_depth)?,
            session_duration_limit: parse(
                "TALLY_SESSION_DURATION_LIMIT",
                d.session_duration_limit,
            )?,
            dedup_window_secs: parse("TALLY_DEDUP_WINDOW_SECS", d.dedup_window_secs)?,
            max_future_secs: parse("TALLY_MAX_FUTURE_SECS", d.max_future_secs)?,
            session_cooldown_secs: parse("TALLY_SESSION_COOLDOWN_SECS", d.session_cooldown_secs)?,
            hourly_days: parse("TALLY_HOURLY_DAYS", d.hourly_days)?,
            rate_limit: parse("TALLY_RATE_LIMIT", d.rate_limit)?,
            rate_burst: parse("TALLY_RATE_BURST", d.rate_burst)?,
        })
    }
}

impl CommitConfig {
    fn from_env() -> Result<CommitConfig, ConfigError> {
        let d = CommitConfig::default();
        Ok(CommitConfig {
            linger: micros("TALLY_FLUSH_INTERVAL_US", d.linger)?,
            max_batch: parse("TALLY_FLUSH_MAX_REQUESTS", d.max_batch)?,
            queue: parse("TALLY_WRITE_QUEUE", d.queue)?,
            max_retries: parse("TALLY_FLUSH_MAX_RETRIES", d.max_retries)?,
            committers: parse("TALLY_COMMITTERS", d.committers)?,
            stream_max_len: parse("TALLY_STREAM_MAX_LEN", d.stream_max_len)?,
            stream_max_age: secs("TALLY_STREAM_MAX_AGE_SECS", d.stream_max_age)?,
        })
    }
}

impl AggregatorConfig {
    fn from_env() -> Result<AggregatorConfig, ConfigError> {
        let d = AggregatorConfig::default();
        Ok(AggregatorConfig {
            enabled: parse("TALLY_AGGREGATOR", u8::from(d.enabled))? == 1,
            batch: parse("TALLY_AGG_BATCH", d.batch)?,
            block: millis("TALLY_AGG_BLOCK_MS", d.block)?,
            claim_idle: millis("TALLY_AGG_CLAIM_IDLE_MS", d.claim_idle)?,
            minute_retention: secs("TALLY_ROLLUP_MINUTE_SECS", d.minute_retention)?,
            hour_retention: secs("TALLY_ROLLUP_HOUR_SECS", d.hour_retention)?,
            max_limit: parse("TALLY_BUCKET_MAX_LIMIT", d.max_limit)?,
            max_scan: parse("TALLY_BUCKET_MAX_SCAN", d.max_scan)?,
        })
    }
}

impl Config {
    pub fn from_env() -> Result<Config, ConfigError> {
        let d = Config::default();
        Ok(Config {
            bind: var("TALLY_BIND").unwrap_or(d.bind),
            redis_url: var("REDIS_URL"),
            redis_cluster: var("REDIS_CLUSTER_URLS")
                .map(|v| {
                    v.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default(),
            data_dir: var("TALLY_DATA_DIR").map_or(d.data_dir, PathBuf::from),
            aof_rewrite_min_mb: parse("TALLY_AOF_REWRITE_MIN_MB", d.aof_rewrite_min_mb)?,
            admin_key: var("TALLY_ADMIN_KEY"),
            redis_pool: parse("TALLY_REDIS_POOL", d.redis_pool)?,
            redis_timeout: millis("TALLY_REDIS_TIMEOUT_MS", d.redis_timeout)?,
            app_cache_ttl: millis("TALLY_APP_CACHE_MS", d.app_cache_ttl)?,
            app_cache_entries: parse("TALLY_APP_CACHE_ENTRIES", d.app_cache_entries)?,
            commit: CommitConfig::from_env()?,
            limits: Limits::from_env()?,
            workers: parse("TALLY_WORKERS", d.workers)?,
            log_json: var("TALLY_LOG_FORMAT").as_deref() == Some("json"),
            cors_origin: var("TALLY_CORS_ORIGIN").unwrap_or(d.cors_origin),
            geoip_db: var("TALLY_GEOIP_DB").map(PathBuf::from),
            aggregator: AggregatorConfig::from_env()?,
            archive: ArchiveConfig::from_env()?,
            sql: SqlConfig::from_env()?,
        })
    }

    /// What tests run with: the defaults, Redis at `url`, and what makes tests quick and
    /// exact (no app cache, a short linger, two committers to exercise conflicts).
    pub fn for_tests(url: &str) -> Config {
        let d = Config::default();
        Config {
            bind: "127.0.0.1:0".into(),
            redis_url: Some(url.into()),
            admin_key: Some("test-admin-key".into()),
            redis_pool: 8,
            app_cache_ttl: Duration::ZERO,
            commit: CommitConfig {
                linger: Duration::from_micros(200),
                committers: 2,
                ..d.commit
            },
            workers: 2,
            // Off unless a test wants it (it would write beside the working directory).
            archive: ArchiveConfig {
                url: Some("off".into()),
                ..d.archive
            },
            // Off unless a test wants it: the consumer creates stream keys on its own
            // schedule, which would blur tests that count keys.
            aggregator: AggregatorConfig {
                enabled: false,
                block: Duration::from_millis(100),
                ..d.aggregator
            },
            ..d
        }
    }

    /// The external Redis the split services use: `REDIS_URL`, or on a cluster the first
    /// seed (the pool then reads every seed from `redis_cluster`).
    pub fn external_redis(&self) -> Option<String> {
        self.redis_url
            .clone()
            .or_else(|| self.redis_cluster.first().cloned())
    }

    /// How to reach Redis at `url` (or the cluster) with this configuration's pool settings.
    pub fn redis(&self, url: &str) -> RedisConfig {
        RedisConfig {
            url: url.into(),
            cluster: self.redis_cluster.clone(),
            pool_size: self.redis_pool,
            timeout: self.redis_timeout,
        }
    }
}
