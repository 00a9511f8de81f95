//! Opening PostgreSQL connections: the database URL's TLS settings with libpq's meanings, the
//! TLS itself (rustls with ring; no libpq, no OpenSSL), and errors that name their fix.
//!
//! tokio-postgres reads `sslmode` only as `disable`, `prefer` or `require`, and none of libpq's
//! certificate parameters, so [`PgConnector::new`] takes them out of the URL and hands it the
//! rest:
//!
//! | `sslmode` | encrypted | the server's certificate |
//! |---|---|---|
//! | `disable` | never | — |
//! | `prefer` (the default) | when the server offers TLS, else in plain text | as `require` |
//! | `require` | always | not checked (chained to `sslrootcert` when that is given, as libpq does) |
//! | `verify-ca` | always | chained to `sslrootcert` |
//! | `verify-full` | always | chained to `sslrootcert` and naming the host connected to |
//!
//! `sslrootcert` is a PEM file of CA certificates, or `system` for the operating system's roots
//! (which, as in libpq, means `verify-full`); without it `verify-ca` and `verify-full` use
//! `~/.postgresql/root.crt` when it exists. `sslcert` and `sslkey` are the PEM files of a client
//! certificate and its key.
//!
//! Behind a transaction-mode pooler (PgBouncer `pool_mode=transaction`, the poolers of managed
//! databases) a connection's session is not its own: each transaction may run on another server
//! connection, so nothing may outlive a transaction. With prepared statements off
//! ([`StoreConfig::pg_prepared_statements`](crate::StoreConfig::pg_prepared_statements)) a
//! connection caches no statement, closes each statement inside the transaction that prepared it,
//! sets no session setting, and the store runs every statement inside a transaction.

use std::fmt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;

use diesel::ConnectionError;
use diesel::connection::CacheSize;
use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    AlertDescription, CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::config::redact;
use crate::error::StorageError;

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SslMode {
    /// Plain text only.
    Disable,
    /// TLS when the server offers it.
    Prefer,
    /// TLS, the certificate unchecked (unless `sslrootcert` is given).
    Require,
    /// TLS, the certificate chained to a trusted root.
    VerifyCa,
    /// TLS, the certificate chained to a trusted root and naming the host.
    VerifyFull,
}

impl SslMode {
    fn parse(value: &str) -> Result<Self, StorageError> {
        Ok(match value {
            "disable" => Self::Disable,
            "allow" | "prefer" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            _ => {
                return Err(StorageError::InvalidConfig(format!(
                    "sslmode must be disable, prefer, require, verify-ca or verify-full, not {value:?}"
                )));
            }
        })
    }

    fn name(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Prefer => "prefer",
            Self::Require => "require",
            Self::VerifyCa => "verify-ca",
            Self::VerifyFull => "verify-full",
        }
    }
}

/// The TLS settings of a database URL, taken out of it.
#[derive(Debug, Default)]
struct TlsParams {
    sslmode: Option<String>,
    sslrootcert: Option<String>,
    sslcert: Option<String>,
    sslkey: Option<String>,
}

/// Splits libpq's TLS parameters off `url` (a `postgres://` URL, perhaps with several hosts,
/// which the `url` crate cannot parse): the URL tokio-postgres gets, and the parameters.
fn split_tls_params(url: &str) -> (String, TlsParams) {
    let Some((base, query)) = url.split_once('?') else {
        return (url.to_owned(), TlsParams::default());
    };
    let mut params = TlsParams::default();
    let mut rest = url::form_urlencoded::Serializer::new(String::new());
    for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
        let slot = match &*key {
            "sslmode" => &mut params.sslmode,
            "sslrootcert" => &mut params.sslrootcert,
            "sslcert" => &mut params.sslcert,
            "sslkey" => &mut params.sslkey,
            _ => {
                rest.append_pair(&key, &value);
                continue;
            }
        };
        *slot = Some(value.into_owned());
    }
    let rest = rest.finish();
    let url = if rest.is_empty() { base.to_owned() } else { format!("{base}?{rest}") };
    (url, params)
}

