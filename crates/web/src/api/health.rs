//! `GET /healthz`: 200 when the database answers, 503 when it does not.

use crate::AppState;
use axum::extract::State;
use axum::http::StatusCode;

pub async fn healthz(State(state): State<AppState>) -> (StatusCode, &'static str) {
    match state.store.ping().await {
        Ok(()) => (StatusCode::OK, "ok\n"),
        Err(error) => {
            tracing::error!("health check failed: {error}");
            (StatusCode::SERVICE_UNAVAILABLE, "database unavailable\n")
        }
    }
}
