//! Command-line parsing and the client commands. Every command has `--help`; `--json`
//! prints the server's JSON answer for scripts instead of a table.

use crate::client::{self, Client, Credentials, query_escape};
use crate::config::{Config, Overrides};
use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use serde_json::{Value, json};
use std::io::{BufRead, IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "voxhub",
    version,
    about = "A multi-user GPU compute platform for teaching and research in medical imaging"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Clone)]
pub struct ClientOptions {
    /// Server address (default: from `voxhub login`, or VOXHUB_URL).
    #[arg(long, global = true)]
    server: Option<String>,
    /// Print JSON for scripts instead of a table.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the platform: web UI, API and database on one port.
    Serve {
        /// Address to listen on (default 127.0.0.1:8080).
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Directory for the database and data (default ./voxhub-data).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// A TOML configuration file.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Log in to a server and remember the login for later commands.
    Login {
        /// Server address, e.g. http://127.0.0.1:8080.
        #[arg(long, env = "VOXHUB_URL")]
        server: String,
        /// Username (asked for when left out).
        #[arg(long)]
        username: Option<String>,
        /// Read the password from standard input instead of asking for it.
        #[arg(long)]
        password_stdin: bool,
        #[arg(long)]
        json: bool,
    },
    /// Forget the stored login and revoke its token on the server.
    Logout,
    /// Show who you are logged in as.
    Whoami {
        #[command(flatten)]
        options: ClientOptions,
    },
    /// Manage accounts (admins).
    User {
        #[command(subcommand)]
        command: UserCommand,
        #[command(flatten)]
        options: ClientOptions,
    },
    /// Manage classes and their members.
    Class {
        #[command(subcommand)]
        command: ClassCommand,
        #[command(flatten)]
        options: ClientOptions,
    },
    /// Manage invite codes of a class.
    Invite {
        #[command(subcommand)]
        command: InviteCommand,
        #[command(flatten)]
        options: ClientOptions,
    },
    /// Manage your personal API tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
        #[command(flatten)]
        options: ClientOptions,
    },
    /// Read and verify the audit log (admins).
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
        #[command(flatten)]
        options: ClientOptions,
    },
    /// Submit, follow and cancel batch jobs.
    Job {
        #[command(subcommand)]
        command: crate::workload_cli::JobCommand,
        #[command(flatten)]
        options: ClientOptions,
    },
    /// Launch and stop interactive environments (JupyterLab).
    Instance {
        #[command(subcommand)]
        command: crate::workload_cli::InstanceCommand,
        #[command(flatten)]
        options: ClientOptions,
    },
    /// See the queue; admins hold, release and reorder it.
    Queue {
        #[command(subcommand)]
        command: Option<crate::workload_cli::QueueCommand>,
        #[command(flatten)]
        options: ClientOptions,
    },
    /// List, upload and download workspace files.
    Workspace {
        #[command(subcommand)]
        command: crate::workload_cli::WorkspaceCommand,
        #[command(flatten)]
        options: ClientOptions,
    },
    /// Imaging datasets: create, upload files and folders, browse series, download NIfTI.
    Dataset {
        #[command(subcommand)]
        command: crate::dataset_cli::DatasetCommand,
        #[command(flatten)]
        options: ClientOptions,
    },
    /// Measure voxhub: HTTP load, job throughput, instance start-up, scheduling decisions.
    Bench(crate::bench::BenchArgs),
    /// Supervise one workload (started by the server itself; not for people).
    #[command(hide = true)]
    Supervise { dir: PathBuf },
}

