//! TLS on the public listener: `wss://` and `https://` with a certificate from a test CA, a
//! plain-text client refused cleanly, TLS 1.2 with only ECDHE-RSA-AES128-GCM-SHA256 against an
//! RSA certificate, certificate reload (called directly, on a file change, and on SIGHUP to the
//! binary) that serves new handshakes the new certificate while open connections keep receiving
//! — under load too: twenty subscribers and a streaming publisher lose no connection and no
//! message across a reload —, a bad new certificate refused with the old one still serving, and
//! the configuration check of the files. Certificates are made with rcgen into a temporary directory; every wait is bounded.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use fanhub::config::{Config, ConfigError};
use fanhub::{Listeners, Server};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::crypto::{aws_lc_rs, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::ClientConfig;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

use crate::common::{pem, test_config, Client, API_KEY, TIMEOUT};

/// A temporary directory with a test CA, removed on drop.
struct Pki {
    dir: PathBuf,
    ca: Issuer<'static, KeyPair>,
    ca_der: CertificateDer<'static>,
}

/// A leaf certificate and its key, as PEM, and the certificate's DER (to recognise it).
struct Leaf {
    cert_pem: String,
    key_pem: String,
    der: CertificateDer<'static>,
}

impl Pki {
    fn new() -> Pki {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "fanhub-tls-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, "fanhub test CA");
        let key = KeyPair::generate().unwrap();
        let ca_der = params.self_signed(&key).unwrap().der().clone();
        Pki { dir, ca: Issuer::new(params, key), ca_der }
    }

    /// A leaf for 127.0.0.1 signed by the CA: ECDSA P-256, or RSA 2048 when `rsa`. `name` goes
    /// into the subject, so two leaves differ.
    fn leaf(&self, name: &str, rsa: bool) -> Leaf {
        let mut params = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        let key =
            if rsa { KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap() } else { KeyPair::generate().unwrap() };
        let cert = params.signed_by(&key, &self.ca).unwrap();
        Leaf {
            cert_pem: pem("CERTIFICATE", cert.der()),
            key_pem: pem("PRIVATE KEY", &key.serialize_der()),
            der: cert.der().clone(),
        }
    }

    fn cert_path(&self) -> PathBuf {
        self.dir.join("cert.pem")
    }

    fn key_path(&self) -> PathBuf {
        self.dir.join("key.pem")
    }

    /// Puts `leaf` in place the way a deployment should: each file written aside and renamed
    /// over the old one (the key first).
    fn install(&self, leaf: &Leaf) {
        replace(&self.key_path(), &leaf.key_pem);
        replace(&self.cert_path(), &leaf.cert_pem);
    }

    /// A configuration with TLS on, serving the files of this directory.
    fn config(&self, reload_interval_ms: u64) -> Config {
        let mut c = test_config();
        c.server.tls.cert_path = self.cert_path();
        c.server.tls.key_path = self.key_path();
        c.server.tls.reload_interval_ms = reload_interval_ms;
        c
    }

    /// A client trusting the test CA, with rustls' safe defaults.
    fn client(&self) -> Arc<ClientConfig> {
        self.client_with(aws_lc_rs::default_provider(), rustls::DEFAULT_VERSIONS)
    }

    fn client_with(
        &self,
        provider: CryptoProvider,
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> Arc<ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca_der.clone()).unwrap();
        let mut config = ClientConfig::builder_with_provider(Arc::new(provider))
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        // Every handshake a full one: a resumed session shows the certificate it began with.
        config.resumption = rustls::client::Resumption::disabled();
        Arc::new(config)
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn replace(path: &Path, text: &str) {
    let aside = path.with_extension("new");
    std::fs::write(&aside, text).unwrap();
    std::fs::rename(&aside, path).unwrap();
}

/// A hub serving TLS on its public listener, in this process.
struct TlsHub {
    addr: SocketAddr,
    /// The admin listener (plain HTTP).
    admin: SocketAddr,
    tls: Arc<fanhub::tls::Tls>,
    sessions: Arc<fanhub::auth::SessionManager>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), fanhub::server::ServerError>>,
}

impl TlsHub {
    async fn spawn(config: Config) -> TlsHub {
        let listeners = Listeners::ephemeral().await.expect("bind");
        let addr = listeners.public.local_addr().unwrap();
        let admin = listeners.admin.local_addr().unwrap();
        let server = Server::new(config, &listeners).expect("server");
        let tls = server.tls().expect("TLS is on");
        let sessions = server.sessions();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(server.run(listeners, async move {
            let _ = rx.await;
        }));
        TlsHub { addr, admin, tls, sessions, stop: Some(tx), task }
    }

    fn url(&self) -> String {
        format!("wss://{}/ws", self.addr)
    }

    fn token(&self, sub: &str) -> String {
        token(&self.sessions, sub)
    }

    async fn shutdown(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        tokio::time::timeout(TIMEOUT, self.task).await.expect("shutdown hung").expect("join").expect("run");
    }
}

fn token(sessions: &fanhub::auth::SessionManager, sub: &str) -> String {
    sessions
        .mint(
            &fanhub::auth::MintRequest {
                subject: sub.into(),
                subscribe: vec![">".into()],
                publish: vec![">".into()],
                ttl_secs: 3600,
            },
            fanhub::auth::unix_now(),
        )
        .unwrap()
        .token
}

/// A `wss://` client, connected with `token` (`fanhub.v1` welcome checked).
async fn wss_client(url: &str, tls: Arc<ClientConfig>, token: &str) -> Client {
    let mut c = Client::try_open_tls(url, tls).await.expect("wss connect");
    let w = c.request(json!({"op": "connect", "token": token})).await;
    assert_eq!(w["type"], "welcome", "{w}");
    c
}

/// A TLS connection to `addr` (server name 127.0.0.1).
async fn tls_connect(
    addr: SocketAddr,
    tls: Arc<ClientConfig>,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from("127.0.0.1").unwrap();
    tokio::time::timeout(TIMEOUT, tokio_rustls::TlsConnector::from(tls).connect(name, tcp))
        .await
        .expect("TLS handshake hung")
}

/// The leaf certificate a new handshake gets.
async fn served_cert(addr: SocketAddr, tls: Arc<ClientConfig>) -> CertificateDer<'static> {
    let s = tls_connect(addr, tls).await.expect("TLS handshake");
    s.get_ref().1.peer_certificates().expect("a certificate")[0].clone().into_owned()
}

