//! TLS for the public listener: the `[server.tls]` section, the protocol and cipher-suite
//! policy, and a certificate that can be replaced while the server runs.
//!
//! The acceptor's `rustls::ServerConfig` is built once; its certificate comes from a
//! [`CertResolver`] holding the current `CertifiedKey` behind an `ArcSwap`. A reload
//! ([`Tls::reload`], called on SIGHUP by the binary and by [`Tls::watch`] when the files
//! change) reads and checks the new pair first and swaps it in only when it is usable: new
//! handshakes get the new certificate, connections already established keep the session they
//! negotiated, and a bad pair is logged and counted while the old one keeps serving.
//!
//! The policy is explicit rather than whatever the crypto provider enables by default: TLS 1.3,
//! and TLS 1.2 unless `min_version = "1.3"`, with the suites in [`CIPHER_SUITES`] (AEADs with
//! forward secrecy only), narrowed by `cipher_suites` when that is set. Everything here is meant
//! for any listener that wants TLS, not only the HTTP one.
//!
//! The configuration types are always built (a build without the `tls` feature refuses a
//! configuration that turns TLS on); the rest needs the feature.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// A problem of a TLS section: the dotted key, the value given, what is allowed (the
/// configuration's check turns it into one of its own problems).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsProblem {
    /// Dotted key, e.g. `server.tls.cert_path`.
    pub key: String,
    /// The value given.
    pub value: String,
    /// What is allowed.
    pub allowed: String,
}

/// `[server.tls]`: TLS on the public listener. Off while `cert_path` and `key_path` are empty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM file with the certificate chain, leaf first. Empty: TLS off.
    pub cert_path: PathBuf,
    /// PEM file with the private key (PKCS#8, PKCS#1 RSA or SEC1 EC). Empty: TLS off.
    pub key_path: PathBuf,
    /// Lowest protocol version accepted: `"1.2"` or `"1.3"`.
    pub min_version: String,
    /// Cipher suites allowed, by IANA name (e.g. `TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256`,
    /// `TLS13_AES_128_GCM_SHA256`); empty: every suite of [`CIPHER_SUITE_NAMES`].
    pub cipher_suites: Vec<String>,
    /// How often the two files are checked for a change (modification time and size), ms; a
    /// change reloads them. 0: only on SIGHUP.
    pub reload_interval_ms: u64,
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self {
            cert_path: PathBuf::new(),
            key_path: PathBuf::new(),
            min_version: "1.2".into(),
            cipher_suites: Vec::new(),
            reload_interval_ms: 10_000,
        }
    }
}

/// The suites TLS may use, by IANA name, in order of preference: TLS 1.3 first, then TLS 1.2
/// ECDHE with AES-GCM or ChaCha20-Poly1305, for ECDSA and RSA certificates.
pub const CIPHER_SUITE_NAMES: [&str; 9] = [
    "TLS13_AES_128_GCM_SHA256",
    "TLS13_AES_256_GCM_SHA384",
    "TLS13_CHACHA20_POLY1305_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
];

impl TlsConfig {
    /// Whether TLS is on (either path set; both are then required).
    pub fn enabled(&self) -> bool {
        !self.cert_path.as_os_str().is_empty() || !self.key_path.as_os_str().is_empty()
    }

    /// Whether TLS 1.2 is allowed besides TLS 1.3.
    pub fn allows_tls12(&self) -> bool {
        self.min_version == "1.2"
    }

