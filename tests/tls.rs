//! TLS termination: with a certificate and key configured, Switchyard serves HTTPS (HTTP/1.1 and HTTP/2 by ALPN).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: a panic is a failed assertion with its message"
)]

mod common;

use std::sync::Arc;

use bytes::Bytes;
use common::mock::MockUpstream;
use common::proxy::{Db, TestProxy, UPSTREAM_KEY, config_yaml};
use common::sse::{openai_stream_text, parse_sse};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_https_with_the_configured_certificate() {
    let upstream = MockUpstream::builder().api_key(UPSTREAM_KEY).start().await;
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    let yaml = format!(
        "tls:\n  cert: {}\n  key: {}\n{}",
        cert_path.display(),
        key_path.display(),
        config_yaml(&upstream.url())
    );
    let p = TestProxy::start_with(&yaml, Db::Sqlite).await;
    let port = p.url.rsplit(':').next().unwrap().to_owned();

    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    for expected in [http::Version::HTTP_2, http::Version::HTTP_11] {
        let tls = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots.clone())
            .with_no_client_auth();
        let builder = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only();
        // The connector offers one protocol by ALPN; the server must accept either.
        let https = if expected == http::Version::HTTP_2 {
            builder.enable_http2().build()
        } else {
            builder.enable_http1().build()
        };
        let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build(https);
        let request = http::Request::get(format!("https://localhost:{port}/v1/models"))
            .header("authorization", p.auth())
            .body(Full::new(Bytes::new()))
            .unwrap();
        let response = client.request(request).await.unwrap();
        assert_eq!(response.status(), http::StatusCode::OK);
        assert_eq!(response.version(), expected);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert!(String::from_utf8_lossy(&body).contains("\"small\""));

        // A stream over the same protocol (over HTTP/2, hyper polls the body in a task of its own).
        let request = http::Request::post(format!("https://localhost:{port}/v1/chat/completions"))
            .header("authorization", p.auth())
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(
                serde_json::json!({"model": "small", "stream": true,
                                   "messages": [{"role": "user", "content": "hi"}]})
                .to_string(),
            )))
            .unwrap();
        let response = client.request(request).await.unwrap();
        assert_eq!(response.status(), http::StatusCode::OK);
        assert_eq!(response.version(), expected);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let events = parse_sse(&String::from_utf8_lossy(&body));
        assert!(events.last().is_some_and(|e| e.is_done()), "{events:?}");
        assert!(!openai_stream_text(&events).is_empty(), "{events:?}");
    }
    p.stop().await;
}
