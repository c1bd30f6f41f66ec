//! Rendering of API responses: tables for people, JSON for scripts (`--output json`).

use cronhook_proto::v1 as pb;
use cronhook_proto::{from_timestamp, to_duration_ms};
use serde_json::{Value, json};

use crate::cli::Output;

/// `println!` that ends the process quietly when stdout is closed (`cronhook ... | head`).
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = writeln!(std::io::stdout(), $($arg)*) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                std::process::exit(0);
            }
        }
    }};
}

fn ts(t: Option<&prost_types::Timestamp>) -> Value {
    t.map_or(Value::Null, |t| Value::String(from_timestamp(t).to_rfc3339()))
}

fn ts_text(t: Option<&prost_types::Timestamp>) -> String {
    t.map_or_else(|| "-".to_owned(), |t| from_timestamp(t).to_rfc3339())
}

fn ms(d: Option<&prost_types::Duration>) -> Value {
    d.and_then(to_duration_ms).map_or(Value::Null, |v| json!(v))
}

fn ms_text(d: Option<&prost_types::Duration>) -> String {
    d.and_then(to_duration_ms).map_or_else(|| "-".to_owned(), |v| format!("{v}ms"))
}

fn state_name(v: i32) -> &'static str {
    match pb::ScheduleState::try_from(v) {
        Ok(pb::ScheduleState::Active) => "active",
        Ok(pb::ScheduleState::Paused) => "paused",
        Ok(pb::ScheduleState::Completed) => "completed",
        _ => "unknown",
    }
}

fn run_status_name(v: i32) -> &'static str {
    match pb::RunStatus::try_from(v) {
        Ok(pb::RunStatus::Pending) => "pending",
        Ok(pb::RunStatus::Running) => "running",
        Ok(pb::RunStatus::Succeeded) => "succeeded",
        Ok(pb::RunStatus::Failed) => "failed",
        Ok(pb::RunStatus::Cancelled) => "cancelled",
        _ => "unknown",
    }
}

fn trigger_name(v: i32) -> &'static str {
    match pb::TriggerKind::try_from(v) {
        Ok(pb::TriggerKind::Scheduled) => "scheduled",
        Ok(pb::TriggerKind::Manual) => "manual",
        Ok(pb::TriggerKind::Backfill) => "backfill",
        Ok(pb::TriggerKind::Notification) => "notification",
        _ => "unknown",
    }
}

fn spec_text(s: Option<&pb::ScheduleSpec>) -> String {
    use pb::schedule_spec::Kind;
    match s.and_then(|s| s.kind.as_ref()) {
        Some(Kind::Cron(c)) => format!("cron {c}"),
        Some(Kind::Interval(d)) => format!("every {}", ms_text(Some(d))),
        Some(Kind::At(t)) => format!("at {}", ts_text(Some(t))),
        None => "-".to_owned(),
    }
}

fn headers_json(h: &[pb::Header]) -> Value {
    Value::Array(h.iter().map(|h| json!({"name": h.name, "value": h.value, "secret": h.secret})).collect())
}

fn schedule_json(s: &pb::Schedule) -> Value {
    let spec = s.spec.as_ref();
    let t = s.target.as_ref();
    json!({
        "id": s.id,
        "project_id": s.project_id,
        "name": s.name,
        "description": s.description,
        "spec": {
            "kind": spec_text(spec),
            "time_zone": spec.map(|x| x.time_zone.clone()),
            "start_time": ts(spec.and_then(|x| x.start_time.as_ref())),
            "end_time": ts(spec.and_then(|x| x.end_time.as_ref())),
            "remaining_runs": spec.and_then(|x| x.remaining_runs),
        },
        "target": t.map(|t| json!({
            "url": t.url,
            "method": t.method,
            "headers": headers_json(&t.headers),
            "body": String::from_utf8_lossy(&t.body),
            "timeout_ms": ms(t.timeout.as_ref()),
        })),
        "retry_policy": s.retry_policy.as_ref().map(|r| json!({
            "max_attempts": r.max_attempts,
            "initial_backoff_ms": ms(r.initial_backoff.as_ref()),
            "max_backoff_ms": ms(r.max_backoff.as_ref()),
            "multiplier": r.multiplier,
        })),
        "catchup_window_ms": ms(s.catchup_window.as_ref()),
        "jitter_ms": ms(s.jitter.as_ref()),
        "state": state_name(s.state),
        "state_reason": s.state_reason,
        "next_fire_time": ts(s.next_fire_time.as_ref()),
        "etag": s.etag,
        "labels": s.labels,
        "create_time": ts(s.create_time.as_ref()),
        "update_time": ts(s.update_time.as_ref()),
    })
}

