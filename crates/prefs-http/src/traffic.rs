//! How prefs meets the traffic it gets (docs/contract.md §4): deadlines for bodies and answers,
//! rate limits, and the proxies whose forwarding headers it believes. Each concern has its own
//! field and its own module; [`Traffic::default`] is what an unconfigured server does.

use crate::client::{Proxies, PublicUrl};
use crate::deadlines::Deadlines;
use crate::rate_limits::RateLimits;

/// How prefs meets the traffic it gets.
#[derive(Debug, Clone, Default)]
pub struct Traffic {
    /// How long a client may take to send its body and to read its answer.
    pub deadlines: Deadlines,
    /// The proxies whose `Forwarded` and `X-Forwarded-*` headers are believed (none).
    pub proxies: Proxies,
    /// The base of every absolute link prefs writes, whatever the request's headers say (none:
    /// the URL the client called).
    pub public_url: Option<PublicUrl>,
    /// Requests per user and per client address, and new users per client address.
    pub rate_limits: RateLimits,
}
