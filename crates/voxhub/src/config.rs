//! Server configuration: embedded defaults, then a TOML file, then `VOXHUB_SECTION__KEY`
//! environment variables, then command-line flags. Parsed once at start-up into typed
//! values; an unknown key anywhere is an error that names it.

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Environment variables of the command-line client, which the server ignores.
const CLIENT_VARIABLES: &[&str] = &["VOXHUB_URL", "VOXHUB_TOKEN", "VOXHUB_CONFIG_DIR"];

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub auth: AuthConfig,
    pub log: LogConfig,
    pub workloads: WorkloadsConfig,
    pub node: NodeConfig,
    pub instances: InstancesConfig,
    pub imaging: ImagingConfig,
    /// Password of the first admin account, used only when the database is created.
    /// Set it with `VOXHUB_ADMIN_PASSWORD`; when absent a random one is printed once.
    pub admin_password: Option<Secret>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address and port to listen on. Default `127.0.0.1:8080`.
    pub listen: SocketAddr,
    /// Where the database and data live. Default `./voxhub-data`.
    pub data_dir: PathBuf,
    /// The address people open in their browser, if it differs from `listen`
    /// (behind a reverse proxy). An `https://` address also marks cookies Secure.
    pub public_url: Option<String>,
    /// Take client addresses from `X-Forwarded-For`. Only behind a trusted reverse proxy.
    pub trust_forwarded_for: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// How long a login lasts, in hours.
    pub session_hours: i64,
    /// Failed logins for one account within the window before further tries are refused.
    pub max_failures_per_username: usize,
    /// Failed logins from one network address within the window before further tries are
    /// refused. Raise it when a whole class logs in through one NAT address.
    pub max_failures_per_address: usize,
    /// The throttling window, in seconds.
    pub failure_window_s: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkloadsConfig {
    /// The longest time limit anyone may ask for, e.g. `12h`.
    pub max_time_limit: String,
    /// The time limit when none is given.
    pub default_time_limit: String,
    /// Seconds between SIGTERM and SIGKILL when a workload is stopped or runs out of time.
    pub grace_s: u64,
    /// Largest log kept per workload, in MiB; older output is dropped with a marker.
    pub log_cap_mib: u64,
    /// Running workloads per user at once; 0 means no limit.
    pub max_running_per_user: usize,
    /// Every this many seconds of waiting raise a queued workload's priority by one.
    pub aging_interval_s: i64,
    /// Let smaller workloads run ahead of a blocked one when they cannot delay it.
    pub backfill: bool,
    pub priority_admin: i32,
    pub priority_teacher: i32,
    pub priority_student: i32,
    /// Largest file accepted by one workspace upload, in MiB.
    pub max_upload_mib: usize,
    /// Run each user's workloads as their own operating-system user (`first_uid + user
    /// id`) so nobody's workload can read another's files. Needs the server to run as root;
    /// otherwise every workload runs as the server's user, which the log warns about.
    pub separate_users: bool,
    /// The first user and group id handed to workloads.
    pub first_uid: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeConfig {
    /// The machine's name in the queue.
    pub name: String,
    /// CPU cores workloads may use; 0 means all cores of this machine.
    pub cpus: f64,
    /// Memory workloads may use, e.g. `16G`; empty means 90 % of this machine's memory.
    pub memory: String,
    /// GPU device indices workloads may use, e.g. `[0, 1]`; absent means every GPU NVML finds.
    pub gpus: Option<Vec<u32>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InstancesConfig {
    /// The `jupyter` command, e.g. `/opt/voxhub/jupyter-venv/bin/jupyter`.
    pub jupyter: String,
    /// Seconds JupyterLab may take to answer before the launch counts as failed.
    pub startup_timeout_s: i64,
    /// The sizes people can choose when they launch an environment.
    pub sizes: Vec<SizeConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SizeConfig {
    pub name: String,
    pub cpus: f64,
    pub memory: String,
    #[serde(default)]
    pub gpus: u32,
}

const DEFAULT_JUPYTER: &str = "/opt/voxhub/jupyter-venv/bin/jupyter";

impl Default for WorkloadsConfig {
    fn default() -> Self {
        Self {
            max_time_limit: "12h".into(),
            default_time_limit: "2h".into(),
            grace_s: 10,
            log_cap_mib: 16,
            max_running_per_user: 2,
            aging_interval_s: 60,
            backfill: true,
            priority_admin: 30,
            priority_teacher: 20,
            priority_student: 10,
            max_upload_mib: 512,
            separate_users: true,
            first_uid: 200_000,
        }
    }
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            name: "local".into(),
            cpus: 0.0,
            memory: String::new(),
            gpus: None,
        }
    }
}

impl Default for InstancesConfig {
    fn default() -> Self {
        Self {
            // The place `.ci/run` and the README install it; otherwise whatever is on PATH.
            jupyter: if std::path::Path::new(DEFAULT_JUPYTER).exists() {
                DEFAULT_JUPYTER.into()
            } else {
                "jupyter".into()
            },
            startup_timeout_s: 300,
            sizes: vec![
                SizeConfig {
                    name: "small".into(),
                    cpus: 1.0,
                    memory: "2G".into(),
                    gpus: 0,
                },
                SizeConfig {
                    name: "medium".into(),
                    cpus: 2.0,
                    memory: "4G".into(),
                    gpus: 0,
                },
                SizeConfig {
                    name: "gpu".into(),
                    cpus: 2.0,
                    memory: "8G".into(),
                    gpus: 1,
                },
            ],
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ImagingConfig {
    /// De-identify every uploaded file (DICOM PS3.15 Basic Profile). Turn off only for data
    /// that holds no patient information.
    pub deidentify: bool,
    /// `shift` moves every date of a patient by the same secret number of days (intervals
    /// survive); `remove` empties them.
    pub dates: String,
    /// Keep private (vendor) attributes; they often hold names and IDs.
    pub keep_private_tags: bool,
    /// Keep Study Description, Series Description and Protocol Name, cleaned of the file's
    /// names, IDs, institution, dates and long numbers (PS3.15 "Clean Descriptors"), instead
    /// of removing them; helps people find their way through a dataset.
    pub clean_descriptors: bool,
    /// The file holding the secret that keys pseudonyms, new UIDs and date shifts; created
    /// (random, mode 0600) on first start. Default `<data_dir>/deid.secret`. Keep it: with a
    /// new secret, new uploads of the same patient get a different pseudonym.
    pub secret_file: Option<PathBuf>,
    /// Largest upload at once, in MiB (the command line splits folders into several uploads).
    pub max_upload_mib: u64,
    /// Largest single file, inside a zip too, in MiB.
    pub max_file_mib: u64,
    /// Memory for decoded volumes kept for the viewer, in MiB.
    pub volume_cache_mib: u64,
}

impl Default for ImagingConfig {
    fn default() -> Self {
        Self {
            deidentify: true,
            dates: "shift".into(),
            keep_private_tags: false,
            clean_descriptors: false,
            secret_file: None,
            max_upload_mib: 4096,
            max_file_mib: 1024,
            volume_cache_mib: 1024,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `error`, `warn`, `info`, `debug` or a tracing filter such as `voxhub=debug`.
    pub level: String,
}

/// A secret value that never prints.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".parse().expect("valid default address"),
            data_dir: PathBuf::from("./voxhub-data"),
            public_url: None,
            trust_forwarded_for: false,
        }
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        let policy = voxhub_core::throttle::ThrottlePolicy::default();
        Self {
            session_hours: 12,
            max_failures_per_username: policy.max_failures_per_username,
            max_failures_per_address: policy.max_failures_per_address,
            failure_window_s: policy.window_ms / 1000,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".into(),
        }
    }
}

/// Flags of `voxhub serve` that override the configuration.
#[derive(Debug, Default)]
pub struct Overrides {
    pub listen: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
}

impl Config {
    /// Builds the configuration from its layers.
    pub fn load(
        file: Option<&Path>,
        env: &[(String, String)],
        overrides: Overrides,
    ) -> Result<Self> {
        let mut table = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).with_context(|| {
                    format!("failed to read the configuration file {}", path.display())
                })?;
                text.parse::<toml::Table>().with_context(|| {
                    format!(
                        "the configuration file {} is not valid TOML",
                        path.display()
                    )
                })?
            }
            None => toml::Table::new(),
        };
        for (name, value) in env {
            let Some(rest) = name.strip_prefix("VOXHUB_") else {
                continue;
            };
            if CLIENT_VARIABLES.contains(&name.as_str()) || rest.is_empty() {
                continue;
            }
            let path: Vec<String> = rest.split("__").map(str::to_lowercase).collect();
            insert_path(&mut table, &path, parse_env_value(&path.join("."), value)).with_context(
                || format!("the environment variable {name} does not fit the configuration"),
            )?;
        }
        let mut config: Config = toml::Value::Table(table).try_into().map_err(|error: toml::de::Error| {
            anyhow::anyhow!(
                "invalid configuration: {}; see the README section 'Configuration' for every key",
                error.message()
            )
        })?;
        if let Some(listen) = overrides.listen {
            config.server.listen = listen;
        }
        if let Some(data_dir) = overrides.data_dir {
            config.server.data_dir = data_dir;
        }
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<()> {
        if !(1..=24 * 31).contains(&self.auth.session_hours) {
            bail!("invalid configuration: auth.session_hours must be between 1 and 744");
        }
        if self.auth.max_failures_per_username == 0 || self.auth.max_failures_per_address == 0 {
            bail!(
                "invalid configuration: auth.max_failures_per_username and auth.max_failures_per_address must be at least 1"
            );
        }
        if self.auth.failure_window_s == 0 {
            bail!("invalid configuration: auth.failure_window_s must be at least 1");
        }
        if let Some(url) = &self.server.public_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            bail!("invalid configuration: server.public_url must start with http:// or https://");
        }
        Ok(())
    }

    /// The address to show people.
    pub fn public_url(&self, bound: SocketAddr) -> String {
        self.server
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{bound}"))
    }
}

