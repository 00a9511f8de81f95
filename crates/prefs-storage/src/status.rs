//! [`PoolStatus`]: the connections' figures both backends report.

/// The connections' figures, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PoolStatus {
    /// The most connections there may be.
    pub max_size: usize,
    /// The connections open now.
    pub size: usize,
    /// The open connections idle now.
    pub available: usize,
    /// Requests waiting for a connection.
    pub waiting: usize,
}
