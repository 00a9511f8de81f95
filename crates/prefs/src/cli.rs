//! The command line: every flag also reads an environment variable (`PREFS_*`, `DATABASE_URL`).

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use prefs_domain::Limits;
use prefs_http::{Claims, JwtConfig, JwtKey};
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
    Serve(ServeArgs),
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
    #[arg(long, env = "PREFS_SQLITE_SYNCHRONOUS", value_enum, default_value_t = Synchronous::Full)]
    pub sqlite_synchronous: Synchronous,
    /// Users remembered by subject, so a token resolves without a query; 0 turns it off.
    #[arg(long, env = "PREFS_USER_CACHE", default_value_t = StoreConfig::DEFAULT_USER_CACHE)]
    pub user_cache: usize,
    /// Memory (bytes, estimated, in all) spent remembering the namespaces and single preferences
    /// reads found, each used only while still right (SQLite: no commit since; PostgreSQL: the
    /// user unchanged since); 0 turns it off.
    #[arg(long, env = "PREFS_NAMESPACE_CACHE_BYTES", default_value_t = StoreConfig::DEFAULT_NAMESPACE_CACHE_BYTES)]
    pub namespace_cache_bytes: u64,
}

/// SQLite durability settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Synchronous {
    /// `PRAGMA synchronous=FULL`.
    Full,
    /// `PRAGMA synchronous=NORMAL`.
    Normal,
}

impl DatabaseArgs {
    /// The storage adapter's configuration.
    pub fn store_config(&self) -> StoreConfig {
        let mut config = StoreConfig::new(self.database_url.clone());
        config.pool_size = self.pool_size;
        config.pool_wait = self.pool_timeout;
        config.user_cache = self.user_cache;
        config.namespace_cache_bytes = self.namespace_cache_bytes;
        config.sqlite_synchronous = match self.sqlite_synchronous {
            Synchronous::Full => SqliteSynchronous::Full,
            Synchronous::Normal => SqliteSynchronous::Normal,
        };
        config
    }
}

/// Token verification options.
#[derive(Debug, Clone, Args)]
pub struct JwtArgs {
    /// HS256 shared secret, at least 32 bytes.
    #[arg(long, env = "PREFS_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// PEM public key file for RS256 or ES256 (chosen by the key type).
    #[arg(long, env = "PREFS_JWT_PUBLIC_KEY_FILE", conflicts_with = "jwt_secret")]
    pub jwt_public_key_file: Option<PathBuf>,
    /// Required `iss` claim.
    #[arg(long, env = "PREFS_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
    /// Required `aud` claim; without it `aud` is not checked.
    #[arg(long, env = "PREFS_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,
}

impl JwtArgs {
    /// The configured key, if any.
    ///
    /// # Errors
    /// When the public key file cannot be read.
    pub fn key(&self) -> anyhow::Result<Option<JwtKey>> {
        Ok(match (&self.jwt_secret, &self.jwt_public_key_file) {
            (Some(secret), _) => Some(JwtKey::Secret(secret.as_bytes().to_vec())),
            (None, Some(path)) => Some(JwtKey::PublicKeyPem(
                std::fs::read(path).with_context(|| format!("reading {}", path.display()))?,
            )),
            (None, None) => None,
        })
    }
}

/// Limits (SPEC 1).
#[derive(Debug, Clone, Args)]
pub struct LimitArgs {
    /// Largest value, serialized, in bytes.
    #[arg(long, env = "PREFS_MAX_VALUE_BYTES", default_value_t = Limits::default().max_value_bytes)]
    pub max_value_bytes: usize,
    /// Most keys per user and namespace.
    #[arg(long, env = "PREFS_MAX_KEYS", default_value_t = Limits::default().max_keys)]
    pub max_keys: usize,
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
        let (key, dev_secret) = match (self.jwt.key()?, self.dev) {
            (Some(key), _) => (key, None),
            (None, true) => {
                let secret = hex::encode(rand::random::<[u8; 32]>()).into_bytes();
                (JwtKey::Secret(secret.clone()), Some(secret))
            }
            (None, false) => bail!(
                "no JWT key configured: set PREFS_JWT_SECRET or PREFS_JWT_PUBLIC_KEY_FILE, or run with --dev"
            ),
        };
        let settings = Settings {
            bind: self.bind.clone(),
            store: self.database.store_config(),
            migrate: !self.no_migrate,
            jwt: JwtConfig {
                key,
                issuer: self.jwt.jwt_issuer.clone(),
                audience: self.jwt.jwt_audience.clone(),
            },
            limits: Limits {
                max_value_bytes: self.limits.max_value_bytes,
                max_keys: self.limits.max_keys,
                max_body_bytes: self.limits.max_body_bytes,
                ..Limits::default()
            },
            workers: self.workers,
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
        assert!(matches!(settings.jwt.key, JwtKey::Secret(ref s) if Some(s) == secret.as_ref()));
    }
}
