//! A real voxhub server started in-process on 127.0.0.1 with a fresh data directory, and
//! typed helpers to call its API.
//!
//! Password hashing is deliberately slow (argon2id), so fixtures avoid it where the test is
//! not about passwords: [`TestApp::user`] writes the account straight into the store with a
//! hash computed once per test binary, and hands out a session token minted in the store.
//! Tests about logging in use the API ([`TestApp::login`]) and pay for the hash.

#![allow(dead_code)]

use reqwest::header::HeaderMap;
use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use voxhub_core::audit::{NewEntry, Outcome};
use voxhub_core::names::Username;
use voxhub_core::password::Password;
use voxhub_core::role::Role;
use voxhub_store::Store;
use voxhub_store::tokens::TokenKind;
use voxhub_store::users::NewUser;
use voxhub_web::runtime::{Runtime, WorkloadSettings};
use voxhub_web::{AppState, WebSettings};

/// The password of every account made by [`TestApp::user`] and of the admin.
pub const PASSWORD: &str = "correct horse battery staple";

/// The database file inside a data directory, as the binary names it.
pub const DATABASE_FILE: &str = "voxhub.db";

/// The argon2id hash of [`PASSWORD`], computed once for the whole test binary.
pub fn password_hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| {
        Password::new_checked(PASSWORD, "nobody")
            .expect("test password meets the policy")
            .hash()
    })
}

/// An account with a live session token.
#[derive(Debug, Clone)]
pub struct TestUser {
    pub id: i64,
    pub username: String,
    pub password: String,
    pub token: String,
}

/// An answer of the server: status, body (JSON, or the text as a JSON string, or null when
/// empty) and headers.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub body: Value,
    pub headers: HeaderMap,
}

impl Reply {
    pub fn pair(self) -> (StatusCode, Value) {
        (self.status, self.body)
    }
}

/// The imaging settings of test servers: de-identification on with a fixed secret, and
/// series derived as soon as they stop changing.
pub fn imaging_settings() -> voxhub_web::datasets::ImagingSettings {
    voxhub_web::datasets::ImagingSettings {
        deid: voxhub_imaging::deid::DeidConfig {
            secret: b"test-secret-of-this-installation-0123456789".to_vec(),
            ..Default::default()
        },
        derive_settle_ms: 100,
        ..Default::default()
    }
}

