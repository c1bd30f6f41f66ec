//! Command-line interface.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use cronhook_telemetry::LogFormat;

use crate::config::Config;

/// Scheduled webhooks: cron, intervals and one-shots that send HTTP requests on time,
/// retry, and keep a ledger of every tick.
#[derive(Debug, Parser)]
#[command(name = "cronhook", version, propagate_version = true)]
pub struct Cli {
    /// Config file (TOML). Precedence: flags > CRONHOOK_* env > this file > defaults.
    #[arg(long, global = true, env = "CRONHOOK_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run everything in one process: API, planner and worker on SQLite (embedded mode).
    Dev(Box<DevArgs>),
    /// Run the API role against Postgres.
    Api(ServerArgs),
    /// Run the planner role: own shards through etcd, publish due ticks to Kafka.
    Planner(PlannerArgs),
    /// Run the worker role: consume ticks from Kafka, deliver, record runs.
    Worker(WorkerArgs),
    /// Inspect the distributed cluster.
    #[command(subcommand)]
    Cluster(ClusterCmd),
    /// Apply database migrations and exit.
    Migrate(MigrateArgs),
    /// Print the effective configuration (after file, environment and defaults).
    Config,
    /// Create, list, inspect and change schedules.
    #[command(subcommand)]
    Schedules(crate::client::SchedulesCmd),
    /// List and inspect runs.
    #[command(subcommand)]
    Runs(crate::client::RunsCmd),
    /// The tick ledger: every tick decided, with its outcome and reason.
    #[command(subcommand)]
    Ticks(crate::client::TicksCmd),
}

#[derive(Debug, Args)]
pub struct DevArgs {
    /// Directory of the SQLite database (default ./cronhook-data).
    #[arg(long, env = "CRONHOOK_DEV_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Use this database instead (postgres://... or a SQLite path).
    #[arg(long, env = "CRONHOOK_DATABASE_URL", value_name = "URL")]
    pub database_url: Option<String>,
    /// gRPC listen address (default 127.0.0.1:7070; port 0 picks a free one).
    #[arg(long, env = "CRONHOOK_API_LISTEN", value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
}

#[derive(Debug, Args)]
pub struct ServerArgs {
    /// postgres://user@host:port/db
    #[arg(long, env = "CRONHOOK_DATABASE_URL", value_name = "URL")]
    pub database_url: Option<String>,
    /// gRPC listen address (default 127.0.0.1:7070).
    #[arg(long, env = "CRONHOOK_API_LISTEN", value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
}

#[derive(Debug, Args)]
pub struct PlannerArgs {
    /// postgres://user@host:port/db
    #[arg(long, env = "CRONHOOK_DATABASE_URL", value_name = "URL")]
    pub database_url: Option<String>,
    /// etcd client URLs, comma-separated.
    #[arg(long, env = "CRONHOOK_ETCD_ENDPOINTS", value_name = "URLS")]
    pub etcd: Option<String>,
    /// Kafka bootstrap servers, comma-separated.
    #[arg(long, env = "CRONHOOK_KAFKA_BROKERS", value_name = "HOSTS")]
    pub kafka: Option<String>,
    /// Name of this planner (default host-pid).
    #[arg(long, env = "CRONHOOK_NODE_ID")]
    pub node_id: Option<String>,
}

#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// postgres://user@host:port/db
    #[arg(long, env = "CRONHOOK_DATABASE_URL", value_name = "URL")]
    pub database_url: Option<String>,
    /// Kafka bootstrap servers, comma-separated.
    #[arg(long, env = "CRONHOOK_KAFKA_BROKERS", value_name = "HOSTS")]
    pub kafka: Option<String>,
    /// Name of this worker (default host-pid).
    #[arg(long, env = "CRONHOOK_NODE_ID")]
    pub node_id: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum ClusterCmd {
    /// Which planner owns which shards (with epochs), and the workers' group and lag.
    Status {
        /// postgres://user@host:port/db
        #[arg(long, env = "CRONHOOK_DATABASE_URL", value_name = "URL")]
        database_url: Option<String>,
        /// Kafka bootstrap servers, comma-separated.
        #[arg(long, env = "CRONHOOK_KAFKA_BROKERS", value_name = "HOSTS")]
        kafka: Option<String>,
        /// Output format.
        #[arg(long, short = 'o', env = "CRONHOOK_OUTPUT", value_enum, default_value = "table")]
        output: Output,
    },
}

