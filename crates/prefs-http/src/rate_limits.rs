//! Rate limits, per instance (docs/contract.md §4.4): requests per user, requests without a valid
//! token per client address, and new users per client address. Each is a GCRA limiter
//! (`governor`) keyed over a bounded store of its own, so memory stays capped however many
//! users and addresses appear. A request over a limit is answered 429 with `Retry-After`
//! ([`Problem::TooManyRequests`]) and counted in `prefs_rate_limited_total{limit}`.

use std::convert::Infallible;
use std::fmt;
use std::hash::{BuildHasher, Hash, RandomState};
use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;
use std::str::FromStr;
use std::sync::Arc;

use governor::clock::{Clock, MonotonicClock};
use governor::nanos::Nanos;
use governor::state::{InMemoryState, NotKeyed, StateStore};
use governor::{Quota, RateLimiter};
use prometheus::IntCounter;
use quick_cache::sync::Cache;

pub use crate::error::Limit;
use crate::error::Problem;
use crate::metrics::Metrics;

/// How many keys each limiter remembers (users, or addresses): about 100 bytes each, so under
/// 10 MB per limiter. A key that is evicted starts over with a full burst when it comes back.
const KEYS_PER_LIMIT: usize = 65_536;

/// One rate limit: `N/s` or `N/min`, with bursts of up to `2N` requests, or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rate {
    /// No limit.
    Off,
    /// `N` requests a second.
    PerSecond(NonZeroU32),
    /// `N` requests a minute.
    PerMinute(NonZeroU32),
}

impl Rate {
    /// The governor quota: the rate, with a burst of twice the count.
    fn quota(self) -> Option<Quota> {
        let (quota, count) = match self {
            Self::Off => return None,
            Self::PerSecond(n) => (Quota::per_second(n), n),
            Self::PerMinute(n) => (Quota::per_minute(n), n),
        };
        Some(quota.allow_burst(count.saturating_mul(nonzero(2))))
    }
}

impl FromStr for Rate {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let bad = || format!("`{text}` is not a rate limit: write `N/s` or `N/min` (N from 1), or `off`");
        let text = text.trim();
        if text.eq_ignore_ascii_case("off") {
            return Ok(Self::Off);
        }
        let (count, per) = text.split_once('/').ok_or_else(bad)?;
        let count: NonZeroU32 = count.trim().parse().map_err(|_| bad())?;
        match per.trim() {
            "s" => Ok(Self::PerSecond(count)),
            "min" => Ok(Self::PerMinute(count)),
            _ => Err(bad()),
        }
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Off => f.write_str("off"),
            Self::PerSecond(n) => write!(f, "{n}/s"),
            Self::PerMinute(n) => write!(f, "{n}/min"),
        }
    }
}

/// The three limits. The defaults leave room for any real client: a page makes a handful of
/// requests, a busy script tens a second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimits {
    /// Requests per user (`PREFS_RATE_LIMIT_USER`, default `100/s`).
    pub user: Rate,
    /// Requests without a valid token per client address (`PREFS_RATE_LIMIT_ADDRESS`, default
    /// `20/s`).
    pub address: Rate,
    /// New users per client address (`PREFS_RATE_LIMIT_SIGNUPS`, default `60/min`).
    pub signups: Rate,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            user: Rate::PerSecond(nonzero(100)),
            address: Rate::PerSecond(nonzero(20)),
            signups: Rate::PerMinute(nonzero(60)),
        }
    }
}

/// `n`, which is not 0.
const fn nonzero(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).expect("not zero")
}

/// The limiters of one instance, built once from [`RateLimits`].
pub struct RateLimiters {
    user: Option<Limiter<u64>>,
    address: Option<Limiter<IpAddr>>,
    signups: Option<Limiter<IpAddr>>,
    /// Hashes subjects into the user limiter's keys: a fixed-size key, no copy of the subject.
    subjects: RandomState,
}

impl RateLimiters {
    /// Limiters for `limits`, counting refusals in `metrics`.
    pub fn new(limits: &RateLimits, metrics: &Metrics) -> Self {
        Self {
            user: Limiter::new(limits.user, metrics.rate_limited(Limit::User)),
            address: Limiter::new(limits.address, metrics.rate_limited(Limit::Address)),
            signups: Limiter::new(limits.signups, metrics.rate_limited(Limit::Signup)),
            subjects: RandomState::new(),
        }
    }

    /// Counts a request of the user with this subject.
    ///
    /// # Errors
    /// [`Problem::TooManyRequests`] when the user is over the limit.
    pub(crate) fn user(&self, subject: &str) -> Result<(), Problem> {
        self.user
            .as_ref()
            .map_or(Ok(()), |limiter| limiter.check(&self.subjects.hash_one(subject), Limit::User))
    }

    /// Counts a request without a valid token from `client`.
    ///
    /// # Errors
    /// [`Problem::TooManyRequests`] when the address is over the limit.
    pub(crate) fn address(&self, client: IpAddr) -> Result<(), Problem> {
        self.address.as_ref().map_or(Ok(()), |limiter| limiter.check(&address_key(client), Limit::Address))
    }

    /// Whether new users are limited: only then is it worth asking whether a subject is new.
    pub(crate) fn limits_signups(&self) -> bool {
        self.signups.is_some()
    }

    /// Counts a new user signing in from `client`.
    ///
    /// # Errors
    /// [`Problem::TooManyRequests`] when the address is over the limit.
    pub(crate) fn signup(&self, client: IpAddr) -> Result<(), Problem> {
        self.signups.as_ref().map_or(Ok(()), |limiter| limiter.check(&address_key(client), Limit::Signup))
    }
}