#[derive(Subcommand)]
pub enum UserCommand {
    /// List accounts.
    List {
        /// Only accounts whose username or display name contains this text.
        #[arg(long)]
        search: Option<String>,
    },
    /// Create an account; the password is asked for, or read from standard input.
    Create {
        username: String,
        #[arg(long)]
        display_name: String,
        /// admin, teacher or student.
        #[arg(long)]
        role: String,
        #[arg(long)]
        password_stdin: bool,
    },
    /// Show one account.
    Show { username: String },
    /// Disable an account: its sessions end and its tokens stop working.
    Disable { username: String },
    /// Enable a disabled account.
    Enable { username: String },
    /// Set a new password for an account; it is asked for, or read from standard input.
    ResetPassword {
        username: String,
        #[arg(long)]
        password_stdin: bool,
    },
    /// Change an account's display name or role.
    Update {
        username: String,
        #[arg(long)]
        display_name: Option<String>,
        #[arg(long)]
        role: Option<String>,
    },
}

#[derive(Subcommand)]
pub enum ClassCommand {
    /// List your classes (all classes for admins).
    List,
    /// Create a class.
    Create {
        name: String,
        #[arg(long, default_value = "")]
        description: String,
        /// First day, YYYY-MM-DD.
        #[arg(long)]
        starts_on: String,
        /// Last day, YYYY-MM-DD.
        #[arg(long)]
        ends_on: String,
    },
    /// Show a class and its members.
    Show {
        /// Class id or exact name.
        class: String,
    },
    /// Add an account to a class, or change its role there.
    AddMember {
        /// Class id or exact name.
        class: String,
        username: String,
        /// teacher or student.
        #[arg(long, default_value = "student")]
        role: String,
    },
    /// Remove an account from a class.
    RemoveMember {
        /// Class id or exact name.
        class: String,
        username: String,
    },
}

#[derive(Subcommand)]
pub enum InviteCommand {
    /// Create an invite code.
    Create {
        /// Class id or exact name.
        #[arg(long)]
        class: String,
        /// Role in the class: student or teacher.
        #[arg(long, default_value = "student")]
        role: String,
        /// How many people can register with it.
        #[arg(long)]
        uses: i64,
        /// How long it works: 30m, 12h, 14d, 2w.
        #[arg(long, default_value = "14d")]
        expires: String,
    },
    /// List a class's invite codes.
    List {
        #[arg(long)]
        class: String,
    },
    /// Revoke an invite code.
    Revoke {
        #[arg(long)]
        class: String,
        /// The invite's id (see `voxhub invite list`).
        id: i64,
    },
}

#[derive(Subcommand)]
pub enum TokenCommand {
    /// List your tokens.
    List,
    /// Create a token; its secret is printed once.
    Create {
        name: String,
        /// How long it works: 30d, 12h, 2w (at most a year).
        #[arg(long, default_value = "90d")]
        expires: String,
    },
    /// Revoke a token.
    Revoke { id: i64 },
}

