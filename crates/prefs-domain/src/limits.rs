//! The configurable limits of docs/contract.md §1.4 and §4.

/// Size and count limits; each is configurable, and [`Limits::default`] gives the documented
/// defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The largest value, serialized as compact JSON, in bytes (default 1 MiB).
    pub max_value_bytes: usize,
    /// The most keys one user may hold in one namespace (default 1,000).
    pub max_keys: usize,
    /// The most one user may store in one namespace, in bytes (default 4 MiB): the sum over its
    /// preferences of [`Preference::stored_size`]. A write that does not grow a namespace already
    /// over it (after the limit was lowered) is still allowed.
    ///
    /// [`Preference::stored_size`]: crate::Preference::stored_size
    pub max_namespace_bytes: usize,
    /// The largest request body, in bytes (default 2 MiB). Enforced by the HTTP adapter.
    pub max_body_bytes: usize,
    /// How deeply a value's arrays and objects may nest (default 32).
    pub max_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_value_bytes: 1024 * 1024,
            max_keys: 1000,
            max_namespace_bytes: 4 * 1024 * 1024,
            max_body_bytes: 2 * 1024 * 1024,
            max_depth: 32,
        }
    }
}
