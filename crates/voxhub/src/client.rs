//! The command-line client's connection to a voxhub server: stored credentials and one
//! request helper that turns error bodies into readable messages.

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::PathBuf;

/// What `voxhub login` stores, in `credentials.toml` in the user's config directory.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Credentials {
    pub server: String,
    pub username: String,
    pub token: String,
    pub token_id: i64,
}

pub fn config_dir() -> Result<PathBuf> {
    if let Ok(dir) = std::env::var("VOXHUB_CONFIG_DIR") {
        return Ok(PathBuf::from(dir));
    }
    Ok(dirs::config_dir()
        .context("cannot find your configuration directory; set VOXHUB_CONFIG_DIR to a folder for voxhub's login")?
        .join("voxhub"))
}

fn credentials_path() -> Result<PathBuf> {
    Ok(config_dir()?.join("credentials.toml"))
}

pub fn load_credentials() -> Result<Option<Credentials>> {
    let path = credentials_path()?;
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(Some(toml::from_str(&text).with_context(|| {
            format!(
                "the login file {} is damaged; run `voxhub login` again",
                path.display()
            )
        })?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("failed to read {}", path.display())),
    }
}

/// Writes the credentials readable by their owner only.
pub fn save_credentials(credentials: &Credentials) -> Result<PathBuf> {
    let path = credentials_path()?;
    let dir = path.parent().expect("credentials live in a directory");
    std::fs::create_dir_all(dir).with_context(|| format!("failed to create {}", dir.display()))?;
    let text = toml::to_string(credentials)?;
    let tmp = path.with_extension("toml.tmp");
    {
        use std::io::Write;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options
            .open(&tmp)
            .with_context(|| format!("failed to write {}", tmp.display()))?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, &path)?;
    Ok(path)
}

pub fn forget_credentials() -> Result<()> {
    let path = credentials_path()?;
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("failed to remove {}", path.display())),
    }
}

/// A connection to one server, with or without a token.
pub struct Client {
    http: reqwest::Client,
    pub server: String,
    token: Option<String>,
}

impl Client {
    pub fn new(server: &str, token: Option<String>) -> Result<Self> {
        let server = server.trim_end_matches('/').to_string();
        if !(server.starts_with("http://") || server.starts_with("https://")) {
            bail!(
                "the server address must start with http:// or https://, e.g. http://127.0.0.1:8080"
            );
        }
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(60))
            .user_agent(concat!("voxhub-cli/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            http,
            server,
            token,
        })
    }

    /// A client for the server and token from `--server`/`VOXHUB_URL`, `VOXHUB_TOKEN` or the login file.
    pub fn from_environment(server_flag: Option<&str>) -> Result<Self> {
        let stored = load_credentials()?;
        let token = std::env::var("VOXHUB_TOKEN")
            .ok()
            .or_else(|| stored.as_ref().map(|c| c.token.clone()));
        let server = server_flag
            .map(str::to_string)
            .or_else(|| std::env::var("VOXHUB_URL").ok())
            .or_else(|| stored.as_ref().map(|c| c.server.clone()));
        let Some(server) = server else {
            bail!("you are not logged in; run `voxhub login --server URL` first");
        };
        if token.is_none() {
            bail!("you are not logged in; run `voxhub login --server {server}` first");
        }
        Self::new(&server, token)
    }

    /// Sends a request and returns the JSON answer (or `Null` for an empty one).
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value> {
        let url = format!("{}{}", self.server, path);
        let mut request = self.http.request(method, &url);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.with_context(|| {
            format!(
                "cannot reach the voxhub server at {}; check the address and that it is running",
                self.server
            )
        })?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        if status.is_success() {
            if text.trim().is_empty() {
                return Ok(Value::Null);
            }
            return serde_json::from_str(&text).with_context(|| {
                format!("the server at {} did not answer with JSON", self.server)
            });
        }
        let message = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
            .unwrap_or_else(|| format!("the server answered {status}"));
        bail!("{message}")
    }

    /// Sends a request and returns the raw answer (for logs and files); errors are read
    /// from the error body like [`Client::call`].
    pub async fn raw(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Vec<u8>>,
        timeout: Option<std::time::Duration>,
    ) -> Result<reqwest::Response> {
        let url = format!("{}{}", self.server, path);
        let mut request = self.http.request(method, &url);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/octet-stream")
                .body(body);
        }
        if let Some(timeout) = timeout {
            request = request.timeout(timeout);
        }
        let response = request.send().await.with_context(|| {
            format!(
                "cannot reach the voxhub server at {}; check the address and that it is running",
                self.server
            )
        })?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        let message = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
            .unwrap_or_else(|| format!("the server answered {status}"));
        bail!("{message}")
    }

    /// Posts a multipart form (an upload) with its own time limit and returns the status with
    /// the answer (JSON, or the text as a JSON string), error answers included, so the caller
    /// can react to a refusal (413: send fewer files at once).
    pub async fn post_form(
        &self,
        path: &str,
        form: reqwest::multipart::Form,
        timeout: std::time::Duration,
    ) -> Result<(reqwest::StatusCode, Value)> {
        let url = format!("{}{}", self.server, path);
        let mut request = self.http.post(&url).multipart(form).timeout(timeout);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.with_context(|| {
            format!(
                "cannot reach the voxhub server at {} or the upload broke off; check the address and that it is running",
                self.server
            )
        })?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        let answer = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok((status, answer))
    }

    pub async fn get(&self, path: &str) -> Result<Value> {
        self.call(reqwest::Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Result<Value> {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }
}

/// Escapes a value for use in a query string.
pub fn query_escape(raw: &str) -> String {
    raw.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