/// Opens PostgreSQL connections as the URL says: its hosts (each tried in turn, with
/// `target_session_attrs`), its TLS settings, and whether the store may keep prepared statements.
pub(crate) struct PgConnector {
    config: tokio_postgres::Config,
    tls: MakeRustlsConnect,
    mode: SslMode,
    /// Whether the store may keep statements prepared across transactions (not behind a
    /// transaction-mode pooler).
    prepared_statements: bool,
    /// Run once by each new connection (session settings; empty behind a pooler).
    setup_sql: String,
}

impl fmt::Debug for PgConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgConnector")
            .field("mode", &self.mode)
            .field("prepared_statements", &self.prepared_statements)
            .finish_non_exhaustive()
    }
}

impl PgConnector {
    /// A connector for `url`; its connections run `setup_sql` once when made, unless
    /// `prepared_statements` is off (then nothing may outlive a transaction).
    ///
    /// # Errors
    /// [`StorageError::InvalidConfig`] for a URL tokio-postgres cannot read, an unknown `sslmode`,
    /// a certificate or key file that cannot be read, or `verify-ca`/`verify-full` without roots.
    pub(crate) fn new(url: &str, prepared_statements: bool, setup_sql: String) -> Result<Self, StorageError> {
        let invalid = |reason: String| StorageError::InvalidConfig(format!("{reason}: {}", redact(url)));
        let (rest, params) = split_tls_params(url);
        let system_roots = params.sslrootcert.as_deref() == Some("system");
        let mode = match params.sslmode.as_deref().map(SslMode::parse).transpose()? {
            Some(mode) => mode,
            // libpq 16: `sslrootcert=system` alone means `verify-full`.
            None if system_roots => SslMode::VerifyFull,
            None => SslMode::Prefer,
        };
        if system_roots && mode != SslMode::VerifyFull {
            return Err(invalid(format!(
                "sslrootcert=system checks the server's name against the system's roots, so it needs \
                 sslmode=verify-full, not sslmode={}",
                mode.name()
            )));
        }
        let mut config: tokio_postgres::Config =
            rest.parse().map_err(|e| invalid(format!("not a PostgreSQL URL ({e})")))?;
        config.ssl_mode(match mode {
            SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            _ => tokio_postgres::config::SslMode::Require,
        });
        let tls = tls_config(mode, &params).map_err(invalid)?;
        Ok(Self { config, tls: MakeRustlsConnect::new(tls), mode, prepared_statements, setup_sql })
    }

    /// Whether statements may stay prepared across transactions.
    pub(crate) fn prepared_statements(&self) -> bool {
        self.prepared_statements
    }

    /// Opens and sets up a connection, on the first of the URL's hosts that takes it.
    pub(crate) async fn connect(&self) -> Result<AsyncPgConnection, ConnectionError> {
        let explained =
            |error: tokio_postgres::Error| ConnectionError::BadConnection(explain(&error, self.mode));
        let (client, mut connection) = self.config.connect(self.tls.clone()).await.map_err(explained)?;
        if !self.prepared_statements {
            // diesel-async sets the connection up with statements it prepares and then runs, two
            // exchanges a pooler could send to two servers: inside a transaction they stay on one.
            // (The connection is driven here until diesel-async takes it over.)
            let begin = client.batch_execute("BEGIN");
            let mut begin = std::pin::pin!(begin);
            std::future::poll_fn(|cx| {
                if let Poll::Ready(begun) = begin.as_mut().poll(cx) {
                    return Poll::Ready(begun);
                }
                match Pin::new(&mut connection).poll(cx) {
                    Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
                    Poll::Ready(Ok(())) | Poll::Pending => Poll::Pending,
                }
            })
            .await
            .map_err(explained)?;
        }
        let mut conn = AsyncPgConnection::try_from_client_and_connection(client, connection).await?;
        if self.prepared_statements {
            if !self.setup_sql.is_empty() {
                conn.batch_execute(&self.setup_sql)
                    .await
                    .map_err(ConnectionError::CouldntSetupConfiguration)?;
            }
        } else {
            conn.batch_execute("COMMIT").await.map_err(ConnectionError::CouldntSetupConfiguration)?;
            conn.set_prepared_statement_cache_size(CacheSize::Disabled);
        }
        Ok(conn)
    }
}

