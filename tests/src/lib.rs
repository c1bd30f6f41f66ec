//! Harness of the end-to-end tests: starts the real `cronhook` binary (built by
//! scripts/test.sh before the tests run) as a child process and talks to it over gRPC.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use cronhook_proto::v1 as pb;
use cronhook_proto::v1::run_service_client::RunServiceClient;
use cronhook_proto::v1::schedule_service_client::ScheduleServiceClient;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tonic::transport::Channel;

/// Returns the path of the `cronhook` binary next to the test executable.
pub fn cronhook_bin() -> anyhow::Result<PathBuf> {
    if let Ok(p) = std::env::var("CRONHOOK_BIN") {
        return Ok(PathBuf::from(p));
    }
    // target/<profile>/deps/<test> -> target/<profile>/cronhook
    let exe = std::env::current_exe()?;
    let dir = exe.parent().and_then(|d| d.parent()).context("no target dir")?;
    let bin = dir.join("cronhook");
    if !bin.exists() {
        bail!("{} not found: build it first with `cargo build -p cronhook` (scripts/test.sh does)", bin.display());
    }
    Ok(bin)
}

/// A running `cronhook` process; killed (SIGKILL) when dropped.
pub struct Cronhook {
    child: Child,
    /// `http://127.0.0.1:PORT` of its gRPC API.
    pub api: String,
    logs: tokio::task::JoinHandle<Vec<String>>,
}

impl Cronhook {
    /// Starts `cronhook <args>` and waits until it prints where its API listens.
    pub async fn start(args: &[&str]) -> anyhow::Result<Self> {
        let mut child = Command::new(cronhook_bin()?)
            .args(args)
            .env("RUST_LOG", "info,sqlx=warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let stdout = child.stdout.take().context("stdout")?;
        let stderr = child.stderr.take().context("stderr")?;
        let logs = tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            let mut kept = Vec::new();
            while let Ok(Some(l)) = lines.next_line().await {
                kept.push(l);
            }
            kept
        });
        let mut lines = BufReader::new(stdout).lines();
        let api = tokio::time::timeout(Duration::from_secs(60), async {
            while let Some(line) = lines.next_line().await? {
                if let Some(rest) = line.split("listening on ").nth(1) {
                    return Ok::<_, anyhow::Error>(rest.trim().to_owned());
                }
            }
            bail!("cronhook exited before listening")
        })
        .await
        .context("cronhook did not start within 60 s")??;
        // keep draining stdout so the child never blocks on a full pipe
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Self { child, api, logs })
    }

    /// Returns a schedules client.
    pub async fn schedules(&self) -> anyhow::Result<ScheduleServiceClient<Channel>> {
        Ok(ScheduleServiceClient::new(Channel::from_shared(self.api.clone())?.connect().await?))
    }

    /// Returns a runs client.
    pub async fn runs(&self) -> anyhow::Result<RunServiceClient<Channel>> {
        Ok(RunServiceClient::new(Channel::from_shared(self.api.clone())?.connect().await?))
    }

    /// Kills the process with SIGKILL (no shutdown path runs) and returns its log lines.
    pub async fn kill9(mut self) -> anyhow::Result<Vec<String>> {
        self.child.start_kill()?;
        self.child.wait().await?;
        Ok(self.logs.await.unwrap_or_default())
    }

    /// Sends SIGINT and waits for a clean exit; returns the exit status and log lines.
    pub async fn interrupt(mut self) -> anyhow::Result<(std::process::ExitStatus, Vec<String>)> {
        let pid = self.child.id().context("no pid")?;
        let status = Command::new("kill").args(["-INT", &pid.to_string()]).status().await?;
        if !status.success() {
            bail!("kill -INT failed");
        }
        let st = tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await??;
        Ok((st, self.logs.await.unwrap_or_default()))
    }
}

/// A schedule of `spec` that POSTs `{"n":1}` to `url`.
pub fn schedule(name: &str, cron: &str, url: &str) -> pb::Schedule {
    pb::Schedule {
        name: name.into(),
        spec: Some(pb::ScheduleSpec { kind: Some(pb::schedule_spec::Kind::Cron(cron.into())), ..Default::default() }),
        target: Some(pb::HttpTarget {
            url: url.into(),
            method: "POST".into(),
            headers: vec![pb::Header { name: "Content-Type".into(), value: "application/json".into(), secret: false }],
            body: b"{\"n\":1}".to_vec(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Lists every run of `schedule_id` (all pages), newest first.
pub async fn all_runs(c: &mut RunServiceClient<Channel>, schedule_id: &str) -> anyhow::Result<Vec<pb::Run>> {
    let mut out = Vec::new();
    let mut token = String::new();
    loop {
        let r = c
            .list_runs(pb::ListRunsRequest {
                schedule_id: schedule_id.into(),
                page_size: 100,
                page_token: token,
                ..Default::default()
            })
            .await?
            .into_inner();
        out.extend(r.runs);
        if r.next_page_token.is_empty() {
            return Ok(out);
        }
        token = r.next_page_token;
    }
}

/// Returns the nominal time of a run in milliseconds.
pub fn nominal_ms(r: &pb::Run) -> i64 {
    r.nominal_time.as_ref().map_or(0, |t| cronhook_proto::from_timestamp(t).as_millis())
}
