use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cronhook_core::{Attempt, RecordedHeader, RunId, Tick, Timestamp};
use sha2::{Digest, Sha256};

use crate::seal::{SealKey, is_sealed};
use crate::signing::{secret_bytes, signature_header};
use crate::ssrf::{Blocked, GuardedResolver, Lookup, SsrfPolicy, SystemLookup};
use crate::{Error, HEADER_ID, HEADER_SCHEDULED_AT, HEADER_SIGNATURE, HEADER_TIMESTAMP, Verdict, classify};

/// Settings of the sender (operator config).
#[derive(Clone)]
pub struct SenderConfig {
    /// Which destinations may be contacted.
    pub ssrf: Arc<SsrfPolicy>,
    /// How host names are looked up (the system resolver; tests swap it).
    pub lookup: Arc<dyn Lookup>,
    /// Most attempts in flight to one host (scheme, host, port) from this process.
    pub per_host_limit: usize,
    /// Opens sealed header values and signing secrets (`None`: none configured).
    pub seal: Option<SealKey>,
    /// TCP connect timeout.
    pub connect_timeout: Duration,
    /// Response body bytes stored per attempt; the rest is discarded.
    pub max_response_body: usize,
    /// Response bytes read (and dropped) past the stored part before giving up on the
    /// connection, so a huge body cannot hold a worker.
    pub max_response_drain: usize,
    /// Idle keep-alive connections kept per host.
    pub pool_max_idle_per_host: usize,
}

impl Default for SenderConfig {
    fn default() -> Self {
        Self {
            ssrf: Arc::new(SsrfPolicy::disabled()),
            lookup: Arc::new(SystemLookup),
            per_host_limit: 64,
            seal: None,
            connect_timeout: Duration::from_secs(5),
            max_response_body: 64 * 1024,
            max_response_drain: 1024 * 1024,
            pool_max_idle_per_host: 64,
        }
    }
}

/// The result of one attempt.
#[derive(Debug, Clone)]
pub struct SendResult {
    /// The record to store.
    pub attempt: Attempt,
    /// What it means for the run.
    pub verdict: Verdict,
}

/// Sends attempts. Cheap to clone (shares the connection pools).
#[derive(Clone)]
pub struct HttpSender {
    plain: reqwest::Client,
    redirecting: reqwest::Client,
    cfg: SenderConfig,
    hosts: Arc<Mutex<HashMap<String, Arc<tokio::sync::Semaphore>>>>,
}

/// Header (name, value) pairs in clear and the signing keys valid now.
type Opened = (Vec<(String, String)>, Vec<Vec<u8>>);

/// Most hosts whose concurrency is tracked at once; idle ones are forgotten beyond it.
const MAX_TRACKED_HOSTS: usize = 10_000;
/// Redirect hops followed at most (each one checked by the SSRF guard).
const MAX_REDIRECTS: usize = 3;

const REDACTED: &str = "[redacted]";
/// Header names whose values are never stored in clear, whether or not marked secret.
const ALWAYS_SECRET: &[&str] = &["authorization", "proxy-authorization", "cookie", "x-api-key"];

fn user_agent() -> String {
    format!("cronhook/{}", env!("CARGO_PKG_VERSION"))
}

