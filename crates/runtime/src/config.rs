//! Layered configuration: checked-in defaults (the type's `Default`), then a TOML file,
//! then `CRONHOOK_*` environment variables, then command-line flags (applied by the caller
//! on the result).
//!
//! Environment variables map onto the file's keys: `CRONHOOK_<SECTION>_<KEY>` sets
//! `[section] key` (`CRONHOOK_WORKER_MAX_IN_FLIGHT=64` is `[worker] max_in_flight = 64`),
//! and `CRONHOOK_<KEY>` a top-level key. Section names never contain `_`.

use std::path::Path;

use serde::Serialize;
use serde::de::DeserializeOwned;
use toml::{Table, Value};

/// Errors of loading configuration; each names the source and the key.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be read.
    #[error("config file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML.
    #[error("config file {path}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// Why.
        message: String,
    },
    /// A value has the wrong type or an unknown key was given.
    #[error("config: {0}")]
    Invalid(String),
}

/// Loads `T` from its defaults, the optional `file`, and the environment `vars`
/// (pass `std::env::vars()`), in that order of precedence (later wins).
pub fn load<T>(
    file: Option<&Path>,
    vars: impl IntoIterator<Item = (String, String)>,
    sections: &[&str],
) -> Result<T, Error>
where
    T: DeserializeOwned + Serialize + Default,
{
    let mut merged = Value::try_from(T::default())
        .map_err(|e| Error::Invalid(e.to_string()))?
        .as_table()
        .cloned()
        .unwrap_or_default();
    if let Some(path) = file {
        let text =
            std::fs::read_to_string(path).map_err(|source| Error::Read { path: path.display().to_string(), source })?;
        let table: Table = text
            .parse()
            .map_err(|e: toml::de::Error| Error::Parse { path: path.display().to_string(), message: e.to_string() })?;
        merge(&mut merged, table);
    }
    merge(&mut merged, env_table(vars, sections));
    // Round-trip through text: toml's errors then quote the offending line, so the message
    // names the key (`max_in_flight = "many"`), not just the expected type.
    let text = toml::to_string(&Value::Table(merged)).map_err(|e| Error::Invalid(e.to_string()))?;
    toml::from_str(&text).map_err(|e: toml::de::Error| Error::Invalid(e.to_string()))
}

/// Renders a config as TOML (for `cronhook config`).
pub fn to_toml<T: Serialize>(cfg: &T) -> Result<String, Error> {
    toml::to_string_pretty(cfg).map_err(|e| Error::Invalid(e.to_string()))
}

fn merge(into: &mut Table, from: Table) {
    for (k, v) in from {
        match (into.get_mut(&k), v) {
            (Some(Value::Table(a)), Value::Table(b)) => merge(a, b),
            (_, v) => {
                into.insert(k, v);
            }
        }
    }
}

fn env_table(vars: impl IntoIterator<Item = (String, String)>, sections: &[&str]) -> Table {
    let mut t = Table::new();
    for (name, raw) in vars {
        let Some(rest) = name.strip_prefix("CRONHOOK_") else { continue };
        let key = rest.to_ascii_lowercase();
        // CRONHOOK_TEST_*, the CLI's CRONHOOK_API/OUTPUT, CRONHOOK_CONFIG (the file itself) and
        // CRONHOOK_BIN (tests) are not settings of the server.
        if key.starts_with("test_") || matches!(key.as_str(), "api" | "output" | "config" | "bin") {
            continue;
        }
        let value = parse_scalar(&raw);
        match sections.iter().find(|s| key.starts_with(&format!("{s}_"))) {
            Some(section) => {
                let sub = key[section.len() + 1..].to_owned();
                if let Value::Table(st) = t.entry((*section).to_owned()).or_insert_with(|| Value::Table(Table::new())) {
                    st.insert(sub, value);
                }
            }
            None => {
                t.insert(key, value);
            }
        }
    }
    t
}

fn parse_scalar(raw: &str) -> Value {
    if let Ok(i) = raw.parse::<i64>() {
        return Value::Integer(i);
    }
    if let Ok(b) = raw.parse::<bool>() {
        return Value::Boolean(b);
    }
    if let Ok(f) = raw.parse::<f64>()
        && raw.contains('.')
    {
        return Value::Float(f);
    }
    Value::String(raw.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    #[serde(default, deny_unknown_fields)]
    struct Cfg {
        name: String,
        worker: Worker,
    }

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    #[serde(default, deny_unknown_fields)]
    struct Worker {
        max_in_flight: u32,
        label: String,
    }

    impl Default for Cfg {
        fn default() -> Self {
            Self { name: "default".into(), worker: Worker::default() }
        }
    }

    impl Default for Worker {
        fn default() -> Self {
            Self { max_in_flight: 8, label: "w".into() }
        }
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(a, b)| ((*a).to_owned(), (*b).to_owned())).collect()
    }

    #[test]
    fn layers_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "name = \"file\"\n[worker]\nmax_in_flight = 16\nlabel = \"from-file\"\n").unwrap();
        let cfg: Cfg =
            load(Some(&file), env(&[("CRONHOOK_WORKER_MAX_IN_FLIGHT", "32"), ("PATH", "/bin")]), &["worker"]).unwrap();
        assert_eq!(cfg.name, "file");
        assert_eq!(cfg.worker.max_in_flight, 32, "env beats file");
        assert_eq!(cfg.worker.label, "from-file");
        let cfg: Cfg = load(None, env(&[]), &["worker"]).unwrap();
        assert_eq!(cfg, Cfg::default());
    }

    #[test]
    fn errors_name_the_key() {
        let e = load::<Cfg>(None, env(&[("CRONHOOK_WORKER_MAX_IN_FLIGHT", "many")]), &["worker"]).unwrap_err();
        assert!(e.to_string().contains("max_in_flight"), "{e}");
        let e = load::<Cfg>(None, env(&[("CRONHOOK_WORKER_COLOUR", "red")]), &["worker"]).unwrap_err();
        assert!(e.to_string().contains("colour"), "{e}");
    }
}
