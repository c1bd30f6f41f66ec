//! The effective configuration of a cronhook process: defaults, then `--config FILE`,
//! then `CRONHOOK_*` environment variables, then flags. `cronhook config` prints it.

use std::path::PathBuf;

use anyhow::{Context, bail};
use cronhook_api::ApiConfig;
use cronhook_delivery::seal::SealKey;
use cronhook_delivery::ssrf::{SsrfConfig, SsrfPolicy};
use cronhook_election::etcd::EtcdConfig;
use cronhook_planner::PlannerConfig;
use cronhook_queue::kafka::KafkaConfig;
use cronhook_worker::WorkerConfig;
use serde::{Deserialize, Serialize};

/// Every setting, by section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Log output: "text" or "json".
    pub log_format: String,
    /// Number of shards, fixed when the database is created.
    pub shard_count: u32,
    /// This process's name among planners and workers (default: host name and pid).
    pub node_id: String,
    /// Address of the Prometheus `/metrics` endpoint (e.g. 127.0.0.1:9464); empty: off.
    pub metrics_listen: String,
    /// `[database]`
    pub database: DatabaseConfig,
    /// `[dev]`
    pub dev: DevConfig,
    /// `[queue]`
    pub queue: QueueConfig,
    /// `[api]`
    pub api: ApiConfig,
    /// `[planner]`
    pub planner: PlannerConfig,
    /// `[worker]`
    pub worker: WorkerConfig,
    /// `[etcd]`: shard leases of the distributed mode.
    pub etcd: EtcdConfig,
    /// `[kafka]`: the ticks topic and the workers' group of the distributed mode.
    pub kafka: KafkaConfig,
    /// `[delivery]`: the SSRF guard and its allow-list.
    pub delivery: SsrfConfig,
    /// `[secrets]`: the key sealing secret header values and signing secrets.
    pub secrets: SecretsConfig,
}

/// `[secrets]`
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SecretsConfig {
    /// Base64 of 32 random bytes (`openssl rand -base64 32`). API and workers need the same.
    pub key: String,
    /// A file holding the key instead (e.g. a mounted secret).
    pub key_file: String,
}

/// `[database]`
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `postgres://...` or a SQLite path/URL. Empty in `dev`: `<data_dir>/cronhook.db`.
    pub url: String,
}

/// `[dev]`: the embedded mode.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DevConfig {
    /// Where the SQLite database lives.
    pub data_dir: PathBuf,
}

/// `[queue]`: the in-memory queue of the embedded mode.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueueConfig {
    /// Ticks buffered between planner and worker.
    pub capacity: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            log_format: "text".into(),
            shard_count: 256,
            node_id: String::new(),
            metrics_listen: String::new(),
            database: DatabaseConfig::default(),
            dev: DevConfig::default(),
            queue: QueueConfig::default(),
            api: ApiConfig::default(),
            planner: PlannerConfig::default(),
            worker: WorkerConfig::default(),
            etcd: EtcdConfig::default(),
            kafka: KafkaConfig::default(),
            delivery: SsrfConfig::default(),
            secrets: SecretsConfig::default(),
        }
    }
}

impl Default for DevConfig {
    fn default() -> Self {
        Self { data_dir: PathBuf::from("./cronhook-data") }
    }
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self { capacity: 10_000 }
    }
}

const SECTIONS: &[&str] =
    &["database", "dev", "queue", "api", "planner", "worker", "etcd", "kafka", "delivery", "secrets"];

impl Config {
    /// Loads defaults, file and environment.
    pub fn load(file: Option<&std::path::Path>) -> anyhow::Result<Self> {
        Ok(cronhook_runtime::config::load(file, std::env::vars(), SECTIONS)?)
    }

