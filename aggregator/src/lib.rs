//! The rollup aggregator and the rest of the analytics API.
//!
//! - [`consumer`]: reads the apps' raw event streams (written by the collector in the same
//!   transaction as the Countly counters) through a consumer group and keeps minute and
//!   hour rollups, exactly once.
//! - [`rollup`]: entries to rollup writes, plain functions.
//! - `bucket`: the bucket events API over the streams and rollups.
//! - [`realtime`]: realtime reports, maintained by the consumer; [`filter`]: their filters.
//! - [`project`]: project administration (`/project/create`, `/project/delete`,
//!   `/project/device`), key sets, statistics and the list of projects.
//! - `collections`: Rakam's collections and their typed schemas (`/project/collection`,
//!   `/project/schema*`).
//! - `users`: Rakam's users API (`/user/*`) on the one profile store.
//! - `recipe`: Rakam's recipes, a project's schemas and realtime reports as JSON.
//! - `admin`: Rakam's `/admin/*`, and a clear 501 for each Rakam route not served.
//! - The Parquet archive and SQL (`/query/*`) are `tally-archive`'s: the aggregator runs
//!   its archiver and mounts its routes.

mod admin;
mod bucket;
mod collections;
pub mod consumer;
pub mod filter;
pub mod project;
pub mod realtime;
mod recipe;
pub mod rollup;
mod users;

use actix_web::web;
use prometheus_client::registry::Registry;
use std::future::Future;
use std::sync::Arc;
use tally_archive::routes::Sql;
use tally_archive::{Archive, Archiver, ArchiverStats, Engine};
use tally_config::Config;
use tally_service::Shared;

pub struct Aggregator {
    pub shared: Shared,
    pub stats: Arc<consumer::AggregatorStats>,
    pub retention: rollup::Retention,
    pub max_limit: usize,
    pub max_scan: usize,
    /// The Parquet archive (`None`: `TALLY_ARCHIVE_URL=off`).
    pub archive: Option<Archive>,
    pub archiver_stats: Arc<ArchiverStats>,
    pub sql: web::Data<Sql>,
}

impl Aggregator {
    /// Fails only when the archive's location cannot be used.
    pub fn new(shared: Shared, cfg: &Config) -> Result<Aggregator, tally_archive::Error> {
        let archive = Archive::from_config(cfg)?;
        let sql = web::Data::new(Sql {
            shared: shared.clone(),
            engine: Engine::new(archive.clone(), cfg.sql.clone()),
        });
        Ok(Aggregator {
            shared,
            stats: Arc::default(),
            retention: cfg.aggregator.retention(),
            max_limit: cfg.aggregator.max_limit,
            max_scan: cfg.aggregator.max_scan,
            archive,
            archiver_stats: Arc::default(),
            sql,
        })
    }

    /// Shows the consumer's and the archiver's counters on `/metrics`.
    pub fn register(&self, reg: &mut Registry) {
        self.stats.register(reg);
        self.archiver_stats.register(reg);
    }
}

/// The stream consumer and the archiver, each on a thread of its own. Dropping it (or
/// [`ConsumerHandle::stop`]) stops both; a batch cut short stays pending (the consumer's)
/// or recorded as an intent (the archiver's), and is done again.
pub struct ConsumerHandle {
    // Held for their Drop, which stops them.
    _parts: Vec<Background>,
}

impl ConsumerHandle {
    pub fn stop(self) {}
}