/// The rustls configuration for `mode`.
fn tls_config(mode: SslMode, params: &TlsParams) -> Result<ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup failed ({e})"))?;
    let roots = match params.sslrootcert.as_deref() {
        Some("system") => Some(system_roots()?),
        Some(path) => Some(pem_roots(Path::new(path))?),
        None if matches!(mode, SslMode::VerifyCa | SslMode::VerifyFull) => {
            let default = home_root_cert();
            match default {
                Some(path) => Some(pem_roots(&path)?),
                None => {
                    return Err(format!(
                        "sslmode={} checks the server's certificate and needs the CA that signed it: \
                         add sslrootcert=/path/to/ca.pem to the URL (or sslrootcert=system for the \
                         operating system's roots)",
                        mode.name()
                    ));
                }
            }
        }
        None => None,
    };
    let verifier: Arc<dyn ServerCertVerifier> = match (mode, roots) {
        (SslMode::VerifyFull, Some(roots)) => web_pki(roots, &provider)?,
        // libpq: with a root certificate, `require` (and `prefer`) check the chain as `verify-ca`.
        (_, Some(roots)) => Arc::new(ChainOnly(web_pki(roots, &provider)?)),
        (_, None) => Arc::new(Unverified(provider)),
    };
    let builder = builder.dangerous().with_custom_certificate_verifier(verifier);
    let mut config = match (&params.sslcert, &params.sslkey) {
        (Some(cert), Some(key)) => {
            let certs = CertificateDer::pem_file_iter(cert)
                .and_then(Iterator::collect::<Result<Vec<_>, _>>)
                .map_err(|e| format!("cannot read sslcert {cert} ({e})"))?;
            let key =
                PrivateKeyDer::from_pem_file(key).map_err(|e| format!("cannot read sslkey {key} ({e})"))?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| format!("sslcert and sslkey do not make a client certificate ({e})"))?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => return Err("sslcert and sslkey go together: give both or neither".to_owned()),
    };
    // What libpq 17 sends; servers before 17 ignore it.
    config.alpn_protocols = vec![b"postgresql".to_vec()];
    Ok(config)
}

/// `~/.postgresql/root.crt`, libpq's default root certificate, if it exists.
fn home_root_cert() -> Option<PathBuf> {
    let path = PathBuf::from(std::env::var_os("HOME")?).join(".postgresql/root.crt");
    path.is_file().then_some(path)
}

fn pem_roots(path: &Path) -> Result<RootCertStore, String> {
    let shown = path.display();
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .map_err(|e| format!("cannot read sslrootcert {shown} ({e})"))?;
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(format!("sslrootcert {shown} holds no usable certificate"));
    }
    Ok(roots)
}

fn system_roots() -> Result<RootCertStore, String> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        let errors: Vec<String> = found.errors.iter().map(ToString::to_string).collect();
        return Err(format!(
            "sslrootcert=system found no root certificate on this system ({}); install the CA \
             certificates (Debian: ca-certificates) or give sslrootcert=/path/to/ca.pem",
            errors.join("; ")
        ));
    }
    Ok(roots)
}

fn web_pki(
    roots: RootCertStore,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<WebPkiServerVerifier>, String> {
    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| format!("cannot use sslrootcert ({e})"))
}

/// `sslmode=require` without roots: encrypts, accepting any certificate, but still checks that the
/// server holds the key of the certificate it presents (the handshake's signatures).
#[derive(Debug)]
struct Unverified(Arc<CryptoProvider>);

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `sslmode=verify-ca`: the certificate must chain to a trusted root, whatever host it names.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // webpki checks the chain before the name: a name error means the chain is good.
        match self.0.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            verified => verified,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// A connection error, with what to change when the cause is a TLS setting.
fn explain(error: &tokio_postgres::Error, mode: SslMode) -> String {
    // tokio-postgres says `db error` and keeps the server's message in the source.
    let mut said = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        said = format!("{said}: {cause}");
        source = cause.source();
    }
    match hint(error, mode) {
        Some(hint) => format!("{hint} ({said})"),
        None => said,
    }
}

