//! Private servers for tests that restart them (fault injection): a Postgres cluster, an
//! etcd member and a Tansu broker of the test's own, on their own ports, so restarting one
//! never disturbs another test. Binaries come from the machine (scripts/test.sh installs
//! them and exports where they are).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::process::{Child, Command};

/// Returns a TCP port that was free a moment ago.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

async fn wait_port(port: u16, what: &str) -> anyhow::Result<()> {
    crate::wait_for(&format!("{what} on port {port}"), Duration::from_secs(30), || async move {
        tokio::net::TcpStream::connect(("127.0.0.1", port)).await.ok().map(|_| ())
    })
    .await
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(1) == Some("0")))
        .unwrap_or(false)
}

/// A throwaway Postgres cluster (initdb in a temp dir).
pub struct PgServer {
    dir: tempfile::TempDir,
    bin: PathBuf,
    /// Its port.
    pub port: u16,
}

impl PgServer {
    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        if is_root() {
            // initdb and postgres refuse to run as root
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        }
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Creates and starts a cluster (trust auth, fsync off).
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_with_conf("").await
    }

    /// [`PgServer::start`] with extra `postgresql.conf` settings (`;`-separated), before
    /// those of `CRONHOOK_TEST_PG_EXTRA_CONF`, which win.
    pub async fn start_with_conf(settings: &str) -> anyhow::Result<Self> {
        let bin = PathBuf::from(
            std::env::var("CRONHOOK_TEST_PG_BIN").unwrap_or_else(|_| "/usr/lib/postgresql/15/bin".into()),
        );
        if !bin.join("initdb").exists() {
            bail!("no initdb in {}: install postgresql-15 (scripts/test.sh does)", bin.display());
        }
        let dir = tempfile::tempdir()?;
        let port = free_port()?;
        let s = Self { dir, bin, port };
        std::fs::create_dir_all(s.data())?;
        if is_root() {
            let st = Command::new("chown").args(["-R", "postgres:postgres"]).arg(s.dir.path()).status().await?;
            if !st.success() {
                bail!("chown failed");
            }
        }
        let out = s.command("initdb").arg("-D").arg(s.data()).args(["-U", "postgres", "-A", "trust"]).output().await?;
        if !out.status.success() {
            bail!("initdb failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        let conf = format!(
            "listen_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '{}'\nfsync = off\n\
             synchronous_commit = off\nmax_connections = 200\n",
            s.dir.path().display()
        );
        let conf = format!("{conf}{}\n", settings.replace(';', "\n"));
        // extra settings for diagnosis, e.g. "log_min_duration_statement = 5" (benchmarks)
        let conf = match std::env::var("CRONHOOK_TEST_PG_EXTRA_CONF") {
            Ok(extra) => format!("{conf}{}\n", extra.replace(';', "\n")),
            Err(_) => conf,
        };
        std::fs::OpenOptions::new()
            .append(true)
            .open(s.data().join("postgresql.conf"))
            .and_then(|mut f| std::io::Write::write_all(&mut f, conf.as_bytes()))?;
        s.pg_ctl(&["start", "-w", "-l"]).await?;
        Ok(s)
    }

    async fn pg_ctl(&self, args: &[&str]) -> anyhow::Result<()> {
        let mut c = self.command("pg_ctl");
        c.arg("-D").arg(self.data());
        for a in args {
            c.arg(a);
        }
        if args.contains(&"-l") {
            c.arg(self.dir.path().join("postgres.log"));
        }
        let out = c.stdout(Stdio::null()).output().await?;
        if !out.status.success() {
            bail!("pg_ctl {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
    }

    /// Returns the URL of database `db` (created by [`PgServer::create_database`]).
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// Creates database `db`.
    pub async fn create_database(&self, db: &str) -> anyhow::Result<String> {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&self.url("postgres")).await?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db}"))).execute(&mut conn).await?;
        Ok(self.url(db))
    }

    /// Stops the server (fast shutdown: connections are cut).
    pub async fn stop(&self) -> anyhow::Result<()> {
        self.pg_ctl(&["stop", "-m", "fast", "-w"]).await
    }

    /// Starts a stopped server again.
    pub async fn start_again(&self) -> anyhow::Result<()> {
        self.pg_ctl(&["start", "-w", "-l"]).await
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let pg_ctl = self.bin.join("pg_ctl");
        let mut c = if is_root() {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(pg_ctl);
            c
        } else {
            std::process::Command::new(pg_ctl)
        };
        let _ = c
            .arg("-D")
            .arg(self.data())
            .args(["stop", "-m", "immediate"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// A single-member etcd.
pub struct EtcdServer {
    dir: tempfile::TempDir,
    /// Client port.
    pub port: u16,
    peer: u16,
    child: Option<Child>,
}

impl EtcdServer {
    /// Starts a member with a fresh data dir.
    pub async fn start() -> anyhow::Result<Self> {
        let mut s = Self { dir: tempfile::tempdir()?, port: free_port()?, peer: free_port()?, child: None };
        s.start_again().await?;
        Ok(s)
    }

    /// Returns the client URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Kills the member (SIGKILL).
    pub async fn kill(&mut self) -> anyhow::Result<()> {
        if let Some(mut c) = self.child.take() {
            c.kill().await?;
        }
        Ok(())
    }

    /// Starts the member again on the same data dir and ports.
    pub async fn start_again(&mut self) -> anyhow::Result<()> {
        let (c, p) = (self.port, self.peer);
        let child = Command::new("etcd")
            .args(["--name", "t", "--data-dir"])
            .arg(self.dir.path().join("data"))
            .arg(format!("--listen-client-urls=http://127.0.0.1:{c}"))
            .arg(format!("--advertise-client-urls=http://127.0.0.1:{c}"))
            .arg(format!("--listen-peer-urls=http://127.0.0.1:{p}"))
            .arg(format!("--initial-advertise-peer-urls=http://127.0.0.1:{p}"))
            .arg(format!("--initial-cluster=t=http://127.0.0.1:{p}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("starting etcd (install etcd-server; scripts/test.sh does)")?;
        self.child = Some(child);
        wait_port(c, "etcd").await
    }
}

/// A Tansu broker (memory storage: a restart loses every topic and offset).
pub struct TansuServer {
    /// Its port.
    pub port: u16,
    child: Option<Child>,
}

impl TansuServer {
    /// Starts a broker.
    pub async fn start() -> anyhow::Result<Self> {
        let mut s = Self { port: free_port()?, child: None };
        s.start_again().await?;
        Ok(s)
    }

    /// Returns the bootstrap address.
    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Kills the broker (SIGKILL).
    pub async fn kill(&mut self) -> anyhow::Result<()> {
        if let Some(mut c) = self.child.take() {
            c.kill().await?;
        }
        Ok(())
    }

    /// Starts it again on the same port (empty: memory storage).
    pub async fn start_again(&mut self) -> anyhow::Result<()> {
        let bin = crate::server_env("CRONHOOK_TEST_TANSU_BIN", "the Tansu broker binary");
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let child = Command::new(bin)
            .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        self.child = Some(child);
        wait_port(self.port, "tansu").await
    }
}
