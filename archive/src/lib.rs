//! The third tier: every raw event kept in a Parquet archive, and SQL over all of an
//! app's data on Apache DataFusion.
//!
//! - [`archiver`] copies each app's raw stream into Parquet files ([`layout`]), exactly
//!   once, compacts small files, applies the archive's retention, and trims the stream
//!   behind it.
//! - [`sql`] answers queries over one app's tables: each collection is its archived files
//!   plus the stream's not-yet-archived tail, so an event is seen as soon as it was
//!   acknowledged, and never twice.
//! - [`views`]: materialized views, query results kept in the archive and computed again
//!   by the archiver.
//! - [`routes`] serves Rakam's query API (`/query/execute`, `/query/explain`,
//!   `/query/metadata`) and `/materialized-view/*`.
//!
//! DataFusion is a heavy compile; it lives in this crate alone so the rest of the
//! workspace never waits for it.

pub mod archiver;
pub mod layout;
pub mod routes;
pub mod rows;
pub mod sql;
pub mod store;
pub mod views;

pub use archiver::{Archiver, ArchiverStats};
pub use sql::Engine;
pub use store::Archive;

/// What can go wrong in the archive or a query.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Store(#[from] tally_model::StoreError),
    #[error("archive storage: {0}")]
    Object(#[from] datafusion::object_store::Error),
    #[error("arrow: {0}")]
    Arrow(#[from] datafusion::arrow::error::ArrowError),
    #[error("parquet: {0}")]
    Parquet(#[from] datafusion::parquet::errors::ParquetError),
    #[error("{0}")]
    Config(String),
}