fn run_json(r: &pb::Run) -> Value {
    json!({
        "id": r.id,
        "schedule_id": r.schedule_id,
        "tick_id": r.tick_id,
        "nominal_time": ts(r.nominal_time.as_ref()),
        "status": run_status_name(r.status),
        "trigger": trigger_name(r.trigger),
        "attempt_count": r.attempt_count,
        "http_status": if r.http_status == 0 { Value::Null } else { json!(r.http_status) },
        "start_time": ts(r.start_time.as_ref()),
        "end_time": ts(r.end_time.as_ref()),
        "duration_ms": ms(r.duration.as_ref()),
        "last_error": if r.last_error.is_empty() { Value::Null } else { json!(r.last_error) },
        "next_attempt_time": ts(r.next_attempt_time.as_ref()),
        "attempts": r.attempts.iter().map(|a| json!({
            "number": a.number,
            "start_time": ts(a.start_time.as_ref()),
            "duration_ms": ms(a.duration.as_ref()),
            "lateness_ms": ms(a.lateness.as_ref()),
            "timing": a.timing.as_ref().map(|t| json!({
                "dns_ms": ms(t.dns.as_ref()),
                "connect_ms": ms(t.connect.as_ref()),
                "ttfb_ms": ms(t.time_to_first_byte.as_ref()),
                "total_ms": ms(t.total.as_ref()),
            })),
            "request": a.request.as_ref().map(|q| json!({
                "method": q.method, "url": q.url, "headers": headers_json(&q.headers),
                "body_size": q.body_size, "body_sha256": q.body_sha256,
            })),
            "response": a.response.as_ref().map(|p| json!({
                "status": p.status, "headers": headers_json(&p.headers),
                "body": String::from_utf8_lossy(&p.body), "body_truncated": p.body_truncated,
            })),
            "error_code": if a.error_code.is_empty() { Value::Null } else { json!(a.error_code) },
            "error_message": if a.error_message.is_empty() { Value::Null } else { json!(a.error_message) },
        })).collect::<Vec<_>>(),
    })
}

fn print_json(v: &Value) -> anyhow::Result<()> {
    outln!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// Prints rows as an aligned table with a header line.
fn table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let parts: Vec<String> = cells.iter().enumerate().map(|(i, c)| format!("{c:<w$}", w = widths[i])).collect();
        outln!("{}", parts.join("  ").trim_end());
    };
    line(header.iter().map(|h| (*h).to_owned()).collect());
    for r in rows {
        line(r.clone());
    }
}

/// Output of `schedules create`.
pub fn created(out: Output, r: &pb::CreateScheduleResponse) -> anyhow::Result<()> {
    let s = r.schedule.clone().unwrap_or_default();
    match out {
        Output::Json => {
            let mut v = schedule_json(&s);
            if !r.signing_secret.is_empty() {
                v["signing_secret"] = json!(r.signing_secret);
            }
            v["next_fire_times"] = Value::Array(r.next_fire_times.iter().map(|t| ts(Some(t))).collect());
            print_json(&v)
        }
        Output::Table => {
            outln!("created schedule {}", s.id);
            if !r.signing_secret.is_empty() {
                outln!("signing secret (shown once): {}", r.signing_secret);
            }
            outln!("next fire times:");
            for t in &r.next_fire_times {
                outln!("  {}", ts_text(Some(t)));
            }
            Ok(())
        }
    }
}

