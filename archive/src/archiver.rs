//! The archiver: copies each app's raw stream into Parquet, exactly once
//! (`tally_model::archive` says how), then trims the stream behind what it archived.
//! Between batches it compacts a day's small files into one, deletes days past the
//! archive's retention, rewrites files without the rows of forgotten devices, and
//! removes the folders of deleted apps.
//!
//! Any number of archivers may run (every aggregator runs one): a lease per app keeps
//! them from doing the same work twice, and if two still do (a lease that expired under
//! a slow archiver), they write the same files and only one commit takes.

use crate::layout::{self, FileRef};
use crate::rows;
use crate::store::Archive;
use crate::Error;
use chrono_tz::Tz;
use datafusion::arrow::array::{new_null_array, Array, ArrayRef, AsArray, BooleanArray};
use datafusion::arrow::compute::{cast, filter_record_batch};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::object_store::path::Path;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::file::properties::WriterProperties;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tally_config::ArchiveConfig;
use tally_model::apps::{self, App};
use tally_model::archive::{self as progress, EntryId, Intent, RawEntry};
use tally_model::keys::AppId;
use tally_model::schema;
use tally_model::stream::Entry;
use tally_service::Shared;

/// What `/metrics` shows of the archiver.
#[derive(Default, Debug)]
pub struct ArchiverStats {
    pub events: Counter,
    pub batches: Counter,
    pub files: Counter,
    pub bytes: Counter,
    pub compactions: Counter,
    pub errors: Counter,
}

impl ArchiverStats {
    pub fn register(&self, reg: &mut Registry) {
        for (name, help, c) in [
            (
                "tally_archive_events",
                "Events archived to Parquet",
                &self.events,
            ),
            (
                "tally_archive_batches",
                "Archive batches committed",
                &self.batches,
            ),
            ("tally_archive_files", "Parquet files written", &self.files),
            ("tally_archive_bytes", "Parquet bytes written", &self.bytes),
            (
                "tally_archive_compactions",
                "Days compacted into one file",
                &self.compactions,
            ),
            (
                "tally_archive_errors",
                "Failed archive passes (retried)",
                &self.errors,
            ),
        ] {
            reg.register(name, help, c.clone());
        }
    }
}

pub struct Archiver {
    pub shared: Shared,
    /// `None` when the archive is off: the archiver then only trims streams by age.
    pub archive: Option<Archive>,
    pub cfg: ArchiveConfig,
    /// Stream entries older than this are trimmed once archived.
    pub stream_max_age: Duration,
    /// Computes the materialized views.
    pub engine: Arc<crate::Engine>,
    pub stats: Arc<ArchiverStats>,
}

/// How often the slower chores (retention, deleted apps) run.
const CHORES: Duration = Duration::from_secs(600);

impl Archiver {
    /// Runs until the task is dropped.
    pub async fn run(self) {
        let me = format!(
            "{}-{}-{}",
            std::env::var("HOSTNAME").unwrap_or_else(|_| "tally".into()),
            std::process::id(),
            tally_model::keys::random_hex(3)
        );
        let mut last_chores: Option<Instant> = None;
        loop {
            let busy = match self.pass(&me).await {
                Ok(busy) => busy,
                Err(e) => {
                    self.stats.errors.inc();
                    tracing::warn!(error = %e, "archive pass failed; it is retried");
                    false
                }
            };
            if last_chores.is_none_or(|t| t.elapsed() > CHORES) {
                last_chores = Some(Instant::now());
                if let Err(e) = self.chores().await {
                    self.stats.errors.inc();
                    tracing::warn!(error = %e, "archive chores failed; they are retried");
                }
            }
            if !busy {
                tokio::time::sleep(self.cfg.interval).await;
            }
        }
    }

    /// One batch of every app this archiver holds; true when some app had a full batch
    /// (more is waiting).
    pub async fn pass(&self, me: &str) -> Result<bool, Error> {
        let pool = &self.shared.pool;
        let mut busy = false;
        for id in apps::list(pool).await? {
            let Some(archive) = &self.archive else {
                self.trim(&id, EntryId::MAX).await?;
                continue;
            };
            let lease_ms = self.cfg.lease.as_millis() as u64;
            if !progress::lease(pool, &id, me, lease_ms).await? {
                continue;
            }
            let Some(app) = apps::by_id(pool, &id).await? else {
                continue;
            };
            let n = self.archive_app(archive, &app).await?;
            busy |= n >= self.cfg.batch;
            self.forget(archive, &app.id).await?;
            let now_ms = self.shared.clock.now_ms();
            crate::views::refresh_due(&self.engine, archive, pool, &app, now_ms).await?;
        }
        Ok(busy)
    }

