//! Who the client is and which URL they called (docs/contract.md §4.5): the one place that reads
//! `Forwarded` (RFC 7239) and `X-Forwarded-For`, `-Proto` and `-Host`, and only when the TCP peer
//! is one of the trusted proxies ([`Proxies`], `PREFS_TRUSTED_PROXIES`). From anyone else they are
//! ignored: the client is the peer, and the URL is the one the request itself names. A public URL
//! ([`PublicUrl`], `PREFS_PUBLIC_URL`) overrides the scheme, host and path prefix of every link.

use std::net::{IpAddr, Ipv4Addr};

use actix_web::http::header::{self, HeaderName};
use actix_web::{HttpRequest, web};
use url::Url;

use crate::state::AppState;
use crate::traffic::Traffic;
pub use crate::traffic::{Proxies, PublicUrl};

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// How the application serving `req` meets traffic; the defaults outside one (unit tests).
fn traffic(req: &HttpRequest) -> Option<&Traffic> {
    req.app_data::<web::Data<AppState>>().map(|state| &state.traffic)
}

/// The client's address: the TCP peer's, or, when the peer is a trusted proxy, the address the
/// proxies say they got the request from (see [`forwarded`]). `0.0.0.0` when there is no peer
/// address (a Unix socket).
pub(crate) fn address(req: &HttpRequest) -> IpAddr {
    let (peer, proxies) = (peer(req), proxies(traffic(req)));
    // The common case, on every request: a peer that is no trusted proxy is the client.
    if !proxies.trust(peer) {
        return peer;
    }
    forwarded(req, proxies).address
}

/// The absolute URL of this request as the client called it, with its query: on the public URL
/// when one is set, else on the scheme and host the client used (see [`forwarded`]).
pub(crate) fn url(req: &HttpRequest) -> Option<Url> {
    let target = req.uri().path_and_query().map_or("/", |target| target.as_str());
    match traffic(req) {
        Some(Traffic { public_url: Some(PublicUrl(base)), .. }) => {
            Url::parse(&format!("{}{target}", base.as_str().trim_end_matches('/'))).ok()
        }
        traffic => {
            let Origin { scheme, host, .. } = forwarded(req, proxies(traffic));
            Url::parse(&format!("{scheme}://{host}{target}")).ok()
        }
    }
}

/// The trusted proxies of `traffic`; none without it.
fn proxies(traffic: Option<&Traffic>) -> &Proxies {
    const NONE: &Proxies = &Proxies(Vec::new());
    traffic.map_or(NONE, |traffic| &traffic.proxies)
}

/// The TCP peer's address.
fn peer(req: &HttpRequest) -> IpAddr {
    req.peer_addr().map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |peer| peer.ip().to_canonical())
}

/// Where a request comes from and what it was sent to.
#[derive(Debug, PartialEq, Eq)]
struct Origin<'a> {
    address: IpAddr,
    scheme: &'a str,
    host: &'a str,
}

/// The client's address, scheme and host. From a peer that is not a trusted proxy: the peer, the
/// connection's scheme and the `Host` header. From a trusted proxy, the proxies' record of the
/// hops, `Forwarded` if the request has one, else `X-Forwarded-For`, read from the right: each
/// proxy appends the address it got the request from, so the client is the right-most address
/// that is not a trusted proxy (or, if the proxies are all trusted, the left-most; or, at an
/// address that does not parse, such as `unknown`, the proxy that wrote it). The scheme and host
/// are the `proto` and `host` of the `Forwarded` element that named the client, else the last
/// `X-Forwarded-Proto` and `X-Forwarded-Host` values (the ones the nearest proxy set), else the
/// connection's own.
fn forwarded<'a>(req: &'a HttpRequest, proxies: &Proxies) -> Origin<'a> {
    let peer = peer(req);
    let scheme = req.uri().scheme_str().unwrap_or(if req.app_config().secure() { "https" } else { "http" });
    let host = (req.headers().get(header::HOST).and_then(|host| host.to_str().ok()))
        .or_else(|| req.uri().authority().map(|authority| authority.as_str()))
        .unwrap_or_else(|| req.app_config().host());
    let own = Origin { address: peer, scheme, host };
    if !proxies.trust(peer) {
        return own;
    }
    let values = |name| req.headers().get_all(name).filter_map(|value| value.to_str().ok());
    let hops: Vec<Hop<'a>> = if req.headers().contains_key(header::FORWARDED) {
        values(header::FORWARDED).flat_map(|value| value.split(',')).map(Hop::forwarded).collect()
    } else {
        let last = |name| values(name).flat_map(|value| value.rsplit(',')).next().map(str::trim);
        let (proto, host) = (last(X_FORWARDED_PROTO), last(X_FORWARDED_HOST));
        let hops = values(X_FORWARDED_FOR).flat_map(|value| value.split(','));
        let mut hops: Vec<Hop<'a>> = hops.map(|hop| Hop { address: node(hop), proto, host }).collect();
        if hops.is_empty() {
            // A proxy that tells the protocol and host only.
            hops.push(Hop { address: None, proto, host });
        }
        hops
    };
    // Walk back from the peer while the hops are trusted proxies: the hop each one recorded is
    // believed, up to and including the first hop that is not a trusted proxy.
    let mut client = Hop { address: Some(peer), proto: None, host: None };
    for hop in hops.into_iter().rev() {
        let next = hop.address;
        client = Hop { address: next.or(client.address), ..hop };
        if next.is_none_or(|address| !proxies.trust(address)) {
            break;
        }
    }
    Origin {
        address: client.address.unwrap_or(peer),
        scheme: client.proto.filter(|proto| matches!(*proto, "http" | "https")).unwrap_or(scheme),
        host: client.host.filter(|host| !host.is_empty()).unwrap_or(host),
    }
}

