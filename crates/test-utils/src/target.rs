//! A scripted HTTP target: each request gets the next scripted reply (status, headers,
//! delay, and a body that may be fixed, huge, trickled or endless), and every request is
//! recorded with its arrival time.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// How a reply's body is produced.
#[derive(Debug, Clone)]
pub enum ReplyBody {
    /// These bytes.
    Fixed(Vec<u8>),
    /// `total` bytes in 64 KiB chunks, produced on the fly (never held in memory).
    Huge(u64),
    /// One byte every `interval`, `count` times.
    Trickle(Duration, usize),
    /// Headers, then nothing, forever.
    Endless,
}

/// One scripted reply.
#[derive(Debug, Clone)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Extra headers.
    pub headers: Vec<(String, String)>,
    /// Wait before answering.
    pub delay: Duration,
    /// The body.
    pub body: ReplyBody,
}

impl Reply {
    /// A reply with `status` and a short body.
    pub fn status(status: u16) -> Self {
        Self { status, headers: Vec::new(), delay: Duration::ZERO, body: ReplyBody::Fixed(b"ok".to_vec()) }
    }

    /// Adds a header.
    #[must_use]
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Sets the body.
    #[must_use]
    pub fn body(mut self, body: ReplyBody) -> Self {
        self.body = body;
        self
    }

    /// Sets the delay.
    #[must_use]
    pub fn delay(mut self, d: Duration) -> Self {
        self.delay = d;
        self
    }
}

/// A request as the target saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    /// Path and query.
    pub path: String,
    /// Headers (lower-case names).
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
    /// Arrival, relative to the target's start.
    pub at: Duration,
}

impl Seen {
    /// Returns header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

struct State {
    script: VecDeque<Reply>,
    default: Reply,
    seen: Vec<Seen>,
    in_flight: usize,
    max_in_flight: usize,
}

/// A running target; dropping it stops the server.
pub struct ScriptedTarget {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

struct Stream {
    body: ReplyBody,
    sent: u64,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Body for Stream {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        const CHUNK: u64 = 64 * 1024;
        match self.body.clone() {
            ReplyBody::Fixed(b) => {
                if self.sent > 0 {
                    return Poll::Ready(None);
                }
                self.sent = 1;
                Poll::Ready(Some(Ok(Frame::data(Bytes::from(b)))))
            }
            ReplyBody::Huge(total) => {
                if self.sent >= total {
                    return Poll::Ready(None);
                }
                let n = CHUNK.min(total - self.sent);
                self.sent += n;
                Poll::Ready(Some(Ok(Frame::data(Bytes::from(vec![b'x'; n as usize])))))
            }
            ReplyBody::Trickle(interval, count) => {
                if self.sent >= count as u64 {
                    return Poll::Ready(None);
                }
                let sleep = self.sleep.get_or_insert_with(|| Box::pin(tokio::time::sleep(interval)));
                match sleep.as_mut().poll(cx) {
                    Poll::Pending => Poll::Pending,
                    Poll::Ready(()) => {
                        self.sleep = None;
                        self.sent += 1;
                        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b".")))))
                    }
                }
            }
            ReplyBody::Endless => Poll::Pending,
        }
    }
}

use std::future::Future as _;

impl ScriptedTarget {
    /// Starts a target on 127.0.0.1 that answers `script` in order, then `default`.
    pub async fn start(script: Vec<Reply>, default: Reply) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(State {
            script: script.into(),
            default,
            seen: Vec::new(),
            in_flight: 0,
            max_in_flight: 0,
        }));
        let st = state.clone();
        let started = Instant::now();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let st = st.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let st = st.clone();
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = body.collect().await.map(|b| b.to_bytes().to_vec()).unwrap_or_default();
                            let reply = match st.lock() {
                                Ok(mut g) => {
                                    g.seen.push(Seen {
                                        path: parts.uri.path_and_query().map(|p| p.to_string()).unwrap_or_default(),
                                        headers: parts
                                            .headers
                                            .iter()
                                            .map(|(n, v)| {
                                                (n.to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned())
                                            })
                                            .collect(),
                                        body,
                                        at: started.elapsed(),
                                    });
                                    g.in_flight += 1;
                                    g.max_in_flight = g.max_in_flight.max(g.in_flight);
                                    let next = g.script.pop_front();
                                    next.unwrap_or_else(|| g.default.clone())
                                }
                                Err(_) => Reply::status(500),
                            };
                            if !reply.delay.is_zero() {
                                tokio::time::sleep(reply.delay).await;
                            }
                            if let Ok(mut g) = st.lock() {
                                g.in_flight -= 1;
                            }
                            let mut resp = Response::new(Stream { body: reply.body, sent: 0, sleep: None });
                            *resp.status_mut() =
                                hyper::StatusCode::from_u16(reply.status).unwrap_or(hyper::StatusCode::OK);
                            for (k, v) in &reply.headers {
                                if let (Ok(k), Ok(v)) = (
                                    hyper::header::HeaderName::from_bytes(k.as_bytes()),
                                    hyper::header::HeaderValue::from_str(v),
                                ) {
                                    resp.headers_mut().append(k, v);
                                }
                            }
                            Ok::<_, Infallible>(resp)
                        }
                    });
                    let _ =
                        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
                });
            }
        });
        Ok(Self { addr, state, task })
    }

    /// Returns `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Returns the port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Returns every request seen so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.state.lock().map(|g| g.seen.clone()).unwrap_or_default()
    }

    /// Returns the most requests that were waiting for their reply at once.
    pub fn max_in_flight(&self) -> usize {
        self.state.lock().map(|g| g.max_in_flight).unwrap_or(0)
    }
}

impl Drop for ScriptedTarget {
    fn drop(&mut self) {
        self.task.abort();
    }
}