    /// Archives the app's next batch (or finishes the one another archiver left);
    /// returns how many entries it held.
    pub async fn archive_app(&self, archive: &Archive, app: &App) -> Result<usize, Error> {
        let pool = &self.shared.pool;
        let st = progress::state(pool, &app.id).await?;
        let intent = match st.intent {
            Some(i) => i,
            None => {
                let first = progress::read(pool, &app.id, st.done, None, self.cfg.batch).await?;
                let Some(end) = first.last().and_then(|(id, _)| EntryId::parse(id)) else {
                    self.trim(&app.id, st.done).await?;
                    return Ok(0);
                };
                let wanted = Intent {
                    end,
                    timezone: app.timezone.name().to_string(),
                };
                let now = progress::begin(pool, &app.id, st.done, &wanted).await?;
                match now.intent {
                    Some(i) if now.done == st.done => i,
                    // Another archiver moved on meanwhile.
                    _ => return Ok(0),
                }
            }
        };
        let entries = self.read_batch(&app.id, st.done, intent.end).await?;
        let tz: Tz = intent.timezone.parse().unwrap_or(chrono_tz::UTC);
        let touched = self
            .write_batch(archive, &app.id, tz, &entries, intent.end)
            .await?;
        if progress::commit(pool, &app.id, st.done, &intent).await? {
            self.stats.batches.inc();
            self.trim(&app.id, intent.end).await?;
        }
        for part in touched {
            self.compact(archive, &app.id, &part, intent.end).await?;
        }
        Ok(entries.len())
    }

    /// The entries after `done` up to `end`, however many reads that takes.
    async fn read_batch(
        &self,
        app: &AppId,
        done: EntryId,
        end: EntryId,
    ) -> Result<Vec<RawEntry>, Error> {
        let mut out: Vec<RawEntry> = Vec::new();
        let mut after = done;
        loop {
            let page = progress::read(
                &self.shared.pool,
                app,
                after,
                Some(end),
                self.cfg.batch.max(1000),
            )
            .await?;
            let Some(last) = page.last().and_then(|(id, _)| EntryId::parse(id)) else {
                break;
            };
            out.extend(page);
            if last >= end {
                break;
            }
            after = last;
        }
        Ok(out)
    }

