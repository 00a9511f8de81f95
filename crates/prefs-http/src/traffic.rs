//! How prefs meets the traffic it gets (docs/contract.md §4): deadlines for bodies and answers,
//! rate limits, and the proxies whose forwarding headers it believes. Each concern has its own
//! field and its own module; [`Traffic::default`] is what an unconfigured server does.

/// How prefs meets the traffic it gets.
#[derive(Debug, Clone, Default)]
pub struct Traffic {}
