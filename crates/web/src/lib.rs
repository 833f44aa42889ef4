//! The HTTP face of voxhub: the JSON API under `/api/v1` with its OpenAPI document, and the
//! server-rendered web UI. This is the only crate that knows HTTP, cookies and JSON bodies.
//!
//! | module | owns |
//! | --- | --- |
//! | [`error`] | the error type and its mapping to status codes and `{"error":{…}}` bodies |
//! | [`hashing`] | the fixed thread pool that runs password hashing |
//! | [`auth`] | who is calling: bearer tokens, session cookies, CSRF, source addresses |
//! | [`service`] | every operation (permission check, change, audit) shared by API and pages |
//! | [`api`] | JSON routes, one module per resource, collected into the OpenAPI document |
//! | [`datasets`] | imaging datasets: ingest, index, derived thumbnails and volumes |
//! | [`pages`] | HTML pages and their forms |

pub mod api;
pub mod auth;
pub mod datasets;
pub mod dicomweb;
pub mod error;
pub mod hashing;
pub mod pages;
pub mod proxy;
pub mod runtime;
pub mod service;
pub mod workloads;
pub mod workspace;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, header};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tower_http::set_header::SetResponseHeaderLayer;
use voxhub_core::throttle::{LoginThrottle, ThrottlePolicy};
use voxhub_store::Store;

/// Settings of the HTTP layer, filled from the server's configuration.
#[derive(Debug, Clone)]
pub struct WebSettings {
    /// Mark cookies `Secure` (set when voxhub is served over HTTPS).
    pub secure_cookies: bool,
    /// How long a login lasts.
    pub session_hours: i64,
    /// Take the client address from `X-Forwarded-For` (only behind a trusted reverse proxy).
    pub trust_forwarded_for: bool,
    pub throttle: ThrottlePolicy,
    /// Password hashes computed at once; each takes about 19 MiB and one core for ~30 ms.
    pub max_concurrent_password_checks: usize,
}

impl Default for WebSettings {
    fn default() -> Self {
        Self {
            secure_cookies: false,
            session_hours: 12,
            trust_forwarded_for: false,
            throttle: ThrottlePolicy::default(),
            max_concurrent_password_checks: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2),
        }
    }
}

/// Everything a request handler can reach.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub store: Store,
    pub settings: WebSettings,
    pub throttle: Mutex<LoginThrottle>,
    pub hashing: hashing::HashingPool,
    /// The workload side; `None` on a server that only manages accounts (tests of the core).
    pub runtime: Option<Arc<runtime::Runtime>>,
    /// The imaging side; `None` on a server without datasets (tests of the core).
    pub imaging: Option<Arc<datasets::Imaging>>,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    pub fn new(store: Store, settings: WebSettings) -> Self {
        Self::with_runtime(store, settings, None)
    }

    pub fn with_runtime(
        store: Store,
        settings: WebSettings,
        runtime: Option<Arc<runtime::Runtime>>,
    ) -> Self {
        Self::with_parts(store, settings, runtime, None)
    }

    pub fn with_parts(
        store: Store,
        settings: WebSettings,
        runtime: Option<Arc<runtime::Runtime>>,
        imaging: Option<Arc<datasets::Imaging>>,
    ) -> Self {
        Self(Arc::new(Inner {
            runtime,
            imaging,
            store,
            throttle: Mutex::new(LoginThrottle::new(settings.throttle)),
            hashing: hashing::HashingPool::new(settings.max_concurrent_password_checks),
            settings,
        }))
    }
}

/// Largest request body the API and the forms accept.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The whole application: API, OpenAPI document and its browsable page, web UI, health.
pub fn app(state: AppState) -> Router {
    let (api_router, openapi) = api::router();
    Router::new()
        .merge(api_router)
        .merge(api::docs_router(openapi))
        .merge(pages::router())
        .merge(dicomweb::router())
        .route("/healthz", axum::routing::get(api::health::healthz))
        .route("/i/{id}", axum::routing::any(proxy::proxy))
        .route("/i/{id}/{*rest}", axum::routing::any(proxy::proxy))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::REFERRER_POLICY,
            HeaderValue::from_static("same-origin"),
        ))
        .with_state(state)
}

/// Serves the application on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        app(state).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}
