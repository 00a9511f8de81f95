//! The command line: every flag also reads an environment variable (`PREFS_*`, `DATABASE_URL`).

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::bail;
use clap::{Args, Parser, Subcommand, ValueEnum};
use prefs_domain::Limits;
use prefs_http::auth::{ClaimMap, KeySources, Secret, claim_list, parse_algorithm, value_list};
use prefs_http::client::{Proxies, PublicUrl};
use prefs_http::deadlines::Deadlines;
use prefs_http::rate_limits::{Rate, RateLimits};
use prefs_http::{BrowserConfig, Claims, JwtConfig, SameSite, Traffic};
use prefs_storage::{SqliteSynchronous, StoreConfig};

use crate::Settings;

/// prefs: a user-preferences service speaking the Open edX, record and client-namespace dialects
/// over one store.
#[derive(Debug, Parser)]
#[command(name = "prefs", version, args_conflicts_with_subcommands = true)]
pub struct Cli {
    /// What to do; `serve` when omitted.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Options of `serve`, for when the subcommand is omitted.
    #[command(flatten)]
    pub serve: ServeArgs,
    /// Log as JSON lines instead of human-readable text.
    #[arg(long, global = true, env = "PREFS_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// Log line formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable.
    Text,
    /// One JSON object per line.
    Json,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP service (the default).
    Serve(Box<ServeArgs>),
    /// Run pending database migrations and exit.
    Migrate(DatabaseArgs),
    /// Mint an HS256 token with the configured secret.
    Token(TokenArgs),
    /// Print the OpenAPI document (what `/openapi.json` serves).
    Openapi,
    /// Administer users.
    #[command(subcommand)]
    Users(UsersCommand),
}

/// `prefs users ...`.
#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Create a user (or rename the subject's user); prints it as JSON.
    Add {
        /// The subject tokens will carry in `sub`.
        #[arg(long)]
        subject: String,
        /// The username.
        #[arg(long)]
        username: String,
        /// The user's id at the identity provider (the claim `PREFS_JWT_USER_ID_CLAIM` names), for
        /// a new user to take; by default prefs assigns one.
        #[arg(long)]
        id: Option<i64>,
        /// Database options.
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Print the user and every preference of every namespace as JSON.
    Export {
        /// The username.
        username: String,
        /// Database options.
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Erase the user and all their preferences.
    Remove {
        /// The username.
        username: String,
        /// Database options.
        #[command(flatten)]
        database: DatabaseArgs,
    },
}

impl UsersCommand {
    /// The database the command works on.
    pub fn database(&self) -> &DatabaseArgs {
        match self {
            Self::Add { database, .. } | Self::Export { database, .. } | Self::Remove { database, .. } => {
                database
            }
        }
    }
}

/// Options of `prefs serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "PREFS_BIND", default_value = "127.0.0.1:8080")]
    pub bind: String,
    /// Do not run migrations at start.
    #[arg(long)]
    pub no_migrate: bool,
    /// Demo mode: without a configured key, use a random secret and print ready-to-use tokens.
    #[arg(long)]
    pub dev: bool,
    /// HTTP worker threads (default: one per core).
    #[arg(long, env = "PREFS_WORKERS")]
    pub workers: Option<usize>,
    /// Database options.
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// Token verification options.
    #[command(flatten)]
    pub jwt: JwtArgs,
    /// Limits.
    #[command(flatten)]
    pub limits: LimitArgs,
    /// Browser clients: CORS, Open edX's JWT cookies, CSRF.
    #[command(flatten)]
    pub browser: BrowserArgs,
    /// Deadlines, rate limits, trusted proxies.
    #[command(flatten)]
    pub traffic: TrafficArgs,
}

