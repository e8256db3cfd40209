//! The one error type of the bench. Failures of single connections or pushes are not errors: they
//! are counted by kind in the reports. A `BenchError` aborts a whole run (bad flags, a target that
//! is not loopback, a worker process that misbehaves, the global deadline).

use std::io;

/// Why a bench run could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A flag or a combination of flags is out of range.
    #[error("bad configuration: {0}")]
    Config(String),
    /// A target resolved to an address outside 127.0.0.0/8 and ::1.
    #[error("refusing non-loopback target {0:?}: the bench only loads 127.0.0.0/8, ::1 or localhost")]
    NotLoopback(String),
    /// An address or URL that cannot be parsed.
    #[error("bad address {0:?}: {1}")]
    Address(String, &'static str),
    /// Local I/O failed (spawning workers, reading /proc).
    #[error("i/o: {0}")]
    Io(#[from] io::Error),
    /// A worker process broke the parent/worker protocol or died.
    #[error("worker: {0}")]
    Worker(String),
    /// The run exceeded its global deadline and was aborted.
    #[error("global deadline of {0} s exceeded, run aborted")]
    Deadline(u64),
}

/// The bench's result type.
pub type Result<T, E = BenchError> = std::result::Result<T, E>;
