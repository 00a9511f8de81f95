//! How prefs meets the traffic it gets (docs/contract.md §4): deadlines for bodies and answers,
//! rate limits, the proxies whose forwarding headers it believes ([`Proxies`]) and the URL it is
//! reached at ([`PublicUrl`]). Each concern has its own field; deadlines and rate limits their own
//! module, and `client` reads requests with the last two. [`Traffic::default`] is what an
//! unconfigured server does.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;
use url::Url;

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

/// The proxies whose forwarding headers prefs believes: a list of networks, none by default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Proxies(pub(crate) Vec<IpNet>);

impl Proxies {
    /// Whether `address` is one of them (an IPv4-mapped IPv6 address counts as its IPv4 one).
    pub fn trust(&self, address: IpAddr) -> bool {
        let address = address.to_canonical();
        self.0.iter().any(|net| net.contains(&address))
    }
}

/// A comma-separated list of networks in CIDR notation (`10.0.0.0/8, ::1/128`); a bare address
/// is that one address (`/32`, `/128`). Empty means none.
impl FromStr for Proxies {
    type Err = String;

    fn from_str(list: &str) -> Result<Self, String> {
        let nets = list.split(',').map(str::trim).filter(|item| !item.is_empty()).map(|item| {
            item.parse::<IpNet>()
                .or_else(|_| item.parse::<IpAddr>().map(IpNet::from))
                .map(|net| net.trunc())
                .map_err(|_| {
                    format!("`{item}` is not an IP address or a network in CIDR notation (10.0.0.0/8)")
                })
        });
        nets.collect::<Result<_, _>>().map(Self)
    }
}

impl fmt::Display for Proxies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nets: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&nets.join(","))
    }
}

/// The URL prefs is reached at from outside (`https://prefs.example.com`, or with a path prefix
/// `https://example.com/prefs`): the base of every absolute link it writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicUrl(pub(crate) Url);

/// An absolute `http` or `https` URL with a host, and without credentials, query or fragment.
impl FromStr for PublicUrl {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let url = Url::parse(text.trim()).map_err(|e| format!("`{text}` is not an absolute URL: {e}"))?;
        let why = if !matches!(url.scheme(), "http" | "https") {
            "its scheme is not http or https"
        } else if url.host().is_none() {
            "it has no host"
        } else if !url.username().is_empty() || url.password().is_some() {
            "it has credentials"
        } else if url.query().is_some() || url.fragment().is_some() {
            "it has a query or a fragment"
        } else {
            return Ok(Self(url));
        };
        Err(format!("`{text}` cannot be the public URL: {why}"))
    }
}

impl fmt::Display for PublicUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.as_str())
    }
}