/// How prefs meets the traffic it gets: deadlines, rate limits, trusted proxies.
#[derive(Debug, Clone, Args)]
pub struct TrafficArgs {
    /// How long a request body may take to arrive whole, from when prefs starts reading it (`10s`
    /// unless given); later, 408 and the connection is closed.
    #[arg(long, env = "PREFS_BODY_TIMEOUT", value_parser = humantime::parse_duration)]
    pub body_timeout: Option<Duration>,
    /// How long a client may read nothing of its answer before it is dropped (`30s` unless given;
    /// enforced on Linux).
    #[arg(long, env = "PREFS_SEND_TIMEOUT", value_parser = humantime::parse_duration)]
    pub send_timeout: Option<Duration>,
    /// Proxies whose `Forwarded` and `X-Forwarded-For/-Proto/-Host` headers are believed: networks
    /// in CIDR notation, comma-separated (`10.0.0.0/8, ::1/128`); a bare address is that address.
    /// From any other peer those headers are ignored.
    #[arg(long, env = "PREFS_TRUSTED_PROXIES")]
    pub trusted_proxies: Option<Proxies>,
    /// The URL prefs is reached at from outside (`https://prefs.example.com`, or with a path
    /// prefix `https://example.com/prefs`): the base of every absolute link it writes.
    #[arg(long, env = "PREFS_PUBLIC_URL")]
    pub public_url: Option<PublicUrl>,
    /// Requests per authenticated user and instance: `N/s` or `N/min` (bursts of 2N), or `off`.
    #[arg(long, env = "PREFS_RATE_LIMIT_USER", default_value_t = RateLimits::default().user)]
    pub rate_limit_user: Rate,
    /// Requests without a valid token per client address and instance: `N/s`, `N/min` or `off`.
    #[arg(long, env = "PREFS_RATE_LIMIT_ADDRESS", default_value_t = RateLimits::default().address)]
    pub rate_limit_address: Rate,
    /// New users (first sign-ins) per client address and instance: `N/s`, `N/min` or `off`.
    #[arg(long, env = "PREFS_RATE_LIMIT_SIGNUPS", default_value_t = RateLimits::default().signups)]
    pub rate_limit_signups: Rate,
}

impl TrafficArgs {
    /// The HTTP adapter's configuration.
    ///
    /// # Errors
    /// When a value does not parse.
    pub fn config(&self) -> anyhow::Result<Traffic> {
        let default = Deadlines::default();
        Ok(Traffic {
            deadlines: Deadlines {
                body: self.body_timeout.unwrap_or(default.body),
                send: self.send_timeout.unwrap_or(default.send),
            },
            proxies: self.trusted_proxies.clone().unwrap_or_default(),
            public_url: self.public_url.clone(),
            rate_limits: RateLimits {
                user: self.rate_limit_user,
                address: self.rate_limit_address,
                signups: self.rate_limit_signups,
            },
        })
    }
}

/// Browser clients (Open edX micro-frontends and other pages).
#[derive(Debug, Clone, Args)]
pub struct BrowserArgs {
    /// Origins that may call prefs from a page, with credentials (comma-separated, exact:
    /// `https://apps.example.com`), or `*` alone for any origin without credentials.
    #[arg(long, env = "PREFS_CORS_ORIGINS", value_delimiter = ',')]
    pub cors_origins: Vec<String>,
    /// Authenticate requests without an `Authorization` header by Open edX's JWT cookies
    /// (`edx-jwt-cookie-header-payload` and `edx-jwt-cookie-signature`); their writes need a CSRF token.
    #[arg(long, env = "PREFS_JWT_COOKIES")]
    pub jwt_cookies: bool,
    /// `SameSite` of the `csrftoken` cookie `/csrf/api/v1/token` sets: `none` when pages are on
    /// another site, `lax` or `strict` when they share prefs' site.
    #[arg(long, env = "PREFS_CSRF_COOKIE_SAMESITE", value_enum, default_value_t = CookieSameSite::None)]
    pub csrf_cookie_samesite: CookieSameSite,
    /// Whether the `csrftoken` cookie is `Secure` (HTTPS only); `false` needs a SameSite other than `none`.
    #[arg(long, env = "PREFS_CSRF_COOKIE_SECURE", default_value_t = true, action = clap::ArgAction::Set)]
    pub csrf_cookie_secure: bool,
}

/// The `SameSite` attribute of a cookie.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CookieSameSite {
    /// Sent cross-site too (needs `Secure`).
    None,
    /// Sent same-site, and on top-level navigations.
    Lax,
    /// Sent same-site only.
    Strict,
}

impl BrowserArgs {
    /// The HTTP adapter's configuration.
    pub fn config(&self) -> BrowserConfig {
        BrowserConfig {
            cors_origins: self
                .cors_origins
                .iter()
                .map(|o| o.trim())
                .filter(|o| !o.is_empty())
                .map(str::to_owned)
                .collect(),
            jwt_cookies: self.jwt_cookies,
            csrf_cookie_same_site: match self.csrf_cookie_samesite {
                CookieSameSite::None => SameSite::None,
                CookieSameSite::Lax => SameSite::Lax,
                CookieSameSite::Strict => SameSite::Strict,
            },
            csrf_cookie_secure: self.csrf_cookie_secure,
        }
    }
}

