//! The keys tokens are verified with, kept current: a secret, key files (PEM, JWK set) re-read
//! when they change or on SIGHUP, and a JWK set over HTTP(S) (or found through
//! an OpenID Connect discovery document) fetched in the background, on its `Cache-Control`
//! schedule and when a token names a key not yet seen (at most once every 30 seconds). A source
//! that fails to load keeps its last good keys.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant, SystemTime};

use jsonwebtoken::Algorithm;
use tokio::sync::{Notify, watch};

use super::keys::{self, Key, KeyError};

/// The least and most time between two fetches of a remote key set, and the time when its
/// answer says nothing (`Cache-Control: max-age`).
pub const REMOTE_MIN_AGE: Duration = Duration::from_secs(60);
/// See [`REMOTE_MIN_AGE`].
pub const REMOTE_MAX_AGE: Duration = Duration::from_secs(24 * 60 * 60);
/// See [`REMOTE_MIN_AGE`].
pub const REMOTE_DEFAULT_AGE: Duration = Duration::from_secs(10 * 60);
/// The least time between two fetches asked for by tokens naming unknown keys.
pub const UNKNOWN_KID_INTERVAL: Duration = Duration::from_secs(30);
/// How long one fetch of a remote set may take, and how long a request waits for it.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest remote document read.
const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;
/// How often key files are checked for changes.
const FILE_POLL: Duration = Duration::from_secs(1);

/// A secret that `Debug` does not show.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Where verification keys come from; any combination.
#[derive(Debug, Clone, Default)]
pub struct KeySources {
    /// An HMAC secret (HS256/384/512), at least [`keys::MIN_SECRET_BYTES`].
    pub secret: Option<Secret>,
    /// A PEM file: every public key and certificate in it is used.
    pub public_key_file: Option<PathBuf>,
    /// A JWK set file, re-read when it changes or on SIGHUP.
    pub jwks_file: Option<PathBuf>,
    /// A JWK set URL, or an OpenID Connect discovery document's URL (ending in
    /// `/.well-known/openid-configuration`).
    pub jwks_url: Option<String>,
    /// The algorithms accepted; empty: every one the keys support.
    pub algorithms: Vec<Algorithm>,
}

impl KeySources {
    /// Whether any source is configured.
    pub fn is_empty(&self) -> bool {
        self.secret.is_none()
            && self.public_key_file.is_none()
            && self.jwks_file.is_none()
            && self.jwks_url.is_none()
    }
}

/// The keys of every source, and what a request needs to wait for a refresh.
pub(crate) struct KeyRing {
    keys: RwLock<Arc<[Key]>>,
    /// Moves whenever the keys change (remembered tokens verified before are checked again).
    generation: AtomicU64,
    /// Whether the remote set, if any, has been loaded once.
    loaded: AtomicBool,
    remote: bool,
    /// Asks the refresher for a fetch of the remote set.
    wake: Notify,
    /// Counts finished fetches of the remote set, so that a request can wait for the next one.
    fetched: watch::Sender<u64>,
    last_asked: Mutex<Option<Instant>>,
}

impl KeyRing {
    /// Loads the local sources and starts the refresher when a source changes over time.
    ///
    /// # Errors
    /// [`KeyError`] when no source is configured or a local source is unusable.
    pub(crate) fn start(sources: &KeySources) -> Result<Arc<Self>, KeyError> {
        if sources.is_empty() {
            return Err(KeyError::NoKeys);
        }
        let refresher = Refresher::new(sources)?;
        let ring = Arc::new(Self {
            keys: RwLock::new(Arc::from([])),
            generation: AtomicU64::new(0),
            loaded: AtomicBool::new(sources.jwks_url.is_none()),
            remote: sources.jwks_url.is_some(),
            wake: Notify::new(),
            fetched: watch::Sender::new(0),
            last_asked: Mutex::new(None),
        });
        refresher.publish(&ring);
        if refresher.is_dynamic() {
            let weak = Arc::downgrade(&ring);
            std::thread::Builder::new()
                .name("prefs-keys".into())
                .spawn(move || refresher.run(weak))
                .map_err(|e| KeyError::Unreadable("the key refresher".into(), e.to_string()))?;
        }
        Ok(ring)
    }