/// The key an address is limited under: an IPv4 address, or the /64 network of an IPv6 address
/// (one host commonly holds a whole /64, so single IPv6 addresses cost an attacker nothing).
fn address_key(address: IpAddr) -> IpAddr {
    match address.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from_bits(v6.to_bits() & !u128::from(u64::MAX))),
        v4 => v4,
    }
}

/// A GCRA limiter keyed by `K`, over a bounded store.
type Keyed<K> = RateLimiter<K, Bounded<K>, MonotonicClock>;

/// One limit: a keyed GCRA limiter and the counter of its refusals.
struct Limiter<K: Hash + Eq + Clone> {
    limiter: Keyed<K>,
    refused: IntCounter,
}

impl<K: Hash + Eq + Clone + Send + Sync + 'static> Limiter<K> {
    fn new(rate: Rate, refused: IntCounter) -> Option<Self> {
        let quota = rate.quota()?;
        Some(Self { limiter: RateLimiter::new(quota, Bounded::new(KEYS_PER_LIMIT), MonotonicClock), refused })
    }

    /// Lets a request of `key` through, or refuses it with the time until one would pass.
    fn check(&self, key: &K, limit: Limit) -> Result<(), Problem> {
        self.limiter.check_key(key).map_err(|not_until| {
            self.refused.inc();
            let wait = not_until.wait_time_from(self.limiter.clock().now());
            let seconds = wait.as_nanos().div_ceil(1_000_000_000).max(1);
            Problem::TooManyRequests { limit, retry_after: u64::try_from(seconds).unwrap_or(u64::MAX) }
        })
    }
}

/// A keyed state store for governor that holds at most a fixed number of keys: a `quick_cache`
/// of per-key states. Unlike governor's own keyed stores (a map that only grows, until it is
/// pruned), it evicts the keys used least (recently and often) when full. An evicted key comes
/// back as new, with a full burst: a flood of fresh keys can thus reset a limited key, but only
/// by pushing out every hotter one, and each of those fresh keys is itself limited.
struct Bounded<K>(Cache<K, Arc<InMemoryState>>);

impl<K: Hash + Eq + Clone> Bounded<K> {
    fn new(keys: usize) -> Self {
        Self(Cache::new(keys))
    }
}

impl<K: Hash + Eq + Clone> StateStore for Bounded<K> {
    type Key = K;

    fn measure_and_replace<T, F, E>(&self, key: &K, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        // A known key: a shared read of its shard and a reference count; a new one: one allocation.
        let state = self.0.get_or_insert_with(key, || Ok::<_, Infallible>(Arc::default()));
        let Ok(state) = state;
        state.measure_and_replace(&NotKeyed::NonKey, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_and_print() {
        for (text, rate) in [
            ("100/s", Rate::PerSecond(NonZeroU32::new(100).unwrap())),
            (" 60/min ", Rate::PerMinute(NonZeroU32::new(60).unwrap())),
            ("off", Rate::Off),
            ("OFF", Rate::Off),
        ] {
            assert_eq!(text.parse::<Rate>(), Ok(rate), "{text}");
            assert_eq!(rate.to_string().parse::<Rate>(), Ok(rate));
        }
        for bad in ["", "0/s", "-1/s", "10", "10/h", "10/sec", "ten/s", "10 per second", "4294967296/s"] {
            let error = bad.parse::<Rate>().unwrap_err();
            assert!(error.contains("`N/s` or `N/min`"), "{bad}: {error}");
        }
        let defaults = RateLimits::default();
        assert_eq!(
            [defaults.user, defaults.address, defaults.signups].map(|r| r.to_string()),
            ["100/s", "20/s", "60/min"]
        );
    }

    #[test]
    fn bursts_are_twice_the_rate() {
        let quota = "3/min".parse::<Rate>().unwrap().quota().unwrap();
        assert_eq!(quota.burst_size().get(), 6);
        assert_eq!(quota.replenish_interval(), std::time::Duration::from_secs(20));
        assert_eq!(Rate::Off.quota(), None);
    }

    #[test]
    fn a_limiter_refuses_past_the_burst_with_a_retry_time_per_key() {
        let limiter =
            Limiter::<u64>::new("1/min".parse().unwrap(), IntCounter::new("t", "t").unwrap()).unwrap();
        assert!(limiter.check(&1, Limit::User).is_ok());
        assert!(limiter.check(&1, Limit::User).is_ok());
        match limiter.check(&1, Limit::User) {
            Err(Problem::TooManyRequests { limit: Limit::User, retry_after }) => {
                assert!((1..=60).contains(&retry_after), "{retry_after}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(limiter.refused.get(), 1);
        assert!(limiter.check(&2, Limit::User).is_ok());
    }

    #[test]
    fn the_store_stays_bounded_however_many_keys_come() {
        let keys = 1_000;
        let limiter: Keyed<u64> =
            RateLimiter::new(Quota::per_second(NonZeroU32::MIN), Bounded::new(keys), MonotonicClock);
        for key in 0..100 * keys as u64 {
            assert!(limiter.check_key(&key).is_ok());
        }
        let stored = limiter.into_state_store().0;
        assert!(stored.len() <= keys + keys / 10, "{} keys kept", stored.len());
    }

    #[test]
    fn ipv6_addresses_share_their_64() {
        let key = |a: &str| address_key(a.parse().unwrap()).to_string();
        assert_eq!(key("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::");
        assert_eq!(key("2001:db8:1:2:bbbb::9"), "2001:db8:1:2::");
        assert_eq!(key("::ffff:192.0.2.1"), "192.0.2.1");
        assert_eq!(key("192.0.2.1"), "192.0.2.1");
    }
}