    /// The problems of this section, named under `section` (`server.tls`, `tcp.tls`): the
    /// policy's values and, when TLS is on, the files (readable, PEM, a usable certificate and a
    /// key that matches it).
    pub fn problems(&self, section: &str, p: &mut Vec<TlsProblem>) {
        let problem =
            |key: &str, value: String, allowed: String| TlsProblem { key: format!("{section}.{key}"), value, allowed };
        if !["1.2", "1.3"].contains(&self.min_version.as_str()) {
            p.push(problem("min_version", self.min_version.clone(), "\"1.2\" or \"1.3\"".into()));
        }
        if self.reload_interval_ms != 0 && !(100..=86_400_000).contains(&self.reload_interval_ms) {
            p.push(problem(
                "reload_interval_ms",
                self.reload_interval_ms.to_string(),
                "0 (off) or 100..=86400000".into(),
            ));
        }
        let unknown: Vec<&String> =
            self.cipher_suites.iter().filter(|s| !CIPHER_SUITE_NAMES.contains(&s.as_str())).collect();
        if !unknown.is_empty() {
            p.push(problem("cipher_suites", format!("{unknown:?}"), format!("names from {CIPHER_SUITE_NAMES:?}")));
        } else if !self.cipher_suites.is_empty() && !self.cipher_suites.iter().any(|s| self.version_allows(s)) {
            p.push(problem(
                "cipher_suites",
                format!("{:?}", self.cipher_suites),
                format!("at least one suite of a version min_version = {:?} allows", self.min_version),
            ));
        }
        if !self.enabled() {
            return;
        }
        if !cfg!(feature = "tls") {
            p.push(problem(
                "cert_path",
                self.cert_path.display().to_string(),
                "empty: this build has no TLS support (build with the cargo feature `tls`)".into(),
            ));
            return;
        }
        for (key, path) in [("cert_path", &self.cert_path), ("key_path", &self.key_path)] {
            if path.as_os_str().is_empty() {
                p.push(problem(key, "\"\"".into(), "a PEM file path (cert_path and key_path go together)".into()));
            }
        }
        #[cfg(feature = "tls")]
        if !self.cert_path.as_os_str().is_empty() && !self.key_path.as_os_str().is_empty() {
            if let Err(e) = imp::load_certified_key(self) {
                p.push(problem(e.key(), e.path().display().to_string(), e.to_string()));
            }
        }
    }

    /// Whether `suite` belongs to a protocol version this configuration allows.
    fn version_allows(&self, suite: &str) -> bool {
        suite.starts_with("TLS13_") || self.allows_tls12()
    }
}

#[cfg(feature = "tls")]
pub use imp::*;