#[derive(Subcommand)]
pub enum AuditCommand {
    /// List entries, newest first.
    List {
        #[arg(long)]
        actor: Option<String>,
        /// Action or prefix, e.g. auth.login or user.
        #[arg(long)]
        action: Option<String>,
        #[arg(long)]
        target: Option<String>,
        /// success, failure or denied.
        #[arg(long)]
        outcome: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// Walk the hash chain and report the first altered or removed entry. With --data-dir
    /// the database is read directly (no server or login needed).
    Verify {
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
}

pub async fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Serve {
            listen,
            data_dir,
            config,
        } => {
            let env: Vec<(String, String)> = std::env::vars().collect();
            let config = Config::load(config.as_deref(), &env, Overrides { listen, data_dir })?;
            init_logging(&config.log.level);
            crate::serve::run(config).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Login {
            server,
            username,
            password_stdin,
            json,
        } => login(&server, username, password_stdin, json).await,
        Command::Logout => logout().await,
        Command::Whoami { options } => {
            let client = Client::from_environment(options.server.as_deref())?;
            let me = client.get("/api/v1/me").await?;
            if options.json {
                print_json(&me);
            } else {
                let user = &me["user"];
                println!(
                    "{} ({}) — {} on {}",
                    s(&user["username"]),
                    s(&user["display_name"]),
                    s(&user["role"]),
                    client.server
                );
                for class in me["classes"].as_array().into_iter().flatten() {
                    println!(
                        "  {} in class {} ({})",
                        s(&class["role"]),
                        s(&class["name"]),
                        class["id"]
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::User { command, options } => user_command(command, options).await,
        Command::Class { command, options } => class_command(command, options).await,
        Command::Invite { command, options } => invite_command(command, options).await,
        Command::Token { command, options } => token_command(command, options).await,
        Command::Audit { command, options } => audit_command(command, options).await,
        Command::Bench(args) => crate::bench::run(args).await,
        Command::Job { command, options } => {
            crate::workload_cli::job(
                command,
                Client::from_environment(options.server.as_deref())?,
                options.json,
            )
            .await
        }
        Command::Instance { command, options } => {
            crate::workload_cli::instance(
                command,
                Client::from_environment(options.server.as_deref())?,
                options.json,
            )
            .await
        }
        Command::Queue { command, options } => {
            crate::workload_cli::queue(
                command,
                Client::from_environment(options.server.as_deref())?,
                options.json,
            )
            .await
        }
        Command::Workspace { command, options } => {
            crate::workload_cli::workspace(
                command,
                Client::from_environment(options.server.as_deref())?,
                options.json,
            )
            .await
        }
        Command::Dataset { command, options } => {
            crate::dataset_cli::dataset(
                command,
                Client::from_environment(options.server.as_deref())?,
                options.json,
            )
            .await
        }
        Command::Supervise { .. } => unreachable!("handled before the runtime starts"),
    }
}

fn init_logging(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// A value as plain text for tables.
pub fn s(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

pub fn print_json(value: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_default()
    );
}

/// Prints rows as aligned columns under a header.
pub fn print_table(headers: &[&str], rows: Vec<Vec<String>>) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<width$}", width = widths[i]))
            .collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(headers.iter().map(|h| h.to_uppercase()).collect());
    if rows.is_empty() {
        println!("(none)");
    }
    for row in rows {
        line(row);
    }
}

fn read_secret(prompt: &str, from_stdin: bool) -> Result<String> {
    if from_stdin || !std::io::stdin().is_terminal() {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("failed to read the password from standard input")?;
        let password = line.trim_end_matches(['\n', '\r']).to_string();
        if password.is_empty() {
            bail!("no password was given on standard input");
        }
        return Ok(password);
    }
    rpassword::prompt_password(prompt).context("failed to read the password")
}

fn read_line(prompt: &str) -> Result<String> {
    eprint!("{prompt}");
    std::io::stderr().flush().ok();
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim().to_string())
}

async fn login(
    server: &str,
    username: Option<String>,
    password_stdin: bool,
    json: bool,
) -> Result<ExitCode> {
    let username = match username {
        Some(username) => username,
        None => read_line("Username: ")?,
    };
    let password = read_secret("Password: ", password_stdin)?;
    let anonymous = Client::new(server, None)?;
    let session = anonymous
        .post(
            "/api/v1/auth/login",
            json!({"username": username, "password": password}),
        )
        .await?;
    let session_token = s(&session["token"]);
    let with_session = Client::new(server, Some(session_token))?;
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "this computer".into());
    // The command line keeps a personal API token (90 days) rather than the short login session.
    let created = with_session
        .post(
            "/api/v1/tokens",
            json!({"name": format!("voxhub command line on {host}"), "expires_in": "90d"}),
        )
        .await?;
    with_session
        .post("/api/v1/auth/logout", json!({}))
        .await
        .ok();
    let credentials = Credentials {
        server: anonymous.server.clone(),
        username: s(&session["user"]["username"]),
        token: s(&created["secret"]),
        token_id: created["token"]["id"].as_i64().unwrap_or_default(),
    };
    let path = client::save_credentials(&credentials)?;
    if json {
        print_json(
            &json!({"server": credentials.server, "user": session["user"], "token_expires_at": created["token"]["expires_at"]}),
        );
    } else {
        println!(
            "Logged in to {} as {} ({}). The login is stored in {} until {}.",
            credentials.server,
            credentials.username,
            s(&session["user"]["role"]),
            path.display(),
            s(&created["token"]["expires_at"])
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn logout() -> Result<ExitCode> {
    let Some(credentials) = client::load_credentials()? else {
        println!("You were not logged in.");
        return Ok(ExitCode::SUCCESS);
    };
    let client = Client::new(&credentials.server, Some(credentials.token.clone()))?;
    let revoked = client
        .call(
            reqwest::Method::DELETE,
            &format!("/api/v1/tokens/{}", credentials.token_id),
            None,
        )
        .await;
    client::forget_credentials()?;
    match revoked {
        Ok(_) => println!(
            "Logged out of {}; the stored token was revoked.",
            credentials.server
        ),
        Err(error) => {
            println!("Logged out locally; the server could not revoke the token ({error:#}).")
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn user_id(client: &Client, username: &str) -> Result<i64> {
    let found = client
        .get(&format!("/api/v1/users?q={}", query_escape(username)))
        .await?;
    found
        .as_array()
        .into_iter()
        .flatten()
        .find(|u| u["username"].as_str() == Some(&username.trim().to_lowercase()))
        .and_then(|u| u["id"].as_i64())
        .with_context(|| {
            format!("there is no user '{username}'; `voxhub user list` shows every account")
        })
}

fn user_rows(users: &Value) -> Vec<Vec<String>> {
    users
        .as_array()
        .into_iter()
        .flatten()
        .map(|u| {
            vec![
                s(&u["id"]),
                s(&u["username"]),
                s(&u["display_name"]),
                s(&u["role"]),
                if u["disabled"].as_bool() == Some(true) {
                    "disabled".into()
                } else {
                    "active".into()
                },
            ]
        })
        .collect()
}

fn show(options: &ClientOptions, value: &Value, table: impl FnOnce(&Value)) {
    if options.json {
        print_json(value);
    } else {
        table(value);
    }
}

async fn user_command(command: UserCommand, options: ClientOptions) -> Result<ExitCode> {
    let client = Client::from_environment(options.server.as_deref())?;
    let headers = ["id", "username", "display name", "role", "state"];
    let single = |value: &Value| print_table(&headers, user_rows(&json!([value])));
    match command {
        UserCommand::List { search } => {
            let path = match search {
                Some(text) => format!("/api/v1/users?q={}", query_escape(&text)),
                None => "/api/v1/users".into(),
            };
            let users = client.get(&path).await?;
            show(&options, &users, |v| print_table(&headers, user_rows(v)));
        }
        UserCommand::Create {
            username,
            display_name,
            role,
            password_stdin,
        } => {
            let password = read_secret("Initial password: ", password_stdin)?;
            let user = client
                .post("/api/v1/users", json!({"username": username, "display_name": display_name, "role": role, "password": password}))
                .await?;
            show(&options, &user, single);
        }
        UserCommand::Show { username } => {
            let id = user_id(&client, &username).await?;
            show(
                &options,
                &client.get(&format!("/api/v1/users/{id}")).await?,
                single,
            );
        }
        UserCommand::Disable { username } => {
            let id = user_id(&client, &username).await?;
            let user = client
                .call(
                    reqwest::Method::PATCH,
                    &format!("/api/v1/users/{id}"),
                    Some(json!({"disabled": true})),
                )
                .await?;
            show(&options, &user, single);
        }
        UserCommand::Enable { username } => {
            let id = user_id(&client, &username).await?;
            let user = client
                .call(
                    reqwest::Method::PATCH,
                    &format!("/api/v1/users/{id}"),
                    Some(json!({"disabled": false})),
                )
                .await?;
            show(&options, &user, single);
        }
        UserCommand::ResetPassword {
            username,
            password_stdin,
        } => {
            let id = user_id(&client, &username).await?;
            let password = read_secret("New password: ", password_stdin)?;
            let user = client
                .post(
                    &format!("/api/v1/users/{id}/password"),
                    json!({"password": password}),
                )
                .await?;
            show(&options, &user, |_| {
                println!("The password of {username} was changed and their sessions ended.")
            });
        }
        UserCommand::Update {
            username,
            display_name,
            role,
        } => {
            let id = user_id(&client, &username).await?;
            let mut body = serde_json::Map::new();
            if let Some(name) = display_name {
                body.insert("display_name".into(), json!(name));
            }
            if let Some(role) = role {
                body.insert("role".into(), json!(role));
            }
            if body.is_empty() {
                bail!("nothing to change; give --display-name or --role");
            }
            let user = client
                .call(
                    reqwest::Method::PATCH,
                    &format!("/api/v1/users/{id}"),
                    Some(Value::Object(body)),
                )
                .await?;
            show(&options, &user, single);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Accepts a class id or its exact name.
async fn class_id(client: &Client, class: &str) -> Result<i64> {
    if let Ok(id) = class.trim().parse::<i64>() {
        return Ok(id);
    }
    let classes = client.get("/api/v1/classes").await?;
    let matches: Vec<i64> = classes
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| {
            c["name"]
                .as_str()
                .is_some_and(|n| n.eq_ignore_ascii_case(class.trim()))
        })
        .filter_map(|c| c["id"].as_i64())
        .collect();
    match matches.as_slice() {
        [id] => Ok(*id),
        [] => bail!(
            "you have no class named '{class}'; `voxhub class list` shows your classes and their ids"
        ),
        _ => {
            bail!("several classes are named '{class}'; use the class id from `voxhub class list`")
        }
    }
}

fn class_rows(classes: &Value) -> Vec<Vec<String>> {
    classes
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            vec![
                s(&c["id"]),
                s(&c["name"]),
                format!("{} to {}", s(&c["starts_on"]), s(&c["ends_on"])),
                s(&c["teacher_count"]),
                s(&c["student_count"]),
            ]
        })
        .collect()
}

async fn class_command(command: ClassCommand, options: ClientOptions) -> Result<ExitCode> {
    let client = Client::from_environment(options.server.as_deref())?;
    let headers = ["id", "name", "dates", "teachers", "students"];
    match command {
        ClassCommand::List => {
            let classes = client.get("/api/v1/classes").await?;
            show(&options, &classes, |v| print_table(&headers, class_rows(v)));
        }
        ClassCommand::Create {
            name,
            description,
            starts_on,
            ends_on,
        } => {
            let class = client
                .post("/api/v1/classes", json!({"name": name, "description": description, "starts_on": starts_on, "ends_on": ends_on}))
                .await?;
            show(&options, &class, |v| {
                print_table(&headers, class_rows(&json!([v])))
            });
        }
        ClassCommand::Show { class } => {
            let id = class_id(&client, &class).await?;
            let detail = client.get(&format!("/api/v1/classes/{id}")).await?;
            let members = client.get(&format!("/api/v1/classes/{id}/members")).await?;
            if options.json {
                print_json(&json!({"class": detail, "members": members}));
            } else {
                println!(
                    "{} (id {}), {} to {}",
                    s(&detail["name"]),
                    id,
                    s(&detail["starts_on"]),
                    s(&detail["ends_on"])
                );
                if !s(&detail["description"]).is_empty() && detail["description"] != "" {
                    println!("{}", s(&detail["description"]));
                }
                println!();
                let rows = members
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|m| {
                        let how = match (m["invite_code"].as_str(), m["added_by"].as_str()) {
                            (Some(code), _) => format!("invite {code}"),
                            (None, Some(by)) => format!("added by {by}"),
                            _ => "-".into(),
                        };
                        vec![
                            s(&m["username"]),
                            s(&m["display_name"]),
                            s(&m["role"]),
                            s(&m["joined_at"]),
                            how,
                        ]
                    })
                    .collect();
                print_table(
                    &["username", "display name", "role", "joined", "joined with"],
                    rows,
                );
            }
        }
        ClassCommand::AddMember {
            class,
            username,
            role,
        } => {
            let id = class_id(&client, &class).await?;
            let member = client
                .post(
                    &format!("/api/v1/classes/{id}/members"),
                    json!({"username": username, "role": role}),
                )
                .await?;
            show(&options, &member, |m| {
                println!(
                    "{} is now a {} of class {id}.",
                    s(&m["username"]),
                    s(&m["role"])
                )
            });
        }
        ClassCommand::RemoveMember { class, username } => {
            let id = class_id(&client, &class).await?;
            let members = client.get(&format!("/api/v1/classes/{id}/members")).await?;
            let user_id = members
                .as_array()
                .into_iter()
                .flatten()
                .find(|m| m["username"].as_str() == Some(&username.trim().to_lowercase()))
                .and_then(|m| m["user_id"].as_i64())
                .with_context(|| format!("{username} is not a member of class {id}"))?;
            client
                .call(
                    reqwest::Method::DELETE,
                    &format!("/api/v1/classes/{id}/members/{user_id}"),
                    None,
                )
                .await?;
            show(&options, &json!({"removed": username}), |_| {
                println!("{username} was removed from class {id}.")
            });
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn invite_rows(invites: &Value) -> Vec<Vec<String>> {
    invites
        .as_array()
        .into_iter()
        .flatten()
        .map(|i| {
            vec![
                s(&i["id"]),
                s(&i["code"]),
                s(&i["role"]),
                format!("{}/{}", s(&i["uses"]), s(&i["max_uses"])),
                s(&i["expires_at"]),
                s(&i["status"]),
            ]
        })
        .collect()
}

async fn invite_command(command: InviteCommand, options: ClientOptions) -> Result<ExitCode> {
    let client = Client::from_environment(options.server.as_deref())?;
    let headers = ["id", "code", "role", "used", "expires", "status"];
    match command {
        InviteCommand::Create {
            class,
            role,
            uses,
            expires,
        } => {
            let id = class_id(&client, &class).await?;
            let invite = client
                .post(
                    &format!("/api/v1/classes/{id}/invites"),
                    json!({"role": role, "max_uses": uses, "expires_in": expires}),
                )
                .await?;
            show(&options, &invite, |i| {
                println!("Invite code: {}", s(&i["code"]));
                println!(
                    "Up to {} people can register as {} until {} at {}/register",
                    s(&i["max_uses"]),
                    s(&i["role"]),
                    s(&i["expires_at"]),
                    client.server
                );
            });
        }
        InviteCommand::List { class } => {
            let id = class_id(&client, &class).await?;
            let invites = client.get(&format!("/api/v1/classes/{id}/invites")).await?;
            show(&options, &invites, |v| {
                print_table(&headers, invite_rows(v))
            });
        }
        InviteCommand::Revoke { class, id } => {
            let class = class_id(&client, &class).await?;
            let invite = client
                .call(
                    reqwest::Method::DELETE,
                    &format!("/api/v1/classes/{class}/invites/{id}"),
                    None,
                )
                .await?;
            show(&options, &invite, |v| {
                print_table(&headers, invite_rows(&json!([v])))
            });
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn token_rows(tokens: &Value) -> Vec<Vec<String>> {
    tokens
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            let state = if !t["revoked_at"].is_null() {
                "revoked"
            } else {
                "active"
            };
            vec![
                s(&t["id"]),
                s(&t["name"]),
                format!("{}…", s(&t["hint"])),
                s(&t["expires_at"]),
                s(&t["last_used_at"]),
                state.into(),
            ]
        })
        .collect()
}

async fn token_command(command: TokenCommand, options: ClientOptions) -> Result<ExitCode> {
    let client = Client::from_environment(options.server.as_deref())?;
    let headers = ["id", "name", "starts with", "expires", "last used", "state"];
    match command {
        TokenCommand::List => {
            let tokens = client.get("/api/v1/tokens").await?;
            show(&options, &tokens, |v| print_table(&headers, token_rows(v)));
        }
        TokenCommand::Create { name, expires } => {
            let created = client
                .post(
                    "/api/v1/tokens",
                    json!({"name": name, "expires_in": expires}),
                )
                .await?;
            show(&options, &created, |c| {
                println!("{}", s(&c["secret"]));
                eprintln!(
                    "This is the only time the token is shown. It works until {}.",
                    s(&c["token"]["expires_at"])
                );
            });
        }
        TokenCommand::Revoke { id } => {
            let token = client
                .call(
                    reqwest::Method::DELETE,
                    &format!("/api/v1/tokens/{id}"),
                    None,
                )
                .await?;
            show(&options, &token, |v| {
                print_table(&headers, token_rows(&json!([v])))
            });
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn audit_command(command: AuditCommand, options: ClientOptions) -> Result<ExitCode> {
    match command {
        AuditCommand::Verify {
            data_dir: Some(data_dir),
        } => {
            let path = data_dir.join(crate::serve::DATABASE_FILE);
            if !path.exists() {
                bail!(
                    "there is no voxhub database at {}; give the server's --data-dir",
                    path.display()
                );
            }
            let store = voxhub_store::Store::open_sqlite(&path).await?;
            let result = store.verify_audit().await?;
            store.close().await;
            let report = match &result {
                Ok(verified) => {
                    json!({"intact": true, "entries_checked": verified.entries, "head_hash": verified.head_hash, "problem": null})
                }
                Err(broken) => json!({"intact": false, "problem": broken.to_string()}),
            };
            report_verification(&options, &report)
        }
        AuditCommand::Verify { data_dir: None } => {
            let client = Client::from_environment(options.server.as_deref())?;
            let report = client.get("/api/v1/audit/verify").await?;
            report_verification(&options, &report)
        }
        AuditCommand::List {
            actor,
            action,
            target,
            outcome,
            limit,
        } => {
            let client = Client::from_environment(options.server.as_deref())?;
            let mut query = vec![format!("limit={limit}")];
            for (key, value) in [
                ("actor", actor),
                ("action", action),
                ("target", target),
                ("outcome", outcome),
            ] {
                if let Some(value) = value {
                    query.push(format!("{key}={}", query_escape(&value)));
                }
            }
            let entries = client
                .get(&format!("/api/v1/audit?{}", query.join("&")))
                .await?;
            show(&options, &entries, |v| {
                let rows = v
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|e| {
                        let at = e["at_ms"]
                            .as_i64()
                            .map(|ms| voxhub_core::timefmt::rfc3339(ms / 1000))
                            .unwrap_or_default();
                        vec![
                            s(&e["seq"]),
                            at,
                            s(&e["actor_name"]),
                            s(&e["action"]),
                            s(&e["target"]),
                            s(&e["outcome"]),
                            s(&e["source"]),
                        ]
                    })
                    .collect();
                print_table(
                    &["seq", "when", "who", "action", "target", "outcome", "from"],
                    rows,
                );
            });
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn report_verification(options: &ClientOptions, report: &Value) -> Result<ExitCode> {
    let intact = report["intact"].as_bool() == Some(true);
    if options.json {
        print_json(report);
    } else if intact {
        println!(
            "The audit log is intact: {} entries checked; last hash {}.",
            s(&report["entries_checked"]),
            s(&report["head_hash"])
        );
    } else {
        println!(
            "The audit log was tampered with: {}.",
            s(&report["problem"])
        );
    }
    Ok(if intact {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    })
}