    /// Writes a batch's events, one file per collection and app-local day; returns the
    /// day folders written.
    async fn write_batch(
        &self,
        archive: &Archive,
        app: &AppId,
        tz: Tz,
        raw: &[RawEntry],
        end: EntryId,
    ) -> Result<Vec<Path>, Error> {
        let Some(first) = raw.first().and_then(|(id, _)| EntryId::parse(id)) else {
            return Ok(Vec::new());
        };
        let mut groups: BTreeMap<(String, String), Vec<Entry>> = BTreeMap::new();
        for (id, fields) in raw {
            for e in Entry::parse_all(id, fields) {
                if e.kind == "e" && !e.key.is_empty() {
                    groups
                        .entry((e.key.clone(), rows::date(e.ts, tz)))
                        .or_default()
                        .push(e);
                }
            }
        }
        let names: Vec<String> = groups
            .keys()
            .map(|(c, _)| c.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let fields: BTreeMap<String, _> = names
            .iter()
            .cloned()
            .zip(schema::collection_fields(&self.shared.pool, app, &names).await?)
            .collect();
        let mut touched = Vec::new();
        for ((collection, date), events) in groups {
            let Some(f) = fields.get(&collection) else {
                continue;
            };
            let schema = rows::table_schema(f);
            let rows: Vec<_> = events.iter().map(|e| rows::row(e, f)).collect();
            let batch = rows::batch(&schema, &rows)?;
            let bytes = parquet_bytes(&schema, &[batch])?;
            let part = layout::partition(app, &collection, &date);
            self.stats.bytes.inc_by(bytes.len() as u64);
            archive.put(&layout::file(&part, first, end), bytes).await?;
            self.stats.files.inc();
            self.stats.events.inc_by(events.len() as u64);
            touched.push(part);
        }
        Ok(touched)
    }

    /// Trims the stream to what is not yet archived or not yet old.
    async fn trim(&self, app: &AppId, done: EntryId) -> Result<(), Error> {
        let now_ms = (self.shared.clock.now_secs().max(0) as u64).saturating_mul(1000);
        let old = EntryId {
            ms: now_ms.saturating_sub(self.stream_max_age.as_millis() as u64),
            seq: 0,
        };
        progress::trim(&self.shared.pool, app, done.next().min(old)).await?;
        Ok(())
    }

    /// Compacts a day folder's committed files into one once it holds enough of them.
    /// The new file's range holds theirs, so readers take it alone from the moment it
    /// exists ([`layout::select`]); the small ones are then deleted.
    async fn compact(
        &self,
        archive: &Archive,
        app: &AppId,
        part: &Path,
        done: EntryId,
    ) -> Result<(), Error> {
        let files = archive.files(part).await?;
        let committed: Vec<FileRef> = files.into_iter().filter(|f| f.last <= done).collect();
        let kept = layout::select(committed.clone(), done);
        // Leftovers of a compaction that stopped before its deletes.
        for f in committed.iter().filter(|f| !kept.contains(f)) {
            archive.delete(&f.path).await?;
        }
        if kept.len() < self.cfg.compact_files.max(2) {
            return Ok(());
        }
        let collection = part
            .parts()
            .find_map(|p| p.as_ref().strip_prefix("collection=").map(str::to_string))
            .unwrap_or_default();
        let names = vec![collection];
        let fields = schema::collection_fields(&self.shared.pool, app, &names).await?;
        let Some(f) = fields.first() else {
            return Ok(());
        };
        let target = rows::table_schema(f);
        let mut batches = Vec::new();
        for file in &kept {
            for b in read_file(archive, &file.path).await? {
                batches.push(conform(&b, &target)?);
            }
        }
        let (Some(lo), Some(hi)) = (kept.first(), kept.iter().map(|f| f.last).max()) else {
            return Ok(());
        };
        let bytes = parquet_bytes(&target, &batches)?;
        archive
            .put(&layout::file(part, lo.first, hi), bytes)
            .await?;
        for f in &kept {
            archive.delete(&f.path).await?;
        }
        self.stats.compactions.inc();
        Ok(())
    }

    /// Rewrites the app's archived files without the rows of devices forgotten since
    /// the last pass (`tally_model::apps::forget_device`).
    async fn forget(&self, archive: &Archive, app: &AppId) -> Result<(), Error> {
        let devices = progress::forgotten(&self.shared.pool, app).await?;
        if devices.is_empty() {
            return Ok(());
        }
        let gone: HashSet<&str> = devices.iter().map(String::as_str).collect();
        for file in archive.files(&layout::app_prefix(app)).await? {
            let batches = read_file(archive, &file.path).await?;
            let mut changed = false;
            let mut kept = Vec::with_capacity(batches.len());
            for b in &batches {
                let Ok(i) = b.schema().index_of(schema::USER) else {
                    kept.push(b.clone());
                    continue;
                };
                let users = b.column(i).as_string::<i32>();
                let keep: BooleanArray = (0..users.len())
                    .map(|r| Some(users.is_null(r) || !gone.contains(users.value(r))))
                    .collect();
                if keep.false_count() > 0 {
                    changed = true;
                }
                kept.push(filter_record_batch(b, &keep)?);
            }
            if changed {
                let schema = match batches.first() {
                    Some(b) => b.schema(),
                    None => continue,
                };
                let bytes = parquet_bytes(&schema, &kept)?;
                archive.put(&file.path, bytes).await?;
            }
        }
        progress::forgotten_done(&self.shared.pool, app, &devices).await?;
        Ok(())
    }

    /// Deletes the folders of deleted apps and the days past the retention.
    pub async fn chores(&self) -> Result<(), Error> {
        let Some(archive) = &self.archive else {
            return Ok(());
        };
        let pool = &self.shared.pool;
        let live: HashSet<String> = apps::list(pool)
            .await?
            .into_iter()
            .map(|a| a.to_string())
            .collect();
        for folder in archive.app_folders().await? {
            if live.contains(&folder) {
                continue;
            }
            if let Some(id) = AppId::parse(&folder) {
                let n = archive.delete_all(&layout::app_prefix(&id)).await?;
                tracing::info!(app = %folder, files = n, "archive of a deleted app removed");
            }
        }
        if self.cfg.retention_days == 0 {
            return Ok(());
        }
        let now = self.shared.clock.now_secs();
        for id in live.iter().filter_map(|a| AppId::parse(a)) {
            let Some(app) = apps::by_id(pool, &id).await? else {
                continue;
            };
            let cutoff = rows::date(
                (now - self.cfg.retention_days as i64 * 86_400).saturating_mul(1000),
                app.timezone,
            );
            for f in archive.files(&layout::app_prefix(&id)).await? {
                if layout::date_of(&f.path).is_some_and(|d| d < cutoff) {
                    archive.delete(&f.path).await?;
                }
            }
        }
        Ok(())
    }
}

/// Record batches as one Parquet file (zstd-compressed columns).
pub fn parquet_bytes(schema: &SchemaRef, batches: &[RecordBatch]) -> Result<Vec<u8>, Error> {
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .build();
    let mut out = Vec::new();
    let mut w = ArrowWriter::try_new(&mut out, schema.clone(), Some(props))?;
    for b in batches {
        w.write(b)?;
    }
    w.close()?;
    Ok(out)
}

/// Every record batch of an archived file.
pub async fn read_file(archive: &Archive, path: &Path) -> Result<Vec<RecordBatch>, Error> {
    let bytes = archive.get(path).await?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)?.build()?;
    Ok(reader.collect::<Result<Vec<_>, _>>()?)
}

/// A batch as `target`'s columns: columns it lacks (fields added since it was written)
/// as nulls, each cast to the target's type.
fn conform(b: &RecordBatch, target: &SchemaRef) -> Result<RecordBatch, Error> {
    let cols: Vec<ArrayRef> = target
        .fields()
        .iter()
        .map(|f| match b.schema().index_of(f.name()) {
            Ok(i) if b.column(i).data_type() == f.data_type() => Ok(b.column(i).clone()),
            Ok(i) => cast(b.column(i), f.data_type())
                .or_else(|_| Ok(new_null_array(f.data_type(), b.num_rows()))),
            Err(_) => Ok(new_null_array(f.data_type(), b.num_rows())),
        })
        .collect::<Result<_, Error>>()?;
    Ok(RecordBatch::try_new(target.clone(), cols)?)
}