/// Waits (bounded) until new handshakes get `want`.
async fn until_served(addr: SocketAddr, tls: &Arc<ClientConfig>, want: &CertificateDer<'static>) {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while &served_cert(addr, tls.clone()).await != want {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for the new certificate");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An HTTPS request; returns the status and the body.
async fn https(addr: SocketAddr, tls: Arc<ClientConfig>, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut s = tls_connect(addr, tls).await.expect("TLS handshake");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nX-Api-Key: {API_KEY}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    // The end of the response is the server's close; how it closes does not matter here.
    let _ = tokio::time::timeout(TIMEOUT, s.read_to_end(&mut raw)).await.expect("response hung");
    let text = String::from_utf8(raw).expect("UTF-8 response");
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or_else(|| panic!("an HTTP response: {text:?}"));
    (head.split(' ').nth(1).unwrap().parse().unwrap(), body.to_owned())
}

async fn healthz(hub: &TlsHub, tls: Arc<ClientConfig>) -> Value {
    let (status, body) = https(hub.addr, tls, "GET", "/healthz", "").await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

#[tokio::test]
async fn wss_clients_subscribe_and_receive_publishes_and_https_serves_health_and_wss_session_urls() {
    let pki = Pki::new();
    let leaf = pki.leaf("a", false);
    pki.install(&leaf);
    let hub = TlsHub::spawn(pki.config(0)).await;
    let tls = pki.client();

    let mut sub = wss_client(&hub.url(), tls.clone(), &hub.token("sub")).await;
    assert_eq!(sub.subscribe("tls/a").await["type"], "subscribed");
    let mut publisher = wss_client(&hub.url(), tls.clone(), &hub.token("pub")).await;
    for i in 0..20u64 {
        publisher.publish_json("tls/a", json!({"i": i})).await;
    }
    let got: Vec<u64> = sub.records(20).await.iter().map(|r| r.offset).collect();
    assert_eq!(got, (1..=20).collect::<Vec<u64>>());

    let health = healthz(&hub, tls.clone()).await;
    assert_eq!(health["status"], "ok");
    assert_eq!(health["tls"]["reloads"], 0, "{health}");
    let (status, body) = https(hub.addr, tls.clone(), "POST", "/v1/sessions", r#"{"subject":"x"}"#).await;
    assert_eq!(status, 200, "{body}");
    let session: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(session["ws_url"], hub.url(), "the advertised URL is wss://");
    hub.shutdown().await;
}

#[tokio::test]
async fn plain_http_and_ws_on_the_tls_port_fail_cleanly_and_the_hub_stays_healthy() {
    let pki = Pki::new();
    pki.install(&pki.leaf("a", false));
    let hub = TlsHub::spawn(pki.config(0)).await;

    let plain = crate::common::http(hub.addr, "GET", "/healthz", &[], "").await;
    assert_eq!(plain.status, 400, "{}", plain.body);
    assert!(plain.body.contains("this port speaks TLS"), "{}", plain.body);
    let ws = Client::try_open(&format!("ws://{}/ws", hub.addr), &[]).await;
    assert!(ws.is_err(), "a plain WebSocket handshake on the TLS port must fail");
    // A client that does not trust the certificate fails its handshake; the hub carries on.
    let stranger = Pki::new();
    assert!(tls_connect(hub.addr, stranger.client()).await.is_err(), "an untrusted certificate is refused");

    let health = healthz(&hub, pki.client()).await;
    assert_eq!(health["status"], "ok");
    assert!(health["tls"]["handshake_failures"].as_u64().unwrap() >= 2, "{health}");
    hub.shutdown().await;
}

/// A client that speaks TLS 1.2 only and offers only TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256.
fn tls12_ecdhe_rsa_aes128_client(pki: &Pki) -> Arc<ClientConfig> {
    let provider = CryptoProvider {
        cipher_suites: vec![aws_lc_rs::cipher_suite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256],
        ..aws_lc_rs::default_provider()
    };
    pki.client_with(provider, &[&rustls::version::TLS12])
}

#[tokio::test]
async fn a_tls12_client_offering_only_ecdhe_rsa_aes128_gcm_sha256_connects_to_an_rsa_certificate() {
    let pki = Pki::new();
    pki.install(&pki.leaf("rsa", true));
    let hub = TlsHub::spawn(pki.config(0)).await;
    let tls = tls12_ecdhe_rsa_aes128_client(&pki);

    let s = tls_connect(hub.addr, tls.clone()).await.expect("TLS 1.2 handshake");
    let conn = s.get_ref().1;
    assert_eq!(conn.protocol_version(), Some(rustls::ProtocolVersion::TLSv1_2));
    assert_eq!(
        conn.negotiated_cipher_suite().map(|c| c.suite()),
        Some(rustls::CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256)
    );
    drop(s);
    assert_eq!(healthz(&hub, tls.clone()).await["status"], "ok");
    let mut c = wss_client(&hub.url(), tls.clone(), &hub.token("rsa")).await;
    c.subscribe("tls/rsa").await;
    c.publish_json("tls/rsa", json!(1)).await;
    assert_eq!(c.next_record().await.offset, 1);
    hub.shutdown().await;

    // The same client against an ECDSA certificate has no suite in common: the check above can fail.
    let ecdsa = Pki::new();
    ecdsa.install(&ecdsa.leaf("ecdsa", false));
    let hub = TlsHub::spawn(ecdsa.config(0)).await;
    assert!(tls_connect(hub.addr, tls12_ecdhe_rsa_aes128_client(&ecdsa)).await.is_err());
    hub.shutdown().await;
}

#[tokio::test]
async fn a_reload_serves_new_handshakes_the_new_certificate_and_open_connections_keep_receiving() {
    let pki = Pki::new();
    let (a, b) = (pki.leaf("a", false), pki.leaf("b", false));
    pki.install(&a);
    let hub = TlsHub::spawn(pki.config(0)).await;
    let tls = pki.client();
    assert_eq!(served_cert(hub.addr, tls.clone()).await, a.der);

    let mut old = Vec::new();
    for i in 0..4 {
        let mut c = wss_client(&hub.url(), tls.clone(), &hub.token(&format!("old{i}"))).await;
        c.subscribe("tls/reload").await;
        old.push(c);
    }

    // A broken certificate is refused and the current one keeps serving.
    replace(&pki.cert_path(), "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n");
    let refused = hub.tls.reload().expect_err("a broken certificate is refused");
    assert_eq!(refused.key(), "cert_path", "{refused}");
    assert_eq!(served_cert(hub.addr, tls.clone()).await, a.der);
    // So is a key that does not match the certificate.
    replace(&pki.cert_path(), &a.cert_pem);
    replace(&pki.key_path(), &b.key_pem);
    let refused = hub.tls.reload().expect_err("a key for another certificate is refused");
    assert!(refused.to_string().contains("does not match"), "{refused}");
    assert_eq!(served_cert(hub.addr, tls.clone()).await, a.der);

    pki.install(&b);
    hub.tls.reload().expect("reload");
    assert_eq!(served_cert(hub.addr, tls.clone()).await, b.der, "new handshakes get the new certificate");
    let stats = healthz(&hub, tls.clone()).await["tls"].clone();
    assert_eq!((stats["reloads"].as_u64(), stats["reload_failures"].as_u64()), (Some(1), Some(2)), "{stats}");

    // A publisher connected after the reload reaches every connection made before it.
    let mut publisher = wss_client(&hub.url(), tls.clone(), &hub.token("new")).await;
    let offset = publisher.publish_json("tls/reload", json!("after")).await;
    for c in &mut old {
        let r = c.next_record().await;
        assert_eq!((r.offset, r.payload.as_slice()), (offset, &b"\"after\""[..]));
        c.assert_alive().await;
    }
    hub.shutdown().await;
}

#[tokio::test]
async fn replaced_files_are_reloaded_by_the_poll() {
    let pki = Pki::new();
    let (a, b) = (pki.leaf("a", false), pki.leaf("b", false));
    pki.install(&a);
    let hub = TlsHub::spawn(pki.config(100)).await;
    let tls = pki.client();
    assert_eq!(served_cert(hub.addr, tls.clone()).await, a.der);
    let mut open = wss_client(&hub.url(), tls.clone(), &hub.token("open")).await;
    open.subscribe("tls/poll").await;

    pki.install(&b);
    until_served(hub.addr, &tls, &b.der).await;
    assert!(hub.tls.stats().reloads >= 1);
    open.publish_json("tls/poll", json!(1)).await;
    assert_eq!(open.next_record().await.offset, 1, "the connection from before the reload still works");
    hub.shutdown().await;
}

/// The leaf certificate a `wss://` client's handshake got.
fn peer_leaf(c: &Client) -> CertificateDer<'static> {
    match c.ws.get_ref() {
        tokio_tungstenite::MaybeTlsStream::Rustls(s) => {
            s.get_ref().1.peer_certificates().expect("a certificate")[0].clone().into_owned()
        }
        _ => panic!("not a TLS stream"),
    }
}

/// Waits (bounded) until `n` holds at least `at_least`.
async fn until_count(n: &AtomicU64, at_least: u64, what: &str) {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while n.load(Ordering::Relaxed) < at_least {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_reload_under_load_drops_no_connection_and_loses_no_message() {
    const SUBSCRIBERS: usize = 20;
    const TOPIC: &str = "rel/tls-load";
    let pki = Pki::new();
    let (a, b) = (pki.leaf("a", false), pki.leaf("b", false));
    pki.install(&a);
    // The files are polled every 100 ms; the topic is `reliable`, so a subscriber that fell
    // behind would be disconnected, never skipped.
    let mut config = pki.config(100);
    crate::common::declare_topics(&mut config, "rel/>", crate::common::reliable(100_000), None);
    let hub = TlsHub::spawn(config).await;
    let tls = pki.client();
    assert_eq!(served_cert(hub.addr, tls.clone()).await, a.der);

    // Each subscriber is read by its own task until the end marker.
    let mut readers = Vec::new();
    for i in 0..SUBSCRIBERS {
        let mut c = wss_client(&hub.url(), tls.clone(), &hub.token(&format!("sub{i}"))).await;
        assert_eq!(c.subscribe(TOPIC).await["type"], "subscribed");
        assert_eq!(peer_leaf(&c), a.der);
        readers.push(tokio::spawn(async move {
            let mut got = Vec::new();
            loop {
                let r = c.next_record().await;
                let end = r.payload == b"\"end\"";
                got.push((r.offset, r.payload));
                if end {
                    return (c, got);
                }
            }
        }));
    }
    // One publisher streams, each publish acknowledged, until told to stop; then the end marker.
    let published = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut publisher = wss_client(&hub.url(), tls.clone(), &hub.token("publisher")).await;
    let streaming = tokio::spawn({
        let (published, stop) = (published.clone(), stop.clone());
        async move {
            let mut offsets = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                offsets.push(publisher.publish_json(TOPIC, json!(offsets.len())).await);
                published.store(offsets.len() as u64, Ordering::Relaxed);
            }
            let end = publisher.publish_json(TOPIC, json!("end")).await;
            (publisher, offsets, end)
        }
    });

    until_count(&published, 100, "100 messages before the reload").await;
    pki.install(&b);
    until_served(hub.addr, &tls, &b.der).await;
    let at_reload = published.load(Ordering::Relaxed);
    until_count(&published, at_reload + 100, "100 messages after the reload").await;
    stop.store(true, Ordering::Relaxed);
    let (mut publisher, offsets, end) = tokio::time::timeout(TIMEOUT, streaming).await.expect("publisher").unwrap();
    let n = offsets.len() as u64;
    assert_eq!(offsets, (1..=n).collect::<Vec<u64>>(), "one topic, one publisher: offsets 1..=n");
    assert_eq!(end, n + 1);
    assert!(hub.tls.stats().reloads >= 1);

    // Every subscriber: still open, and every message once, in order, no gap.
    let expected: Vec<(u64, Vec<u8>)> =
        (1..=n).map(|o| (o, (o - 1).to_string().into_bytes())).chain([(end, b"\"end\"".to_vec())]).collect();
    let mut subscribers = Vec::new();
    for reader in readers {
        let (mut c, got) = tokio::time::timeout(TIMEOUT, reader).await.expect("a subscriber hung").unwrap();
        assert_eq!(got.len(), expected.len(), "messages received");
        assert!(got == expected, "a gap, a duplicate or a change of order");
        assert_eq!(peer_leaf(&c), a.der, "an open connection keeps the session it began with");
        c.assert_alive().await;
        subscribers.push(c);
    }
    publisher.assert_alive().await;

    // A new connection gets the new certificate (its leaf, so its fingerprint) and the session.
    let mut fresh = wss_client(&hub.url(), tls.clone(), &hub.token("fresh")).await;
    assert_eq!(peer_leaf(&fresh), b.der);
    assert_ne!(a.der, b.der);
    assert_eq!(fresh.subscribe(TOPIC).await["type"], "subscribed");
    assert_eq!(publisher.publish_json(TOPIC, json!("after")).await, end + 1);
    assert_eq!(fresh.next_record().await.offset, end + 1);
    let listed = crate::common::http(hub.admin, "GET", "/v1/admin/connections", &[crate::common::ADMIN_AUTH], "").await;
    assert_eq!(listed.json()["total"], SUBSCRIBERS + 2, "{}", listed.body);
    assert!(listed.json()["items"].as_array().unwrap().iter().all(|c| c["state"] == "active"), "{}", listed.body);
    drop(subscribers);
    hub.shutdown().await;
}

#[tokio::test]
async fn sighup_makes_the_binary_reload_its_certificate() {
    let pki = Pki::new();
    let (a, b) = (pki.leaf("a", false), pki.leaf("b", false));
    pki.install(&a);
    let config = pki.dir.join("fanhub.toml");
    std::fs::write(
        &config,
        format!(
            "[server.tls]\ncert_path = {:?}\nkey_path = {:?}\nreload_interval_ms = 0\n\n[demo]\nenabled = false\n",
            pki.cert_path(),
            pki.key_path()
        ),
    )
    .unwrap();
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_fanhub"));
    cmd.args(["serve", "--config", config.to_str().unwrap(), "--listen", "127.0.0.1:0"]);
    cmd.args(["--admin-listen", "127.0.0.1:0", "--log-level", "info"]);
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("FANHUB_")) {
        cmd.env_remove(k);
    }
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped()).kill_on_drop(true);
    let mut child = cmd.spawn().expect("spawn fanhub");
    // The development banner names the URLs and a token; the rest of stderr is drained.
    let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let (mut url, mut token, mut banner) = (None, None, String::new());
    tokio::time::timeout(TIMEOUT, async {
        while let Ok(Some(line)) = lines.next_line().await {
            banner.push_str(&line);
            banner.push('\n');
            if let Some(rest) = line.trim().strip_prefix("websocket: ") {
                url = rest.split(' ').next().map(str::to_owned);
            }
            if let Some((_, t)) = line.split_once("dev token (24 h, all topics): ") {
                token = Some(t.trim().to_owned());
                break;
            }
        }
    })
    .await
    .expect("the banner hung");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let url = url.unwrap_or_else(|| panic!("a websocket URL in the banner:\n{banner}"));
    let token = token.unwrap_or_else(|| panic!("a dev token in the banner:\n{banner}"));
    assert!(url.starts_with("wss://127.0.0.1:"), "{banner}");
    assert!(banner.contains("demo:      https://127.0.0.1:"), "{banner}");
    let addr: SocketAddr = url["wss://".len()..].trim_end_matches("/ws").parse().unwrap();

    let tls = pki.client();
    assert_eq!(served_cert(addr, tls.clone()).await, a.der);
    let mut open = wss_client(&url, tls.clone(), &token).await;
    open.subscribe("tls/hup").await;

    pki.install(&b);
    let pid = child.id().expect("running").to_string();
    let killed = tokio::process::Command::new("kill").args(["-HUP", &pid]).status().await.expect("kill");
    assert!(killed.success());
    until_served(addr, &tls, &b.der).await;
    let mut publisher = wss_client(&url, tls.clone(), &token).await;
    let offset = publisher.publish_json("tls/hup", json!("after")).await;
    assert_eq!(open.next_record().await.offset, offset, "the connection from before SIGHUP still receives");
    assert!(child.try_wait().unwrap().is_none(), "SIGHUP does not stop the hub");
    let _ = child.start_kill();
    let _ = tokio::time::timeout(TIMEOUT, child.wait()).await;
}

fn problems(config_toml: &str) -> Vec<String> {
    match Config::from_toml(config_toml) {
        Err(ConfigError::Invalid(p)) => p.iter().map(ToString::to_string).collect(),
        other => panic!("expected invalid, got {other:?}"),
    }
}

#[tokio::test]
async fn unreadable_or_invalid_files_are_configuration_errors_naming_the_key() {
    let pki = Pki::new();
    let a = pki.leaf("a", false);
    let b = pki.leaf("b", false);
    let (cert, key) = (pki.cert_path(), pki.key_path());
    let section = |cert: &Path, key: &Path| format!("[server.tls]\ncert_path = {cert:?}\nkey_path = {key:?}\n");

    // Missing files.
    let p = problems(&section(&cert, &key));
    assert!(p.len() == 1 && p[0].starts_with("server.tls.cert_path = ") && p[0].contains("cannot read"), "{p:?}");
    std::fs::write(&cert, &a.cert_pem).unwrap();
    let p = problems(&section(&cert, &key));
    assert!(p.len() == 1 && p[0].starts_with("server.tls.key_path = ") && p[0].contains("cannot read"), "{p:?}");
    // Not PEM, or the wrong PEM.
    std::fs::write(&key, "not a key").unwrap();
    let p = problems(&section(&cert, &key));
    assert!(p.len() == 1 && p[0].starts_with("server.tls.key_path") && p[0].contains("private key"), "{p:?}");
    std::fs::write(&key, &a.key_pem).unwrap();
    let p = problems(&section(&key, &key));
    assert!(p.len() == 1 && p[0].starts_with("server.tls.cert_path") && p[0].contains("CERTIFICATE"), "{p:?}");
    // A key for another certificate.
    std::fs::write(&key, &b.key_pem).unwrap();
    let p = problems(&section(&cert, &key));
    assert!(p.len() == 1 && p[0].starts_with("server.tls.key_path") && p[0].contains("does not match"), "{p:?}");
    // One path without the other, and bad policy values, each named.
    let p = problems(&format!("[server.tls]\ncert_path = {cert:?}\nmin_version = \"1.0\"\n"));
    assert!(p.iter().any(|p| p.starts_with("server.tls.key_path")), "{p:?}");
    assert!(p.iter().any(|p| p.starts_with("server.tls.min_version = 1.0")), "{p:?}");
    // A good pair passes.
    std::fs::write(&key, &a.key_pem).unwrap();
    Config::from_toml(&section(&cert, &key)).expect("a matching pair is valid");

    // The binary refuses to start and says why.
    std::fs::remove_file(&key).unwrap();
    let path = pki.dir.join("bad.toml");
    std::fs::write(&path, section(&cert, &key)).unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_fanhub"))
        .args(["serve", "--config", path.to_str().unwrap(), "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(TIMEOUT, out).await.expect("fanhub serve kept running").unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("server.tls.key_path") && err.contains("cannot read"), "{err}");
}

/// The Rust client over `wss://`: it trusts the test CA given as `tls_ca_files` (besides the
/// system's roots), subscribes and publishes, and `health()` asks `https://…/healthz`; without
/// the CA the connection is refused for its certificate.
#[cfg(feature = "client-tls")]
#[tokio::test]
async fn the_rust_client_connects_over_wss_trusting_a_ca_file() {
    use fanhub::client::{Client as Sdk, ClientError, ClientOptions, Event, From};
    let pki = Pki::new();
    pki.install(&pki.leaf("a", false));
    let hub = TlsHub::spawn(pki.config(0)).await;
    let ca = pki.dir.join("ca.pem");
    std::fs::write(&ca, pem("CERTIFICATE", &pki.ca_der)).unwrap();

    let options = ClientOptions::new([hub.url()]).with_token(hub.token("sdk")).with_tls_ca_file(&ca);
    let client = Sdk::connect(options).await.expect("wss connect");
    let mut sub = client.subscribe("tls/sdk", From::Live).await.unwrap();
    client.publish_json("tls/sdk", &json!({"over": "wss"})).await.unwrap();
    match tokio::time::timeout(TIMEOUT, sub.next()).await.expect("a message").unwrap() {
        Event::Message(m) => assert_eq!(&m.payload[..], br#"{"over":"wss"}"#),
        other => panic!("{other:?}"),
    }
    let health = client.health().await.unwrap();
    assert!(health.healthy, "{health:?}");
    client.close().await;

    let mut untrusting = ClientOptions::new([hub.url()]).with_token(hub.token("sdk"));
    untrusting.initial_attempts = 1;
    match Sdk::connect(untrusting).await {
        Err(ClientError::Connect(m)) => assert!(m.to_lowercase().contains("certificate"), "{m}"),
        other => panic!("expected a certificate error, got {other:?}"),
    }
    let mut missing =
        ClientOptions::new([hub.url()]).with_token(hub.token("sdk")).with_tls_ca_file(pki.dir.join("nope.pem"));
    missing.initial_attempts = 1;
    match Sdk::connect(missing).await {
        Err(ClientError::Connect(m)) => assert!(m.contains("tls_ca_files") && m.contains("nope.pem"), "{m}"),
        other => panic!("expected the missing CA file named, got {other:?}"),
    }
    hub.shutdown().await;
}
