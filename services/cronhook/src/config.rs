//! The effective configuration of a cronhook process: defaults, then `--config FILE`,
//! then `CRONHOOK_*` environment variables, then flags. `cronhook config` prints it.

use std::path::PathBuf;

use anyhow::{Context, bail};
use cronhook_api::ApiConfig;
use cronhook_planner::PlannerConfig;
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
            database: DatabaseConfig::default(),
            dev: DevConfig::default(),
            queue: QueueConfig::default(),
            api: ApiConfig::default(),
            planner: PlannerConfig::default(),
            worker: WorkerConfig::default(),
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

const SECTIONS: &[&str] = &["database", "dev", "queue", "api", "planner", "worker"];

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
        if self.api.max_body_bytes > 16 * 1024 * 1024 {
            bail!("api.max_body_bytes: must be at most 16 MiB");
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