pub struct TestApp {
    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub url: String,
    pub http: reqwest::Client,
    pub store: Store,
    pub dir: tempfile::TempDir,
    pub admin: TestUser,
    settings: WebSettings,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    counter: AtomicUsize,
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(WebSettings::default()).await
    }

    pub async fn spawn_with(settings: WebSettings) -> Self {
        Self::start(
            tempfile::tempdir().expect("temporary data directory"),
            settings,
            None,
            imaging_settings(),
        )
        .await
    }

    /// A server whose imaging side has `imaging` settings instead of [`imaging_settings`].
    pub async fn spawn_with_imaging(imaging: voxhub_web::datasets::ImagingSettings) -> Self {
        Self::start(
            tempfile::tempdir().expect("temporary data directory"),
            WebSettings::default(),
            None,
            imaging,
        )
        .await
    }

    /// A server on an existing data directory (e.g. one a stopped app left behind).
    pub async fn spawn_on(dir: tempfile::TempDir) -> Self {
        Self::start(dir, WebSettings::default(), None, imaging_settings()).await
    }

    /// A server that runs workloads with the real local-process executor (supervised by
    /// the `voxhub` binary) on a simulated node of `cpus` cores, `memory_mib` and no GPUs.
    pub async fn spawn_with_workloads(
        cpus: u64,
        memory_mib: u64,
        settings: WorkloadSettings,
    ) -> Self {
        let node = voxhub_scheduler::Node {
            name: "local".into(),
            cpu_millis: cpus * 1000,
            memory_mib,
            gpu_devices: Vec::new(),
        };
        Self::start(
            tempfile::tempdir().expect("temporary data directory"),
            WebSettings::default(),
            Some((node, settings)),
            imaging_settings(),
        )
        .await
    }

    /// A server that runs workloads on the given node (e.g. one that declares GPUs; no GPU
    /// is needed: the grant only becomes `CUDA_VISIBLE_DEVICES`).
    pub async fn spawn_on_node(node: voxhub_scheduler::Node, settings: WorkloadSettings) -> Self {
        Self::start(
            tempfile::tempdir().expect("temporary data directory"),
            WebSettings::default(),
            Some((node, settings)),
            imaging_settings(),
        )
        .await
    }

    async fn start(
        dir: tempfile::TempDir,
        settings: WebSettings,
        workloads: Option<(voxhub_scheduler::Node, WorkloadSettings)>,
        imaging: voxhub_web::datasets::ImagingSettings,
    ) -> Self {
        let store = Store::open_sqlite(&dir.path().join(DATABASE_FILE))
            .await
            .expect("open the database");
        let admin_id = bootstrap_admin(&store).await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("bound address");
        let (shutdown, stop) = tokio::sync::oneshot::channel::<()>();
        let runtime = workloads.map(|(node, workload_settings)| {
            let run_dir = dir.path().join("run");
            std::fs::create_dir_all(&run_dir).unwrap();
            voxhub_web::runtime::harden_data_dir(dir.path(), &[DATABASE_FILE]).unwrap();
            let executor = voxhub_exec::local::LocalExecutor::new(
                run_dir,
                voxhub_exec::local::SupervisorCommand {
                    program: voxhub_bin().into(),
                    args: vec!["supervise".into()],
                },
            );
            Arc::new(Runtime::new(
                Arc::new(executor),
                node,
                workload_settings,
                dir.path().join("workspaces"),
            ))
        });
        let with_runtime = runtime.is_some();
        let imaging = Arc::new(voxhub_web::datasets::Imaging::new(
            imaging,
            Arc::new(
                voxhub_storage::LocalStore::new(dir.path().join("objects")).expect("object store"),
            ),
            dir.path().join("spool"),
        ));
        let state = AppState::with_parts(store.clone(), settings.clone(), runtime, Some(imaging));
        if with_runtime {
            voxhub_web::runtime::spawn_loop(state.clone());
        }
        voxhub_web::datasets::derive::spawn(state.clone());
        let server = tokio::spawn(voxhub_web::serve(listener, state, async move {
            stop.await.ok();
        }));
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("http client");
        let mut app = Self {
            url: format!("http://{addr}"),
            http,
            store,
            dir,
            admin: TestUser {
                id: admin_id,
                username: "admin".into(),
                password: PASSWORD.into(),
                token: String::new(),
            },
            settings,
            shutdown: Some(shutdown),
            server: Some(server),
            counter: AtomicUsize::new(0),
        };
        app.admin.token = app.session_for(admin_id).await;
        app
    }

    /// The data directory (holding `voxhub.db`).
    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn db_path(&self) -> PathBuf {
        self.dir.path().join(DATABASE_FILE)
    }

    /// Stops the server, closes the database and hands back the data directory.
    pub async fn stop(self) -> (tempfile::TempDir, WebSettings) {
        let TestApp {
            http,
            store,
            dir,
            shutdown,
            server,
            settings,
            ..
        } = self;
        drop(http);
        if let Some(shutdown) = shutdown {
            shutdown.send(()).ok();
        }
        if let Some(server) = server {
            match tokio::time::timeout(Duration::from_secs(10), server).await {
                Ok(joined) => joined
                    .expect("server task")
                    .expect("server stopped cleanly"),
                Err(_) => panic!("the server did not stop within 10 s"),
            }
        }
        store.close().await;
        (dir, settings)
    }

    /// Stops the server and starts a new one on the same data directory.
    pub async fn restart(self) -> Self {
        let (dir, settings) = self.stop().await;
        Self::start(dir, settings, None, imaging_settings()).await
    }

    fn next(&self) -> usize {
        self.counter.fetch_add(1, Ordering::Relaxed) + 1
    }

    // -----------------------------------------------------------------------------------
    // Fixtures written straight into the store (fast: no password hashing)
    // -----------------------------------------------------------------------------------

    /// A new account with the given platform role and a live session token.
    pub async fn user(&self, role: Role) -> TestUser {
        let n = self.next();
        self.named_user(
            &format!("{}{n}", role.as_str()),
            &format!("Test {} {n}", role.as_str()),
            role,
        )
        .await
    }

    pub async fn named_user(&self, username: &str, display_name: &str, role: Role) -> TestUser {
        let name = Username::parse(username).expect("valid test username");
        let mut tx = self.store.begin().await.expect("begin");
        let user = tx
            .create_user(NewUser {
                username: &name,
                display_name,
                role,
                password_hash: password_hash(),
            })
            .await
            .expect("create test user");
        tx.commit().await.expect("commit");
        let token = self.session_for(user.id).await;
        TestUser {
            id: user.id,
            username: user.username,
            password: PASSWORD.into(),
            token,
        }
    }

    /// A fresh login session for an account, minted in the store.
    pub async fn session_for(&self, user_id: i64) -> String {
        self.token_for(user_id, TokenKind::Session, voxhub_store::now_s() + 3600)
            .await
    }

    /// A token of any kind and expiry (in the past, too), minted in the store.
    pub async fn token_for(&self, user_id: i64, kind: TokenKind, expires_at: i64) -> String {
        let mut tx = self.store.begin().await.expect("begin");
        let (_, secret) = tx
            .create_token(user_id, kind, "test", expires_at)
            .await
            .expect("create token");
        tx.commit().await.expect("commit");
        secret.secret
    }

    /// The stored password hash of an account (to show a refused change changed nothing).
    pub async fn stored_hash(&self, user_id: i64) -> String {
        self.store
            .password_hash(user_id)
            .await
            .expect("password hash")
    }

    pub async fn user_count(&self) -> usize {
        self.store.list_users(None).await.expect("list users").len()
    }

    pub async fn user_exists(&self, username: &str) -> bool {
        self.store
            .user_by_username(username)
            .await
            .expect("lookup")
            .is_some()
    }

    // -----------------------------------------------------------------------------------
    // HTTP
    // -----------------------------------------------------------------------------------

    /// A request builder for a path, with the bearer token when `token` is not empty.
    pub fn builder(&self, method: Method, token: &str, path: &str) -> RequestBuilder {
        let request = self.http.request(method, format!("{}{}", self.url, path));
        if token.is_empty() {
            request
        } else {
            request.bearer_auth(token)
        }
    }

    /// Sends a request; panics on any 5xx, which no input may ever cause.
    pub async fn send(&self, request: RequestBuilder) -> Reply {
        let built = request.build().expect("request");
        let what = format!("{} {}", built.method(), built.url().path());
        let response = self
            .http
            .execute(built)
            .await
            .unwrap_or_else(|e| panic!("{what} failed: {e}"));
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap_or_default();
        let body = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        assert!(
            !status.is_server_error(),
            "{what} answered {status}: {body}"
        );
        Reply {
            status,
            body,
            headers,
        }
    }

    pub async fn call(
        &self,
        method: Method,
        token: &str,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self.builder(method, token, path);
        if let Some(body) = body {
            request = request.json(&body);
        }
        self.send(request).await.pair()
    }

    pub async fn get(&self, token: &str, path: &str) -> (StatusCode, Value) {
        self.call(Method::GET, token, path, None).await
    }

    pub async fn post(&self, token: &str, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, token, path, Some(body)).await
    }

    pub async fn patch(&self, token: &str, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::PATCH, token, path, Some(body)).await
    }

    pub async fn delete(&self, token: &str, path: &str) -> (StatusCode, Value) {
        self.call(Method::DELETE, token, path, None).await
    }

    /// `GET` that must succeed; returns the body.
    pub async fn get_ok(&self, token: &str, path: &str) -> Value {
        let (status, body) = self.get(token, path).await;
        assert_eq!(status, StatusCode::OK, "GET {path}: {body}");
        body
    }

    // -----------------------------------------------------------------------------------
    // Operations through the API
    // -----------------------------------------------------------------------------------

    pub async fn try_login(&self, username: &str, password: &str) -> Reply {
        self.send(
            self.builder(Method::POST, "", "/api/v1/auth/login")
                .json(&json!({"username": username, "password": password})),
        )
        .await
    }

    /// Logs in through the API and returns the session token.
    pub async fn login(&self, username: &str, password: &str) -> String {
        let reply = self.try_login(username, password).await;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "login as {username}: {}",
            reply.body
        );
        reply.body["token"]
            .as_str()
            .expect("token in the login answer")
            .to_string()
    }

    /// Creates an account through the API as the admin (hashes a password).
    pub async fn create_user(&self, username: &str, role: Role) -> Value {
        let (status, body) = self
            .post(
                &self.admin.token,
                "/api/v1/users",
                json!({"username": username, "display_name": format!("User {username}"), "role": role.as_str(), "password": PASSWORD}),
            )
            .await;
        assert_eq!(
            status,
            StatusCode::CREATED,
            "create user {username}: {body}"
        );
        body
    }

    /// Creates a class as `token` and returns its id.
    pub async fn create_class(&self, token: &str, name: &str) -> i64 {
        let (status, body) = self
            .post(
                token,
                "/api/v1/classes",
                json!({"name": name, "starts_on": "2026-09-01", "ends_on": "2027-01-31"}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "create class {name}: {body}");
        body["id"].as_i64().expect("class id")
    }

    /// Adds an account to a class as `token`.
    pub async fn add_member(
        &self,
        token: &str,
        class_id: i64,
        username: &str,
        role: &str,
    ) -> Value {
        let (status, body) = self
            .post(
                token,
                &format!("/api/v1/classes/{class_id}/members"),
                json!({"username": username, "role": role}),
            )
            .await;
        assert_eq!(
            status,
            StatusCode::OK,
            "add {username} to class {class_id}: {body}"
        );
        body
    }

    /// Creates an invite code as `token`; returns the invite.
    pub async fn create_invite(
        &self,
        token: &str,
        class_id: i64,
        role: &str,
        max_uses: i64,
    ) -> Value {
        let (status, body) = self
            .post(
                token,
                &format!("/api/v1/classes/{class_id}/invites"),
                json!({"role": role, "max_uses": max_uses, "expires_in": "14d"}),
            )
            .await;
        assert_eq!(
            status,
            StatusCode::CREATED,
            "create invite for class {class_id}: {body}"
        );
        body
    }

    /// An invite as the class's admin view shows it.
    pub async fn invite(&self, class_id: i64, invite_id: i64) -> Value {
        let invites = self
            .get_ok(
                &self.admin.token,
                &format!("/api/v1/classes/{class_id}/invites"),
            )
            .await;
        invites
            .as_array()
            .expect("invite list")
            .iter()
            .find(|i| i["id"] == invite_id)
            .cloned()
            .unwrap_or_else(|| panic!("invite {invite_id} not in class {class_id}: {invites}"))
    }

    /// Registers with an invite code (hashes a password).
    pub async fn register(&self, code: &str, username: &str) -> (StatusCode, Value) {
        self.post(
            "",
            "/api/v1/auth/register",
            json!({"invite_code": code, "username": username, "password": PASSWORD, "display_name": format!("Registered {username}")}),
        )
        .await
    }

    /// Audit entries (newest first) for a query string such as `action=user.&outcome=denied`.
    pub async fn audit(&self, query: &str) -> Vec<Value> {
        let query = if query.contains("limit=") {
            query.to_string()
        } else {
            format!("limit=1000&{query}")
        };
        let body = self
            .get_ok(&self.admin.token, &format!("/api/v1/audit?{query}"))
            .await;
        body.as_array().expect("audit list").clone()
    }

    /// The members of a class as the admin sees them.
    pub async fn members(&self, class_id: i64) -> Vec<Value> {
        self.get_ok(
            &self.admin.token,
            &format!("/api/v1/classes/{class_id}/members"),
        )
        .await
        .as_array()
        .expect("members")
        .clone()
    }
}

