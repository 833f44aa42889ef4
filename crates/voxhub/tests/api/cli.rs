//! The `voxhub` command-line client against a running server.

use crate::support::*;
use reqwest::StatusCode;
use serde_json::Value;
use voxhub_core::role::Role;
use voxhub_store::tokens::TokenKind;

/// A running server and a config directory for the client.
struct Cli {
    app: TestApp,
    config: tempfile::TempDir,
}

impl Cli {
    async fn start() -> Cli {
        Cli {
            app: TestApp::spawn().await,
            config: tempfile::tempdir().unwrap(),
        }
    }

    async fn run(&self, args: &[&str]) -> CliOutput {
        run_voxhub(self.config.path(), args, None).await
    }

    async fn login_as_admin(&self) -> CliOutput {
        let url = self.app.url.clone();
        run_voxhub(
            self.config.path(),
            &[
                "login",
                "--server",
                &url,
                "--username",
                "admin",
                "--password-stdin",
            ],
            Some(&format!("{PASSWORD}\n")),
        )
        .await
    }
}

#[track_caller]
fn assert_failed_with(output: &CliOutput, text: &str) {
    assert!(
        matches!(output.code, Some(code) if code != 0),
        "expected failure: {output:?}"
    );
    assert!(
        output.stderr.contains(text),
        "stderr should say {text:?}: {}",
        output.stderr
    );
    assert!(output.stderr.starts_with("error: "), "{}", output.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_teacher_workflow_through_the_command_line() {
    let cli = Cli::start().await;
    let app = &cli.app;

    let login = cli.login_as_admin().await;
    login.assert_success();
    assert!(
        login
            .stdout
            .contains(&format!("Logged in to {} as admin (admin)", app.url)),
        "{}",
        login.stdout
    );
    let credentials = cli.config.path().join("credentials.toml");
    assert!(credentials.exists());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&credentials)
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(
            mode, 0o600,
            "the stored login is readable by its owner only"
        );
    }
    // The login session used to make the CLI token is ended again.
    let sessions = app
        .store
        .tokens_of(app.admin.id, TokenKind::Session)
        .await
        .unwrap();
    assert_eq!(
        sessions.iter().filter(|t| t.revoked_at.is_none()).count(),
        1,
        "only the test's own session is live: {sessions:?}"
    );

    let whoami = cli.run(&["whoami"]).await;
    whoami.assert_success();
    assert!(
        whoami
            .stdout
            .starts_with("admin (Administrator) — admin on"),
        "{}",
        whoami.stdout
    );

    let created = cli
        .run(&[
            "class",
            "create",
            "Anatomy 1",
            "--starts-on",
            "2026-09-01",
            "--ends-on",
            "2027-01-31",
        ])
        .await;
    created.assert_success();
    assert!(
        created.stdout.contains("Anatomy 1") && created.stdout.contains("2026-09-01 to 2027-01-31"),
        "{}",
        created.stdout
    );

    let invite = cli
        .run(&[
            "invite",
            "create",
            "--class",
            "Anatomy 1",
            "--role",
            "student",
            "--uses",
            "60",
            "--expires",
            "14d",
            "--json",
        ])
        .await;
    invite.assert_success();
    let invite: Value = serde_json::from_str(&invite.stdout).expect("--json prints JSON");
    assert_eq!(invite["max_uses"], 60);
    assert_eq!(invite["role"], "student");
    let code = invite["code"].as_str().unwrap();

    let (status, body) = app.register(code, "cli.student").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    let show = cli.run(&["class", "show", "Anatomy 1"]).await;
    show.assert_success();
    assert!(show.stdout.contains("Anatomy 1 (id "), "{}", show.stdout);
    let student_row = show
        .stdout
        .lines()
        .find(|l| l.starts_with("cli.student"))
        .unwrap_or_else(|| panic!("{}", show.stdout));
    assert!(
        student_row.contains("student") && student_row.contains(&format!("invite {code}")),
        "{student_row}"
    );

    let invites = cli.run(&["invite", "list", "--class", "Anatomy 1"]).await;
    invites.assert_success();
    assert!(
        invites.stdout.contains(code) && invites.stdout.contains("1/60"),
        "{}",
        invites.stdout
    );

    let tokens = cli.run(&["token", "list", "--json"]).await;
    tokens.assert_success();
    let tokens: Value = serde_json::from_str(&tokens.stdout).expect("JSON token list");
    let tokens = tokens.as_array().unwrap();
    assert_eq!(tokens.len(), 1, "{tokens:?}");
    assert_eq!(tokens[0]["name"], "voxhub command line on testhost");
    assert!(tokens[0].get("secret").is_none());
    let stored = std::fs::read_to_string(&credentials).unwrap();
    assert!(
        stored.contains(tokens[0]["hint"].as_str().unwrap()),
        "the stored token is the listed one"
    );

    let users = cli.run(&["user", "list"]).await;
    users.assert_success();
    assert!(
        users.stdout.starts_with("ID"),
        "a table with a header: {}",
        users.stdout
    );
    assert!(
        users.stdout.contains("admin") && users.stdout.contains("cli.student"),
        "{}",
        users.stdout
    );
    let searched = cli.run(&["user", "list", "--search", "cli."]).await;
    searched.assert_success();
    assert!(
        !searched.stdout.contains("Administrator"),
        "{}",
        searched.stdout
    );

    let audit = cli.run(&["audit", "list"]).await;
    audit.assert_success();
    for action in [
        "invite.create",
        "class.create",
        "auth.register",
        "token.create",
        "auth.login",
    ] {
        assert!(
            audit.stdout.contains(action),
            "{action} in {}",
            audit.stdout
        );
    }
    let filtered = cli
        .run(&["audit", "list", "--action", "auth.register", "--json"])
        .await;
    filtered.assert_success();
    let filtered: Value = serde_json::from_str(&filtered.stdout).unwrap();
    assert_eq!(filtered.as_array().unwrap().len(), 1);
    assert_eq!(filtered[0]["actor_name"], "cli.student");

    let verify = cli.run(&["audit", "verify"]).await;
    verify.assert_success();
    assert!(verify.stdout.contains("intact"), "{}", verify.stdout);

    let token_id = tokens[0]["id"].as_i64().unwrap();
    let logout = cli.run(&["logout"]).await;
    logout.assert_success();
    assert!(logout.stdout.contains("revoked"), "{}", logout.stdout);
    assert!(!credentials.exists(), "the stored login is removed");
    let revoked = app.store.token(token_id).await.unwrap();
    assert!(
        revoked.revoked_at.is_some(),
        "the CLI token is revoked on the server"
    );

    let after = cli.run(&["class", "list"]).await;
    assert_failed_with(&after, "not logged in");
    let again = cli.run(&["logout"]).await;
    again.assert_success();
    assert!(again.stdout.contains("not logged in"), "{}", again.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_line_errors_exit_non_zero_with_the_servers_message() {
    let cli = Cli::start().await;
    cli.login_as_admin().await.assert_success();

    assert_failed_with(
        &cli.run(&["class", "show", "No such class"]).await,
        "you have no class named 'No such class'",
    );
    assert_failed_with(
        &cli.run(&["invite", "create", "--class", "Nope", "--uses", "5"])
            .await,
        "no class named 'Nope'",
    );
    assert_failed_with(
        &cli.run(&["user", "show", "ghost"]).await,
        "there is no user 'ghost'",
    );
    assert_failed_with(
        &cli.run(&["class", "show", "4242"]).await,
        "there is no class with id 4242",
    );
    assert_failed_with(
        &cli.run(&[
            "class",
            "create",
            "Backwards",
            "--starts-on",
            "2026-09-01",
            "--ends-on",
            "2026-01-01",
        ])
        .await,
        "comes before its first day",
    );
    let class = cli.app.create_class(&cli.app.admin.token, "Real").await;
    assert_failed_with(
        &cli.run(&[
            "invite",
            "create",
            "--class",
            &class.to_string(),
            "--uses",
            "0",
        ])
        .await,
        "between 1 and 10000",
    );
    assert_failed_with(
        &cli.run(&["user", "update", "admin"]).await,
        "nothing to change",
    );
    let short = run_voxhub(
        cli.config.path(),
        &[
            "user",
            "create",
            "newbie",
            "--display-name",
            "New",
            "--role",
            "student",
            "--password-stdin",
        ],
        Some("short\n"),
    )
    .await;
    assert_failed_with(&short, "at least 10 characters");
    assert!(!cli.app.user_exists("newbie").await);
    assert_eq!(
        cli.app
            .get_ok(
                &cli.app.admin.token,
                &format!("/api/v1/classes/{class}/invites")
            )
            .await,
        serde_json::json!([])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_line_login_with_a_wrong_password_fails_and_stores_nothing() {
    let cli = Cli::start().await;
    let url = cli.app.url.clone();
    let output = run_voxhub(
        cli.config.path(),
        &[
            "login",
            "--server",
            &url,
            "--username",
            "admin",
            "--password-stdin",
        ],
        Some("nope nope nope\n"),
    )
    .await;
    assert_failed_with(&output, "wrong username or password");
    assert!(!cli.config.path().join("credentials.toml").exists());
    let unreachable = run_voxhub(
        cli.config.path(),
        &[
            "login",
            "--server",
            "http://127.0.0.1:9",
            "--username",
            "admin",
            "--password-stdin",
        ],
        Some("x\n"),
    )
    .await;
    assert_failed_with(&unreachable, "cannot reach the voxhub server");
    let no_scheme = run_voxhub(
        cli.config.path(),
        &[
            "login",
            "--server",
            "127.0.0.1:9",
            "--username",
            "admin",
            "--password-stdin",
        ],
        Some("x\n"),
    )
    .await;
    assert_failed_with(&no_scheme, "must start with http://");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_student_using_the_command_line_is_refused_admin_commands_with_the_reason() {
    let cli = Cli::start().await;
    let student = cli.app.user(Role::Student).await;
    let url = cli.app.url.clone();
    run_voxhub(
        cli.config.path(),
        &[
            "login",
            "--server",
            &url,
            "--username",
            &student.username,
            "--password-stdin",
        ],
        Some(&format!("{PASSWORD}\n")),
    )
    .await
    .assert_success();
    assert_failed_with(
        &cli.run(&["user", "list"]).await,
        "only an admin can list all users",
    );
    assert_failed_with(
        &cli.run(&["audit", "list"]).await,
        "only an admin can read the audit log",
    );
    assert_failed_with(&cli.run(&["audit", "verify"]).await, "only an admin");
    assert_failed_with(
        &cli.run(&[
            "class",
            "create",
            "Mine",
            "--starts-on",
            "2026-01-01",
            "--ends-on",
            "2026-02-01",
        ])
        .await,
        "students cannot create classes",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn help_is_available_for_every_level() {
    let config = tempfile::tempdir().unwrap();
    let top = run_voxhub(config.path(), &["--help"], None).await;
    top.assert_success();
    for command in [
        "serve", "login", "logout", "user", "class", "invite", "token", "audit",
    ] {
        assert!(top.stdout.contains(command), "{command} in {}", top.stdout);
    }
    let invite = run_voxhub(config.path(), &["invite", "create", "--help"], None).await;
    invite.assert_success();
    for flag in ["--class", "--role", "--uses", "--expires", "--json"] {
        assert!(invite.stdout.contains(flag), "{flag} in {}", invite.stdout);
    }
    let unknown = run_voxhub(
        config.path(),
        &["invite", "create", "--colour", "red"],
        None,
    )
    .await;
    assert_eq!(unknown.code, Some(2), "usage errors exit 2: {unknown:?}");
    assert!(unknown.stderr.contains("--colour"), "{}", unknown.stderr);
}