/// Database options.
#[derive(Debug, Clone, Args)]
pub struct DatabaseArgs {
    /// `sqlite://FILE` (embedded, the default) or `postgres://USER:PASSWORD@HOST:PORT/DB`.
    #[arg(long, env = "DATABASE_URL", default_value = "sqlite://prefs.db", hide_env_values = true)]
    pub database_url: String,
    /// PostgreSQL connections for writes per worker thread; reads share up to 2 more per worker
    /// thread (SQLite: one connection per worker thread and the writer).
    #[arg(long, env = "PREFS_DB_POOL_SIZE", default_value_t = 8)]
    pub pool_size: usize,
    /// How long a request waits for a connection, the SQLite writer or a lock before it gets 503
    /// (e.g. `5s`).
    #[arg(long, env = "PREFS_DB_POOL_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub pool_timeout: Duration,
    /// SQLite `synchronous`: `full` survives power loss; `normal` is faster and survives a crash.
    #[arg(long, env = "PREFS_SQLITE_SYNCHRONOUS", default_value = "full")]
    pub sqlite_synchronous: SqliteSynchronous,
    /// Users remembered by subject, so a token resolves without a query; 0 turns it off.
    #[arg(long, env = "PREFS_USER_CACHE", default_value_t = StoreConfig::DEFAULT_USER_CACHE)]
    pub user_cache: usize,
    /// Memory (bytes, estimated, in all) spent remembering the namespaces and single preferences
    /// reads found, each used only while still right (SQLite: no commit since; PostgreSQL: the
    /// user unchanged since); 0 turns it off.
    #[arg(long, env = "PREFS_NAMESPACE_CACHE_BYTES", default_value_t = StoreConfig::DEFAULT_NAMESPACE_CACHE_BYTES)]
    pub namespace_cache_bytes: u64,
    /// PostgreSQL: keep prepared statements for a connection's life. `false` behind a
    /// transaction-mode pooler (PgBouncer `pool_mode=transaction`, managed databases' poolers):
    /// every statement then runs in a transaction and nothing outlives one.
    #[arg(long, env = "PREFS_PG_PREPARED_STATEMENTS", default_value_t = true, action = clap::ArgAction::Set)]
    pub pg_prepared_statements: bool,
}

impl DatabaseArgs {
    /// The storage adapter's configuration.
    pub fn store_config(&self) -> StoreConfig {
        let mut config = StoreConfig::new(self.database_url.clone());
        config.pool_size = self.pool_size;
        config.pool_wait = self.pool_timeout;
        config.user_cache = self.user_cache;
        config.namespace_cache_bytes = self.namespace_cache_bytes;
        config.pg_prepared_statements = self.pg_prepared_statements;
        config.sqlite_synchronous = self.sqlite_synchronous;
        config
    }
}

/// Token verification options. Lists are comma-separated.
#[derive(Debug, Clone, Args)]
pub struct JwtArgs {
    /// HMAC secret (HS256/384/512), at least 32 bytes.
    #[arg(long, env = "PREFS_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// PEM file of public keys or certificates (RSA, EC P-256/P-384, Ed25519); every one is used.
    #[arg(long, env = "PREFS_JWT_PUBLIC_KEY_FILE")]
    pub jwt_public_key_file: Option<PathBuf>,
    /// JWK set file (e.g. Open edX's `JWT_PUBLIC_SIGNING_JWK_SET`); re-read when it changes or on SIGHUP.
    #[arg(long, env = "PREFS_JWT_JWKS_FILE")]
    pub jwt_jwks_file: Option<PathBuf>,
    /// JWK set URL, or an OpenID Connect discovery URL ending in `/.well-known/openid-configuration`.
    #[arg(long, env = "PREFS_JWT_JWKS_URL")]
    pub jwt_jwks_url: Option<String>,
    /// Accepted algorithms (default: every one the keys support).
    #[arg(long, env = "PREFS_JWT_ALGORITHMS")]
    pub jwt_algorithms: Option<String>,
    /// Accepted `iss` values; unset: not checked.
    #[arg(long, env = "PREFS_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
    /// Accepted `aud` values; unset: not checked.
    #[arg(long, env = "PREFS_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,
    /// Accepted clients (the client claim); unset: any.
    #[arg(long, env = "PREFS_JWT_CLIENT_IDS")]
    pub jwt_client_ids: Option<String>,
    /// Claims naming the user: names, or JSON Pointers starting with `/`; the first usable wins.
    #[arg(long, env = "PREFS_JWT_USERNAME_CLAIM", default_value = ClaimMap::USERNAME)]
    pub jwt_username_claim: String,
    /// Claims holding roles (strings, arrays, objects whose member names are roles, or `true`); all are joined.
    #[arg(long, env = "PREFS_JWT_ROLES_CLAIM", default_value = ClaimMap::ROLES)]
    pub jwt_roles_claim: String,
    /// Claims holding OAuth scopes (a space-separated string or an array); the first present wins.
    #[arg(long, env = "PREFS_JWT_SCOPE_CLAIM", default_value = ClaimMap::SCOPE)]
    pub jwt_scope_claim: String,
    /// Claims naming the client application; the first present wins.
    #[arg(long, env = "PREFS_JWT_CLIENT_CLAIM", default_value = ClaimMap::CLIENT)]
    pub jwt_client_claim: String,
    /// Claim holding the user's integer id at the identity provider, which becomes their prefs id.
    #[arg(long, env = "PREFS_JWT_USER_ID_CLAIM")]
    pub jwt_user_id_claim: Option<String>,
    /// Role values that grant staff (read anyone's preferences).
    #[arg(long, env = "PREFS_JWT_STAFF_ROLES", default_value = ClaimMap::STAFF_ROLES)]
    pub jwt_staff_roles: String,
    /// Role values that grant admin (read and write anyone's preferences).
    #[arg(long, env = "PREFS_JWT_ADMIN_ROLES", default_value = ClaimMap::ADMIN_ROLES)]
    pub jwt_admin_roles: String,
}

