//! The CLI against a running `cronhook dev`: the commands of the README, their JSON output,
//! and plain error messages for bad input.

#![allow(clippy::unwrap_used)] // a panic is how a test fails

use std::time::Duration;

use cronhook_e2e::{Cronhook, cronhook_bin};
use cronhook_test_utils::sink::WebhookSink;
use cronhook_test_utils::wait_for;

struct Out {
    ok: bool,
    stdout: String,
    stderr: String,
}

async fn cli(api: &str, args: &[&str]) -> Out {
    let out = tokio::process::Command::new(cronhook_bin().unwrap())
        .args(args)
        .env("CRONHOOK_API", api)
        .output()
        .await
        .unwrap();
    Out {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

#[tokio::test]
async fn readme_commands_work() {
    let dir = tempfile::tempdir().unwrap();
    let sink = WebhookSink::start().await.unwrap();
    let ch =
        Cronhook::start(&["dev", "--data-dir", dir.path().to_str().unwrap(), "--listen", "127.0.0.1:0"]).await.unwrap();
    let api = ch.api.clone();
    let url = sink.url("/hook");

    let created = cli(
        &api,
        &[
            "schedules",
            "create",
            "--name",
            "ping",
            "--cron",
            "*/2 * * * * *",
            "--url",
            &url,
            "--method",
            "POST",
            "--header",
            "Content-Type: application/json",
            "--body",
            "{\"hello\":1}",
            "--sign",
            "--secret-header",
            "Authorization: Bearer s3cret",
        ],
    )
    .await;
    assert!(created.ok, "{}", created.stderr);
    let mut lines = created.stdout.lines();
    let id = lines.next().unwrap().strip_prefix("created schedule ").unwrap().to_owned();
    let secret = lines.next().unwrap().strip_prefix("signing secret (shown once): ").unwrap().to_owned();
    assert!(secret.starts_with("whsec_"));
    assert_eq!(lines.next(), Some("next fire times:"));
    assert_eq!(lines.filter(|l| l.trim_start().starts_with("20")).count(), 5, "{}", created.stdout);

    let list = cli(&api, &["schedules", "list", "--output", "json"]).await;
    let list = json(&list.stdout);
    assert_eq!(list[0]["id"], id.as_str());
    assert_eq!(list[0]["state"], "active");
    let got = cli(&api, &["schedules", "get", &id]).await;
    assert!(got.stdout.contains("POST http://127.0.0.1"), "{}", got.stdout);

    sink.wait_for_count(2, Duration::from_secs(20)).await.unwrap();
    let runs = wait_for("two runs listed", Duration::from_secs(20), || {
        let api = api.clone();
        let id = id.clone();
        async move {
            let r = cli(&api, &["runs", "list", "--schedule", &id, "-o", "json"]).await;
            let v = json(&r.stdout);
            let done = v.as_array()?.iter().filter(|r| r["status"] == "succeeded").count();
            (done >= 2).then_some(v)
        }
    })
    .await
    .unwrap();
    let run_id = runs[0]["id"].as_str().unwrap().to_owned();
    let table = cli(&api, &["runs", "list", "--schedule", &id]).await;
    assert!(table.stdout.starts_with("RUN ID"), "{}", table.stdout);
    assert!(table.stdout.contains("succeeded"));

    let delivered = &sink.received()[0];
    assert_eq!(delivered.header("authorization"), Some("Bearer s3cret"));
    assert!(delivered.header("webhook-signature").is_some_and(|s| s.starts_with("v1,")));
    assert!(dir.path().join("secrets.key").exists(), "dev made its sealing key");
    let db = std::fs::read(dir.path().join("cronhook.db")).unwrap();
    let wal = std::fs::read(dir.path().join("cronhook.db-wal")).unwrap_or_default();
    for bytes in [&db, &wal] {
        assert!(!bytes.windows(6).any(|w| w == b"s3cret"), "secret header value stored in clear");
        assert!(!bytes.windows(20).any(|w| w == &secret.as_bytes()[6..26]), "signing secret stored in clear");
    }
    let run = cli(&api, &["runs", "get", &run_id]).await;
    assert!(run.stdout.contains("< HTTP 200"), "{}", run.stdout);
    assert!(run.stdout.contains("> webhook-id: "), "{}", run.stdout);
    let run_json = json(&cli(&api, &["runs", "get", &run_id, "-o", "json"]).await.stdout);
    assert_eq!(run_json["attempts"][0]["response"]["status"], 200);
    assert_eq!(run_json["attempts"][0]["response"]["body"], "{\"ok\":true}");

    // bad input: a plain message naming the field, a failing exit status, nothing written
    let bad = cli(&api, &["schedules", "create", "--name", "x", "--cron", "* * *", "--url", &url]).await;
    assert!(!bad.ok);
    assert!(bad.stderr.contains("invalid argument: schedule.spec.cron: has 3 fields"), "{}", bad.stderr);
    let bad = cli(&api, &["schedules", "create", "--name", "x", "--every", "1s", "--url", "ftp://h/x"]).await;
    assert!(bad.stderr.contains("invalid argument: schedule.target.url"), "{}", bad.stderr);
    let bad =
        cli(&api, &["schedules", "create", "--name", "x", "--every", "1s", "--url", &url, "--method", "BREW"]).await;
    assert!(bad.stderr.contains("schedule.target.method"), "{}", bad.stderr);
    assert_eq!(json(&cli(&api, &["schedules", "list", "-o", "json"]).await.stdout).as_array().unwrap().len(), 1);

    let deleted = cli(&api, &["schedules", "delete", &id]).await;
    assert!(deleted.ok && deleted.stdout.contains("deleted"), "{}", deleted.stderr);
    let gone = cli(&api, &["schedules", "get", &id]).await;
    assert!(!gone.ok && gone.stderr.contains("not found"), "{}", gone.stderr);

    let unreachable = cli("http://127.0.0.1:1", &["schedules", "list"]).await;
    assert!(unreachable.stderr.contains("cannot reach the cronhook API"), "{}", unreachable.stderr);
    ch.interrupt().await.unwrap();
}

#[tokio::test]
async fn migrate_and_config_commands() {
    let url = cronhook_test_utils::postgres::fresh_database_url().await.unwrap();
    let out = cli("", &["migrate", "--database-url", &url]).await;
    assert!(out.ok, "{}", out.stderr);
    assert!(out.stdout.contains("migrations applied"));
    let cfg = cli("", &["config"]).await;
    assert!(cfg.ok, "{}", cfg.stderr);
    assert!(cfg.stdout.contains("[planner]") && cfg.stdout.contains("listen = \"127.0.0.1:7070\""), "{}", cfg.stdout);
    let bad = tokio::process::Command::new(cronhook_bin().unwrap())
        .arg("config")
        .env("CRONHOOK_WORKER_MAX_IN_FLIGHT", "lots")
        .output()
        .await
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("max_in_flight"));
}