/// Output of `schedules list`.
pub fn schedules(out: Output, list: &[pb::Schedule]) -> anyhow::Result<()> {
    match out {
        Output::Json => print_json(&Value::Array(list.iter().map(schedule_json).collect())),
        Output::Table => {
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|s| {
                    vec![
                        s.id.clone(),
                        s.name.clone(),
                        state_name(s.state).to_owned(),
                        spec_text(s.spec.as_ref()),
                        ts_text(s.next_fire_time.as_ref()),
                        s.target.as_ref().map(|t| format!("{} {}", t.method, t.url)).unwrap_or_default(),
                    ]
                })
                .collect();
            table(&["ID", "NAME", "STATE", "SPEC", "NEXT FIRE", "TARGET"], &rows);
            Ok(())
        }
    }
}

/// Output of `schedules get` (and pause/resume).
pub fn schedule(out: Output, s: &pb::Schedule) -> anyhow::Result<()> {
    match out {
        Output::Json => print_json(&schedule_json(s)),
        Output::Table => {
            let t = s.target.clone().unwrap_or_default();
            outln!("id:         {}", s.id);
            outln!("name:       {}", s.name);
            outln!(
                "state:      {}{}",
                state_name(s.state),
                if s.state_reason.is_empty() { String::new() } else { format!(" ({})", s.state_reason) }
            );
            outln!(
                "spec:       {} ({})",
                spec_text(s.spec.as_ref()),
                s.spec.as_ref().map(|x| x.time_zone.as_str()).unwrap_or("UTC")
            );
            outln!("next fire:  {}", ts_text(s.next_fire_time.as_ref()));
            outln!("request:    {} {}", t.method, t.url);
            for h in &t.headers {
                outln!("            {}: {}", h.name, h.value);
            }
            if !t.body.is_empty() {
                outln!("body:       {}", String::from_utf8_lossy(&t.body));
            }
            outln!("etag:       {}", s.etag);
            Ok(())
        }
    }
}

/// Output of `schedules preview`.
pub fn preview(out: Output, r: &pb::PreviewScheduleResponse) -> anyhow::Result<()> {
    match out {
        Output::Json => print_json(&Value::Array(
            r.fire_times
                .iter()
                .map(|f| json!({"time": ts(f.time.as_ref()), "local_time": f.local_time, "dst_note": f.dst_note}))
                .collect(),
        )),
        Output::Table => {
            for f in &r.fire_times {
                let note = if f.dst_note.is_empty() { String::new() } else { format!("  ({})", f.dst_note) };
                outln!("{}  {}{note}", ts_text(f.time.as_ref()), f.local_time);
            }
            Ok(())
        }
    }
}

/// Output of `runs list`.
pub fn runs(out: Output, list: &[pb::Run]) -> anyhow::Result<()> {
    match out {
        Output::Json => print_json(&Value::Array(list.iter().map(run_json).collect())),
        Output::Table => {
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|r| {
                    vec![
                        r.id.clone(),
                        ts_text(r.nominal_time.as_ref()),
                        run_status_name(r.status).to_owned(),
                        if r.http_status == 0 { "-".to_owned() } else { r.http_status.to_string() },
                        ms_text(r.duration.as_ref()),
                        r.attempt_count.to_string(),
                    ]
                })
                .collect();
            table(&["RUN ID", "FIRE TIME", "STATUS", "HTTP", "DURATION", "ATTEMPTS"], &rows);
            Ok(())
        }
    }
}

