//! Connecting: the `postgres://` URL (with libpq's `sslmode` and
//! `sslrootcert`), TLS through rustls, and the pool of connections.
//!
//! tokio-postgres understands `sslmode=disable|prefer|require` only and
//! never checks a certificate itself; the TLS part of the URL is read here
//! and handed to rustls, so that `verify-ca` and `verify-full` check the
//! server's certificate and no mode that asks for TLS falls back to
//! plaintext.

use crate::{StoreError, StoreResult};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::sync::Arc;
use std::time::Duration;
use tokio_postgres::config::SslMode;

/// How the connection is protected, as libpq's `sslmode` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tls {
    /// `disable`: plaintext.
    Disable,
    /// `allow`, `prefer` (libpq's default): TLS when the server offers it,
    /// the certificate not checked.
    Prefer,
    /// `require`: TLS or no connection; the certificate is checked against
    /// `sslrootcert` when one is given (as libpq does), else not checked.
    Require,
    /// `verify-ca`: TLS, the certificate chain checked, not the host name.
    VerifyCa,
    /// `verify-full`: TLS, the chain and the host name checked.
    VerifyFull,
}

/// A parsed store URL.
#[derive(Debug, Clone)]
pub struct Target {
    /// What tokio-postgres connects with (TLS options taken out).
    pub config: tokio_postgres::Config,
    /// The TLS mode.
    pub tls: Tls,
    /// The CA file of `sslrootcert` (PEM); the system roots without one.
    pub root_cert: Option<String>,
}

fn config_err(message: impl std::fmt::Display) -> StoreError {
    StoreError::Db(format!("the store URL: {message}"))
}

/// Reads a `postgres://` (or `postgresql://`) URL.
pub fn parse_url(url: &str) -> StoreResult<Target> {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let mut tls = Tls::Prefer;
    let mut root_cert = None;
    let mut kept = Vec::new();
    for (name, value) in form_pairs(query.unwrap_or("")) {
        match name.as_str() {
            "sslmode" => {
                tls = match value.as_str() {
                    "disable" => Tls::Disable,
                    "allow" | "prefer" => Tls::Prefer,
                    "require" => Tls::Require,
                    "verify-ca" => Tls::VerifyCa,
                    "verify-full" => Tls::VerifyFull,
                    other => {
                        return Err(config_err(format!(
                            "sslmode `{other}` is not one of disable, allow, prefer, require, \
                             verify-ca, verify-full"
                        )))
                    }
                }
            }
            "sslrootcert" => root_cert = Some(value),
            "sslcert" | "sslkey" | "sslcrl" | "sslpassword" => {
                return Err(config_err(format!(
                    "`{name}` (client certificates) is not supported; use a password"
                )))
            }
            _ => kept.push(format!(
                "{}={}",
                encode_component(&name),
                encode_component(&value)
            )),
        }
    }
    let rest = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    let mut config: tokio_postgres::Config = rest.parse().map_err(|e: tokio_postgres::Error| {
        // The URL may hold a password: say what is wrong, not the URL.
        config_err(e)
    })?;
    config.ssl_mode(match tls {
        Tls::Disable => SslMode::Disable,
        Tls::Prefer => SslMode::Prefer,
        _ => SslMode::Require,
    });
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(10));
    }
    if config.get_application_name().is_none() {
        config.application_name("hookflow");
    }
    Ok(Target {
        config,
        tls,
        root_cert,
    })
}

fn form_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (n, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode_component(n), decode_component(v))
        })
        .collect()
}