#[cfg(feature = "tls")]
mod imp {
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, SystemTime};

    use arc_swap::ArcSwap;
    use parking_lot::Mutex;
    use rustls::crypto::{aws_lc_rs, CryptoProvider};
    use rustls::server::{ClientHello, ResolvesServerCert};
    use rustls::sign::CertifiedKey;
    use rustls::{ServerConfig, SupportedCipherSuite};
    use rustls_pki_types::pem::PemObject as _;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    use tokio::sync::watch;

    use super::{TlsConfig, CIPHER_SUITE_NAMES};

    pub use tokio_rustls::server::TlsStream;
    pub use tokio_rustls::TlsAcceptor;

    /// The suites of [`CIPHER_SUITE_NAMES`], in the same order.
    pub static CIPHER_SUITES: [SupportedCipherSuite; 9] = [
        aws_lc_rs::cipher_suite::TLS13_AES_128_GCM_SHA256,
        aws_lc_rs::cipher_suite::TLS13_AES_256_GCM_SHA384,
        aws_lc_rs::cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
        aws_lc_rs::cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        aws_lc_rs::cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        aws_lc_rs::cipher_suite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        aws_lc_rs::cipher_suite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        aws_lc_rs::cipher_suite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        aws_lc_rs::cipher_suite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    ];

    /// Why a certificate or key could not be used.
    #[derive(Debug, thiserror::Error)]
    pub enum TlsError {
        /// A file could not be read.
        #[error("cannot read {path}: {source}")]
        Read {
            /// `cert_path` or `key_path`.
            key: &'static str,
            /// The file.
            path: PathBuf,
            /// Why.
            source: std::io::Error,
        },
        /// A file is not what it should be (no PEM certificate, no PEM private key, a key that
        /// does not match the certificate).
        #[error("{path}: {message}")]
        Invalid {
            /// `cert_path` or `key_path`.
            key: &'static str,
            /// The file.
            path: PathBuf,
            /// What is wrong.
            message: String,
        },
        /// The protocol policy cannot be built (a cipher-suite list with nothing usable).
        #[error("TLS policy: {0}")]
        Policy(String),
    }

    impl TlsError {
        /// The configuration key (under `server.tls`) the problem is about.
        pub fn key(&self) -> &'static str {
            match self {
                Self::Read { key, .. } | Self::Invalid { key, .. } => key,
                Self::Policy(_) => "cipher_suites",
            }
        }

        /// The file the problem is about (empty for a policy problem).
        pub fn path(&self) -> &Path {
            match self {
                Self::Read { path, .. } | Self::Invalid { path, .. } => path,
                Self::Policy(_) => Path::new(""),
            }
        }
    }

    /// The crypto provider for `config`: aws-lc-rs with the configured suites, in the order
    /// of [`CIPHER_SUITES`] (all of them when `cipher_suites` is empty).
    pub fn provider(config: &TlsConfig) -> CryptoProvider {
        let cipher_suites = CIPHER_SUITE_NAMES
            .iter()
            .zip(CIPHER_SUITES.iter())
            .filter(|(name, _)| config.cipher_suites.is_empty() || config.cipher_suites.iter().any(|s| s == *name))
            .map(|(_, suite)| *suite)
            .collect();
        CryptoProvider { cipher_suites, ..aws_lc_rs::default_provider() }
    }

    /// The protocol versions `config` allows: TLS 1.3, and TLS 1.2 unless `min_version = "1.3"`.
    pub fn protocol_versions(config: &TlsConfig) -> &'static [&'static rustls::SupportedProtocolVersion] {
        static TLS13_ONLY: [&rustls::SupportedProtocolVersion; 1] = [&rustls::version::TLS13];
        if config.allows_tls12() {
            rustls::ALL_VERSIONS
        } else {
            &TLS13_ONLY
        }
    }

    /// Reads `cert_path` and `key_path` and checks that the key signs for the certificate.
    ///
    /// # Errors
    /// [`TlsError`] naming the file and what is wrong with it.
    pub fn load_certified_key(config: &TlsConfig) -> Result<CertifiedKey, TlsError> {
        let read = |key: &'static str, path: &Path| {
            std::fs::read(path).map_err(|source| TlsError::Read { key, path: path.to_owned(), source })
        };
        let invalid =
            |key: &'static str, path: &Path, message: String| TlsError::Invalid { key, path: path.to_owned(), message };
        let (cert_path, key_path) = (&config.cert_path, &config.key_path);
        let cert_pem = read("cert_path", cert_path)?;
        let certs = CertificateDer::pem_slice_iter(&cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| invalid("cert_path", cert_path, format!("not a PEM certificate chain: {e}")))?;
        if certs.is_empty() {
            return Err(invalid("cert_path", cert_path, "no CERTIFICATE block in the file".into()));
        }
        let key_pem = read("key_path", key_path)?;
        let key = PrivateKeyDer::from_pem_slice(&key_pem)
            .map_err(|e| invalid("key_path", key_path, format!("no usable PEM private key: {e}")))?;
        let signing_key = aws_lc_rs::default_provider()
            .key_provider
            .load_private_key(key)
            .map_err(|e| invalid("key_path", key_path, format!("unsupported private key: {e}")))?;
        let certified = CertifiedKey::new(certs, signing_key);
        match certified.keys_match() {
            Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => Ok(certified),
            Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => Err(invalid(
                "key_path",
                key_path,
                format!("the key does not match the certificate in {}", cert_path.display()),
            )),
            Err(e) => Err(invalid("cert_path", cert_path, format!("unusable certificate: {e}"))),
        }
    }

    /// Answers every handshake with the current certificate, which [`CertResolver::set`]
    /// replaces atomically: a handshake in progress keeps the one it started with.
    #[derive(Debug)]
    pub struct CertResolver {
        current: ArcSwap<CertifiedKey>,
    }

    impl CertResolver {
        /// A resolver serving `key`.
        pub fn new(key: CertifiedKey) -> Self {
            Self { current: ArcSwap::from_pointee(key) }
        }

        /// Serves `key` from the next handshake on.
        pub fn set(&self, key: CertifiedKey) {
            self.current.store(Arc::new(key));
        }

        /// The certificate served now.
        pub fn current(&self) -> Arc<CertifiedKey> {
            self.current.load_full()
        }
    }

    impl ResolvesServerCert for CertResolver {
        fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
            Some(self.current.load_full())
        }
    }

    /// Modification time, length and (on unix) inode of a file, to notice a change by polling:
    /// an edit in place moves the time or the length, a file renamed over it (the atomic way to
    /// replace one) brings its own inode.
    type Stamp = Option<(SystemTime, u64, u64)>;

    fn stamp(path: &Path) -> Stamp {
        let m = std::fs::metadata(path).ok()?;
        #[cfg(unix)]
        let inode = std::os::unix::fs::MetadataExt::ino(&m);
        #[cfg(not(unix))]
        let inode = 0;
        Some((m.modified().ok()?, m.len(), inode))
    }

    /// Reload outcomes and handshake failures, for `/readyz` and the metrics.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
    pub struct TlsStats {
        /// Successful reloads since start.
        pub reloads: u64,
        /// Reloads refused (the old certificate kept serving).
        pub reload_failures: u64,
        /// Handshakes that failed or timed out (including plain-text clients).
        pub handshake_failures: u64,
    }

    /// TLS for one listener: the acceptor and the reloadable certificate behind it.
    pub struct Tls {
        config: TlsConfig,
        resolver: Arc<CertResolver>,
        acceptor: TlsAcceptor,
        stamps: Mutex<(Stamp, Stamp)>,
        reloads: AtomicU64,
        reload_failures: AtomicU64,
        handshake_failures: AtomicU64,
    }

    impl std::fmt::Debug for Tls {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("Tls").field("config", &self.config).field("stats", &self.stats()).finish_non_exhaustive()
        }
    }

    impl Tls {
        /// Loads the certificate and key of `config` and builds the acceptor.
        ///
        /// # Errors
        /// [`TlsError`] when the files are unusable or the policy allows nothing.
        pub fn new(config: &TlsConfig) -> Result<Self, TlsError> {
            let stamps = (stamp(&config.cert_path), stamp(&config.key_path));
            let resolver = Arc::new(CertResolver::new(load_certified_key(config)?));
            let server = ServerConfig::builder_with_provider(Arc::new(provider(config)))
                .with_protocol_versions(protocol_versions(config))
                .map_err(|e| TlsError::Policy(e.to_string()))?
                .with_no_client_auth()
                .with_cert_resolver(resolver.clone());
            Ok(Self {
                config: config.clone(),
                resolver,
                acceptor: TlsAcceptor::from(Arc::new(server)),
                stamps: Mutex::new(stamps),
                reloads: AtomicU64::new(0),
                reload_failures: AtomicU64::new(0),
                handshake_failures: AtomicU64::new(0),
            })
        }

        /// The acceptor (cheap to clone; every clone sees reloads).
        pub fn acceptor(&self) -> TlsAcceptor {
            self.acceptor.clone()
        }

        /// The certificate resolver.
        pub fn resolver(&self) -> &Arc<CertResolver> {
            &self.resolver
        }

        /// Reads the files again and, when they are usable, serves them from the next handshake
        /// on. Otherwise the current certificate stays; the problem is logged and counted.
        ///
        /// # Errors
        /// Why the new files were refused.
        pub fn reload(&self) -> Result<(), TlsError> {
            *self.stamps.lock() = (stamp(&self.config.cert_path), stamp(&self.config.key_path));
            match load_certified_key(&self.config) {
                Ok(key) => {
                    self.resolver.set(key);
                    self.reloads.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(cert = %self.config.cert_path.display(), "TLS certificate reloaded");
                    Ok(())
                }
                Err(e) => {
                    self.reload_failures.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(error = %e, "TLS certificate reload refused; the current certificate stays");
                    Err(e)
                }
            }
        }

        /// Reloads when either file's modification time or size changed since the last load;
        /// `None` when neither did.
        pub fn reload_if_changed(&self) -> Option<Result<(), TlsError>> {
            let now = (stamp(&self.config.cert_path), stamp(&self.config.key_path));
            if *self.stamps.lock() == now {
                return None;
            }
            Some(self.reload())
        }

        /// Checks the files every `reload_interval_ms` until `shutdown` turns true (returns at
        /// once when the interval is 0).
        pub async fn watch(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
            if self.config.reload_interval_ms == 0 {
                return;
            }
            let mut tick = tokio::time::interval(Duration::from_millis(self.config.reload_interval_ms));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        let _ = self.reload_if_changed();
                    }
                    () = async { let _ = shutdown.wait_for(|v| *v).await; } => return,
                }
            }
        }

        /// Counts a failed handshake.
        pub fn record_handshake_failure(&self) {
            self.handshake_failures.fetch_add(1, Ordering::Relaxed);
        }

        /// Reload and handshake counts.
        pub fn stats(&self) -> TlsStats {
            TlsStats {
                reloads: self.reloads.load(Ordering::Relaxed),
                reload_failures: self.reload_failures.load(Ordering::Relaxed),
                handshake_failures: self.handshake_failures.load(Ordering::Relaxed),
            }
        }
    }
}