fn hint(error: &tokio_postgres::Error, mode: SslMode) -> Option<String> {
    if let Some(db) = error.as_db_error() {
        if db.code() != &tokio_postgres::error::SqlState::INVALID_AUTHORIZATION_SPECIFICATION {
            return None;
        }
        if db.message().contains("no encryption") {
            return Some(format!(
                "the server requires TLS: add sslmode=require (or verify-full with sslrootcert) to the \
                 database URL, not sslmode={}",
                mode.name()
            ));
        }
        // pg_hba `cert` (or `clientcert=verify-…`) and no certificate sent.
        return db.message().contains("requires a valid client certificate").then(|| {
            "the server wants a client certificate for this user: add sslcert=/path/client.crt&\
             sslkey=/path/client.key (signed by a CA the server trusts) to the database URL"
                .to_owned()
        });
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(cause) = source {
        if cause.to_string().contains("server does not support TLS") {
            return Some(format!(
                "the server does not offer TLS, which sslmode={} requires: enable ssl on the server, \
                 or use sslmode=prefer",
                mode.name()
            ));
        }
        let tls = cause
            .downcast_ref::<rustls::Error>()
            .or_else(|| cause.downcast_ref::<std::io::Error>()?.get_ref()?.downcast_ref::<rustls::Error>());
        // The server's alerts about certificates are about the one this client sent.
        if let Some(rustls::Error::AlertReceived(
            AlertDescription::UnknownCA
            | AlertDescription::BadCertificate
            | AlertDescription::UnsupportedCertificate
            | AlertDescription::CertificateUnknown
            | AlertDescription::CertificateRevoked
            | AlertDescription::CertificateExpired
            | AlertDescription::CertificateRequired,
        )) = tls
        {
            return Some(
                "the server refused the client certificate (sslcert): it must be signed by a CA the \
                 server trusts (its ssl_ca_file), and be valid now"
                    .to_owned(),
            );
        }
        if let Some(rustls::Error::InvalidCertificate(certificate)) = tls {
            return Some(match certificate {
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                    "the server's certificate does not name the host connected to: connect by a name \
                     its certificate holds, or use sslmode=verify-ca"
                        .to_owned()
                }
                CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                    "the server's certificate has expired".to_owned()
                }
                _ => "the server's certificate is not trusted: set sslrootcert to the CA certificate that \
                      signed it (or sslrootcert=system for the operating system's roots)"
                    .to_owned(),
            });
        }
        source = cause.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_parameters_are_taken_out_of_the_url() {
        let (url, params) = split_tls_params(
            "postgres://u:p@db1:5432,db2:5432/prefs?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem\
             &target_session_attrs=read-write&sslcert=c.pem&sslkey=k.pem",
        );
        assert_eq!(url, "postgres://u:p@db1:5432,db2:5432/prefs?target_session_attrs=read-write");
        assert_eq!(params.sslmode.as_deref(), Some("verify-full"));
        assert_eq!(params.sslrootcert.as_deref(), Some("/etc/ca.pem"));
        assert_eq!((params.sslcert.as_deref(), params.sslkey.as_deref()), (Some("c.pem"), Some("k.pem")));
        let (url, params) = split_tls_params("postgres://db/prefs?sslmode=disable");
        assert_eq!((url.as_str(), params.sslmode.as_deref()), ("postgres://db/prefs", Some("disable")));
        assert_eq!(split_tls_params("postgres://db/prefs").0, "postgres://db/prefs");
    }

    #[test]
    fn tls_settings_are_checked_when_the_store_is_set_up() {
        let connector = |url: &str| PgConnector::new(url, true, String::new()).map(|c| c.mode);
        assert_eq!(connector("postgres://db/p").unwrap(), SslMode::Prefer);
        assert_eq!(connector("postgres://db/p?sslmode=require").unwrap(), SslMode::Require);
        assert_eq!(connector("postgres://a,b/p?sslmode=disable").unwrap(), SslMode::Disable);
        for (url, says) in [
            ("postgres://u:s3cret@db/p?sslmode=bogus", "sslmode must be"),
            (
                "postgres://u:s3cret@db/p?sslmode=verify-ca&sslrootcert=/nonexistent.pem",
                "cannot read sslrootcert",
            ),
            ("postgres://u:s3cret@db/p?sslmode=require&sslrootcert=system", "needs sslmode=verify-full"),
            ("postgres://u:s3cret@db/p?sslcert=/c.pem", "go together"),
        ] {
            let error = connector(url).unwrap_err().to_string();
            assert!(error.contains(says) && !error.contains("s3cret"), "{url}: {error}");
        }
    }
}
