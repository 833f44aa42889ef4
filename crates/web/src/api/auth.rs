//! `/api/v1/auth/*` and `/api/v1/me`: logging in and out, registering, the caller's account.

use super::ApiJson;
use crate::AppState;
use crate::auth::{Caller, ClientAddr};
use crate::error::{ApiError, ErrorBody};
use crate::service::{
    self, ChangePasswordRequest, LoginRequest, LoginResponse, MeResponse, RegisterRequest,
};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use voxhub_store::users::User;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(login))
        .routes(routes!(logout))
        .routes(routes!(register))
        .routes(routes!(me))
        .routes(routes!(change_password))
}

/// Log in with a username and password; returns a session token.
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", request_body = LoginRequest,
    responses(
        (status = 200, body = LoginResponse),
        (status = 401, description = "Wrong username or password", body = ErrorBody),
        (status = 403, description = "Account disabled", body = ErrorBody),
        (status = 429, description = "Too many failed logins; see Retry-After", body = ErrorBody),
    ))]
async fn login(
    State(state): State<AppState>,
    ClientAddr(source): ClientAddr,
    ApiJson(request): ApiJson<LoginRequest>,
) -> Result<Json<LoginResponse>, ApiError> {
    let logged_in = service::login(&state, &source, request, "api login").await?;
    Ok(Json(LoginResponse {
        token: logged_in.secret,
        expires_at: voxhub_core::timefmt::rfc3339(logged_in.expires_at),
        user: logged_in.user,
    }))
}

/// End the session whose token made this request.
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth", security(("bearer" = [])),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn logout(
    State(state): State<AppState>,
    ClientAddr(source): ClientAddr,
    caller: Caller,
) -> Result<StatusCode, ApiError> {
    service::logout(&state, &caller.context(&source)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Create an account with an invite code; the account joins the code's class with the code's role.
#[utoipa::path(post, path = "/api/v1/auth/register", tag = "auth", request_body = RegisterRequest,
    responses(
        (status = 201, body = User),
        (status = 404, description = "Unknown invite code", body = ErrorBody),
        (status = 409, description = "Username taken", body = ErrorBody),
        (status = 410, description = "Invite code expired, revoked or used up", body = ErrorBody),
        (status = 422, description = "A field does not meet the rules", body = ErrorBody),
    ))]
async fn register(
    State(state): State<AppState>,
    ClientAddr(source): ClientAddr,
    ApiJson(request): ApiJson<RegisterRequest>,
) -> Result<(StatusCode, Json<User>), ApiError> {
    let (user, _, _) = service::register(&state, &source, request).await?;
    Ok((StatusCode::CREATED, Json(user)))
}

/// The caller, their role and their classes.
#[utoipa::path(get, path = "/api/v1/me", tag = "auth", security(("bearer" = [])),
    responses((status = 200, body = MeResponse), (status = 401, body = ErrorBody)))]
async fn me(State(state): State<AppState>, caller: Caller) -> Result<Json<MeResponse>, ApiError> {
    Ok(Json(service::me(&state, &caller).await?))
}

/// Change your own password; your other sessions end.
#[utoipa::path(post, path = "/api/v1/me/password", tag = "auth", security(("bearer" = [])), request_body = ChangePasswordRequest,
    responses((status = 204), (status = 403, description = "Current password wrong", body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn change_password(
    State(state): State<AppState>,
    ClientAddr(source): ClientAddr,
    caller: Caller,
    ApiJson(request): ApiJson<ChangePasswordRequest>,
) -> Result<StatusCode, ApiError> {
    service::change_password(&state, &caller.context(&source), request).await?;
    Ok(StatusCode::NO_CONTENT)
}
