//! TLS for `wss://` endpoints (cargo feature `client-tls`): rustls trusting the system's
//! certificate authorities and the PEM files of [`super::ClientOptions::tls_ca_files`] (a private
//! CA, a self-signed hub). The system's store is read once per process.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::CertificateDer;
use tokio_rustls::TlsConnector;

/// The system's trusted certificates (read once; the store does not change under a running
/// client often enough to matter).
fn system_roots() -> &'static [CertificateDer<'static>] {
    static ROOTS: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let found = rustls_native_certs::load_native_certs();
        for e in &found.errors {
            tracing::debug!(error = %e, "a system certificate could not be read");
        }
        found.certs
    })
}

/// A connector trusting the system's roots and every certificate in `ca_files`.
pub(super) fn connector(ca_files: &[PathBuf]) -> Result<TlsConnector, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(system_roots().iter().cloned());
    for path in ca_files {
        let certs = CertificateDer::pem_file_iter(path)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map_err(|e| format!("tls_ca_files: {}: {e}", path.display()))?;
        if certs.is_empty() {
            return Err(format!("tls_ca_files: {}: no PEM certificate in it", path.display()));
        }
        for c in certs {
            roots.add(c).map_err(|e| format!("tls_ca_files: {}: {e}", path.display()))?;
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(config)))
}