    /// The current keys.
    pub(crate) fn keys(&self) -> Arc<[Key]> {
        Arc::clone(&self.keys.read().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// The current generation of the keys.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Whether every source has loaded keys at least once.
    pub fn ready(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
    }

    /// A token names a key not known: fetches the remote set again, unless that was asked for
    /// less than [`UNKNOWN_KID_INTERVAL`] ago, and waits for the fetch (at most
    /// [`FETCH_TIMEOUT`]). Returns whether a fetch finished.
    pub(crate) async fn refresh_for_unknown_key(&self) -> bool {
        if !self.remote {
            return false;
        }
        {
            let mut last = self.last_asked.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if last.is_some_and(|at| at.elapsed() < UNKNOWN_KID_INTERVAL) {
                return false;
            }
            *last = Some(Instant::now());
        }
        let mut fetched = self.fetched.subscribe();
        fetched.mark_unchanged();
        self.wake.notify_one();
        matches!(tokio::time::timeout(FETCH_TIMEOUT * 2, fetched.changed()).await, Ok(Ok(())))
    }
}

/// A key file and what it last held.
struct File {
    path: PathBuf,
    jwks: bool,
    stamp: Option<(SystemTime, u64)>,
    keys: Vec<Key>,
}

impl File {
    fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
        std::fs::metadata(path).ok().and_then(|m| Some((m.modified().ok()?, m.len())))
    }

    fn read(&self) -> Result<Vec<Key>, KeyError> {
        let origin = self.path.display().to_string();
        let text =
            std::fs::read(&self.path).map_err(|e| KeyError::Unreadable(origin.clone(), e.to_string()))?;
        if self.jwks { keys::from_jwks(&text, &origin) } else { keys::from_pem(&text, &origin) }
    }
}

/// The remote key set and what it last held.
struct Remote {
    url: String,
    keys: Vec<Key>,
    next: Instant,
    /// Consecutive failures before a first success, for the retry backoff.
    failures: u32,
}

/// Owns the sources and reloads them; runs on a thread of its own.
struct Refresher {
    algorithms: Vec<Algorithm>,
    fixed: Vec<Key>,
    files: Vec<File>,
    remote: Option<Remote>,
}

impl Refresher {
    fn new(sources: &KeySources) -> Result<Self, KeyError> {
        let mut fixed = Vec::new();
        if let Some(secret) = &sources.secret {
            fixed.push(keys::from_secret(&secret.0)?);
        }
        let files = [(&sources.public_key_file, false), (&sources.jwks_file, true)]
            .into_iter()
            .filter_map(|(path, jwks)| path.clone().map(|path| (path, jwks)))
            .map(|(path, jwks)| {
                let mut file = File { stamp: File::stamp(&path), path, jwks, keys: Vec::new() };
                file.keys = file.read()?;
                Ok(file)
            })
            .collect::<Result<Vec<_>, KeyError>>()?;
        let remote = sources.jwks_url.clone().map(|url| Remote {
            url,
            keys: Vec::new(),
            next: Instant::now(),
            failures: 0,
        });
        let algorithms = sources.algorithms.clone();
        Ok(Self { algorithms, fixed, files, remote })
    }

    /// Whether any source changes over time.
    fn is_dynamic(&self) -> bool {
        self.remote.is_some() || !self.files.is_empty()
    }

    /// Makes the union of every source's keys current.
    fn publish(&self, ring: &KeyRing) {
        let all = self.fixed.iter().chain(self.files.iter().flat_map(|f| &f.keys));
        let all = all.chain(self.remote.iter().flat_map(|r| &r.keys));
        let keys: Arc<[Key]> = all.filter_map(|k| k.clone().narrowed(&self.algorithms)).collect();
        *ring.keys.write().unwrap_or_else(std::sync::PoisonError::into_inner) = keys;
        ring.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Reloads until the ring is dropped.
    fn run(mut self, ring: Weak<KeyRing>) {
        let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(runtime) => runtime,
            Err(e) => return tracing::error!("the key refresher cannot start: {e}"),
        };
        runtime.block_on(async move {
            let client = match reqwest::Client::builder().timeout(FETCH_TIMEOUT).build() {
                Ok(client) => client,
                Err(e) => return tracing::error!("the key refresher cannot start: {e}"),
            };
            let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
            loop {
                let Some(strong) = ring.upgrade() else { return };
                let due = self
                    .remote
                    .as_ref()
                    .map_or(Instant::now() + FILE_POLL, |r| r.next.min(Instant::now() + FILE_POLL));
                let hangup = async {
                    match hangup.as_mut() {
                        Some(signal) => signal.recv().await,
                        None => std::future::pending().await,
                    }
                };
                // At most FILE_POLL passes between turns, so a dropped ring soon ends the thread.
                let wake = tokio::select! {
                    () = strong.wake.notified() => Wake::Asked,
                    () = tokio::time::sleep_until(due.into()) => Wake::Timer,
                    Some(()) = hangup => Wake::Hangup,
                };
                let mut changed = self.reload_files(wake == Wake::Hangup);
                let remote_due = self.remote.as_ref().is_some_and(|r| r.next <= Instant::now());
                let fetched = wake == Wake::Asked || remote_due;
                if fetched {
                    changed |= self.fetch(&client, &strong).await;
                }
                if changed {
                    self.publish(&strong);
                }
                if fetched {
                    // After publishing: a request waiting for this fetch then sees its keys.
                    strong.fetched.send_modify(|n| *n += 1);
                }
            }
        });
    }

