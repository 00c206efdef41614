//! A minimal HTTP/1.1 client for tests, built on hyper-util's pooled client.

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use super::sse::{SseEvent, parse_sse};

/// A response read to its end (or to the error that cut it).
#[derive(Debug)]
pub struct HttpResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    /// Everything received, even when the body ended in an error.
    pub body: Bytes,
    /// Set when the body did not end cleanly (connection dropped mid-body).
    pub body_error: Option<String>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("response body is not JSON ({e}): {}", self.text()))
    }
    pub fn sse(&self) -> Vec<SseEvent> {
        parse_sse(&self.text())
    }
}

pub fn client() -> Client<HttpConnector, Full<Bytes>> {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new()).build(connector)
}

/// Sends a request and returns the response head with its body still streaming.
pub async fn open(
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> http::Response<Incoming> {
    let mut req = Request::builder().method(method).uri(url);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let req = req.body(Full::new(body)).expect("valid request");
    client()
        .request(req)
        .await
        .unwrap_or_else(|e| panic!("request to {url} failed: {e:?}"))
}

/// Reads a body to its end, keeping what arrived before an error.
pub async fn read_body(resp: http::Response<Incoming>) -> HttpResponse {
    let (parts, mut body) = resp.into_parts();
    let mut buf = Vec::new();
    let mut body_error = None;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => {
                if let Some(data) = frame.data_ref() {
                    buf.extend_from_slice(data);
                }
            }
            Err(e) => {
                body_error = Some(format!("{e:?}"));
                break;
            }
        }
    }
    HttpResponse {
        status: parts.status,
        headers: parts.headers,
        body: Bytes::from(buf),
        body_error,
    }
}

pub async fn send(method: Method, url: &str, headers: &[(&str, &str)], body: Bytes) -> HttpResponse {
    read_body(open(method, url, headers, body).await).await
}

/// POSTs `body` as JSON.
pub async fn post_json(url: &str, headers: &[(&str, &str)], body: &Value) -> HttpResponse {
    let mut all = vec![("content-type", "application/json")];
    all.extend_from_slice(headers);
    send(Method::POST, url, &all, Bytes::from(body.to_string())).await
}

pub async fn get(url: &str, headers: &[(&str, &str)]) -> HttpResponse {
    send(Method::GET, url, headers, Bytes::new()).await
}
