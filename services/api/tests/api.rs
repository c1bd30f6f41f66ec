//! The v1 gRPC API in-process on a real SQLite store: every RPC, and the rule that bad
//! input gets INVALID_ARGUMENT naming the field and writes nothing.

#![allow(clippy::unwrap_used)] // a panic is how a test fails

use std::time::Duration;

use std::sync::Arc;

use cronhook_api::{ApiConfig, ApiState};
use cronhook_delivery::seal::SealKey;
use cronhook_delivery::ssrf::{SsrfConfig, SsrfPolicy};
use cronhook_proto::v1 as pb;
use cronhook_proto::v1::run_service_client::RunServiceClient;
use cronhook_proto::v1::schedule_service_client::ScheduleServiceClient;
use tokio_util::sync::CancellationToken;
use tonic::Code;
use tonic::transport::Channel;

struct Api {
    s: ScheduleServiceClient<Channel>,
    r: RunServiceClient<Channel>,
    channel: Channel,
    _dir: tempfile::TempDir,
    cancel: CancellationToken,
}

impl Drop for Api {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

async fn start() -> Api {
    start_with_seal(true).await
}

async fn start_with_seal(seal: bool) -> Api {
    let dir = tempfile::tempdir().unwrap();
    let stores = cronhook_store::open(dir.path().join("a.db").to_str().unwrap(), 16).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let cancel = CancellationToken::new();
    let ssrf = SsrfPolicy::from_config(&SsrfConfig { allow_networks: "127.0.0.0/8".into(), ..SsrfConfig::default() });
    let seal = seal.then(|| SealKey::from_base64(&SealKey::generate_base64()).unwrap());
    let state = ApiState::new(stores, &ApiConfig::default(), 16, Arc::new(ssrf.unwrap()), seal);
    tokio::spawn(cronhook_api::serve(listener, state, cancel.clone()));
    let channel = Channel::from_shared(format!("http://{addr}")).unwrap().connect().await.unwrap();
    Api {
        s: ScheduleServiceClient::new(channel.clone()),
        r: RunServiceClient::new(channel.clone()),
        channel,
        _dir: dir,
        cancel,
    }
}

fn valid() -> pb::Schedule {
    pb::Schedule {
        name: "ping".into(),
        spec: Some(pb::ScheduleSpec {
            kind: Some(pb::schedule_spec::Kind::Cron("*/5 * * * * *".into())),
            ..Default::default()
        }),
        target: Some(pb::HttpTarget {
            url: "http://127.0.0.1:9000/hook".into(),
            method: "POST".into(),
            headers: vec![
                pb::Header { name: "Content-Type".into(), value: "application/json".into(), secret: false },
                pb::Header { name: "Authorization".into(), value: "Bearer s3cret".into(), secret: true },
            ],
            body: b"{\"hello\":1}".to_vec(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

async fn create(api: &mut Api, s: pb::Schedule) -> Result<pb::CreateScheduleResponse, tonic::Status> {
    api.s
        .create_schedule(pb::CreateScheduleRequest { schedule: Some(s), generate_signing_secret: false })
        .await
        .map(|r| r.into_inner())
}

#[tokio::test]
async fn bad_input_names_the_field_and_writes_nothing() {
    let mut api = start().await;
    type Edit = fn(&mut pb::Schedule);
    let cases: Vec<(&str, Edit)> = vec![
        ("schedule.name", |s| s.name = " ".into()),
        ("schedule.spec.cron", |s| s.spec.as_mut().unwrap().kind = Some(pb::schedule_spec::Kind::Cron("* * *".into()))),
        ("schedule.spec.cron", |s| {
            s.spec.as_mut().unwrap().kind = Some(pb::schedule_spec::Kind::Cron("0 0 30 2 *".into()))
        }),
        ("schedule.spec.time_zone", |s| s.spec.as_mut().unwrap().time_zone = "Mars/Base".into()),
        ("schedule.spec", |s| s.spec = None),
        ("schedule.spec.interval", |s| {
            s.spec.as_mut().unwrap().kind =
                Some(pb::schedule_spec::Kind::Interval(prost_types::Duration { seconds: 0, nanos: 5 }))
        }),
        ("schedule.target.url", |s| s.target.as_mut().unwrap().url = "ftp://example.com/x".into()),
        ("schedule.target.url", |s| s.target.as_mut().unwrap().url = "not a url".into()),
        ("schedule.target.url", |s| s.target.as_mut().unwrap().url = "http://169.254.169.254/latest/meta-data".into()),
        ("schedule.target.url", |s| s.target.as_mut().unwrap().url = "http://localhost:8080/".into()),
        ("schedule.target.url", |s| s.target.as_mut().unwrap().url = "http://metadata.google.internal/".into()),
        ("schedule.target.url", |s| s.target.as_mut().unwrap().url = "http://[::1]:9000/".into()),
        ("schedule.target.method", |s| s.target.as_mut().unwrap().method = "BREW".into()),
        ("schedule.target.headers[0].value", |s| {
            s.target.as_mut().unwrap().headers[0].value = "a\r\nX-Injected: 1".into()
        }),
        ("schedule.target.headers[1].name", |s| s.target.as_mut().unwrap().headers[1].name = "bad\nname".into()),
        ("schedule.target.headers[0].name", |s| s.target.as_mut().unwrap().headers[0].name = "webhook-id".into()),
        ("schedule.target.body", |s| s.target.as_mut().unwrap().body = vec![b'x'; 256 * 1024 + 1]),
        ("schedule.target.timeout", |s| {
            s.target.as_mut().unwrap().timeout = Some(prost_types::Duration { seconds: 3600, nanos: 0 })
        }),
        ("schedule.retry_policy.max_attempts", |s| {
            s.retry_policy = Some(pb::RetryPolicy { max_attempts: 51, ..Default::default() })
        }),
        ("schedule.spec", |s| {
            s.spec.as_mut().unwrap().kind =
                Some(pb::schedule_spec::Kind::At(prost_types::Timestamp { seconds: 1, nanos: 0 }))
        }),
    ];
    for (field, edit) in cases {
        let mut s = valid();
        edit(&mut s);
        let e = create(&mut api, s).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{field}: {e:?}");
        assert!(e.message().starts_with(&format!("{field}:")), "expected the message to name {field}: {}", e.message());
    }
    let e = api.s.create_schedule(pb::CreateScheduleRequest::default()).await.unwrap_err();
    assert_eq!((e.code(), e.message()), (Code::InvalidArgument, "schedule: is required"));
    let mut s = valid();
    s.overlap_policy = 42;
    assert_eq!(create(&mut api, s).await.unwrap_err().message(), "schedule.overlap_policy: unknown value 42");

    let list = api.s.list_schedules(pb::ListSchedulesRequest::default()).await.unwrap().into_inner();
    assert!(list.schedules.is_empty(), "nothing was written");
}

#[tokio::test]
async fn schedule_lifecycle() {
    let mut api = start().await;
    let created = create(&mut api, valid()).await.unwrap();
    let s = created.schedule.unwrap();
    assert_eq!(created.next_fire_times.len(), 5);
    let times: Vec<i64> = created.next_fire_times.iter().map(|t| t.seconds).collect();
    assert!(times.windows(2).all(|w| w[1] - w[0] == 5), "{times:?}");
    assert!(times.iter().all(|t| t % 5 == 0));
    assert_eq!(s.state, pb::ScheduleState::Active as i32);
    let auth = &s.target.as_ref().unwrap().headers[1];
    assert_eq!(auth.value, "[redacted]", "secret headers never come back");

    // get, list with pagination
    let got = api.s.get_schedule(pb::GetScheduleRequest { id: s.id.clone() }).await.unwrap().into_inner();
    assert_eq!(got, s);
    for i in 0..4 {
        let mut x = valid();
        x.name = format!("s{i}");
        create(&mut api, x).await.unwrap();
    }
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = api
            .s
            .list_schedules(pb::ListSchedulesRequest { page_size: 2, page_token: token, ..Default::default() })
            .await
            .unwrap()
            .into_inner();
        assert!(page.schedules.len() <= 2);
        seen.extend(page.schedules.into_iter().map(|x| x.name));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seen, ["ping", "s0", "s1", "s2", "s3"]);
    let e = api
        .s
        .list_schedules(pb::ListSchedulesRequest { page_token: "garbage".into(), ..Default::default() })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);

    // update with the etag; the redacted secret sent back keeps its stored value
    let mut changed = got.clone();
    changed.name = "renamed".into();
    let updated = api
        .s
        .update_schedule(pb::UpdateScheduleRequest { schedule: Some(changed.clone()), etag: got.etag.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(updated.name, "renamed");
    assert_ne!(updated.etag, got.etag);
    let stale = api
        .s
        .update_schedule(pb::UpdateScheduleRequest { schedule: Some(changed), etag: got.etag.clone() })
        .await
        .unwrap_err();
    assert_eq!(stale.code(), Code::Aborted, "a stale etag is rejected");

    // pause, resume
    let paused = api
        .s
        .pause_schedule(pb::PauseScheduleRequest { id: s.id.clone(), reason: "maintenance".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((paused.state, paused.state_reason.as_str()), (pb::ScheduleState::Paused as i32, "maintenance"));
    let resumed = api.s.resume_schedule(pb::ResumeScheduleRequest { id: s.id.clone() }).await.unwrap().into_inner();
    assert_eq!(resumed.state, pb::ScheduleState::Active as i32);
    assert!(resumed.next_fire_time.is_some());

    // trigger records a manual tick; preview stores nothing
    let t = api.s.trigger_schedule(pb::TriggerScheduleRequest { id: s.id.clone() }).await.unwrap().into_inner();
    assert_eq!(t.tick_id.len(), 36);
    let p = api
        .s
        .preview_schedule(pb::PreviewScheduleRequest {
            spec: Some(pb::ScheduleSpec {
                kind: Some(pb::schedule_spec::Kind::Cron("30 9 * * 1-5".into())),
                ..Default::default()
            }),
            count: 7,
            after: Some(prost_types::Timestamp { seconds: 1_796_083_200, nanos: 0 }), // 2026-12-01T00:00Z, a Tuesday
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(p.fire_times.len(), 7);
    let days: Vec<String> = p.fire_times.iter().map(|f| f.local_time[..10].to_owned()).collect();
    assert_eq!(
        days,
        ["2026-12-01", "2026-12-02", "2026-12-03", "2026-12-04", "2026-12-07", "2026-12-08", "2026-12-09"]
    );

    // delete
    let e = api.s.delete_schedule(pb::DeleteScheduleRequest { id: s.id.clone(), etag: "1".into() }).await.unwrap_err();
    assert_eq!(e.code(), Code::Aborted);
    api.s.delete_schedule(pb::DeleteScheduleRequest { id: s.id.clone(), etag: String::new() }).await.unwrap();
    let e = api.s.get_schedule(pb::GetScheduleRequest { id: s.id.clone() }).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = api.s.get_schedule(pb::GetScheduleRequest { id: "nope".into() }).await.unwrap_err();
    assert_eq!((e.code(), e.message()), (Code::InvalidArgument, "id: is not a valid schedule id (a UUID)"));
}

#[tokio::test]
async fn runs_api_validates_filters() {
    let mut api = start().await;
    let empty = api.r.list_runs(pb::ListRunsRequest::default()).await.unwrap().into_inner();
    assert!(empty.runs.is_empty() && empty.next_page_token.is_empty());
    let e = api.r.list_runs(pb::ListRunsRequest { statuses: vec![42], ..Default::default() }).await.unwrap_err();
    assert!(e.message().starts_with("statuses[0]:"), "{}", e.message());
    let e = api.r.list_runs(pb::ListRunsRequest { page_token: "x".into(), ..Default::default() }).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let e = api.r.get_run(pb::GetRunRequest { id: "00000000-0000-7000-8000-000000000000".into() }).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
}

#[tokio::test]
async fn health_and_reflection_are_served() {
    let api = start().await;
    let mut health = tonic_health::pb::health_client::HealthClient::new(api.channel.clone());
    let r = health
        .check(tonic_health::pb::HealthCheckRequest { service: "cronhook.v1.ScheduleService".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.status, tonic_health::pb::health_check_response::ServingStatus::Serving as i32);

    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let mut refl = ServerReflectionClient::new(api.channel.clone());
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream =
        tokio::time::timeout(Duration::from_secs(10), refl.server_reflection_info(tokio_stream::iter(vec![req])))
            .await
            .unwrap()
            .unwrap()
            .into_inner();
    let resp = stream.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = resp.message_response else { panic!("{resp:?}") };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for want in ["cronhook.v1.ScheduleService", "cronhook.v1.RunService", "grpc.health.v1.Health"] {
        assert!(names.iter().any(|n| n == want), "{want} in {names:?}");
    }
}

#[tokio::test]
async fn signing_secrets_are_shown_once_stored_sealed_and_rotated_with_overlap() {
    let mut api = start().await;
    let r = api
        .s
        .create_schedule(pb::CreateScheduleRequest { schedule: Some(valid()), generate_signing_secret: true })
        .await
        .unwrap()
        .into_inner();
    assert!(r.signing_secret.starts_with("whsec_"), "{}", r.signing_secret);
    let s = r.schedule.unwrap();
    assert_eq!(s.signing_secrets.len(), 1);
    assert!(s.signing_secrets[0].expire_time.is_none());
    let got = api.s.get_schedule(pb::GetScheduleRequest { id: s.id.clone() }).await.unwrap().into_inner();
    let text = format!("{got:?}");
    assert!(!text.contains(&r.signing_secret[6..]) && !text.contains("s3cret"), "never shown again");

    let rot = api
        .s
        .rotate_signing_secret(pb::RotateSigningSecretRequest {
            id: s.id.clone(),
            overlap: Some(prost_types::Duration { seconds: 3600, nanos: 0 }),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(rot.signing_secret.starts_with("whsec_") && rot.signing_secret != r.signing_secret);
    let secrets = rot.schedule.unwrap().signing_secrets;
    assert_eq!(secrets.len(), 2);
    let old_expiry =
        secrets[0].expire_time.as_ref().unwrap().seconds - secrets[0].create_time.as_ref().unwrap().seconds;
    assert!((3590..=3610).contains(&old_expiry), "old secret valid for the overlap: {old_expiry} s");
    assert!(secrets[1].expire_time.is_none(), "the new one is current");
    let e = api
        .s
        .rotate_signing_secret(pb::RotateSigningSecretRequest {
            id: s.id.clone(),
            overlap: Some(prost_types::Duration { seconds: 40 * 86400, nanos: 0 }),
        })
        .await
        .unwrap_err();
    assert!(e.message().starts_with("overlap:"));

    // an update sending the redacted secret header back keeps the stored value
    let mut changed = api.s.get_schedule(pb::GetScheduleRequest { id: s.id.clone() }).await.unwrap().into_inner();
    let etag = changed.etag.clone();
    changed.name = "renamed".into();
    let u =
        api.s.update_schedule(pb::UpdateScheduleRequest { schedule: Some(changed), etag }).await.unwrap().into_inner();
    assert_eq!(u.target.unwrap().headers[1].value, "[redacted]");
    assert_eq!(u.signing_secrets.len(), 2, "an update keeps the signing secrets");
}

#[tokio::test]
async fn secrets_need_a_key() {
    let mut api = start_with_seal(false).await;
    let e = create(&mut api, valid()).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert!(
        e.message().contains("schedule.target.headers[1]") && e.message().contains("secrets.key"),
        "{}",
        e.message()
    );
}

#[tokio::test]
async fn preview_shows_local_times_and_dst_notes() {
    let mut api = start().await;
    let p = api
        .s
        .preview_schedule(pb::PreviewScheduleRequest {
            spec: Some(pb::ScheduleSpec {
                kind: Some(pb::schedule_spec::Kind::Cron("30 2 * * *".into())),
                time_zone: "America/New_York".into(),
                ..Default::default()
            }),
            count: 2,
            after: Some(prost_types::Timestamp { seconds: 1_772_884_800, nanos: 0 }), // 2026-03-07T12:00Z
        })
        .await
        .unwrap()
        .into_inner();
    let notes: Vec<&str> = p.fire_times.iter().map(|f| f.dst_note.as_str()).collect();
    let locals: Vec<&str> = p.fire_times.iter().map(|f| f.local_time.as_str()).collect();
    println!("{locals:?} {notes:?}");
    assert!(locals.iter().all(|l| l.ends_with("-04:00") || l.ends_with("-05:00")), "{locals:?}");
    assert!(notes.contains(&"02:30 does not exist (DST gap): fired at 03:00"), "{notes:?}");
}
