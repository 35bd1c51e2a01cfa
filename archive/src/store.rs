//! Where the archive's files live: a local directory by default, behind the `object_store`
//! interface so that the archiver and the SQL engine never care which.

use crate::layout::{self, FileRef};
use crate::Error;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::object_store::local::LocalFileSystem;
use datafusion::object_store::path::Path;
use datafusion::object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use futures_util::TryStreamExt;
use std::path::PathBuf;
use std::sync::Arc;
use tally_config::Config;

/// The archive's storage.
#[derive(Clone, Debug)]
pub struct Archive {
    pub store: Arc<dyn ObjectStore>,
    /// Where it is, for people: the directory or URL.
    pub location: String,
}

/// The URL DataFusion knows the archive's store by (queries never name it: tables are
/// registered by Tally, and no query can reach a store by URL).
pub fn store_url() -> ObjectStoreUrl {
    ObjectStoreUrl::parse("tally://archive").unwrap_or_else(|_| ObjectStoreUrl::local_filesystem())
}

impl Archive {
    /// The archive the configuration names; `None` when it is `off`.
    pub fn from_config(cfg: &Config) -> Result<Option<Archive>, Error> {
        let dir: PathBuf = match cfg.archive.url.as_deref().map(str::trim) {
            Some("off") => return Ok(None),
            None | Some("") => cfg.data_dir.join("archive"),
            Some(url) => match url.split_once("://") {
                None => PathBuf::from(url),
                Some(("file", path)) => PathBuf::from(path),
                Some((scheme, _)) => {
                    return Err(Error::Config(format!(
                        "TALLY_ARCHIVE_URL: {scheme}:// is not supported by this build; use a local directory or file:// (see docs/archive.md)"
                    )))
                }
            },
        };
        Archive::local(dir).map(Some)
    }

    /// An archive in a local directory (created if missing).
    pub fn local(dir: PathBuf) -> Result<Archive, Error> {
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::Config(format!("archive directory {}: {e}", dir.display())))?;
        let dir = dir
            .canonicalize()
            .map_err(|e| Error::Config(format!("archive directory {}: {e}", dir.display())))?;
        let store = LocalFileSystem::new_with_prefix(&dir)?;
        Ok(Archive {
            store: Arc::new(store),
            location: dir.display().to_string(),
        })
    }

    /// Every archive file under `prefix`, with its entry range.
    pub async fn files(&self, prefix: &Path) -> Result<Vec<FileRef>, Error> {
        let metas: Vec<_> = self.store.list(Some(prefix)).try_collect().await?;
        Ok(metas
            .into_iter()
            .filter_map(|m| layout::parse(&m.location, m.size))
            .collect())
    }

    pub async fn put(&self, path: &Path, bytes: Vec<u8>) -> Result<(), Error> {
        self.store.put(path, PutPayload::from(bytes)).await?;
        Ok(())
    }

    pub async fn get(&self, path: &Path) -> Result<bytes::Bytes, Error> {
        Ok(self.store.get(path).await?.bytes().await?)
    }

    /// Deletes a file; one already gone is fine.
    pub async fn delete(&self, path: &Path) -> Result<(), Error> {
        match self.store.delete(path).await {
            Ok(()) | Err(datafusion::object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes everything under `prefix`; returns how many files.
    pub async fn delete_all(&self, prefix: &Path) -> Result<usize, Error> {
        let metas: Vec<_> = self.store.list(Some(prefix)).try_collect().await?;
        for m in &metas {
            self.delete(&m.location).await?;
        }
        Ok(metas.len())
    }

    /// The app folders the archive holds (`app=<id>`).
    pub async fn app_folders(&self) -> Result<Vec<String>, Error> {
        let listed = self.store.list_with_delimiter(None).await?;
        Ok(listed
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename()?.strip_prefix("app=").map(str::to_string))
            .collect())
    }
}
