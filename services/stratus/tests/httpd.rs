//! The HTTP listeners: TLS with `--tls-cert` / `--tls-key`, slow clients cut off, and a
//! clear refusal of unusable TLS files.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::free_port;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls;

/// A self-signed certificate for 127.0.0.1 / localhost, written as PEM files.
fn self_signed(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf, Vec<u8>) {
    let ck =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.key_pair.serialize_pem()).unwrap();
    (cert, key, ck.cert.der().to_vec())
}

/// One HTTP/1.1 GET over TLS trusting only `ca_der`; returns the response head.
async fn https_get(port: u16, ca_der: &[u8], path: &str) -> std::io::Result<String> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls_pki_types::CertificateDer::from(ca_der.to_vec()))
        .unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let mut tls = connector.connect(name, tcp).await?;
    tls.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await?;
    let mut out = Vec::new();
    tls.read_to_end(&mut out).await?;
    Ok(String::from_utf8_lossy(&out).to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_speaks_tls_with_the_given_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, der) = self_signed(dir.path());
    let port = free_port();
    let _serve = common::spawn(
        &[
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
        &dir.path().join("data"),
    );
    let head = https_get(port, &der, "/v2.1").await.expect("TLS request");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    // The certificate is self-signed: openrc tells the CLI to trust it (else
    // CERTIFICATE_VERIFY_FAILED), by absolute path.
    let openrc = std::fs::read_to_string(dir.path().join("data/openrc")).unwrap();
    assert!(
        openrc.contains(&format!("export OS_CACERT='{}'", cert.display())),
        "{openrc}"
    );
    assert!(openrc.contains("export OS_AUTH_URL='https://"), "{openrc}");
    assert!(head.contains("\"v2.1\""), "{head}");
    // Links name the scheme the client used.
    assert!(
        head.contains("\"href\":\"https://127.0.0.1/v2.1/\""),
        "{head}"
    );
    // Plain HTTP on the TLS port gets no HTTP answer.
    let plain = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/v2.1"))
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    assert!(plain.is_err(), "{plain:?}");
}

#[test]
fn unusable_tls_files_are_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let bogus = dir.path().join("bogus.pem");
    std::fs::write(&bogus, "not a certificate").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_stratus"))
        .env("STRATUS_NETWORK_LISTEN", "127.0.0.1:0")
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .arg("--tls-cert")
        .arg(&bogus)
        .arg("--tls-key")
        .arg(&bogus)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bogus.pem"), "{err}");
    // One without the other is a usage error.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_stratus"))
        .env("STRATUS_NETWORK_LISTEN", "127.0.0.1:0")
        .args(["serve", "--tls-cert"])
        .arg(&bogus)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--tls-key"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A client that never finishes its request head is disconnected after the header read
/// timeout (10 s) instead of holding the connection forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _serve = common::spawn(
        &["serve", "--listen", &format!("127.0.0.1:{port}")],
        &dir.path().join("data"),
    );
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    tcp.write_all(b"GET /v2.1 HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .await
        .unwrap();
    let t0 = Instant::now();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(30), tcp.read_to_end(&mut buf)).await;
    assert!(
        read.is_ok(),
        "the server kept a half-sent request open for 30 s"
    );
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_secs(8),
        "cut off too early ({waited:?}): {}",
        String::from_utf8_lossy(&buf)
    );
    // Other clients were served meanwhile, and still are.
    let ok = reqwest::get(format!("http://127.0.0.1:{port}/v2.1"))
        .await
        .unwrap();
    assert_eq!(ok.status().as_u16(), 200);
}

/// A request that outlives the listener's request timeout gets 408, with a request id
/// like every other answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timed_out_requests_get_408_with_a_request_id() {
    let app = axum::Router::new().route(
        "/slow",
        axum::routing::get(|| async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            "late"
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (stop, rx) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(stratus::httpd::serve(
        listener,
        app,
        None,
        Duration::from_millis(200),
        rx,
    ));
    let r = reqwest::get(format!("http://127.0.0.1:{port}/slow"))
        .await
        .unwrap();
    assert_eq!(r.status(), 408);
    let id = r.headers()["x-openstack-request-id"].to_str().unwrap();
    assert!(id.starts_with("req-") && id.len() == 40, "{id}");
    stop.send(true).unwrap();
    server.await.unwrap();
}

/// A client that sends a body over the limit and reads the answer only once it has
/// sent everything (Python's urllib, most blocking clients) receives the 413: the
/// server reads and discards the rest of the body before closing instead of closing
/// on unread data, which makes the kernel reset the connection and lose the answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_over_limit_body_gets_its_413_not_a_reset() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _serve = common::spawn(
        &["serve", "--listen", &format!("127.0.0.1:{port}")],
        &dir.path().join("data"),
    );
    let outcomes = tokio::task::spawn_blocking(move || {
        let body = vec![b' '; 2 * 1024 * 1024];
        (0..30)
            .map(|_| -> std::io::Result<String> {
                let mut tcp = std::net::TcpStream::connect(("127.0.0.1", port))?;
                tcp.set_read_timeout(Some(Duration::from_secs(30)))?;
                tcp.write_all(
                    format!(
                        "POST /v2.1/servers HTTP/1.1\r\nHost: 127.0.0.1\r\n\
                         X-Auth-Token: alice:demo\r\nContent-Type: application/json\r\n\
                         Content-Length: {}\r\n\r\n",
                        body.len()
                    )
                    .as_bytes(),
                )?;
                tcp.write_all(&body)?;
                let mut out = Vec::new();
                tcp.read_to_end(&mut out)?;
                Ok(String::from_utf8_lossy(&out).to_string())
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    let bad: Vec<String> = outcomes
        .iter()
        .filter_map(|o| match o {
            Ok(head) if head.starts_with("HTTP/1.1 413") && head.contains("overLimit") => None,
            Ok(head) => Some(format!("answer: {}", head.lines().next().unwrap_or(""))),
            Err(e) => Some(format!("error: {e}")),
        })
        .collect();
    assert!(bad.is_empty(), "{} of 30 failed: {bad:?}", bad.len());
}