impl JwtArgs {
    /// The verification settings; `dev_secret` stands in when no key source is configured.
    ///
    /// # Errors
    /// When an algorithm name is unknown.
    pub fn config(&self, dev_secret: Option<&[u8]>) -> anyhow::Result<JwtConfig> {
        let list = |value: &Option<String>| value.as_deref().map(value_list).unwrap_or_default();
        let algorithms =
            list(&self.jwt_algorithms).iter().map(|name| parse_algorithm(name)).collect::<Result<_, _>>()?;
        let secret = self.jwt_secret.as_ref().map(|s| s.as_bytes()).or(dev_secret);
        Ok(JwtConfig {
            keys: KeySources {
                secret: secret.map(|s| Secret(s.to_vec())),
                public_key_file: self.jwt_public_key_file.clone(),
                jwks_file: self.jwt_jwks_file.clone(),
                jwks_url: self.jwt_jwks_url.clone(),
                algorithms,
            },
            issuers: list(&self.jwt_issuer),
            audiences: list(&self.jwt_audience),
            client_ids: list(&self.jwt_client_ids),
            claims: ClaimMap {
                username: claim_list(&self.jwt_username_claim),
                roles: claim_list(&self.jwt_roles_claim),
                scope: claim_list(&self.jwt_scope_claim),
                client: claim_list(&self.jwt_client_claim),
                user_id: self.jwt_user_id_claim.as_deref().map(claim_list).unwrap_or_default(),
                staff_roles: value_list(&self.jwt_staff_roles),
                admin_roles: value_list(&self.jwt_admin_roles),
            },
        })
    }

    /// Whether any key source is configured.
    pub fn has_key(&self) -> bool {
        self.jwt_secret.is_some()
            || self.jwt_public_key_file.is_some()
            || self.jwt_jwks_file.is_some()
            || self.jwt_jwks_url.is_some()
    }
}

/// Limits (docs/contract.md §1.4).
#[derive(Debug, Clone, Args)]
pub struct LimitArgs {
    /// Largest value, serialized, in bytes.
    #[arg(long, env = "PREFS_MAX_VALUE_BYTES", default_value_t = Limits::default().max_value_bytes)]
    pub max_value_bytes: usize,
    /// Most keys per user and namespace.
    #[arg(long, env = "PREFS_MAX_KEYS", default_value_t = Limits::default().max_keys)]
    pub max_keys: usize,
    /// Most bytes per user and namespace: keys plus values serialized.
    #[arg(long, env = "PREFS_MAX_NAMESPACE_BYTES", default_value_t = Limits::default().max_namespace_bytes)]
    pub max_namespace_bytes: usize,
    /// Largest request body in bytes.
    #[arg(long, env = "PREFS_MAX_BODY_BYTES", default_value_t = Limits::default().max_body_bytes)]
    pub max_body_bytes: usize,
}

/// Options of `prefs token`.
#[derive(Debug, Clone, Args)]
pub struct TokenArgs {
    /// What the token says.
    #[command(flatten)]
    pub claims: ClaimArgs,
    /// HS256 secret to sign with.
    #[arg(long, env = "PREFS_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: String,
}