/// Output of `runs get`.
pub fn run(out: Output, r: &pb::Run) -> anyhow::Result<()> {
    match out {
        Output::Json => print_json(&run_json(r)),
        Output::Table => {
            outln!("run:        {}", r.id);
            outln!("schedule:   {}", r.schedule_id);
            outln!("tick:       {} ({})", r.tick_id, trigger_name(r.trigger));
            outln!("fire time:  {}", ts_text(r.nominal_time.as_ref()));
            outln!("status:     {}", run_status_name(r.status));
            if !r.last_error.is_empty() {
                outln!("last error: {}", r.last_error);
            }
            for a in &r.attempts {
                outln!();
                outln!(
                    "attempt {} at {} ({}, {} late){}",
                    a.number,
                    ts_text(a.start_time.as_ref()),
                    ms_text(a.duration.as_ref()),
                    ms_text(a.lateness.as_ref()),
                    if a.error_code.is_empty() {
                        String::new()
                    } else {
                        format!(" error {}: {}", a.error_code, a.error_message)
                    }
                );
                if let Some(t) = &a.timing {
                    outln!(
                        "  timing: dns {} | connect+tls {} | first byte {} | total {}",
                        ms_text(t.dns.as_ref()),
                        ms_text(t.connect.as_ref()),
                        ms_text(t.time_to_first_byte.as_ref()),
                        ms_text(t.total.as_ref())
                    );
                }
                if let Some(q) = &a.request {
                    outln!("  > {} {}", q.method, q.url);
                    for h in &q.headers {
                        outln!("  > {}: {}", h.name, h.value);
                    }
                    outln!("  > ({} bytes, sha256 {})", q.body_size, q.body_sha256);
                }
                if let Some(p) = &a.response {
                    outln!("  < HTTP {}", p.status);
                    for h in &p.headers {
                        outln!("  < {}: {}", h.name, h.value);
                    }
                    let body = String::from_utf8_lossy(&p.body);
                    outln!("  < {}{}", body, if p.body_truncated { " [truncated]" } else { "" });
                }
            }
            Ok(())
        }
    }
}

/// One-line confirmations (`deleted ID`).
pub fn message(out: Output, what: &str, id: &str) -> anyhow::Result<()> {
    match out {
        Output::Json => print_json(&json!({ "result": what, "id": id })),
        Output::Table => {
            outln!("{what} {id}");
            Ok(())
        }
    }
}

fn outcome_name(v: i32) -> &'static str {
    match pb::TickOutcome::try_from(v) {
        Ok(pb::TickOutcome::Planned) => "planned",
        Ok(pb::TickOutcome::Published) => "published",
        Ok(pb::TickOutcome::Delivered) => "delivered",
        Ok(pb::TickOutcome::Failed) => "failed",
        Ok(pb::TickOutcome::Skipped) => "skipped",
        Ok(pb::TickOutcome::Missed) => "missed",
        Ok(pb::TickOutcome::Cancelled) => "cancelled",
        Ok(pb::TickOutcome::Buffered) => "buffered",
        _ => "unknown",
    }
}

/// Output of `ticks list`.
pub fn ticks(out: Output, list: &[pb::LedgerTick]) -> anyhow::Result<()> {
    match out {
        Output::Json => print_json(&Value::Array(
            list.iter()
                .map(|t| {
                    json!({
                        "id": t.id, "schedule_id": t.schedule_id, "nominal_time": ts(t.nominal_time.as_ref()),
                        "fire_time": ts(t.fire_time.as_ref()), "outcome": outcome_name(t.outcome),
                        "reason": if t.reason.is_empty() { Value::Null } else { json!(t.reason) },
                        "trigger": trigger_name(t.trigger), "update_time": ts(t.update_time.as_ref()),
                    })
                })
                .collect(),
        )),
        Output::Table => {
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|t| {
                    vec![
                        ts_text(t.nominal_time.as_ref()),
                        outcome_name(t.outcome).to_owned(),
                        trigger_name(t.trigger).to_owned(),
                        if t.reason.is_empty() { "-".to_owned() } else { t.reason.clone() },
                        t.id.clone(),
                    ]
                })
                .collect();
            table(&["NOMINAL TIME", "OUTCOME", "TRIGGER", "REASON", "TICK ID"], &rows);
            Ok(())
        }
    }
}

/// Output of `schedules backfill`.
pub fn backfill(out: Output, r: &pb::BackfillScheduleResponse) -> anyhow::Result<()> {
    match out {
        Output::Json => print_json(&json!({"created": r.created, "existing": r.existing})),
        Output::Table => {
            outln!("backfill: {} ticks created, {} had a tick already", r.created, r.existing);
            Ok(())
        }
    }
}