    /// Checks values no type can express; messages name the key.
    pub fn validate(&self) -> anyhow::Result<()> {
        if !matches!(self.log_format.as_str(), "text" | "json") {
            bail!("log_format: must be \"text\" or \"json\", not {:?}", self.log_format);
        }
        if !(1..=65_536).contains(&self.shard_count) {
            bail!("shard_count: must be between 1 and 65536");
        }
        if self.queue.capacity == 0 {
            bail!("queue.capacity: must be at least 1");
        }
        if self.worker.max_in_flight == 0 {
            bail!("worker.max_in_flight: must be at least 1");
        }
        if self.planner.batch_size == 0 || self.planner.publish_batch == 0 {
            bail!("planner.batch_size and planner.publish_batch: must be at least 1");
        }
        if self.planner.lookahead.as_millis() > 60_000 {
            bail!("planner.lookahead: must be at most 60s");
        }
        if !self.metrics_listen.is_empty() && self.metrics_listen.parse::<std::net::SocketAddr>().is_err() {
            bail!("metrics_listen: {:?} is not an address such as 127.0.0.1:9464", self.metrics_listen);
        }
        SsrfPolicy::from_config(&self.delivery).map_err(|e| anyhow::anyhow!(e))?;
        if self.kafka.partitions < 1 || self.kafka.replication_factor < 1 {
            bail!("kafka.partitions and kafka.replication_factor: must be at least 1");
        }
        if self.etcd.lease_ttl.as_secs() < 2 {
            bail!("etcd.lease_ttl: must be at least 2s");
        }
        if self.api.max_body_bytes > 16 * 1024 * 1024 {
            bail!("api.max_body_bytes: must be at most 16 MiB");
        }
        Ok(())
    }

    /// Returns this process's node id: the configured one, or `<host>-<pid>`.
    pub fn node_id(&self) -> String {
        if !self.node_id.is_empty() {
            return self.node_id.clone();
        }
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "node".to_owned());
        format!("{host}-{}", std::process::id())
    }

    /// Returns the SSRF policy (validated in `validate`).
    pub fn ssrf(&self) -> anyhow::Result<std::sync::Arc<SsrfPolicy>> {
        Ok(std::sync::Arc::new(SsrfPolicy::from_config(&self.delivery).map_err(|e| anyhow::anyhow!(e))?))
    }

    /// Returns the sealing key: `secrets.key`, else `secrets.key_file`, else (with
    /// `dev_dir`, the embedded mode) a key file created once in the data directory.
    pub fn seal_key(&self, dev_dir: Option<&std::path::Path>) -> anyhow::Result<Option<SealKey>> {
        let text = if !self.secrets.key.is_empty() {
            self.secrets.key.clone()
        } else if !self.secrets.key_file.is_empty() {
            std::fs::read_to_string(&self.secrets.key_file)
                .with_context(|| format!("secrets.key_file: cannot read {}", self.secrets.key_file))?
        } else if let Some(dir) = dev_dir {
            std::fs::create_dir_all(dir).with_context(|| format!("dev.data_dir: cannot create {}", dir.display()))?;
            let path = dir.join("secrets.key");
            if !path.exists() {
                write_private(&path, &SealKey::generate_base64())?;
            }
            std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?
        } else {
            return Ok(None);
        };
        Ok(Some(SealKey::from_base64(&text).map_err(|e| anyhow::anyhow!("{e}"))?))
    }

    /// Checks the settings the distributed roles need.
    pub fn require_database(&self) -> anyhow::Result<()> {
        if self.database.url.is_empty() {
            bail!("database.url: required (--database-url or CRONHOOK_DATABASE_URL)");
        }
        Ok(())
    }

    /// The database URL `dev` uses.
    pub fn dev_database_url(&self) -> anyhow::Result<String> {
        if !self.database.url.is_empty() {
            return Ok(self.database.url.clone());
        }
        std::fs::create_dir_all(&self.dev.data_dir)
            .with_context(|| format!("dev.data_dir: cannot create {}", self.dev.data_dir.display()))?;
        Ok(self.dev.data_dir.join("cronhook.db").display().to_string())
    }
}

/// Writes `text` to a new file readable by its owner only.
fn write_private(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(text.as_bytes())?;
    Ok(())
}