/// Creates the first admin exactly as `voxhub serve` does on an empty database (with the
/// test password); returns the admin's id.
async fn bootstrap_admin(store: &Store) -> i64 {
    let mut tx = store.begin().await.expect("begin");
    if tx.count_users().await.expect("count users") == 0 {
        let username = Username::parse("admin").expect("valid username");
        let user = tx
            .create_user(NewUser {
                username: &username,
                display_name: "Administrator",
                role: Role::Admin,
                password_hash: password_hash(),
            })
            .await
            .expect("create admin");
        tx.audit(NewEntry {
            actor_id: None,
            actor_name: "system".into(),
            action: "user.create".into(),
            target: format!("user:{} {}", user.id, user.username),
            source: "local".into(),
            outcome: Outcome::Success,
            detail: "first admin account created at first start".into(),
            admin_power: false,
        })
        .await
        .expect("audit");
        tx.commit().await.expect("commit");
        return user.id;
    }
    drop(tx);
    store
        .user_by_username("admin")
        .await
        .expect("lookup")
        .expect("an admin account")
        .id
}

// ---------------------------------------------------------------------------------------
// Assertions
// ---------------------------------------------------------------------------------------

/// Checks an error answer: its status, its stable code and a message that explains (not
/// just a word). Returns the message.
#[track_caller]
pub fn assert_error(reply: &(StatusCode, Value), status: u16, code: &str) -> String {
    let (actual, body) = reply;
    assert_eq!(
        actual.as_u16(),
        status,
        "expected {status} {code}, got {actual}: {body}"
    );
    assert_eq!(
        body["error"]["code"].as_str(),
        Some(code),
        "wrong error code in {body}"
    );
    let message = body["error"]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("no error message in {body}"));
    assert!(
        message.split_whitespace().count() >= 4,
        "the message should say what to do: {message:?}"
    );
    message.to_string()
}