/// Keys whose values are always text, however they look (a password may be all digits).
const TEXT_KEYS: &[&str] = &[
    "admin_password",
    "server.listen",
    "server.data_dir",
    "server.public_url",
    "log.level",
    "imaging.dates",
    "imaging.secret_file",
];

/// Environment values are typed like TOML values when they read as one (`true`, `8080`),
/// and are strings otherwise; keys in [`TEXT_KEYS`] always stay strings.
fn parse_env_value(key: &str, raw: &str) -> toml::Value {
    if TEXT_KEYS.contains(&key) {
        return toml::Value::String(raw.to_string());
    }
    match format!("v = {raw}").parse::<toml::Table>() {
        Ok(mut table) => match table.remove("v") {
            Some(
                value @ (toml::Value::Boolean(_) | toml::Value::Integer(_) | toml::Value::Float(_)),
            ) => value,
            _ => toml::Value::String(raw.to_string()),
        },
        Err(_) => toml::Value::String(raw.to_string()),
    }
}

fn insert_path(table: &mut toml::Table, path: &[String], value: toml::Value) -> Result<()> {
    let (last, parents) = path.split_last().expect("path has at least one part");
    let mut current = table;
    for part in parents {
        let entry = current
            .entry(part.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        current = entry
            .as_table_mut()
            .with_context(|| format!("'{part}' is a value, not a section"))?;
    }
    current.insert(last.clone(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_listen_on_loopback_8080_with_a_local_data_dir() {
        let config = Config::load(None, &[], Overrides::default()).unwrap();
        assert_eq!(config.server.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(config.server.data_dir, PathBuf::from("./voxhub-data"));
    }

    #[test]
    fn layers_apply_in_order_file_then_environment_then_flags() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("voxhub.toml");
        std::fs::write(&file, "[server]\nlisten = \"127.0.0.1:9000\"\ndata_dir = \"/srv/a\"\n[auth]\nsession_hours = 8\n").unwrap();
        let config = Config::load(
            Some(&file),
            &env(&[
                ("VOXHUB_SERVER__DATA_DIR", "/srv/b"),
                ("VOXHUB_AUTH__SESSION_HOURS", "4"),
                ("VOXHUB_URL", "x"),
            ]),
            Overrides {
                data_dir: Some("/srv/c".into()),
                listen: None,
            },
        )
        .unwrap();
        assert_eq!(config.server.listen.to_string(), "127.0.0.1:9000");
        assert_eq!(config.server.data_dir, PathBuf::from("/srv/c"));
        assert_eq!(config.auth.session_hours, 4);
    }

    #[test]
    fn the_readme_example_configuration_loads_with_every_key_it_names() {
        // The README's configuration block is what operators copy: every key in it must
        // exist (unknown keys stop the server) and hold a value of the right type.
        let readme = include_str!("../../../README.md");
        let start = readme
            .find("```toml\n[server]")
            .expect("README has a configuration block");
        let block = &readme[start + "```toml\n".len()..];
        let block = &block[..block.find("```").expect("the block ends")];
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("voxhub.toml");
        std::fs::write(&file, block).unwrap();
        let config = Config::load(Some(&file), &[], Overrides::default())
            .unwrap_or_else(|error| panic!("{error:#}"));
        assert!(config.imaging.deidentify);
        assert!(!config.imaging.clean_descriptors);
        let config = Config::load(
            Some(&file),
            &env(&[("VOXHUB_IMAGING__CLEAN_DESCRIPTORS", "true")]),
            Overrides::default(),
        )
        .unwrap();
        assert!(config.imaging.clean_descriptors);
    }

    #[test]
    fn unknown_keys_in_the_file_or_environment_are_errors_that_name_them() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("voxhub.toml");
        std::fs::write(&file, "[server]\nlisten_addr = \"127.0.0.1:9000\"\n").unwrap();
        let error = Config::load(Some(&file), &[], Overrides::default()).unwrap_err();
        assert!(format!("{error:#}").contains("listen_addr"), "{error:#}");
        let error = Config::load(
            None,
            &env(&[("VOXHUB_SERVR__LISTEN", "x")]),
            Overrides::default(),
        )
        .unwrap_err();
        assert!(format!("{error:#}").contains("servr"), "{error:#}");
    }

    #[test]
    fn an_all_digit_admin_password_stays_text() {
        let config = Config::load(
            None,
            &env(&[("VOXHUB_ADMIN_PASSWORD", "12345678901234")]),
            Overrides::default(),
        )
        .unwrap();
        assert_eq!(config.admin_password.unwrap().0, "12345678901234");
    }

    #[test]
    fn wrong_types_and_values_are_refused() {
        assert!(
            Config::load(
                None,
                &env(&[("VOXHUB_SERVER__LISTEN", "not an address")]),
                Overrides::default()
            )
            .is_err()
        );
        assert!(
            Config::load(
                None,
                &env(&[("VOXHUB_AUTH__SESSION_HOURS", "0")]),
                Overrides::default()
            )
            .is_err()
        );
    }

    #[test]
    fn the_admin_password_comes_from_the_environment_and_never_prints() {
        let config = Config::load(
            None,
            &env(&[("VOXHUB_ADMIN_PASSWORD", "a long secret value")]),
            Overrides::default(),
        )
        .unwrap();
        assert_eq!(
            config.admin_password.as_ref().unwrap().0,
            "a long secret value"
        );
        assert!(!format!("{config:?}").contains("long secret"));
    }
}
