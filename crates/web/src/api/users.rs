//! `/api/v1/users`: accounts, managed by admins.

use super::{ApiJson, ApiPath, ApiQuery};
use crate::AppState;
use crate::auth::{Caller, ClientAddr};
use crate::error::{ApiError, ErrorBody};
use crate::service::{self, CreateUserRequest, ResetPasswordRequest, UpdateUserRequest};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use voxhub_store::users::User;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_users, create_user))
        .routes(routes!(get_user, update_user))
        .routes(routes!(reset_password))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct UserSearch {
    /// Text contained in the username or display name.
    q: Option<String>,
}

/// Every account (admins only).
#[utoipa::path(get, path = "/api/v1/users", tag = "users", security(("bearer" = [])), params(UserSearch),
    responses((status = 200, body = Vec<User>), (status = 403, body = ErrorBody)))]
async fn list_users(
    State(state): State<AppState>,
    ClientAddr(source): ClientAddr,
    caller: Caller,
    ApiQuery(search): ApiQuery<UserSearch>,
) -> Result<Json<Vec<User>>, ApiError> {
    Ok(Json(
        service::list_users(&state, &caller.context(&source), search.q.as_deref()).await?,
    ))
}

/// Create an account (admins only).
#[utoipa::path(post, path = "/api/v1/users", tag = "users", security(("bearer" = [])), request_body = CreateUserRequest,
    responses((status = 201, body = User), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn create_user(
    State(state): State<AppState>,
    ClientAddr(source): ClientAddr,
    caller: Caller,
    ApiJson(request): ApiJson<CreateUserRequest>,
) -> Result<(StatusCode, Json<User>), ApiError> {
    let user = service::create_user(&state, &caller.context(&source), request).await?;
    Ok((StatusCode::CREATED, Json(user)))
}

/// One account (your own, or any for admins).
#[utoipa::path(get, path = "/api/v1/users/{id}", tag = "users", security(("bearer" = [])),
    params(("id" = i64, Path, description = "User id")),
    responses((status = 200, body = User), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_user(
    State(state): State<AppState>,
    ClientAddr(source): ClientAddr,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<User>, ApiError> {
    Ok(Json(
        service::get_user(&state, &caller.context(&source), id).await?,
    ))
}

/// Change an account: display name (your own or any for admins); role and disabled (admins).
/// Disabling ends the account's sessions; its tokens stop working while it is disabled.
#[utoipa::path(patch, path = "/api/v1/users/{id}", tag = "users", security(("bearer" = [])), request_body = UpdateUserRequest,
    params(("id" = i64, Path, description = "User id")),
    responses((status = 200, body = User), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn update_user(
    State(state): State<AppState>,
    ClientAddr(source): ClientAddr,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
    ApiJson(request): ApiJson<UpdateUserRequest>,
) -> Result<Json<User>, ApiError> {
    Ok(Json(
        service::update_user(&state, &caller.context(&source), id, request).await?,
    ))
}

/// Set a new password for an account (admins only); its sessions end and its API tokens are revoked.
#[utoipa::path(post, path = "/api/v1/users/{id}/password", tag = "users", security(("bearer" = [])), request_body = ResetPasswordRequest,
    params(("id" = i64, Path, description = "User id")),
    responses((status = 200, body = User), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn reset_password(
    State(state): State<AppState>,
    ClientAddr(source): ClientAddr,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
    ApiJson(request): ApiJson<ResetPasswordRequest>,
) -> Result<Json<User>, ApiError> {
    Ok(Json(
        service::reset_password(&state, &caller.context(&source), id, request).await?,
    ))
}