#[cfg(all(test, feature = "tls"))]
mod tests {
    use super::*;

    #[test]
    fn the_policy_allows_tls13_and_tls12_with_ecdhe_rsa_aes128_gcm() {
        let config = TlsConfig::default();
        let versions = protocol_versions(&config);
        assert!(versions.contains(&&rustls::version::TLS13));
        assert!(versions.contains(&&rustls::version::TLS12));
        let suites: Vec<String> = provider(&config).cipher_suites.iter().map(|s| format!("{:?}", s.suite())).collect();
        assert!(suites.contains(&"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256".to_string()), "{suites:?}");
        assert!(suites.contains(&"TLS13_AES_128_GCM_SHA256".to_string()), "{suites:?}");
    }

    #[test]
    fn suite_names_match_the_suites() {
        for (name, suite) in CIPHER_SUITE_NAMES.iter().zip(CIPHER_SUITES.iter()) {
            assert_eq!(*name, format!("{:?}", suite.suite()));
        }
    }

    #[test]
    fn a_suite_list_narrows_the_provider_and_min_version_drops_tls12() {
        let config = TlsConfig {
            cipher_suites: vec!["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256".into(), "TLS13_AES_256_GCM_SHA384".into()],
            min_version: "1.3".into(),
            ..TlsConfig::default()
        };
        assert_eq!(provider(&config).cipher_suites.len(), 2);
        assert_eq!(protocol_versions(&config), &[&rustls::version::TLS13]);
    }

    #[test]
    fn bad_policy_values_are_named() {
        let config = TlsConfig {
            min_version: "1.1".into(),
            cipher_suites: vec!["TLS_RSA_WITH_RC4_128_MD5".into()],
            reload_interval_ms: 5,
            ..TlsConfig::default()
        };
        let mut p = Vec::new();
        config.problems("server.tls", &mut p);
        let keys: Vec<&str> = p.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["server.tls.min_version", "server.tls.reload_interval_ms", "server.tls.cipher_suites"]);
    }
}