impl HttpSender {
    /// Builds the HTTP clients.
    pub fn new(cfg: SenderConfig) -> Result<Self, Error> {
        let resolver = Arc::new(GuardedResolver::new(cfg.ssrf.clone(), cfg.lookup.clone()));
        let build = |redirects: reqwest::redirect::Policy| {
            reqwest::Client::builder()
                .connect_timeout(cfg.connect_timeout)
                .pool_max_idle_per_host(cfg.pool_max_idle_per_host)
                .redirect(redirects)
                .user_agent(user_agent())
                // every name goes through the guard; a proxy would bypass it
                .dns_resolver(resolver.clone())
                .connector_layer(crate::timing::TimeConnect)
                .no_proxy()
                .build()
        };
        let ssrf = cfg.ssrf.clone();
        let hops = reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() > MAX_REDIRECTS {
                return attempt.stop();
            }
            // names are checked by the resolver; literals here, on every hop
            let refused = attempt.url().host_str().and_then(|h| ssrf.refuse_host(h));
            match refused {
                Some(why) => attempt.error(Blocked(why)),
                None => attempt.follow(),
            }
        });
        Ok(Self {
            plain: build(reqwest::redirect::Policy::none())?,
            redirecting: build(hops)?,
            cfg,
            hosts: Arc::default(),
        })
    }

    fn host_slots(&self, u: &url::Url) -> Option<Arc<tokio::sync::Semaphore>> {
        let key = format!("{}://{}:{}", u.scheme(), u.host_str()?, u.port_or_known_default()?);
        let mut hosts = self.hosts.lock().ok()?;
        if hosts.len() >= MAX_TRACKED_HOSTS && !hosts.contains_key(&key) {
            // forget idle hosts (nobody holds or waits for their semaphore)
            hosts.retain(|_, s| Arc::strong_count(s) > 1);
        }
        Some(
            hosts
                .entry(key)
                .or_insert_with(|| Arc::new(tokio::sync::Semaphore::new(self.cfg.per_host_limit.max(1))))
                .clone(),
        )
    }

    /// Opens sealed header values and the valid signing keys of `tick` (at `now`).
    fn open_secrets(&self, tick: &Tick, now: Timestamp) -> Result<Opened, String> {
        let key = self.cfg.seal.as_ref();
        let open = |v: &str| -> Result<String, String> {
            match key {
                Some(k) => k.open(v).map_err(|e| e.to_string()),
                None => Err("secrets.key is not configured on this worker".into()),
            }
        };
        let mut headers = Vec::with_capacity(tick.target.headers.len());
        for h in &tick.target.headers {
            let value = if h.secret && is_sealed(&h.value) { open(&h.value)? } else { h.value.clone() };
            headers.push((h.name.clone(), value));
        }
        let mut keys = Vec::new();
        for s in tick.signing_secrets.iter().filter(|s| s.expires_at.is_none_or(|e| e > now)) {
            keys.push(secret_bytes(&open(&s.sealed)?)?);
        }
        Ok((headers, keys))
    }

    /// Sends attempt `number` of the run `run_id` of `tick`. Never fails: every failure is
    /// described in the returned record.
    pub async fn send(&self, tick: &Tick, run_id: RunId, number: u32) -> SendResult {
        let t = &tick.target;
        let started_at = Timestamp::now();
        let unix_secs = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let client = if t.follow_redirects { &self.redirecting } else { &self.plain };
        let method = reqwest::Method::from_bytes(t.method.as_str().as_bytes()).unwrap_or(reqwest::Method::POST);
        let mut attempt = Attempt {
            run_id,
            number,
            started_at,
            duration_ms: 0,
            method: t.method.as_str().to_owned(),
            url: t.url.clone(),
            request_headers: Vec::new(),
            request_body_size: t.body.len() as u64,
            request_body_sha256: hex(&Sha256::digest(&t.body)),
            response_status: None,
            response_headers: Vec::new(),
            response_body: Vec::new(),
            response_body_truncated: false,
            error_code: None,
            error_message: None,
            lateness_ms: started_at.millis_since(tick.nominal_time),
            timing: Default::default(),
        };
        let fail = |mut attempt: Attempt, code: &str, msg: String| {
            attempt.error_code = Some(code.into());
            attempt.error_message = Some(msg.clone());
            SendResult { attempt, verdict: Verdict::Fail { reason: msg } }
        };
        // parsed once: for the guard, the per-host slots and the request itself
        let url = url::Url::parse(&t.url).ok();
        if let Some(why) = url.as_ref().and_then(|u| u.host_str().and_then(|h| self.cfg.ssrf.refuse_host(h))) {
            return fail(attempt, "blocked_address", Blocked(why).to_string());
        }
        let (headers, keys) = match self.open_secrets(tick, started_at) {
            Ok(v) => v,
            Err(e) => return fail(attempt, "secret_unavailable", e),
        };

        let mut recorded = Vec::with_capacity(headers.len() + 4);
        let builder = match &url {
            Some(u) => client.request(method, u.clone()),
            // reqwest reports the unparsable URL as the attempt's error
            None => client.request(method, &t.url),
        };
        let mut req = builder.timeout(Duration::from_millis(t.timeout_ms.max(1) as u64));
        for (h, (name, value)) in t.headers.iter().zip(&headers) {
            req = req.header(name, value);
            let secret = h.secret || ALWAYS_SECRET.contains(&name.to_ascii_lowercase().as_str());
            recorded.push(RecordedHeader {
                name: name.clone(),
                value: if secret { REDACTED.to_owned() } else { value.clone() },
            });
        }
        // cronhook's own headers go last and replace any user value (validation already
        // rejects webhook-* names; this is the second line of defence).
        let msg_id = tick.id.to_string();
        let mut ours = vec![
            (HEADER_ID, msg_id.clone()),
            (HEADER_TIMESTAMP, unix_secs.to_string()),
            (HEADER_SCHEDULED_AT, tick.nominal_time.to_rfc3339()),
        ];
        if !keys.is_empty() {
            ours.push((HEADER_SIGNATURE, signature_header(&keys, &msg_id, unix_secs, &t.body)));
        }
        for (name, value) in &ours {
            recorded.retain(|h| !h.name.eq_ignore_ascii_case(name));
            recorded.push(RecordedHeader { name: (*name).to_owned(), value: value.clone() });
        }
        attempt.request_headers = recorded;
        let mut req = req.body(t.body.clone());
        for (name, value) in ours {
            req = req.header(name, value);
        }

        // One slow host must not take every connection: at most per_host_limit at once.
        let slots = url.as_ref().and_then(|u| self.host_slots(u));
        let _permit = match &slots {
            Some(s) => s.clone().acquire_owned().await.ok(),
            None => None,
        };
        let clock = Instant::now();
        let (sent, phases) = crate::timing::measured(req.send()).await;
        let ttfb_ms = sent.is_ok().then(|| clock.elapsed().as_millis() as i64);
        let result = match sent {
            Ok(resp) => self.read_response(resp, attempt).await,
            Err(e) => {
                let (code, msg) = describe(&e);
                attempt.error_code = Some(code.into());
                attempt.error_message = Some(msg);
                let verdict = if code == "blocked_address" {
                    Verdict::Fail { reason: "blocked address".into() }
                } else {
                    Verdict::Retry { retry_after_ms: None }
                };
                SendResult { attempt, verdict }
            }
        };
        let mut result = result;
        result.attempt.duration_ms = clock.elapsed().as_millis() as i64;
        result.attempt.timing = crate::timing::timing(phases, ttfb_ms);
        result
    }

    async fn read_response(&self, mut resp: reqwest::Response, mut attempt: Attempt) -> SendResult {
        let status = resp.status().as_u16();
        attempt.response_status = Some(status);
        attempt.response_headers = resp
            .headers()
            .iter()
            .map(|(n, v)| RecordedHeader {
                name: n.as_str().to_owned(),
                value: if ALWAYS_SECRET.contains(&n.as_str()) || n.as_str() == "set-cookie" {
                    REDACTED.to_owned()
                } else {
                    String::from_utf8_lossy(v.as_bytes()).into_owned()
                },
            })
            .collect();
        let mut verdict = classify(status, resp.headers(), std::time::SystemTime::now());
        let mut drained = 0usize;
        loop {
            match resp.chunk().await {
                Ok(Some(chunk)) => {
                    let room = self.cfg.max_response_body.saturating_sub(attempt.response_body.len());
                    if chunk.len() > room {
                        attempt.response_body.extend_from_slice(&chunk[..room]);
                        attempt.response_body_truncated = true;
                        drained += chunk.len() - room;
                        if drained > self.cfg.max_response_drain {
                            break; // dropping the response closes the connection
                        }
                    } else {
                        attempt.response_body.extend_from_slice(&chunk);
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    // The status arrived, the body did not finish (total timeout, reset).
                    let (code, msg) = describe(&e);
                    attempt.error_code = Some(code.into());
                    attempt.error_message = Some(format!("reading the response body: {msg}"));
                    if verdict == Verdict::Success {
                        verdict = Verdict::Retry { retry_after_ms: None };
                    }
                    break;
                }
            }
        }
        if attempt.error_code.is_none() {
            let reason = match &verdict {
                Verdict::Success => None,
                Verdict::Retry { .. } => Some(format!("HTTP {status}")),
                Verdict::Fail { reason } | Verdict::FailAndPause { reason } => Some(reason.clone()),
            };
            if let Some(r) = reason {
                attempt.error_code = Some("http_status".into());
                attempt.error_message = Some(r);
            }
        }
        SendResult { attempt, verdict }
    }
}

/// Returns a stable error code and a message for a client error.
fn describe(e: &reqwest::Error) -> (&'static str, String) {
    let mut chain = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        chain.push_str(": ");
        chain.push_str(&s.to_string());
        src = s.source();
    }
    let lower = chain.to_ascii_lowercase();
    let code = if lower.contains("blocked address") {
        "blocked_address"
    } else if e.is_timeout() {
        "timeout"
    } else if lower.contains("dns error") || lower.contains("failed to lookup address") {
        "dns"
    } else if lower.contains("certificate") || lower.contains("tls") {
        "tls"
    } else if e.is_connect() {
        "connect"
    } else if e.is_body() || e.is_decode() {
        "body_read"
    } else {
        "request"
    };
    (code, chain)
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 0xf) as usize] as char);
    }
    s
}

#[cfg(test)]
mod tests;
