//! Harness of the end-to-end tests: starts the real `cronhook` binary (built by
//! scripts/test.sh before the tests run) as child processes and talks to them over gRPC;
//! [`cluster`] runs the distributed roles against private servers for fault injection.

pub mod cluster;

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
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
    /// A name for messages.
    pub name: String,
    /// `http://127.0.0.1:PORT` of its gRPC API, for processes that serve one.
    pub api: String,
    logs: Arc<Mutex<Vec<String>>>,
}

impl Cronhook {
    /// Starts `cronhook <args>` and waits until it prints where its API listens.
    pub async fn start(args: &[&str]) -> anyhow::Result<Self> {
        Self::spawn("cronhook", args, &[], "listening on ").await
    }

    /// Starts `cronhook <args>` with extra environment and waits for a stdout line
    /// containing `ready` (the text after it becomes `api`). Its log filter is
    /// `CRONHOOK_TEST_CHILD_LOG` when set (e.g. `info,cronhook_planner=debug` for the planner's
    /// pass timings in a benchmark), else info.
    pub async fn spawn(name: &str, args: &[&str], env: &[(String, String)], ready: &str) -> anyhow::Result<Self> {
        let mut cmd = Command::new(cronhook_bin()?);
        let filter =
            std::env::var("CRONHOOK_TEST_CHILD_LOG").unwrap_or_else(|_| "info,sqlx=warn,librdkafka=warn".into());
        cmd.args(args).env("RUST_LOG", filter);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true).spawn()?;
        let stdout = child.stdout.take().context("stdout")?;
        let stderr = child.stderr.take().context("stderr")?;
        let logs = Arc::new(Mutex::new(Vec::new()));
        let sink = logs.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(l)) = lines.next_line().await {
                if let Ok(mut g) = sink.lock() {
                    g.push(l);
                }
            }
        });
        let mut lines = BufReader::new(stdout).lines();
        let marker = ready.to_owned();
        let api = tokio::time::timeout(Duration::from_secs(60), async {
            while let Some(line) = lines.next_line().await? {
                if let Some(rest) = line.split(marker.as_str()).nth(1) {
                    return Ok::<_, anyhow::Error>(rest.trim().to_owned());
                }
            }
            bail!("{name} exited before it was ready")
        })
        .await
        .with_context(|| format!("{name} was not ready within 60 s"))??;
        // keep draining stdout so the child never blocks on a full pipe
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Self { child, name: name.to_owned(), api, logs })
    }

    /// Returns the OS process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Returns the log lines (stderr) so far.
    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().map(|g| g.clone()).unwrap_or_default()
    }

    /// Returns a schedules client.
    pub async fn schedules(&self) -> anyhow::Result<ScheduleServiceClient<Channel>> {
        Ok(ScheduleServiceClient::new(Channel::from_shared(self.api.clone())?.connect().await?))
    }

    /// Returns a runs client.
    pub async fn runs(&self) -> anyhow::Result<RunServiceClient<Channel>> {
        Ok(RunServiceClient::new(Channel::from_shared(self.api.clone())?.connect().await?))
    }

    async fn signal(&self, sig: &str) -> anyhow::Result<()> {
        let pid = self.child.id().context("no pid")?;
        let status = Command::new("kill").args([sig, &pid.to_string()]).status().await?;
        if !status.success() {
            bail!("kill {sig} {pid} failed");
        }
        Ok(())
    }

    /// Freezes the process (SIGSTOP): it holds its connections and leases but does nothing.
    pub async fn pause(&self) -> anyhow::Result<()> {
        self.signal("-STOP").await
    }

    /// Lets a frozen process go on (SIGCONT).
    pub async fn resume(&self) -> anyhow::Result<()> {
        self.signal("-CONT").await
    }

    /// Kills the process with SIGKILL (no shutdown path runs) and returns its log lines.
    pub async fn kill9(mut self) -> anyhow::Result<Vec<String>> {
        self.child.start_kill()?;
        self.child.wait().await?;
        Ok(self.logs())
    }

    /// Sends SIGINT and waits for a clean exit; returns the exit status and log lines.
    pub async fn interrupt(mut self) -> anyhow::Result<(std::process::ExitStatus, Vec<String>)> {
        self.signal("-INT").await?;
        let st = tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await??;
        Ok((st, self.logs()))
    }
}

/// A schedule of `cron` that POSTs `{"n":1}` to `url`.
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

/// GETs `http://{addr}{path}` (HTTP/1.0, no client library) and returns the body.
pub async fn http_get(addr: &str, path: &str) -> anyhow::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes()).await?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    Ok(text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default())
}

/// Returns the value of a sample line `name value` in a Prometheus text exposition.
pub fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(' ')).and_then(|v| v.trim().parse().ok()))
}
