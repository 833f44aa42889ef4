//! `voxhub serve`: opens the database, creates the first admin on an empty one, and serves
//! the web UI and API until interrupted.

use crate::config::Config;
use anyhow::{Context, Result};
use voxhub_core::audit::{NewEntry, Outcome};
use voxhub_core::names::Username;
use voxhub_core::password::Password;
use voxhub_core::role::Role;
use voxhub_core::throttle::ThrottlePolicy;
use voxhub_store::Store;
use voxhub_store::users::NewUser;
use voxhub_web::{AppState, WebSettings};

pub const DATABASE_FILE: &str = "voxhub.db";

pub async fn run(config: Config) -> Result<()> {
    let data_dir = &config.server.data_dir;
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("failed to create the data directory {}", data_dir.display()))?;
    let store = Store::open_sqlite(&data_dir.join(DATABASE_FILE))
        .await
        .with_context(|| format!("failed to open the database in {}", data_dir.display()))?;
    let first_admin =
        bootstrap_admin(&store, config.admin_password.as_ref().map(|s| s.0.as_str())).await?;

    let listener = tokio::net::TcpListener::bind(config.server.listen)
        .await
        .with_context(|| format!("failed to listen on {}; is another program using that port? choose another with --listen", config.server.listen))?;
    let bound = listener.local_addr()?;
    let url = config.public_url(bound);
    println!("voxhub is listening on http://{bound}");
    println!("open {url} in a browser");
    if let Some(password) = first_admin {
        match password {
            FirstAdmin::Generated(password) => {
                println!();
                println!("A first admin account was created. This password is shown only now:");
                println!("    username: admin");
                println!("    password: {password}");
                println!("Log in at {url}/login and change it under Account.");
                println!();
            }
            FirstAdmin::FromEnvironment => {
                println!(
                    "A first admin account 'admin' was created with the password from VOXHUB_ADMIN_PASSWORD."
                );
            }
        }
    }
    use std::io::Write;
    std::io::stdout().flush().ok();

    let settings = WebSettings {
        secure_cookies: url.starts_with("https://"),
        session_hours: config.auth.session_hours,
        trust_forwarded_for: config.server.trust_forwarded_for,
        throttle: ThrottlePolicy {
            max_failures_per_username: config.auth.max_failures_per_username,
            max_failures_per_address: config.auth.max_failures_per_address,
            window_ms: config.auth.failure_window_s * 1000,
        },
        ..WebSettings::default()
    };
    let runtime = workload_runtime(&config)?;
    let imaging = imaging_side(&config)?;
    let state = AppState::with_parts(store.clone(), settings, Some(runtime), Some(imaging));
    // Reconcile once before serving: re-adopt what still runs, record what ended while down.
    if let Err(error) = voxhub_web::runtime::tick(&state).await {
        tracing::error!("first reconcile failed: {error}");
    }
    voxhub_web::runtime::spawn_loop(state.clone());
    voxhub_web::datasets::derive::spawn(state.clone());
    voxhub_web::serve(listener, state, shutdown_signal())
        .await
        .context("the web server stopped with an error")?;
    store.close().await;
    tracing::info!("voxhub stopped");
    Ok(())
}

/// The local-process executor over `<data-dir>/run`, the local node and the settings.
fn workload_runtime(config: &Config) -> Result<std::sync::Arc<voxhub_web::runtime::Runtime>> {
    let (node, gpu_note) = crate::node::local_node(&config.node)?;
    tracing::info!(
        "node '{}': {} CPU cores, {} MiB memory; {gpu_note}",
        node.name,
        node.cpu_millis as f64 / 1000.0,
        node.memory_mib
    );
    let settings = crate::node::workload_settings(config, &node)?;
    let run_dir = config.server.data_dir.join("run");
    std::fs::create_dir_all(&run_dir)
        .with_context(|| format!("failed to create {}", run_dir.display()))?;
    let program =
        std::env::current_exe().context("cannot find the voxhub binary to supervise workloads")?;
    let executor = voxhub_exec::local::LocalExecutor::new(
        run_dir,
        voxhub_exec::local::SupervisorCommand {
            program,
            args: vec!["supervise".into()],
        },
    );
    let workspaces = crate::node::workspaces_root(&config.server.data_dir)?;
    Ok(std::sync::Arc::new(voxhub_web::runtime::Runtime::new(
        std::sync::Arc::new(executor),
        node,
        settings,
        workspaces,
    )))
}