#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// postgres://... or a SQLite path
    #[arg(long, env = "CRONHOOK_DATABASE_URL", value_name = "URL")]
    pub database_url: Option<String>,
}

/// Output format of client commands.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Output {
    /// Tables and text for people.
    Table,
    /// JSON for scripts.
    Json,
}

fn load(cli_config: Option<&std::path::Path>) -> anyhow::Result<Config> {
    Config::load(cli_config)
}

fn init_logs(cfg: &Config) {
    let format = if cfg.log_format == "json" { LogFormat::Json } else { LogFormat::Text };
    cronhook_telemetry::init(format, "info,sqlx=warn,tower=warn,h2=warn,hyper=warn");
}

/// Runs the parsed command.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Dev(a) => {
            let mut cfg = load(cli.config.as_deref())?;
            if let Some(d) = a.data_dir {
                cfg.dev.data_dir = d;
            }
            if let Some(u) = a.database_url {
                cfg.database.url = u;
            }
            if let Some(l) = a.listen {
                cfg.api.listen = l;
            }
            cfg.validate()?;
            init_logs(&cfg);
            crate::dev::run(cfg).await
        }
        Command::Api(a) => {
            let mut cfg = load(cli.config.as_deref())?;
            if let Some(u) = a.database_url {
                cfg.database.url = u;
            }
            if let Some(l) = a.listen {
                cfg.api.listen = l;
            }
            cfg.validate()?;
            if cfg.database.url.is_empty() {
                anyhow::bail!("database.url: required (--database-url or CRONHOOK_DATABASE_URL)");
            }
            init_logs(&cfg);
            crate::dev::run_api(cfg).await
        }
        Command::Planner(a) => {
            let mut cfg = load(cli.config.as_deref())?;
            set(&mut cfg.database.url, a.database_url);
            set(&mut cfg.etcd.endpoints, a.etcd);
            set(&mut cfg.kafka.brokers, a.kafka);
            set(&mut cfg.node_id, a.node_id);
            cfg.validate()?;
            cfg.require_database()?;
            init_logs(&cfg);
            crate::distributed::run_planner(cfg).await
        }
        Command::Worker(a) => {
            let mut cfg = load(cli.config.as_deref())?;
            set(&mut cfg.database.url, a.database_url);
            set(&mut cfg.kafka.brokers, a.kafka);
            set(&mut cfg.node_id, a.node_id);
            cfg.validate()?;
            cfg.require_database()?;
            init_logs(&cfg);
            crate::distributed::run_worker(cfg).await
        }
        Command::Cluster(ClusterCmd::Status { database_url, kafka, output }) => {
            let mut cfg = load(cli.config.as_deref())?;
            set(&mut cfg.database.url, database_url);
            set(&mut cfg.kafka.brokers, kafka);
            cfg.validate()?;
            cfg.require_database()?;
            crate::distributed::cluster_status(cfg, output).await
        }
        Command::Migrate(a) => {
            let mut cfg = load(cli.config.as_deref())?;
            if let Some(u) = a.database_url {
                cfg.database.url = u;
            }
            cfg.validate()?;
            let url = cfg.dev_database_url()?;
            cronhook_store::open(&url, cfg.shard_count).await?;
            println!("migrations applied to {}", redact_url(&url));
            Ok(())
        }
        Command::Config => {
            let cfg = load(cli.config.as_deref())?;
            cfg.validate()?;
            print!("{}", cronhook_runtime::config::to_toml(&cfg)?);
            Ok(())
        }
        Command::Schedules(c) => crate::client::schedules(c).await,
        Command::Runs(c) => crate::client::runs(c).await,
        Command::Ticks(c) => crate::client::ticks(c).await,
    }
}

fn set(field: &mut String, flag: Option<String>) {
    if let Some(v) = flag {
        *field = v;
    }
}

/// Hides the password of a database URL for display.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}
