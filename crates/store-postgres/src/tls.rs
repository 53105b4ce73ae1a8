//! TLS to the database: rustls (ring provider) with Mozilla's roots, plus
//! the certificates of `sslrootcert=PATH` when the URL names one (a private
//! CA, a self-signed server). When TLS is used the server's certificate is
//! always verified, for its name or address (libpq's `verify-full`):
//! `sslmode=require` here never means "encrypt but trust anyone".
//!
//! `sslmode` itself (`disable`, `prefer` — the driver's default —, `require`)
//! is the driver's; `sslrootcert` is read here and taken out of the URL,
//! which the driver would refuse.

use std::sync::Arc;

use store::StoreError;
use tokio_postgres_rustls::MakeRustlsConnect;

/// The URL without `sslrootcert`, and a connector trusting its certificates.
pub(crate) fn connector(url: &str) -> Result<(String, MakeRustlsConnect), StoreError> {
    let bad = |what: &str| StoreError::Database(format!("the database URL: {what}"));
    let mut parsed = url::Url::parse(url).map_err(|_| bad("not a valid URL"))?;
    let mut root_file = None;
    let kept: Vec<(String, String)> = parsed
        .query_pairs()
        .filter_map(|(k, v)| {
            if k == "sslrootcert" {
                root_file = Some(v.into_owned());
                None
            } else {
                Some((k.into_owned(), v.into_owned()))
            }
        })
        .collect();
    if kept.is_empty() {
        parsed.set_query(None);
    } else {
        parsed.query_pairs_mut().clear().extend_pairs(kept);
    }
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = root_file {
        let pem = std::fs::read(&path)
            .map_err(|e| StoreError::Database(format!("cannot read sslrootcert {path}: {e}")))?;
        let mut added = 0;
        for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
            let cert = cert.map_err(|e| {
                StoreError::Database(format!("sslrootcert {path} is not PEM certificates: {e}"))
            })?;
            roots
                .add(cert)
                .map_err(|e| StoreError::Database(format!("sslrootcert {path}: {e}")))?;
            added += 1;
        }
        if added == 0 {
            return Err(StoreError::Database(format!(
                "sslrootcert {path} holds no certificate"
            )));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| StoreError::Database(format!("TLS setup: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok((parsed.to_string(), MakeRustlsConnect::new(config)))
}