/// Like [`assert_error`], and the error names the request field.
#[track_caller]
pub fn assert_field_error(
    reply: &(StatusCode, Value),
    status: u16,
    code: &str,
    field: &str,
) -> String {
    let message = assert_error(reply, status, code);
    assert_eq!(
        reply.1["error"]["field"].as_str(),
        Some(field),
        "wrong field in {}",
        reply.1
    );
    message
}

/// A 403 with code `forbidden` and a message.
#[track_caller]
pub fn assert_forbidden(reply: &(StatusCode, Value)) -> String {
    assert_error(reply, 403, "forbidden")
}

/// The entries whose action starts with `action`, newest first.
pub fn with_action<'a>(entries: &'a [Value], action: &str) -> Vec<&'a Value> {
    entries
        .iter()
        .filter(|e| e["action"].as_str().is_some_and(|a| a.starts_with(action)))
        .collect()
}

// ---------------------------------------------------------------------------------------
// The binary
// ---------------------------------------------------------------------------------------

pub fn voxhub_bin() -> &'static str {
    env!("CARGO_BIN_EXE_voxhub")
}

/// A `voxhub` command with a clean environment: only PATH, HOME and the given config dir.
pub fn voxhub_command(config_dir: &Path) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(voxhub_bin());
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", config_dir)
        .env("VOXHUB_CONFIG_DIR", config_dir)
        .env("HOSTNAME", "testhost")
        .kill_on_drop(true);
    command
}

