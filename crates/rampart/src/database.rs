//! Which store a command opens: `--database`, `RAMPART_DATABASE` or the
//! config file's `database` — `postgres://…` (or `postgresql://…`) for
//! PostgreSQL, a path or `sqlite://PATH` for SQLite — and by default the
//! SQLite file in the data directory.
//!
//! A password never goes on the command line (every local user sees argv in
//! `ps`): a `--database` URL that carries one is refused, pointing to the
//! environment, the config file or `PGPASSFILE`. URLs are only ever shown
//! redacted.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use store::Store;
use store_postgres::PostgresStore;
use store_sqlite::SqliteStore;

/// The database file's name in the data directory.
pub const SQLITE_FILE: &str = "rampart.sqlite";

/// A selected store, not yet opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Database {
    /// A SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL URL (may hold a password: see [`Database::redacted`]).
    Postgres(String),
}

impl Database {
    /// Read a `database` setting; `None` is the SQLite file in `data_dir`.
    pub fn select(setting: Option<&str>, data_dir: &Path) -> Result<Database> {
        let Some(text) = setting.map(str::trim).filter(|s| !s.is_empty()) else {
            return Ok(Database::Sqlite(data_dir.join(SQLITE_FILE)));
        };
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            url::Url::parse(text).context("the database URL is not a valid postgres:// URL")?;
            return Ok(Database::Postgres(text.to_owned()));
        }
        if let Some(path) = text.strip_prefix("sqlite://") {
            return Ok(Database::Sqlite(PathBuf::from(path)));
        }
        if text.contains("://") {
            bail!("the database must be postgres://…, sqlite://PATH or a file path");
        }
        Ok(Database::Sqlite(PathBuf::from(text)))
    }

    /// Refuse a `--database` flag whose URL carries a password.
    pub fn refuse_password_in_argv(flag: &str) -> Result<()> {
        let has_password = url::Url::parse(flag)
            .is_ok_and(|u| u.password().is_some() || u.query_pairs().any(|(k, _)| k == "password"));
        if has_password {
            bail!(
                "--database carries a password, which every local user can read in `ps`; \
                 set RAMPART_DATABASE, the config file's `database`, or use a PGPASSFILE instead"
            );
        }
        Ok(())
    }

    /// Open it (creating and migrating it as needed). Blocking: from async
    /// code, call it on the blocking pool.
    pub fn open(&self) -> Result<Box<dyn Store>> {
        match self {
            Database::Sqlite(path) => {
                Ok(Box::new(SqliteStore::open(path).with_context(|| {
                    format!("could not open the database {}", path.display())
                })?))
            }
            Database::Postgres(url) => Ok(Box::new(
                PostgresStore::connect(url)
                    .with_context(|| format!("could not open {}", self.redacted()))?,
            )),
        }
    }

    /// For logs and errors: a URL without its password.
    pub fn redacted(&self) -> String {
        match self {
            Database::Sqlite(path) => path.display().to_string(),
            Database::Postgres(text) => match url::Url::parse(text) {
                Ok(mut url) => {
                    if url.password().is_some() {
                        let _ = url.set_password(Some("***"));
                    }
                    // libpq also takes `?password=…`.
                    let hidden: Vec<(String, String)> = url
                        .query_pairs()
                        .map(|(k, v)| {
                            let v = if k == "password" {
                                "***".into()
                            } else {
                                v.into_owned()
                            };
                            (k.into_owned(), v)
                        })
                        .collect();
                    if !hidden.is_empty() {
                        url.query_pairs_mut().clear().extend_pairs(hidden);
                    }
                    url.to_string()
                }
                Err(_) => "postgres://…".to_owned(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_select_the_backend() {
        let dir = Path::new("/data");
        assert_eq!(
            Database::select(None, dir).unwrap(),
            Database::Sqlite(dir.join(SQLITE_FILE))
        );
        assert_eq!(
            Database::select(Some("sqlite:///tmp/x.db"), dir).unwrap(),
            Database::Sqlite("/tmp/x.db".into())
        );
        assert_eq!(
            Database::select(Some("/tmp/y.db"), dir).unwrap(),
            Database::Sqlite("/tmp/y.db".into())
        );
        assert!(matches!(
            Database::select(Some("postgres://u@h:5432/db"), dir).unwrap(),
            Database::Postgres(_)
        ));
        assert!(Database::select(Some("mysql://h/db"), dir).is_err());
    }

    #[test]
    fn passwords_stay_off_the_command_line_and_out_of_logs() {
        assert!(Database::refuse_password_in_argv("postgres://u:secret@h/db").is_err());
        assert!(Database::refuse_password_in_argv("postgres://u@h/db").is_ok());
        let db = Database::Postgres("postgres://u:secret@h:5432/db".into());
        let shown = db.redacted();
        assert!(
            !shown.contains("secret") && shown.contains("h:5432"),
            "{shown}"
        );
        let db = Database::Postgres("postgres://u@h/db?sslmode=require&password=secret".into());
        let shown = db.redacted();
        assert!(
            !shown.contains("secret") && shown.contains("sslmode=require"),
            "{shown}"
        );
    }
}
