use super::*;
use cronhook_core::{Header, HttpMethod, HttpTarget, ProjectId, RetryPolicy, ScheduleId, TickId, TriggerKind};
use cronhook_test_utils::sink::WebhookSink;

/// The first attempt of the run of `t`.
async fn send_first(sender: &HttpSender, t: Tick) -> SendResult {
    sender.send(&t, RunId::of_tick(t.id), 1).await
}

fn tick(url: String) -> Tick {
    let s = ScheduleId::generate();
    let at = Timestamp::from_millis(1_700_000_000_123);
    Tick {
        id: TickId::scheduled(s, at),
        project_id: ProjectId::default_project(),
        schedule_id: s,
        schedule_version: 1,
        nominal_time: at,
        fire_time: at,
        trigger: TriggerKind::Scheduled,
        target: HttpTarget {
            url,
            method: HttpMethod::Post,
            headers: vec![
                Header { name: "Content-Type".into(), value: "application/json".into(), secret: false },
                Header { name: "X-Token".into(), value: "hunter2".into(), secret: true },
            ],
            body: b"{\"hello\":1}".to_vec(),
            timeout_ms: 5_000,
            follow_redirects: false,
        },
        retry: RetryPolicy::default(),
        shard: 0,
        epoch: 1,
        signing_secrets: Vec::new(),
        failure_notification_url: None,
        auto_pause_after_failures: 0,
        overlap: Default::default(),
    }
}

#[tokio::test]
async fn sends_cronhook_headers_and_records_the_exchange() {
    let sink = WebhookSink::start().await.unwrap();
    let sender = HttpSender::new(SenderConfig::default()).unwrap();
    let t = tick(sink.url("/hook"));
    let run = RunId::of_tick(t.id);
    let r = sender.send(&t, run, 1).await;
    assert_eq!(r.verdict, Verdict::Success);
    let got = &sink.received()[0];
    assert_eq!(got.method, "POST");
    assert_eq!(got.path, "/hook");
    assert_eq!(got.header("webhook-id"), Some(t.id.to_string().as_str()));
    assert_eq!(got.header("webhook-scheduled-at"), Some("2023-11-14T22:13:20.123Z"));
    let ts: u64 = got.header("webhook-timestamp").unwrap().parse().unwrap();
    assert!(ts > 1_700_000_000);
    assert_eq!(got.header("x-token"), Some("hunter2"), "the secret is sent");
    assert_eq!(got.body, b"{\"hello\":1}");

    let a = &r.attempt;
    assert_eq!((a.number, a.run_id, a.response_status), (1, run, Some(200)));
    assert_eq!(a.response_body, b"{\"ok\":true}");
    assert!(a.response_headers.iter().any(|h| h.name == "x-sink" && h.value == "cronhook-test"));
    let token = a.request_headers.iter().find(|h| h.name == "X-Token").unwrap();
    assert_eq!(token.value, "[redacted]", "...but never stored in clear");
    assert_eq!(a.request_body_size, 11);
    assert_eq!(a.request_body_sha256.len(), 64);
    assert!(a.lateness_ms > 0);
    assert!(a.error_code.is_none());
}

#[tokio::test]
async fn classifies_failures() {
    let sink = WebhookSink::start().await.unwrap();
    let sender = HttpSender::new(SenderConfig::default()).unwrap();
    sink.respond_with(503);
    let r = send_first(&sender, tick(sink.url("/"))).await;
    assert!(matches!(r.verdict, Verdict::Retry { .. }));
    assert_eq!(r.attempt.error_code.as_deref(), Some("http_status"));
    sink.respond_with(404);
    let r = send_first(&sender, tick(sink.url("/"))).await;
    assert!(matches!(r.verdict, Verdict::Fail { .. }));

    // nothing listens on the port of a dropped listener (a fresh sender: no pooled connection)
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let fresh = HttpSender::new(SenderConfig::default()).unwrap();
    let r = send_first(&fresh, tick(format!("http://127.0.0.1:{port}/"))).await;
    assert!(matches!(r.verdict, Verdict::Retry { .. }));
    assert_eq!(r.attempt.error_code.as_deref(), Some("connect"), "{:?}", r.attempt.error_message);
    assert_eq!(r.attempt.response_status, None);
}

#[tokio::test]
async fn caps_the_captured_body() {
    let sink = WebhookSink::start().await.unwrap();
    let sender = HttpSender::new(SenderConfig { max_response_body: 4, ..SenderConfig::default() }).unwrap();
    let r = send_first(&sender, tick(sink.url("/"))).await;
    assert_eq!(r.attempt.response_body, b"{\"ok");
    assert!(r.attempt.response_body_truncated);
    assert_eq!(r.verdict, Verdict::Success);
}
