//! The store's error type. Each variant says what failed and on which object, so the DIMSE
//! and HTTP layers can turn it into the right status and message.

use std::path::PathBuf;

/// Errors of the blob store and the index.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The disk (or quota) is full; the sender may retry later (DIMSE 0xA700).
    #[error("out of storage space writing {path}")]
    OutOfSpace {
        /// The file being written.
        path: PathBuf,
    },
    /// A file operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// On which file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The received object is not a dataset the node can parse (DIMSE 0xC000).
    #[error("cannot parse dataset: {0}")]
    Unparseable(String),
    /// The dataset parses but lacks what the node needs, or contradicts the command
    /// (DIMSE 0xA900).
    #[error("{0}")]
    Invalid(String),
    /// RocksDB failed.
    #[error("index: {0}")]
    Index(String),
    /// A stored record does not decode.
    #[error("corrupt index record {key}: {reason}")]
    Corrupt {
        /// The record's key, lossily printed.
        key: String,
        /// Why it does not decode.
        reason: String,
    },
}

impl StoreError {
    /// Wrap an I/O error, recognising a full disk or quota.
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        let path = path.into();
        match source.kind() {
            std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded => {
                StoreError::OutOfSpace { path }
            }
            _ => StoreError::Io { op, path, source },
        }
    }
}

impl From<rocksdb::Error> for StoreError {
    fn from(e: rocksdb::Error) -> Self {
        StoreError::Index(e.into_string())
    }
}

/// Result alias of this crate.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;
