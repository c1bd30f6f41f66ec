use cronhook_core::ErrorKind;

/// Errors of the stores.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The named thing does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// An optimistic-concurrency check failed.
    #[error("{0}")]
    Conflict(String),
    /// A thing with that identity exists already.
    #[error("{0} already exists")]
    AlreadyExists(String),
    /// The shard's stored epoch is newer than the writer's: the writer lost the shard.
    #[error("shard {shard} is fenced: epoch {epoch} is stale")]
    Fenced {
        /// The shard.
        shard: u32,
        /// The writer's (stale) epoch.
        epoch: i64,
    },
    /// The database failed.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// A migration failed.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A stored row could not be decoded.
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// The configuration does not match the stored one.
    #[error("{0}")]
    Config(String),
}

impl Error {
    /// Returns the API-level kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::NotFound(_) => ErrorKind::NotFound,
            Self::Conflict(_) => ErrorKind::Conflict,
            Self::AlreadyExists(_) => ErrorKind::AlreadyExists,
            Self::Fenced { .. } => ErrorKind::FailedPrecondition,
            Self::Database(sqlx::Error::PoolTimedOut | sqlx::Error::Io(_)) => ErrorKind::Unavailable,
            Self::Database(_) | Self::Migrate(_) | Self::Corrupt(_) | Self::Config(_) => ErrorKind::Internal,
        }
    }
}

/// Result of store operations.
pub type Result<T> = std::result::Result<T, Error>;