struct Background {
    task: tokio::task::JoinHandle<()>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Drop for Background {
    fn drop(&mut self) {
        self.task.abort();
        if let Some(rt) = self.runtime.take() {
            // Dropping a runtime may block, which an async caller must not do.
            rt.shutdown_background();
        }
    }
}

/// Runs `job` on a runtime of one thread named `name`, or on the caller's runtime if no
/// thread can be had.
fn on_own_thread(name: &str, job: impl Future<Output = ()> + Send + 'static) -> Background {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name(name)
        .enable_all()
        .build();
    match runtime {
        Ok(rt) => Background {
            task: rt.spawn(job),
            runtime: Some(rt),
        },
        Err(e) => {
            tracing::warn!(error = %e, thread = name, "no thread of its own; sharing the server's");
            Background {
                task: tokio::spawn(job),
                runtime: None,
            }
        }
    }
}

/// Starts the stream consumer and the archiver when the configuration asks for them,
/// each on a thread of its own: in the all-in-one process the group commit runs on the
/// thread that starts the server, and the consumer's reads, parsing and rollups must not
/// hold up its flushes (they cost begin_session a quarter of its throughput while they
/// shared it), nor the archiver's Parquet encoding the consumer. Both use the service's
/// pool, connect lazily and retry while Redis is away.
pub fn spawn_consumer(cfg: &Config, agg: web::Data<Aggregator>) -> Option<ConsumerHandle> {
    if !cfg.aggregator.enabled {
        return None;
    }
    let acfg = &cfg.aggregator;
    let ccfg = consumer::ConsumerConfig {
        batch: acfg.batch,
        block: acfg.block,
        claim_idle: acfg.claim_idle,
        retention: acfg.retention(),
    };
    let job = consumer::run(agg.shared.clone(), ccfg, agg.stats.clone());
    let archiver = Archiver {
        shared: agg.shared.clone(),
        archive: agg.archive.clone(),
        cfg: cfg.archive.clone(),
        stream_max_age: cfg.commit.stream_max_age,
        engine: Arc::new(Engine::new(agg.archive.clone(), cfg.sql.clone())),
        stats: agg.archiver_stats.clone(),
    };
    Some(ConsumerHandle {
        _parts: vec![
            on_own_thread("tally-aggregator", job),
            on_own_thread("tally-archiver", archiver.run()),
        ],
    })
}

/// Mounts the aggregator's routes.
pub fn configure(cfg: &mut web::ServiceConfig, state: web::Data<Aggregator>) {
    tally_archive::routes::configure(cfg, state.sql.clone());
    for (path, _) in admin::NOT_SERVED {
        cfg.route(path, web::route().to(admin::not_served));
    }
    cfg.app_data(state)
        .route("/admin/types", web::get().to(admin::types))
        .route("/admin/configurations", web::get().to(admin::none))
        .route("/admin/event_mappers", web::get().to(admin::none))
        .route("/admin/lock_key", web::post().to(admin::lock_key))
        .route("/project/create", web::post().to(project::create))
        .route("/project/list", web::post().to(project::stats::list))
        .route("/project/list", web::get().to(project::stats::list))
        .route("/project/stats", web::post().to(project::stats::stats))
        .route(
            "/project/create-api-keys",
            web::post().to(project::keys::create),
        )
        .route(
            "/project/revoke-api-keys",
            web::post().to(project::keys::revoke),
        )
        .route(
            "/project/revoke-api-keys",
            web::delete().to(project::keys::revoke),
        )
        .route(
            "/project/check-api-keys",
            web::post().to(project::keys::check),
        )
        .route("/project/delete", web::delete().to(project::delete))
        .route("/project/delete", web::post().to(project::delete))
        .route("/project/device", web::delete().to(project::forget_device))
        .route("/project/device", web::post().to(project::forget_device))
        .route(
            "/api/bucket/{id}/data/events",
            web::post().to(bucket::retrieve),
        )
        .route(
            "/api/bucket/{id}/data/events/stats",
            web::post().to(bucket::stats),
        )
        .route(
            "/api/bucket/{id}/data/eventsKeysByApp",
            web::get().to(bucket::keys_by_app),
        )
        .route(
            "/api/bucket/{id}/data/events/delete_all",
            web::delete().to(bucket::delete_all),
        )
        .route("/project/collection", web::post().to(collections::list))
        .route("/project/schema", web::post().to(collections::get))
        .route("/project/schema/add", web::post().to(collections::add))
        .route(
            "/project/schema/add/custom",
            web::post().to(collections::add_custom),
        )
        .route("/user/create", web::post().to(users::set_properties))
        .route("/user/batch/create", web::post().to(users::batch_create))
        .route(
            "/user/set_properties",
            web::post().to(users::set_properties),
        )
        .route(
            "/user/set_properties_once",
            web::post().to(users::set_properties_once),
        )
        .route(
            "/user/increment_property",
            web::post().to(users::increment_property),
        )
        .route(
            "/user/unset_properties",
            web::post().to(users::unset_properties),
        )
        .route("/user/batch", web::post().to(users::batch))
        .route(
            "/user/batch_operations",
            web::post().to(users::batch_operations),
        )
        .route("/user/get", web::post().to(users::get))
        .route("/user/get_events", web::post().to(users::get_events))
        .route("/user/metadata", web::get().to(users::metadata))
        .route("/user/search", web::post().to(users::search))
        .route(
            "/user/create_segment",
            web::post().to(users::create_segment),
        )
        .route("/recipe/export", web::get().to(recipe::export))
        .route("/recipe/install", web::post().to(recipe::install))
        .route("/realtime/create", web::post().to(realtime::create))
        .route("/realtime/get", web::post().to(realtime::get))
        .route("/realtime/list", web::post().to(realtime::list))
        .route("/realtime/delete", web::post().to(realtime::delete));
}
