//! `/api/v1/tokens`: personal API tokens.

use super::{ApiJson, ApiPath, ApiQuery};
use crate::AppState;
use crate::auth::{Caller, ClientAddr};
use crate::error::{ApiError, ErrorBody};
use crate::service::{self, CreateTokenRequest, CreatedToken};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use voxhub_store::tokens::Token;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_tokens, create_token))
        .routes(routes!(revoke_token))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct TokenOwner {
    /// Whose tokens to list (admins only; default: your own).
    user_id: Option<i64>,
}

/// Your personal API tokens, including revoked and expired ones.
#[utoipa::path(get, path = "/api/v1/tokens", tag = "tokens", security(("bearer" = [])), params(TokenOwner),
    responses((status = 200, body = Vec<Token>), (status = 403, body = ErrorBody)))]
async fn list_tokens(
    State(state): State<AppState>,
    ClientAddr(source): ClientAddr,
    caller: Caller,
    ApiQuery(owner): ApiQuery<TokenOwner>,
) -> Result<Json<Vec<Token>>, ApiError> {
    Ok(Json(
        service::list_tokens(&state, &caller.context(&source), owner.user_id).await?,
    ))
}

/// Create a personal API token; its secret is in this response only.
#[utoipa::path(post, path = "/api/v1/tokens", tag = "tokens", security(("bearer" = [])), request_body = CreateTokenRequest,
    responses((status = 201, body = CreatedToken), (status = 422, body = ErrorBody)))]
async fn create_token(
    State(state): State<AppState>,
    ClientAddr(source): ClientAddr,
    caller: Caller,
    ApiJson(request): ApiJson<CreateTokenRequest>,
) -> Result<(StatusCode, Json<CreatedToken>), ApiError> {
    let created = service::create_token(&state, &caller.context(&source), request).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// Revoke a token (your own, or anyone's for admins). It stops working at once.
#[utoipa::path(delete, path = "/api/v1/tokens/{id}", tag = "tokens", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Token id")),
    responses((status = 200, body = Token), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn revoke_token(
    State(state): State<AppState>,
    ClientAddr(source): ClientAddr,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Token>, ApiError> {
    Ok(Json(
        service::revoke_token(&state, &caller.context(&source), id).await?,
    ))
}
