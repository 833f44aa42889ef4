//! `/api/v1/audit`: browsing and verifying the audit log (admins).

use super::ApiQuery;
use crate::AppState;
use crate::auth::{Caller, ClientAddr};
use crate::error::{ApiError, ErrorBody};
use crate::service::{self, AuditVerifyResponse};
use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use voxhub_core::audit::Entry;
use voxhub_store::audit::AuditFilter;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_audit))
        .routes(routes!(verify_audit))
}

/// Filters for the audit log; all are optional and narrow the result.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// Username of whoever acted.
    pub actor: Option<String>,
    /// Action or action prefix, e.g. `auth.login` or `user.`.
    pub action: Option<String>,
    /// Text contained in the target, e.g. `class:3`.
    pub target: Option<String>,
    /// `success`, `failure` or `denied`.
    pub outcome: Option<String>,
    /// Entries older than this sequence number (for the next page).
    pub before: Option<i64>,
    /// At most this many entries (1 to 1000, default 100).
    pub limit: Option<i64>,
}

impl AuditQuery {
    pub fn into_filter(self) -> Result<AuditFilter, ApiError> {
        if let Some(outcome) = &self.outcome
            && !matches!(outcome.as_str(), "success" | "failure" | "denied" | "")
        {
            return Err(ApiError::bad_request(
                "invalid_query",
                "outcome must be success, failure or denied",
            ));
        }
        let limit = self.limit.unwrap_or(100);
        if !(1..=1000).contains(&limit) {
            return Err(ApiError::bad_request(
                "invalid_query",
                "limit must be between 1 and 1000",
            ));
        }
        let keep = |v: Option<String>| v.map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
        Ok(AuditFilter {
            actor: keep(self.actor).map(|s| s.to_lowercase()),
            action: keep(self.action),
            target: keep(self.target),
            outcome: keep(self.outcome),
            before_seq: self.before,
            since_ms: None,
            until_ms: None,
            limit,
        })
    }
}

/// Audit entries, newest first.
#[utoipa::path(get, path = "/api/v1/audit", tag = "audit", security(("bearer" = [])), params(AuditQuery),
    responses((status = 200, body = Vec<Entry>), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn list_audit(
    State(state): State<AppState>,
    ClientAddr(source): ClientAddr,
    caller: Caller,
    ApiQuery(query): ApiQuery<AuditQuery>,
) -> Result<Json<Vec<Entry>>, ApiError> {
    let filter = query.into_filter()?;
    Ok(Json(
        service::list_audit(&state, &caller.context(&source), filter).await?,
    ))
}

/// Walk the whole hash chain and report the first entry that was altered or removed.
#[utoipa::path(get, path = "/api/v1/audit/verify", tag = "audit", security(("bearer" = [])),
    responses((status = 200, body = AuditVerifyResponse), (status = 403, body = ErrorBody)))]
async fn verify_audit(
    State(state): State<AppState>,
    ClientAddr(source): ClientAddr,
    caller: Caller,
) -> Result<Json<AuditVerifyResponse>, ApiError> {
    Ok(Json(
        service::verify_audit(&state, &caller.context(&source)).await?,
    ))
}