/// Runs `voxhub ARGS` to completion (with `stdin` written to it, if given).
pub async fn run_voxhub(config_dir: &Path, args: &[&str], stdin: Option<&str>) -> CliOutput {
    use tokio::io::AsyncWriteExt;
    let mut command = voxhub_command(config_dir);
    command
        .args(args)
        .stdin(if stdin.is_some() {
            std::process::Stdio::piped()
        } else {
            std::process::Stdio::null()
        })
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = command.spawn().expect("start voxhub");
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("stdin");
        pipe.write_all(input.as_bytes()).await.expect("write stdin");
        drop(pipe);
    }
    let output = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("voxhub {args:?} did not finish in 60 s"))
        .expect("voxhub output");
    CliOutput::from(output)
}

#[derive(Debug)]
pub struct CliOutput {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for CliOutput {
    fn from(output: Output) -> Self {
        Self {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

impl CliOutput {
    #[track_caller]
    pub fn assert_success(&self) -> &Self {
        assert_eq!(
            self.code,
            Some(0),
            "expected success:\nstdout: {}\nstderr: {}",
            self.stdout,
            self.stderr
        );
        self
    }
}

/// Runs SQL directly on a database file, as someone with access to the file could, through
/// its own SQLite connection (not the server's); returns (ok, error message).
pub fn sqlite3(db: &Path, sql: &str) -> (bool, String) {
    let (db, sql) = (db.to_path_buf(), sql.to_string());
    // A thread of its own, so this blocking helper can be called from async tests.
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            use sqlx::Connection;
            let options = sqlx::sqlite::SqliteConnectOptions::new().filename(&db);
            let mut connection = sqlx::SqliteConnection::connect_with(&options)
                .await
                .expect("the database file opens");
            let result = sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(&mut connection)
                .await;
            connection.close().await.ok();
            match result {
                Ok(_) => (true, String::new()),
                Err(error) => (false, error.to_string()),
            }
        })
    })
    .join()
    .unwrap()
}