fn decode_component(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn encode_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/' | b':') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The rustls client configuration for `target`'s mode.
fn tls_config(target: &Target) -> StoreResult<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| config_err(format!("TLS: {e}")))?;
    let roots = || -> StoreResult<Arc<RootCertStore>> {
        let mut roots = RootCertStore::empty();
        match &target.root_cert {
            Some(path) => {
                use rustls_pki_types::pem::PemObject;
                let certs = CertificateDer::pem_file_iter(path)
                    .map_err(|e| config_err(format!("sslrootcert {path}: {e}")))?;
                for cert in certs {
                    let cert = cert.map_err(|e| config_err(format!("sslrootcert {path}: {e}")))?;
                    roots
                        .add(cert)
                        .map_err(|e| config_err(format!("sslrootcert {path}: {e}")))?;
                }
            }
            None => {
                let found = rustls_native_certs::load_native_certs();
                for cert in found.certs {
                    let _ = roots.add(cert);
                }
            }
        }
        if roots.is_empty() {
            return Err(config_err(
                "no root certificate to check the server's against (sslrootcert, or the \
                 system's roots)",
            ));
        }
        Ok(Arc::new(roots))
    };
    let verify_chain = matches!(target.tls, Tls::VerifyCa | Tls::VerifyFull)
        || (target.tls == Tls::Require && target.root_cert.is_some());
    let config = if verify_chain {
        let webpki =
            rustls::client::WebPkiServerVerifier::builder_with_provider(roots()?, provider.clone())
                .build()
                .map_err(|e| config_err(format!("TLS: {e}")))?;
        if target.tls == Tls::VerifyFull {
            builder.with_webpki_verifier(webpki).with_no_client_auth()
        } else {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(ChainOnly { inner: webpki }))
                .with_no_client_auth()
        }
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Unchecked { provider }))
            .with_no_client_auth()
    };
    Ok(config)
}

/// `verify-ca`: the chain is checked, the host name is not (libpq's meaning).
#[derive(Debug)]
struct ChainOnly {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
}

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName))
            | Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// `require` without a root certificate: encrypted, the certificate not
/// checked (libpq's meaning); the handshake's signatures still are.
#[derive(Debug)]
struct Unchecked {
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for Unchecked {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
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
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The pool of connections to `target` (at most `size`); call inside the
/// store's runtime.
pub fn pool(target: &Target, size: usize) -> StoreResult<Pool> {
    let tls = tokio_postgres_rustls::MakeRustlsConnect::new(tls_config(target)?);
    let manager = Manager::from_config(
        target.config.clone(),
        tls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        // A lock's connection, the work it guards and the writer at once.
        .max_size(size.max(3))
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(Duration::from_secs(30)))
        .create_timeout(Some(Duration::from_secs(15)))
        .build()
        .map_err(|e| StoreError::Db(format!("cannot build the connection pool: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_options_are_read_here_and_others_passed_on() {
        let t = parse_url("postgres://u:p@db.example:5433/app?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem&application_name=x")
            .expect("parses");
        assert_eq!(t.tls, Tls::VerifyFull);
        assert_eq!(t.root_cert.as_deref(), Some("/etc/ca.pem"));
        assert_eq!(t.config.get_ssl_mode(), SslMode::Require);
        assert_eq!(t.config.get_application_name(), Some("x"));
        assert_eq!(t.config.get_ports(), &[5433]);
        let plain = parse_url("postgres://u@h/db?sslmode=disable").expect("parses");
        assert_eq!(plain.config.get_ssl_mode(), SslMode::Disable);
        for mode in ["require", "verify-ca"] {
            let t = parse_url(&format!("postgres://u@h/db?sslmode={mode}")).expect("parses");
            assert_eq!(
                t.config.get_ssl_mode(),
                SslMode::Require,
                "{mode}: no fall back to plaintext"
            );
        }
        let bad = parse_url("postgres://u:secret@h/db?sslmode=sometimes").expect_err("refused");
        assert!(bad.to_string().contains("sometimes"), "{bad}");
        assert!(!bad.to_string().contains("secret"), "{bad}");
    }

    #[test]
    fn a_verifying_mode_without_a_readable_root_is_refused() {
        let t = parse_url("postgres://u@h/db?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem")
            .expect("parses");
        let e = tls_config(&t).expect_err("no roots");
        assert!(e.to_string().contains("/nonexistent/ca.pem"), "{e}");
    }
}
