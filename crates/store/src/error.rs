//! Why a store operation failed, the same for every backend.

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database file was written by a newer Rampart.
    #[error(
        "the database schema is version {found}, newer than this binary knows ({known}); upgrade Rampart"
    )]
    SchemaTooNew {
        /// Version found in the file.
        found: i64,
        /// Newest version this binary knows.
        known: i64,
    },
    /// A unique name is taken.
    #[error("{0} already exists")]
    Duplicate(String),
    /// A named thing does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// A single-use connection token was consumed already (perhaps by
    /// another process sharing the database).
    #[error("{0} was already used; connection secrets work once, mint a new one")]
    AlreadyUsed(String),
    /// Another replica answered (or took) this request event first: this
    /// answer must not be sent.
    #[error("{0} was answered by replica {1} already")]
    Claimed(String, String),
    /// What a command read changed before it could write (another process
    /// wrote it meanwhile); nothing was written.
    #[error("{0} changed meanwhile; nothing was written, run the command again")]
    Changed(String),
    /// The database refused a value of this job (not the database's fault:
    /// other jobs still commit).
    #[error("the database refused a value: {0}")]
    Refused(String),
    /// A stored value could not be read back (corruption or manual edits).
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
    /// The database failed.
    #[error("database error: {0}")]
    Database(String),
}

impl StoreError {
    /// Whether the error is about one job's data (so the jobs committed
    /// with it may still commit on their own) rather than about the store
    /// (busy, full, unreachable, broken).
    pub fn is_about_the_job(&self) -> bool {
        matches!(
            self,
            StoreError::AlreadyUsed(_)
                | StoreError::Duplicate(_)
                | StoreError::NotFound(_)
                | StoreError::Claimed(..)
                | StoreError::Refused(_)
        )
    }
}
