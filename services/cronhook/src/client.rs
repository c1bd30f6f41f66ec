//! The CLI client: `cronhook schedules ...` and `cronhook runs ...` over gRPC.

use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use clap::{Args, Subcommand};
use cronhook_core::Timestamp;
use cronhook_proto::v1 as pb;
use cronhook_proto::v1::run_service_client::RunServiceClient;
use cronhook_proto::v1::schedule_service_client::ScheduleServiceClient;
use cronhook_proto::{duration_ms, timestamp};
use tonic::transport::Channel;

use crate::cli::Output;
use crate::output;

#[derive(Debug, Args)]
pub struct Conn {
    /// Address of the cronhook API.
    #[arg(long, global = true, env = "CRONHOOK_API", default_value = "http://127.0.0.1:7070")]
    pub api: String,
    /// Output format.
    #[arg(long, short = 'o', global = true, env = "CRONHOOK_OUTPUT", value_enum, default_value = "table")]
    pub output: Output,
}

#[derive(Debug, Subcommand)]
pub enum SchedulesCmd {
    /// Create a schedule; prints its id and next five fire times.
    Create(Box<CreateArgs>),
    /// List schedules.
    List {
        #[command(flatten)]
        conn: Conn,
        /// Only active, paused or completed schedules.
        #[arg(long)]
        state: Option<String>,
        /// Page size (all pages are fetched unless --limit is reached).
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Show one schedule.
    Get {
        #[command(flatten)]
        conn: Conn,
        id: String,
    },
    /// Delete a schedule (its runs stay).
    Delete {
        #[command(flatten)]
        conn: Conn,
        id: String,
    },
    /// Pause a schedule.
    Pause {
        #[command(flatten)]
        conn: Conn,
        id: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Resume a paused schedule (from now; no burst).
    Resume {
        #[command(flatten)]
        conn: Conn,
        id: String,
    },
    /// Fire a schedule once now.
    Trigger {
        #[command(flatten)]
        conn: Conn,
        id: String,
    },
    /// Create the runs the schedule would have produced in a past range (once).
    Backfill {
        #[command(flatten)]
        conn: Conn,
        id: String,
        /// RFC 3339 start (inclusive).
        #[arg(long)]
        start: String,
        /// RFC 3339 end (exclusive, not in the future).
        #[arg(long)]
        end: String,
    },
    /// Add a new signing secret (printed once); current ones stay valid for --overlap.
    RotateSecret {
        #[command(flatten)]
        conn: Conn,
        id: String,
        /// How long the current secrets stay valid (e.g. 24h).
        #[arg(long, default_value = "24h")]
        overlap: String,
    },
    /// Show the next fire times of a spec without creating anything.
    Preview {
        #[command(flatten)]
        conn: Conn,
        #[command(flatten)]
        spec: SpecArgs,
        #[arg(long, default_value_t = 5)]
        count: u32,
    },
}

#[derive(Debug, Subcommand)]
pub enum TicksCmd {
    /// List ticks newest first: nominal time, outcome, reason, trigger.
    List {
        #[command(flatten)]
        conn: Conn,
        /// Only this schedule's ticks.
        #[arg(long)]
        schedule: Option<String>,
        /// Only this outcome (planned, published, delivered, failed, skipped, missed, cancelled).
        #[arg(long)]
        outcome: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
}

#[derive(Debug, Subcommand)]
pub enum RunsCmd {
    /// List runs, newest first: fire time, status, HTTP status, duration, attempts.
    List {
        #[command(flatten)]
        conn: Conn,
        /// Only runs of this schedule.
        #[arg(long)]
        schedule: Option<String>,
        /// Only runs in this status (pending, running, succeeded, failed, cancelled).
        #[arg(long)]
        status: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Show a run with every attempt: request sent, response captured.
    Get {
        #[command(flatten)]
        conn: Conn,
        id: String,
    },
}

#[derive(Debug, Args)]
pub struct SpecArgs {
    /// Cron: 5 fields, or 6 with leading seconds, or @hourly/@daily/@weekly/@monthly/@yearly.
    #[arg(long, group = "when")]
    pub cron: Option<String>,
    /// Interval such as 30s, 5m, 1h (aligned to the Unix epoch).
    #[arg(long, group = "when")]
    pub every: Option<String>,
    /// One-shot instant, RFC 3339.
    #[arg(long, group = "when")]
    pub at: Option<String>,
    /// IANA time zone (default UTC).
    #[arg(long)]
    pub tz: Option<String>,
    /// No fire time before this RFC 3339 instant.
    #[arg(long)]
    pub start: Option<String>,
    /// No fire time at or after this RFC 3339 instant.
    #[arg(long)]
    pub end: Option<String>,
    /// Stop after this many runs.
    #[arg(long)]
    pub remaining_runs: Option<u64>,
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    #[command(flatten)]
    pub conn: Conn,
    #[arg(long)]
    pub name: String,
    #[arg(long, default_value = "")]
    pub description: String,
    #[command(flatten)]
    pub spec: SpecArgs,
    /// Target URL (http or https).
    #[arg(long)]
    pub url: String,
    #[arg(long, default_value = "POST")]
    pub method: String,
    /// Request header "Name: value" (repeatable).
    #[arg(long = "header", value_name = "NAME: VALUE")]
    pub headers: Vec<String>,
    /// Header whose value is stored encrypted and shown redacted (repeatable).
    #[arg(long = "secret-header", value_name = "NAME: VALUE")]
    pub secret_headers: Vec<String>,
    /// Request body.
    #[arg(long, conflicts_with = "body_file")]
    pub body: Option<String>,
    /// Read the request body from a file.
    #[arg(long)]
    pub body_file: Option<std::path::PathBuf>,
    /// Per-attempt timeout (e.g. 30s).
    #[arg(long)]
    pub timeout: Option<String>,
    /// Attempts in total, including the first.
    #[arg(long)]
    pub max_attempts: Option<u32>,
    /// Ticks late by at most this much after downtime still fire (e.g. 60s).
    #[arg(long)]
    pub catchup_window: Option<String>,
    /// Maximum deterministic delay per tick (e.g. 10s).
    #[arg(long)]
    pub jitter: Option<String>,
    /// Label key=value (repeatable).
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// Sign every request (Standard Webhooks); the secret is printed once.
    #[arg(long)]
    pub sign: bool,
    /// Where a signed run.failed event goes when a run exhausts its retries.
    #[arg(long)]
    pub notify_url: Option<String>,
    /// Pause the schedule after this many consecutive failed runs.
    #[arg(long)]
    pub auto_pause_after: Option<u32>,
}

async fn channel(conn: &Conn) -> anyhow::Result<Channel> {
    let endpoint = Channel::from_shared(conn.api.clone())
        .map_err(|e| anyhow!("--api {:?}: {e}", conn.api))?
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(30));
    endpoint
        .connect()
        .await
        .with_context(|| format!("cannot reach the cronhook API at {} (is `cronhook dev` running?)", conn.api))
}

/// Turns a gRPC status into a plain message: "invalid argument: schedule.spec.cron: ...".
fn status(e: tonic::Status) -> anyhow::Error {
    let code = match e.code() {
        tonic::Code::InvalidArgument => "invalid argument",
        tonic::Code::NotFound => "not found",
        tonic::Code::AlreadyExists => "already exists",
        tonic::Code::Aborted => "conflict",
        tonic::Code::FailedPrecondition => "failed precondition",
        tonic::Code::Unimplemented => "not supported",
        tonic::Code::Unavailable => "unavailable",
        _ => "error",
    };
    anyhow!("{code}: {}", e.message())
}

fn duration_arg(s: &str, flag: &str) -> anyhow::Result<prost_types::Duration> {
    let d = humantime::parse_duration(s).map_err(|e| anyhow!("{flag} {s:?}: {e} (use e.g. 30s, 5m, 1h)"))?;
    Ok(duration_ms(d.as_millis() as i64))
}

fn instant_arg(s: &str, flag: &str) -> anyhow::Result<prost_types::Timestamp> {
    Timestamp::parse_rfc3339(s)
        .map(timestamp)
        .ok_or_else(|| anyhow!("{flag} {s:?}: not an RFC 3339 instant (e.g. 2026-12-31T23:00:00Z)"))
}

fn header_arg(s: &str, secret: bool) -> anyhow::Result<pb::Header> {
    let (name, value) = s.split_once(':').ok_or_else(|| anyhow!("--header {s:?}: expected \"Name: value\""))?;
    Ok(pb::Header { name: name.trim().to_owned(), value: value.trim_start().to_owned(), secret })
}

fn spec_arg(a: &SpecArgs) -> anyhow::Result<pb::ScheduleSpec> {
    use pb::schedule_spec::Kind;
    let kind = match (&a.cron, &a.every, &a.at) {
        (Some(c), None, None) => Kind::Cron(c.clone()),
        (None, Some(e), None) => Kind::Interval(duration_arg(e, "--every")?),
        (None, None, Some(t)) => Kind::At(instant_arg(t, "--at")?),
        _ => bail!("give exactly one of --cron, --every or --at"),
    };
    Ok(pb::ScheduleSpec {
        kind: Some(kind),
        time_zone: a.tz.clone().unwrap_or_default(),
        interval_offset: None,
        start_time: a.start.as_deref().map(|s| instant_arg(s, "--start")).transpose()?,
        end_time: a.end.as_deref().map(|s| instant_arg(s, "--end")).transpose()?,
        remaining_runs: a.remaining_runs,
    })
}

fn schedule_arg(a: &CreateArgs) -> anyhow::Result<pb::Schedule> {
    let mut headers = Vec::new();
    for h in &a.headers {
        headers.push(header_arg(h, false)?);
    }
    for h in &a.secret_headers {
        headers.push(header_arg(h, true)?);
    }
    let body = match (&a.body, &a.body_file) {
        (Some(b), _) => b.clone().into_bytes(),
        (None, Some(f)) => std::fs::read(f).with_context(|| format!("--body-file {}", f.display()))?,
        (None, None) => Vec::new(),
    };
    let mut labels = std::collections::HashMap::new();
    for l in &a.labels {
        let (k, v) = l.split_once('=').ok_or_else(|| anyhow!("--label {l:?}: expected key=value"))?;
        labels.insert(k.to_owned(), v.to_owned());
    }
    Ok(pb::Schedule {
        name: a.name.clone(),
        description: a.description.clone(),
        spec: Some(spec_arg(&a.spec)?),
        target: Some(pb::HttpTarget {
            url: a.url.clone(),
            method: a.method.clone(),
            headers,
            body,
            timeout: a.timeout.as_deref().map(|t| duration_arg(t, "--timeout")).transpose()?,
            follow_redirects: false,
        }),
        retry_policy: a.max_attempts.map(|n| pb::RetryPolicy { max_attempts: n, ..Default::default() }),
        catchup_window: a.catchup_window.as_deref().map(|t| duration_arg(t, "--catchup-window")).transpose()?,
        jitter: a.jitter.as_deref().map(|t| duration_arg(t, "--jitter")).transpose()?,
        labels,
        failure_notification_url: a.notify_url.clone().unwrap_or_default(),
        auto_pause_after_failures: a.auto_pause_after.unwrap_or(0),
        ..Default::default()
    })
}

fn state_arg(s: &str) -> anyhow::Result<pb::ScheduleState> {
    Ok(match s {
        "active" => pb::ScheduleState::Active,
        "paused" => pb::ScheduleState::Paused,
        "completed" => pb::ScheduleState::Completed,
        _ => bail!("--state {s:?}: use active, paused or completed"),
    })
}

fn run_status_arg(s: &str) -> anyhow::Result<pb::RunStatus> {
    Ok(match s {
        "pending" => pb::RunStatus::Pending,
        "running" => pb::RunStatus::Running,
        "succeeded" => pb::RunStatus::Succeeded,
        "failed" => pb::RunStatus::Failed,
        "cancelled" => pb::RunStatus::Cancelled,
        _ => bail!("--status {s:?}: use pending, running, succeeded, failed or cancelled"),
    })
}

/// Runs a `schedules` command.
pub async fn schedules(cmd: SchedulesCmd) -> anyhow::Result<()> {
    match cmd {
        SchedulesCmd::Create(a) => {
            let schedule = schedule_arg(&a)?;
            let mut c = ScheduleServiceClient::new(channel(&a.conn).await?);
            let r = c
                .create_schedule(pb::CreateScheduleRequest {
                    schedule: Some(schedule),
                    generate_signing_secret: a.sign,
                })
                .await
                .map_err(status)?
                .into_inner();
            output::created(a.conn.output, &r)
        }
        SchedulesCmd::List { conn, state, limit } => {
            let state = state.as_deref().map(state_arg).transpose()?.unwrap_or(pb::ScheduleState::Unspecified);
            let mut c = ScheduleServiceClient::new(channel(&conn).await?);
            let mut all = Vec::new();
            let mut token = String::new();
            loop {
                let r = c
                    .list_schedules(pb::ListSchedulesRequest {
                        page_size: limit.min(1000),
                        page_token: token,
                        state: state as i32,
                    })
                    .await
                    .map_err(status)?
                    .into_inner();
                all.extend(r.schedules);
                if r.next_page_token.is_empty() || all.len() >= limit as usize {
                    break;
                }
                token = r.next_page_token;
            }
            all.truncate(limit as usize);
            output::schedules(conn.output, &all)
        }
        SchedulesCmd::Get { conn, id } => {
            let mut c = ScheduleServiceClient::new(channel(&conn).await?);
            let s = c.get_schedule(pb::GetScheduleRequest { id }).await.map_err(status)?.into_inner();
            output::schedule(conn.output, &s)
        }
        SchedulesCmd::Delete { conn, id } => {
            let mut c = ScheduleServiceClient::new(channel(&conn).await?);
            c.delete_schedule(pb::DeleteScheduleRequest { id: id.clone(), etag: String::new() })
                .await
                .map_err(status)?;
            output::message(conn.output, "deleted", &id)
        }
        SchedulesCmd::Pause { conn, id, reason } => {
            let mut c = ScheduleServiceClient::new(channel(&conn).await?);
            let s = c.pause_schedule(pb::PauseScheduleRequest { id, reason }).await.map_err(status)?.into_inner();
            output::schedule(conn.output, &s)
        }
        SchedulesCmd::Resume { conn, id } => {
            let mut c = ScheduleServiceClient::new(channel(&conn).await?);
            let s = c.resume_schedule(pb::ResumeScheduleRequest { id }).await.map_err(status)?.into_inner();
            output::schedule(conn.output, &s)
        }
        SchedulesCmd::Trigger { conn, id } => {
            let mut c = ScheduleServiceClient::new(channel(&conn).await?);
            let r = c.trigger_schedule(pb::TriggerScheduleRequest { id }).await.map_err(status)?.into_inner();
            output::message(conn.output, "triggered, tick", &r.tick_id)
        }
        SchedulesCmd::Backfill { conn, id, start, end } => {
            let (start, end) = (instant_arg(&start, "--start")?, instant_arg(&end, "--end")?);
            let mut c = ScheduleServiceClient::new(channel(&conn).await?);
            let r = c
                .backfill_schedule(pb::BackfillScheduleRequest {
                    id,
                    start_time: Some(start),
                    end_time: Some(end),
                    overlap_policy: pb::OverlapPolicy::Allow as i32,
                })
                .await
                .map_err(status)?
                .into_inner();
            output::backfill(conn.output, &r)
        }
        SchedulesCmd::RotateSecret { conn, id, overlap } => {
            let overlap = duration_arg(&overlap, "--overlap")?;
            let mut c = ScheduleServiceClient::new(channel(&conn).await?);
            let r = c
                .rotate_signing_secret(pb::RotateSigningSecretRequest { id, overlap: Some(overlap) })
                .await
                .map_err(status)?
                .into_inner();
            output::message(conn.output, "new signing secret (shown once)", &r.signing_secret)
        }
        SchedulesCmd::Preview { conn, spec, count } => {
            let spec = spec_arg(&spec)?;
            let mut c = ScheduleServiceClient::new(channel(&conn).await?);
            let r = c
                .preview_schedule(pb::PreviewScheduleRequest { spec: Some(spec), count, after: None })
                .await
                .map_err(status)?
                .into_inner();
            output::preview(conn.output, &r)
        }
    }
}

/// Runs a `runs` command.
pub async fn runs(cmd: RunsCmd) -> anyhow::Result<()> {
    match cmd {
        RunsCmd::List { conn, schedule, status: st, limit } => {
            let statuses = match st {
                Some(s) => vec![run_status_arg(&s)? as i32],
                None => vec![],
            };
            let mut c = RunServiceClient::new(channel(&conn).await?);
            let r = c
                .list_runs(pb::ListRunsRequest {
                    schedule_id: schedule.unwrap_or_default(),
                    statuses,
                    page_size: limit.clamp(1, 1000),
                    ..Default::default()
                })
                .await
                .map_err(status)?
                .into_inner();
            output::runs(conn.output, &r.runs)
        }
        RunsCmd::Get { conn, id } => {
            let mut c = RunServiceClient::new(channel(&conn).await?);
            let r = c.get_run(pb::GetRunRequest { id }).await.map_err(status)?.into_inner();
            output::run(conn.output, &r)
        }
    }
}

fn outcome_arg(s: &str) -> anyhow::Result<pb::TickOutcome> {
    Ok(match s {
        "planned" => pb::TickOutcome::Planned,
        "published" => pb::TickOutcome::Published,
        "delivered" => pb::TickOutcome::Delivered,
        "failed" => pb::TickOutcome::Failed,
        "skipped" => pb::TickOutcome::Skipped,
        "missed" => pb::TickOutcome::Missed,
        "cancelled" => pb::TickOutcome::Cancelled,
        _ => bail!("--outcome {s:?}: use planned, published, delivered, failed, skipped, missed or cancelled"),
    })
}

/// Runs a `ticks` command.
pub async fn ticks(cmd: TicksCmd) -> anyhow::Result<()> {
    match cmd {
        TicksCmd::List { conn, schedule, outcome, limit } => {
            let outcomes = match outcome {
                Some(o) => vec![outcome_arg(&o)? as i32],
                None => vec![],
            };
            let mut c = cronhook_proto::v1::tick_service_client::TickServiceClient::new(channel(&conn).await?);
            let r = c
                .list_ticks(pb::ListTicksRequest {
                    schedule_id: schedule.unwrap_or_default(),
                    outcomes,
                    page_size: limit.clamp(1, 1000),
                    ..Default::default()
                })
                .await
                .map_err(status)?
                .into_inner();
            output::ticks(conn.output, &r.ticks)
        }
    }
}
