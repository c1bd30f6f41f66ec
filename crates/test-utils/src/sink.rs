//! A webhook receiver on loopback that records every request.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// One request the sink received.
#[derive(Debug, Clone)]
pub struct Received {
    /// Method.
    pub method: String,
    /// Path and query.
    pub path: String,
    /// Headers, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
    /// When it arrived (wall clock).
    pub at: SystemTime,
}

impl Received {
    /// Returns the first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
    }
}

/// A running sink. Dropping it stops the server.
pub struct WebhookSink {
    addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    status: Arc<AtomicU16>,
    delay_ms: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl WebhookSink {
    /// Starts a sink on 127.0.0.1 on a free port, answering 200.
    pub async fn start() -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let received = Arc::new(Mutex::new(Vec::new()));
        let status = Arc::new(AtomicU16::new(200));
        let delay_ms = Arc::new(AtomicU64::new(0));
        let (rec, st, dl) = (received.clone(), status.clone(), delay_ms.clone());
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (rec, st, dl) = (rec.clone(), st.clone(), dl.clone());
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let (rec, st, dl) = (rec.clone(), st.clone(), dl.clone());
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = body.collect().await.map(|b| b.to_bytes().to_vec()).unwrap_or_default();
                            let r = Received {
                                method: parts.method.to_string(),
                                path: parts.uri.path_and_query().map(|p| p.to_string()).unwrap_or_default(),
                                headers: parts
                                    .headers
                                    .iter()
                                    .map(|(n, v)| {
                                        (n.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned())
                                    })
                                    .collect(),
                                body,
                                at: SystemTime::now(),
                            };
                            if let Ok(mut g) = rec.lock() {
                                g.push(r);
                            }
                            let delay = dl.load(Ordering::Relaxed);
                            if delay > 0 {
                                tokio::time::sleep(Duration::from_millis(delay)).await;
                            }
                            let mut resp = Response::new(Full::new(Bytes::from_static(b"{\"ok\":true}")));
                            *resp.status_mut() = hyper::StatusCode::from_u16(st.load(Ordering::Relaxed))
                                .unwrap_or(hyper::StatusCode::OK);
                            resp.headers_mut()
                                .insert("x-sink", hyper::header::HeaderValue::from_static("cronhook-test"));
                            Ok::<_, Infallible>(resp)
                        }
                    });
                    let _ =
                        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
                });
            }
        });
        Ok(Self { addr, received, status, delay_ms, task })
    }

    /// Returns `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Sets the status code of later responses.
    pub fn respond_with(&self, status: u16) {
        self.status.store(status, Ordering::Relaxed);
    }

    /// Makes later responses wait `d` after the request is recorded (a slow target).
    pub fn respond_after(&self, d: Duration) {
        self.delay_ms.store(d.as_millis() as u64, Ordering::Relaxed);
    }

    /// Returns a copy of everything received so far.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().map(|g| g.clone()).unwrap_or_default()
    }

    /// Waits until at least `n` requests arrived, or fails after `timeout`.
    pub async fn wait_for_count(&self, n: usize, timeout: Duration) -> anyhow::Result<Vec<Received>> {
        crate::wait_for(&format!("{n} webhook deliveries"), timeout, || async {
            let r = self.received();
            (r.len() >= n).then_some(r)
        })
        .await
    }
}

impl Drop for WebhookSink {
    fn drop(&mut self) {
        self.task.abort();
    }
}
