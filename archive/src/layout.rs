//! Where an archived event lives: a Hive-style layout any Parquet engine can read,
//!
//! `app=<app id>/collection=<name>/date=<YYYY-MM-DD>/part-<first>_<last>.parquet`
//!
//! with the date in the app's timezone and `<first>`, `<last>` the stream entry ids
//! (`ms-seq`) of the batch (or, after compaction, the batches) the file holds. The ids make
//! a file's name follow from its contents, which is what lets an interrupted batch be
//! written again under the same names (`tally_model::archive`), and they say which file
//! is newer: a file whose range lies within another's was compacted into it, and readers
//! take the larger one only ([`select`]).

use datafusion::object_store::path::Path;
use tally_model::archive::EntryId;
use tally_model::keys::AppId;

/// The folder of all of an app's files.
pub fn app_prefix(app: &AppId) -> Path {
    Path::from_iter([format!("app={app}")])
}

/// The folder of a collection's files.
pub fn collection_prefix(app: &AppId, collection: &str) -> Path {
    Path::from_iter([format!("app={app}"), format!("collection={collection}")])
}

/// The folder of a collection's files of one day.
pub fn partition(app: &AppId, collection: &str, date: &str) -> Path {
    Path::from_iter([
        format!("app={app}"),
        format!("collection={collection}"),
        format!("date={date}"),
    ])
}

/// A materialized view's result: one file, replaced at each refresh.
pub fn view_file(app: &AppId, table: &str) -> Path {
    Path::from_iter([
        format!("app={app}"),
        format!("view={table}"),
        "data.parquet".to_string(),
    ])
}

/// A file of a batch of entries `first..=last` in one partition.
pub fn file(partition: &Path, first: EntryId, last: EntryId) -> Path {
    partition
        .clone()
        .join(format!("part-{first}_{last}.parquet"))
}

/// An archived file, as its path says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRef {
    pub path: Path,
    pub first: EntryId,
    pub last: EntryId,
    pub size: u64,
}

/// The entry range of a file named by [`file`]; `None` for anything else (an object
/// store's staging file, a foreign file).
pub fn parse(path: &Path, size: u64) -> Option<FileRef> {
    let name = path.filename()?;
    let range = name.strip_prefix("part-")?.strip_suffix(".parquet")?;
    let (first, last) = range.split_once('_')?;
    Some(FileRef {
        path: path.clone(),
        first: EntryId::parse(first)?,
        last: EntryId::parse(last)?,
        size,
    })
}

/// The date folder a path lies in (`date=...`).
pub fn date_of(path: &Path) -> Option<String> {
    path.parts()
        .find_map(|p| p.as_ref().strip_prefix("date=").map(|d| d.to_string()))
}

/// The files a reader takes: those committed (ending at or before `done`), without any
/// whose range lies within another's of the same partition (left behind by a compaction
/// that had not yet removed them). Ranges of different partitions overlap by design: one
/// batch writes a file per date it touches, each named by the batch's entries in it.
pub fn select(mut files: Vec<FileRef>, done: EntryId) -> Vec<FileRef> {
    files.retain(|f| f.last <= done && f.first <= f.last);
    // By folder, then widest first among equal starts, so a compacted file comes before
    // what it holds.
    files.sort_by(|a, b| {
        folder(&a.path)
            .cmp(folder(&b.path))
            .then(a.first.cmp(&b.first))
            .then(b.last.cmp(&a.last))
    });
    let mut out: Vec<FileRef> = Vec::with_capacity(files.len());
    for f in files {
        match out.last() {
            Some(prev) if folder(&prev.path) == folder(&f.path) && f.last <= prev.last => {}
            _ => out.push(f),
        }
    }
    out
}

fn folder(path: &Path) -> &str {
    let s = path.as_ref();
    s.rsplit_once('/').map_or("", |(dir, _)| dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(ms: u64) -> EntryId {
        EntryId { ms, seq: 0 }
    }

    fn f(a: u64, b: u64) -> FileRef {
        on("2026-01-02", a, b)
    }

    fn on(date: &str, a: u64, b: u64) -> FileRef {
        let p = partition(
            &AppId::parse("0123456789abcdef01234567").unwrap_or_else(|| unreachable!()),
            "buy",
            date,
        );
        FileRef {
            path: file(&p, id(a), id(b)),
            first: id(a),
            last: id(b),
            size: 1,
        }
    }

    #[test]
    fn names_round_trip() {
        let x = f(5, 9);
        assert_eq!(parse(&x.path, 1), Some(x.clone()));
        assert_eq!(date_of(&x.path).as_deref(), Some("2026-01-02"));
        assert_eq!(parse(&Path::from("a/part-1-0_2-0.parquet#1"), 1), None);
    }

    #[test]
    fn odd_collection_names_stay_in_their_folder() {
        let app = AppId::parse("0123456789abcdef01234567").unwrap_or_else(|| unreachable!());
        let p = partition(&app, "a/b c%", "2026-01-02");
        assert_eq!(p.parts().count(), 3);
        assert!(p.as_ref().starts_with(app_prefix(&app).as_ref()));
        assert!(p.prefix_matches(&collection_prefix(&app, "a/b c%")));
    }

    #[test]
    fn readers_take_committed_files_once() {
        // 1..3 and 4..6 were compacted into 1..6; 7..8 is not committed yet.
        let got = select(vec![f(4, 6), f(1, 3), f(1, 6), f(10, 12), f(7, 8)], id(12));
        let ranges: Vec<(u64, u64)> = got.iter().map(|f| (f.first.ms, f.last.ms)).collect();
        assert_eq!(ranges, [(1, 6), (7, 8), (10, 12)]);
        let partial = select(vec![f(1, 3), f(4, 6)], id(5));
        assert_eq!(partial.len(), 1);
    }

    #[test]
    fn one_batch_over_two_dates_is_read_whole() {
        // A batch of entries 1..10 wrote most to one date and a late event (5) to the day
        // before: both files hold rows no other file has.
        let got = select(
            vec![on("2026-01-02", 1, 10), on("2026-01-01", 5, 5)],
            id(10),
        );
        assert_eq!(got.len(), 2);
        let same = select(
            vec![on("2026-01-02", 1, 10), on("2026-01-01", 1, 10)],
            id(10),
        );
        assert_eq!(same.len(), 2);
    }
}