/// The claims of a minted token.
#[derive(Debug, Clone, Args)]
pub struct ClaimArgs {
    /// The subject (`sub`).
    #[arg(long)]
    pub sub: String,
    /// The username (`preferred_username`); defaults to the subject.
    #[arg(long)]
    pub username: Option<String>,
    /// A role (`staff`, `admin`); repeatable.
    #[arg(long = "role")]
    pub roles: Vec<String>,
    /// An OAuth scope; repeatable.
    #[arg(long = "scope")]
    pub scopes: Vec<String>,
    /// The client id the token is issued to.
    #[arg(long)]
    pub client_id: Option<String>,
    /// Lifetime, e.g. `1h`, `30m`, `7d`.
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    pub ttl: Duration,
}

impl ClaimArgs {
    /// The token's claims, expiring `ttl` from now.
    pub fn claims(&self) -> Claims {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        Claims {
            sub: self.sub.clone(),
            preferred_username: self.username.clone(),
            roles: self.roles.clone(),
            scope: (!self.scopes.is_empty()).then(|| self.scopes.join(" ")),
            client_id: self.client_id.clone(),
            exp: now + self.ttl.as_secs(),
            iat: Some(now),
            ..Claims::default()
        }
    }
}

impl ServeArgs {
    /// The server settings, and in `--dev` mode without a configured key the random secret.
    ///
    /// # Errors
    /// When no key is configured outside `--dev`, or the key file cannot be read.
    pub fn settings(&self) -> anyhow::Result<(Settings, Option<Vec<u8>>)> {
        let dev_secret = match (self.jwt.has_key(), self.dev) {
            (true, _) => None,
            (false, true) => Some(hex::encode(rand::random::<[u8; 32]>()).into_bytes()),
            (false, false) => bail!(
                "no JWT key configured: set PREFS_JWT_SECRET, PREFS_JWT_PUBLIC_KEY_FILE, PREFS_JWT_JWKS_FILE \
                 or PREFS_JWT_JWKS_URL, or run with --dev"
            ),
        };
        let settings = Settings {
            bind: self.bind.clone(),
            store: self.database.store_config(),
            migrate: !self.no_migrate,
            jwt: self.jwt.config(dev_secret.as_deref())?,
            limits: Limits {
                max_value_bytes: self.limits.max_value_bytes,
                max_keys: self.limits.max_keys,
                max_namespace_bytes: self.limits.max_namespace_bytes,
                max_body_bytes: self.limits.max_body_bytes,
                ..Limits::default()
            },
            workers: self.workers,
            browser: self.browser.config(),
            traffic: self.traffic.config()?,
        };
        Ok((settings, dev_secret))
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn verify_cli() {
        Cli::command().debug_assert();
    }

    #[test]
    fn serve_is_the_default_and_refuses_to_start_without_a_key() {
        let cli = Cli::try_parse_from(["prefs", "--bind", "127.0.0.1:0"]).unwrap();
        assert!(cli.command.is_none());
        let mut serve = cli.serve;
        serve.jwt.jwt_secret = None;
        serve.jwt.jwt_public_key_file = None;
        assert!(serve.settings().is_err());
        serve.dev = true;
        let (settings, secret) = serve.settings().unwrap();
        assert_eq!(settings.jwt.keys.secret.map(|s| s.0), secret);
    }

    #[test]
    fn browser_options() {
        let cli = Cli::try_parse_from(["prefs"]).unwrap();
        assert_eq!(cli.serve.browser.config(), BrowserConfig::default());
        let cli = Cli::try_parse_from([
            "prefs",
            "--cors-origins",
            "https://apps.example.com, http://127.0.0.1:8000,",
            "--jwt-cookies",
            "--csrf-cookie-samesite",
            "lax",
            "--csrf-cookie-secure",
            "false",
        ])
        .unwrap();
        let config = cli.serve.browser.config();
        assert_eq!(config.cors_origins, ["https://apps.example.com", "http://127.0.0.1:8000"]);
        assert!(config.jwt_cookies);
        assert_eq!((config.csrf_cookie_same_site, config.csrf_cookie_secure), (SameSite::Lax, false));
        assert_eq!(config.validate(), Ok(()));
    }

    #[test]
    fn deadline_options() {
        let cli = Cli::try_parse_from(["prefs"]).unwrap();
        assert_eq!(cli.serve.traffic.config().unwrap().deadlines, Deadlines::default());
        let cli = Cli::try_parse_from(["prefs", "--body-timeout", "1500ms", "--send-timeout", "2m"]).unwrap();
        let deadlines = cli.serve.traffic.config().unwrap().deadlines;
        assert_eq!(
            deadlines,
            Deadlines { body: Duration::from_millis(1500), send: Duration::from_secs(120) }
        );
        assert!(Cli::try_parse_from(["prefs", "--body-timeout", "soon"]).is_err());
    }
}