/// One hop a proxy recorded: the address it got the request from (if it parses), and the
/// protocol and host that request was sent with.
struct Hop<'a> {
    address: Option<IpAddr>,
    proto: Option<&'a str>,
    host: Option<&'a str>,
}

impl<'a> Hop<'a> {
    /// One element of `Forwarded`: `for=...;proto=...;host=...`, names case-insensitive, values
    /// possibly quoted.
    fn forwarded(element: &'a str) -> Self {
        let mut parsed = Hop { address: None, proto: None, host: None };
        for pair in element.split(';') {
            let Some((name, value)) = pair.split_once('=') else { continue };
            let value = value.trim().trim_matches('"');
            match name.trim().to_ascii_lowercase().as_str() {
                "for" => parsed.address = node(value),
                "proto" => parsed.proto = Some(value),
                "host" => parsed.host = Some(value),
                _ => {}
            }
        }
        parsed
    }
}

/// The address of a node as proxies write it: `192.0.2.1`, `192.0.2.1:4711`, `2001:db8::1`,
/// `[2001:db8::1]:4711`, possibly quoted; `None` for `unknown`, obfuscated names and garbage.
fn node(node: &str) -> Option<IpAddr> {
    let node = node.trim().trim_matches('"');
    let address = match node.strip_prefix('[') {
        Some(bracketed) => bracketed.split_once(']')?.0,
        None if node.matches(':').count() == 1 => node.split_once(':')?.0,
        None => node,
    };
    address.parse::<IpAddr>().ok().map(|address| address.to_canonical())
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use actix_web::middleware::from_fn;
    use actix_web::test::{TestRequest, call_service, init_service};
    use actix_web::{App, HttpResponse};

    use super::*;

    fn request(peer: &str, headers: &[(&str, &str)]) -> HttpRequest {
        let mut req =
            TestRequest::get().uri("/api/v2/user/me/preference/?limit=5").peer_addr(peer.parse().unwrap());
        for (name, value) in headers {
            req = req.insert_header((*name, *value));
        }
        req.insert_header(("host", "prefs.internal:8080")).to_http_request()
    }

    fn origin(proxies: &str, peer: &str, headers: &[(&str, &str)]) -> (String, String, String) {
        let req = request(peer, headers);
        let Origin { address, scheme, host } = forwarded(&req, &proxies.parse().unwrap());
        (address.to_string(), scheme.to_owned(), host.to_owned())
    }

    fn own(address: &str) -> (String, String, String) {
        (address.into(), "http".into(), "prefs.internal:8080".into())
    }

    #[test]
    fn proxies_parse_as_cidr_lists() {
        let proxies: Proxies = " 10.0.0.0/8, 127.0.0.1 ,::1/128,2001:db8::/32,".parse().unwrap();
        assert_eq!(proxies.to_string(), "10.0.0.0/8,127.0.0.1/32,::1/128,2001:db8::/32");
        assert!(proxies.trust("10.1.2.3".parse().unwrap()));
        assert!(proxies.trust("::ffff:10.1.2.3".parse().unwrap()));
        assert!(proxies.trust("2001:db8:1::7".parse().unwrap()));
        assert!(!proxies.trust("127.0.0.2".parse().unwrap()));
        assert_eq!("".parse::<Proxies>().unwrap(), Proxies::default());
        // Host bits are dropped, as the network means.
        assert_eq!("10.1.2.3/8".parse::<Proxies>().unwrap().to_string(), "10.0.0.0/8");
        for bad in ["10.0.0.0/33", "localhost", "10.0.0.0/8; 11.0.0.0/8", "*"] {
            let error = bad.parse::<Proxies>().unwrap_err();
            assert!(error.contains("CIDR"), "{bad}: {error}");
        }
    }

    #[test]
    fn public_urls_are_absolute_http_urls_without_query() {
        for good in ["https://prefs.example.com", "https://example.com/prefs/", "http://10.0.0.1:8080"] {
            assert!(good.parse::<PublicUrl>().is_ok(), "{good}");
        }
        for bad in [
            "prefs.example.com",
            "/prefs",
            "ftp://example.com",
            "https://example.com/?a=1",
            "https://example.com/#top",
            "https://user:pw@example.com",
        ] {
            let error = bad.parse::<PublicUrl>().unwrap_err();
            assert!(error.contains(bad), "{bad}: {error}");
        }
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_says() {
        let claims = [
            ("x-forwarded-for", "203.0.113.9"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "attacker.example"),
            ("forwarded", "for=203.0.113.8;proto=https;host=evil.example"),
        ];
        assert_eq!(origin("", "192.0.2.7:5000", &claims), own("192.0.2.7"));
        assert_eq!(origin("10.0.0.0/8", "192.0.2.7:5000", &claims), own("192.0.2.7"));
        assert_eq!(origin("", "[::ffff:192.0.2.7]:5000", &[]), own("192.0.2.7"));
    }

    #[test]
    fn a_trusted_peer_is_believed_up_to_the_first_untrusted_hop() {
        let proxies = "10.0.0.0/8, 127.0.0.1";
        let headers = [
            ("x-forwarded-for", "198.51.100.1, 203.0.113.9, 10.0.0.2"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "prefs.example.com"),
        ];
        let expected = ("203.0.113.9".into(), "https".into(), "prefs.example.com".into());
        assert_eq!(origin(proxies, "127.0.0.1:5000", &headers), expected);
        // Several header lines are one list.
        let split = [("x-forwarded-for", "198.51.100.1, 203.0.113.9"), ("x-forwarded-for", "10.0.0.2")];
        let req = {
            let mut req = TestRequest::get().peer_addr("10.0.0.3:1".parse().unwrap());
            for header in split {
                req = req.append_header(header);
            }
            req.to_http_request()
        };
        assert_eq!(forwarded(&req, &proxies.parse().unwrap()).address.to_string(), "203.0.113.9");
        // All hops trusted: the left-most; an unparsable hop: the proxy that wrote it.
        let all_trusted = [("x-forwarded-for", "10.0.0.9, 10.0.0.2")];
        assert_eq!(origin(proxies, "127.0.0.1:5000", &all_trusted).0, "10.0.0.9");
        let unknown = [("x-forwarded-for", "203.0.113.9, unknown, 10.0.0.2")];
        assert_eq!(origin(proxies, "127.0.0.1:5000", &unknown).0, "10.0.0.2");
        // The last of a list of protocols and hosts: the one the nearest proxy set.
        let appended =
            [("x-forwarded-proto", "gopher, https"), ("x-forwarded-host", "evil.example, prefs.example.com")];
        assert_eq!(
            origin(proxies, "127.0.0.1:5000", &appended),
            ("127.0.0.1".into(), "https".into(), "prefs.example.com".into())
        );
    }

    #[test]
    fn forwarded_wins_and_its_client_element_gives_scheme_and_host() {
        let proxies = "10.0.0.0/8";
        let headers = [
            (
                "forwarded",
                r#"for=198.51.100.1;host=spoofed.example, For="[2001:db8::7]:4711";Proto=https;Host=prefs.example.com, for=10.0.0.2;proto=http;host=inner"#,
            ),
            ("x-forwarded-for", "192.0.2.99"),
        ];
        let expected = ("2001:db8::7".into(), "https".into(), "prefs.example.com".into());
        assert_eq!(origin(proxies, "10.0.0.1:5000", &headers), expected);
        assert_eq!(node("\"192.0.2.1:4711\""), Some("192.0.2.1".parse().unwrap()));
        assert_eq!(node("2001:db8::1"), Some("2001:db8::1".parse().unwrap()));
        assert_eq!(node("_hidden"), None);
    }

    #[test]
    fn urls_keep_the_query_and_default_to_the_host_header() {
        let req = request("192.0.2.7:5000", &[("x-forwarded-host", "attacker.example")]);
        assert_eq!(
            url(&req).unwrap().as_str(),
            "http://prefs.internal:8080/api/v2/user/me/preference/?limit=5"
        );
    }

    /// Collects what a test's subscriber writes.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[actix_web::test]
    async fn the_request_log_line_names_the_client() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber =
            tracing_subscriber::fmt().with_writer(move || writer.clone()).with_ansi(false).finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        let app = init_service(
            App::new()
                .wrap(from_fn(crate::access_log::middleware))
                .wrap(from_fn(crate::request_id::middleware))
                .default_service(web::to(|| async { HttpResponse::Ok().finish() })),
        )
        .await;
        let req = TestRequest::get()
            .peer_addr("192.0.2.7:5000".parse().unwrap())
            .insert_header(("x-forwarded-for", "203.0.113.9"))
            .to_request();
        call_service(&app, req).await;
        let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        assert!(log.contains("client=192.0.2.7"), "{log}");
    }
}
