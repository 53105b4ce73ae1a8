//! `rampart backup` and `rampart restore`: a consistent copy of the SQLite
//! store while the bunker runs, and putting one back (with the bunker
//! stopped), its audit chain verified first.
//!
//! PostgreSQL has its own tools (`pg_dump`, `pg_restore`): both commands
//! refuse there and say so.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use store::Store;
use store_sqlite::SqliteStore;

use crate::cmd::audit::head_file;
use crate::config::Config;
use crate::database::Database;

/// `rampart backup FILE`
#[derive(clap::Args)]
pub struct BackupArgs {
    /// Where to write the copy (must not exist).
    file: PathBuf,
}

/// `rampart restore FILE`
#[derive(clap::Args)]
pub struct RestoreArgs {
    /// A file `rampart backup` wrote.
    file: PathBuf,
}

const PG_HINT: &str = "the store is PostgreSQL: back it up with `pg_dump --format=custom` and \
                       restore with `pg_restore` (docs/operations.md, Backups)";

fn sqlite_path(config: &Config) -> Result<PathBuf> {
    match config.database()? {
        Database::Sqlite(path) => Ok(path),
        Database::Postgres(_) => bail!(PG_HINT),
    }
}

/// Write a consistent copy of the store while it is in use.
pub fn backup(args: BackupArgs, config: &Config) -> Result<()> {
    let path = sqlite_path(config)?;
    let store = SqliteStore::open(&path)
        .with_context(|| format!("could not open the database {}", path.display()))?;
    store.backup_to(&args.file)?;
    let head = store.audit_head()?;
    eprintln!(
        "backed up to {} (audit head {})",
        args.file.display(),
        head.map_or_else(|| "none: the log is empty".to_owned(), |h| h.to_text())
    );
    Ok(())
}

/// Put a backup in place of the store (the bunker must be stopped).
pub fn restore(args: RestoreArgs, config: &Config) -> Result<()> {
    let live = sqlite_path(config)?;
    // `rampart run` holds this lock (shared) while it runs: a bunker would
    // go on writing to the file replaced under it.
    let _exclusive = crate::cmd::run::lock_data_dir(&config.data_dir, true)
        .context("stop `rampart run` on this data dir before restoring")?;
    // A copy is opened (and brought up to date), so the backup itself
    // stays as it was written.
    let staging = sibling(&live, "restoring");
    let _ = std::fs::remove_file(&staging);
    std::fs::copy(&args.file, &staging)
        .with_context(|| format!("could not read the backup {}", args.file.display()))?;
    let checked = (|| -> Result<Option<store::ChainPoint>> {
        let store = SqliteStore::open(&staging)
            .with_context(|| format!("{} is not a Rampart database", args.file.display()))?;
        let verified = store::verify_store(&store, None)
            .map_err(|e| anyhow::anyhow!("the backup's audit log does not verify: {e}"))?;
        Ok(verified.head)
    })();
    let head = match checked {
        Ok(head) => head,
        Err(e) => {
            let _ = std::fs::remove_file(&staging);
            return Err(e);
        }
    };
    let recorded = head_file::read(&config.data_dir).ok().flatten();
    // The old database, its WAL and shared memory are moved aside, not
    // deleted: a failure below puts them back, and after a success they
    // stay as `*.before-restore` until the next restore.
    let aside: Vec<(PathBuf, PathBuf)> = ["", "-wal", "-shm"]
        .iter()
        .map(|suffix| {
            let from = PathBuf::from(format!("{}{suffix}", live.display()));
            let to = PathBuf::from(format!("{}.before-restore{suffix}", live.display()));
            (from, to)
        })
        .filter(|(from, _)| from.exists())
        .collect();
    let mut moved = Vec::new();
    let mut failed = None;
    for (from, to) in &aside {
        match std::fs::rename(from, to) {
            Ok(()) => moved.push((from, to)),
            Err(e) => {
                failed = Some(
                    anyhow::Error::new(e)
                        .context(format!("could not move {} aside", from.display())),
                );
                break;
            }
        }
    }
    if failed.is_none()
        && let Err(e) = std::fs::rename(&staging, &live)
    {
        failed = Some(anyhow::Error::new(e).context(format!(
            "could not put the backup in place of {}",
            live.display()
        )));
    }
    if let Some(e) = failed {
        for (from, to) in moved.iter().rev() {
            let _ = std::fs::rename(to, from);
        }
        let _ = std::fs::remove_file(&staging);
        return Err(e);
    }
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", staging.display()));
    }
    let lost = match (recorded, head) {
        (Some(r), Some(h)) if r.seq > h.seq => {
            format!("; {} audit rows written after it are gone", r.seq - h.seq)
        }
        _ => String::new(),
    };
    match head {
        Some(h) => head_file::write(&config.data_dir, h)?,
        None => {
            let _ = std::fs::remove_file(config.data_dir.join("audit-head"));
        }
    }
    eprintln!(
        "restored {} into {}{lost}; its audit chain verifies",
        args.file.display(),
        live.display()
    );
    Ok(())
}

fn sibling(path: &Path, tag: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{tag}"));
    path.with_file_name(name)
}