/// The imaging side: settings, the object store under `<data-dir>/objects`, the upload
/// spool, and the de-identification secret (created on first start).
fn imaging_side(config: &Config) -> Result<std::sync::Arc<voxhub_web::datasets::Imaging>> {
    use voxhub_imaging::deid::{DatePolicy, DeidConfig};
    let imaging = &config.imaging;
    let data_dir = &config.server.data_dir;
    let date_policy = match imaging.dates.as_str() {
        "shift" => DatePolicy::ShiftPerPatient,
        "remove" => DatePolicy::Remove,
        other => anyhow::bail!(
            "imaging.dates is '{other}'; use 'shift' (move dates by a secret number of days per patient) or 'remove'"
        ),
    };
    let secret_file = imaging
        .secret_file
        .clone()
        .unwrap_or_else(|| data_dir.join("deid.secret"));
    let secret = crate::node::load_or_create_secret(&secret_file)?;
    let objects_dir = data_dir.join("objects");
    let objects = voxhub_storage::LocalStore::new(&objects_dir).with_context(|| {
        format!(
            "failed to open the object store in {}",
            objects_dir.display()
        )
    })?;
    let spool_dir = data_dir.join("spool");
    // Uploads left by a crash are not imported; they are removed at start.
    let _ = std::fs::remove_dir_all(&spool_dir);
    std::fs::create_dir_all(&spool_dir)
        .with_context(|| format!("failed to create {}", spool_dir.display()))?;
    if !imaging.deidentify {
        tracing::warn!("de-identification of uploads is turned off (imaging.deidentify = false)");
    }
    let mib = 1024 * 1024;
    let settings = voxhub_web::datasets::ImagingSettings {
        max_upload_bytes: imaging.max_upload_mib * mib,
        max_file_bytes: imaging.max_file_mib * mib,
        deidentify: imaging.deidentify,
        deid: DeidConfig {
            secret,
            keep_private_tags: imaging.keep_private_tags,
            date_policy,
            clean_descriptors: imaging.clean_descriptors,
        },
        volume_cache_bytes: imaging.volume_cache_mib * mib,
        ..Default::default()
    };
    Ok(std::sync::Arc::new(voxhub_web::datasets::Imaging::new(
        settings,
        std::sync::Arc::new(objects),
        spool_dir,
    )))
}

pub enum FirstAdmin {
    Generated(String),
    FromEnvironment,
}

/// Creates the admin account when the database has no accounts at all; never again after.
pub async fn bootstrap_admin(
    store: &Store,
    configured_password: Option<&str>,
) -> Result<Option<FirstAdmin>> {
    let mut tx = store.begin().await?;
    if tx.count_users().await? > 0 {
        return Ok(None);
    }
    let username = Username::parse("admin").expect("valid username");
    let (password, first) = match configured_password {
        Some(raw) => (
            Password::new_checked(raw, "admin").map_err(|e| {
                anyhow::anyhow!("VOXHUB_ADMIN_PASSWORD is not accepted: {}", e.message)
            })?,
            FirstAdmin::FromEnvironment,
        ),
        None => {
            let generated = voxhub_core::secret::new_password();
            (
                Password::new_checked(&generated, "admin")
                    .expect("generated passwords meet the policy"),
                FirstAdmin::Generated(generated),
            )
        }
    };
    let hash = tokio::task::spawn_blocking(move || password.hash()).await?;
    let user = tx
        .create_user(NewUser {
            username: &username,
            display_name: "Administrator",
            role: Role::Admin,
            password_hash: &hash,
        })
        .await?;
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
    .await?;
    tx.commit().await?;
    Ok(Some(first))
}

async fn shutdown_signal() {
    let ctrl_c = async {
        tokio::signal::ctrl_c().await.ok();
    };
    #[cfg(unix)]
    let terminate = async {
        if let Ok(mut signal) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            signal.recv().await;
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
}