// ---------------------------------------------------------------------------------------
// Imaging: the reference tools `.ci/run` installs, uploads, and waiting for derived series
// ---------------------------------------------------------------------------------------

pub use crate::common::imaging_python;

/// One of pydicom's bundled test files.
pub fn pydicom_file(name: &str) -> PathBuf {
    let lib = Path::new("/opt/voxhub/imaging-venv/lib");
    std::fs::read_dir(lib)
        .expect("the imaging venv")
        .flatten()
        .map(|entry| {
            entry
                .path()
                .join("site-packages/pydicom/data/test_files")
                .join(name)
        })
        .find(|path| path.is_file())
        .unwrap_or_else(|| panic!("pydicom test file {name} not found"))
}

/// Runs `imaging_fixtures.py` (a synthetic CT series) into `out` with extra arguments.
pub fn make_series(python: &Path, out: &Path, args: &[&str]) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/api/imaging_fixtures.py");
    let status = std::process::Command::new(python)
        .arg(script)
        .arg(out)
        .args(args)
        .status()
        .expect("run imaging_fixtures.py");
    assert!(status.success(), "imaging_fixtures.py failed");
}

/// The files of a folder as (name relative to it, bytes), sorted by name.
pub fn folder_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .expect("read folder")
        .flatten()
        .filter(|e| e.path().is_file())
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).expect("read file"),
            )
        })
        .collect();
    files.sort();
    files
}

impl TestApp {
    /// Creates a dataset and returns its id.
    pub async fn dataset(&self, token: &str, name: &str, class: Option<i64>) -> i64 {
        let reply = self
            .call(
                Method::POST,
                token,
                "/api/v1/datasets",
                Some(json!({"name": name, "class": class})),
            )
            .await;
        assert_eq!(reply.0, StatusCode::CREATED, "{}", reply.1);
        reply.1["id"].as_i64().expect("dataset id")
    }

    /// Uploads files (name, bytes) into a dataset in one multipart request.
    pub async fn upload(
        &self,
        token: &str,
        dataset: i64,
        files: Vec<(String, Vec<u8>)>,
    ) -> (StatusCode, Value) {
        let mut form = reqwest::multipart::Form::new();
        for (name, bytes) in files {
            form = form.part(
                "file",
                reqwest::multipart::Part::bytes(bytes).file_name(name),
            );
        }
        let response = self
            .http
            .post(format!("{}/api/v1/datasets/{dataset}/files", self.url))
            .bearer_auth(token)
            .multipart(form)
            .send()
            .await
            .expect("upload");
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Waits until a series is derived (ready or failed) and returns it.
    pub async fn derived_series(&self, token: &str, series: i64) -> Value {
        for _ in 0..300 {
            let reply = self
                .call(
                    Method::GET,
                    token,
                    &format!("/api/v1/series/{series}"),
                    None,
                )
                .await;
            assert_eq!(reply.0, StatusCode::OK, "{}", reply.1);
            if reply.1["derived"] != "pending" {
                return reply.1;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("series {series} was not derived within 30 s");
    }
}