    /// Re-reads the key files that changed (all of them when `force`); a file that fails keeps
    /// its last keys. Returns whether any keys changed.
    fn reload_files(&mut self, force: bool) -> bool {
        let mut changed = false;
        for file in &mut self.files {
            let stamp = File::stamp(&file.path);
            if !force && stamp == file.stamp {
                continue;
            }
            file.stamp = stamp;
            match file.read() {
                Ok(keys) => {
                    tracing::info!(path = %file.path.display(), keys = keys.len(), "key file loaded");
                    file.keys = keys;
                    changed = true;
                }
                Err(e) => tracing::error!("key file not reloaded, keeping its last keys: {e}"),
            }
        }
        changed
    }

    /// Fetches the remote set; on failure keeps the last good one. Returns whether it changed.
    async fn fetch(&mut self, client: &reqwest::Client, ring: &KeyRing) -> bool {
        let Some(remote) = self.remote.as_mut() else { return false };
        match fetch_jwks(client, &remote.url).await {
            Ok((keys, age)) => {
                tracing::info!(url = remote.url, keys = keys.len(), next_in = ?age, "JWK set fetched");
                remote.keys = keys;
                remote.next = Instant::now() + age;
                remote.failures = 0;
                ring.loaded.store(true, Ordering::Release);
                true
            }
            Err(e) => {
                remote.failures = remote.failures.saturating_add(1);
                // Before a first success, retry soon (1 s, doubling to 30 s); after, in a minute.
                let retry = if ring.ready() {
                    REMOTE_MIN_AGE
                } else {
                    Duration::from_secs(1 << remote.failures.min(5).saturating_sub(1))
                        .min(UNKNOWN_KID_INTERVAL)
                };
                remote.next = Instant::now() + retry;
                tracing::error!(url = remote.url, retry_in = ?retry, "JWK set not fetched, keeping the last good set: {e}");
                false
            }
        }
    }
}

#[derive(PartialEq, Eq)]
enum Wake {
    Asked,
    Timer,
    Hangup,
}

/// Fetches a JWK set (through a discovery document when `url` names one): its keys and how
/// long they may be kept.
async fn fetch_jwks(client: &reqwest::Client, url: &str) -> Result<(Vec<Key>, Duration), String> {
    let url = if url.trim_end_matches('/').ends_with("/.well-known/openid-configuration") {
        let (document, _) = get(client, url).await?;
        let document: serde_json::Value =
            serde_json::from_slice(&document).map_err(|_| format!("{url}: not a JSON discovery document"))?;
        document
            .get("jwks_uri")
            .and_then(|u| u.as_str())
            .ok_or_else(|| format!("{url}: the discovery document has no `jwks_uri`"))?
            .to_owned()
    } else {
        url.to_owned()
    };
    let (body, age) = get(client, &url).await?;
    let keys = keys::from_jwks(&body, &url).map_err(|e| e.to_string())?;
    if keys.is_empty() {
        return Err(format!("{url}: the JWK set holds no usable signing key"));
    }
    Ok((keys, age))
}

/// How long an answer with these `Cache-Control` values may be kept: its `max-age`, clamped to
/// [`REMOTE_MIN_AGE`]..[`REMOTE_MAX_AGE`], else [`REMOTE_DEFAULT_AGE`].
fn max_age<'a>(cache_control: impl Iterator<Item = &'a str>) -> Duration {
    cache_control
        .flat_map(|v| v.split(','))
        .find_map(|d| d.trim().strip_prefix("max-age=").and_then(|s| s.parse::<u64>().ok()))
        .map_or(REMOTE_DEFAULT_AGE, |s| Duration::from_secs(s).clamp(REMOTE_MIN_AGE, REMOTE_MAX_AGE))
}

/// GETs `url`: its body (at most [`MAX_DOCUMENT_BYTES`]) and its `Cache-Control: max-age`,
/// clamped.
async fn get(client: &reqwest::Client, url: &str) -> Result<(Vec<u8>, Duration), String> {
    let mut response = client.get(url).send().await.map_err(|e| format!("{url}: {e}"))?;
    if !response.status().is_success() {
        return Err(format!("{url}: HTTP {}", response.status()));
    }
    let age = max_age(
        response.headers().get_all(reqwest::header::CACHE_CONTROL).iter().filter_map(|v| v.to_str().ok()),
    );
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| format!("{url}: {e}"))? {
        if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
            return Err(format!("{url}: the answer is over {MAX_DOCUMENT_BYTES} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((body, age))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_kept_as_cache_control_says_within_bounds() {
        let age = |values: &[&str]| max_age(values.iter().copied());
        assert_eq!(age(&["public, max-age=3600"]), Duration::from_secs(3600));
        assert_eq!(age(&["no-cache", "max-age=120, must-revalidate"]), Duration::from_secs(120));
        assert_eq!(age(&["max-age=5"]), REMOTE_MIN_AGE);
        assert_eq!(age(&["max-age=999999999"]), REMOTE_MAX_AGE);
        assert_eq!(age(&[]), REMOTE_DEFAULT_AGE);
        assert_eq!(age(&["max-age=soon"]), REMOTE_DEFAULT_AGE);
    }
}
