//! `/api/v1/classes`: classes, their members and their invite codes.

use super::{ApiJson, ApiPath};
use crate::AppState;
use crate::auth::{Caller, ClientAddr};
use crate::error::{ApiError, ErrorBody};
use crate::service::{
    self, AddMemberRequest, ClassRequest, ClassResponse, CreateInviteRequest, UpdateClassRequest,
};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use voxhub_store::classes::{Class, Member};
use voxhub_store::invites::Invite;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_classes, create_class))
        .routes(routes!(get_class, update_class))
        .routes(routes!(list_members, add_member))
        .routes(routes!(remove_member))
        .routes(routes!(list_invites, create_invite))
        .routes(routes!(revoke_invite))
}

/// Your classes (every class for admins).
#[utoipa::path(get, path = "/api/v1/classes", tag = "classes", security(("bearer" = [])),
    responses((status = 200, body = Vec<Class>), (status = 401, body = ErrorBody)))]
async fn list_classes(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<Class>>, ApiError> {
    Ok(Json(service::list_classes(&state, &caller).await?))
}

/// Create a class (teachers and admins). A teacher who creates a class teaches it.
#[utoipa::path(post, path = "/api/v1/classes", tag = "classes", security(("bearer" = [])), request_body = ClassRequest,
    responses((status = 201, body = ClassResponse), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn create_class(
    State(state): State<AppState>,
    ClientAddr(source): ClientAddr,
    caller: Caller,
    ApiJson(request): ApiJson<ClassRequest>,
) -> Result<(StatusCode, Json<ClassResponse>), ApiError> {
    let class = service::create_class(&state, &caller.context(&source), request).await?;
    Ok((StatusCode::CREATED, Json(class)))
}

/// One class (its members and admins).
#[utoipa::path(get, path = "/api/v1/classes/{id}", tag = "classes", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Class id")),
    responses((status = 200, body = ClassResponse), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_class(
    State(state): State<AppState>,
    ClientAddr(source): ClientAddr,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<ClassResponse>, ApiError> {
    let ctx = caller.context(&source);
    Ok(Json(service::get_class(&state, &ctx, id).await?.0))
}

/// Change a class's name, description or dates (its teachers and admins).
#[utoipa::path(patch, path = "/api/v1/classes/{id}", tag = "classes", security(("bearer" = [])), request_body = UpdateClassRequest,
    params(("id" = i64, Path, description = "Class id")),
    responses((status = 200, body = ClassResponse), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn update_class(
    State(state): State<AppState>,
    ClientAddr(source): ClientAddr,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
    ApiJson(request): ApiJson<UpdateClassRequest>,
) -> Result<Json<ClassResponse>, ApiError> {
    Ok(Json(
        service::update_class(&state, &caller.context(&source), id, request).await?,
    ))
}

/// Members of a class with how they joined. Students of the class see only its teachers.
#[utoipa::path(get, path = "/api/v1/classes/{id}/members", tag = "classes", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Class id")),
    responses((status = 200, body = Vec<Member>), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn list_members(
    State(state): State<AppState>,
    ClientAddr(source): ClientAddr,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Vec<Member>>, ApiError> {
    let ctx = caller.context(&source);
    Ok(Json(service::list_members(&state, &ctx, id).await?))
}

/// Add an existing account to a class, or change their role in it (its teachers and admins).
#[utoipa::path(post, path = "/api/v1/classes/{id}/members", tag = "classes", security(("bearer" = [])), request_body = AddMemberRequest,
    params(("id" = i64, Path, description = "Class id")),
    responses((status = 200, body = Member), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn add_member(
    State(state): State<AppState>,
    ClientAddr(source): ClientAddr,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
    ApiJson(request): ApiJson<AddMemberRequest>,
) -> Result<Json<Member>, ApiError> {
    Ok(Json(
        service::add_member(&state, &caller.context(&source), id, request).await?,
    ))
}

/// Remove someone from a class (its teachers and admins). Their account stays.
#[utoipa::path(delete, path = "/api/v1/classes/{id}/members/{user_id}", tag = "classes", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Class id"), ("user_id" = i64, Path, description = "User id")),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn remove_member(
    State(state): State<AppState>,
    ClientAddr(source): ClientAddr,
    caller: Caller,
    ApiPath((id, user_id)): ApiPath<(i64, i64)>,
) -> Result<StatusCode, ApiError> {
    service::remove_member(&state, &caller.context(&source), id, user_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Invite codes of a class with their use counts (its teachers and admins).
#[utoipa::path(get, path = "/api/v1/classes/{id}/invites", tag = "classes", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Class id")),
    responses((status = 200, body = Vec<Invite>), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn list_invites(
    State(state): State<AppState>,
    ClientAddr(source): ClientAddr,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Vec<Invite>>, ApiError> {
    Ok(Json(
        service::list_invites(&state, &caller.context(&source), id).await?,
    ))
}

/// Create an invite code for a class (its teachers and admins).
#[utoipa::path(post, path = "/api/v1/classes/{id}/invites", tag = "classes", security(("bearer" = [])), request_body = CreateInviteRequest,
    params(("id" = i64, Path, description = "Class id")),
    responses((status = 201, body = Invite), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn create_invite(
    State(state): State<AppState>,
    ClientAddr(source): ClientAddr,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
    ApiJson(request): ApiJson<CreateInviteRequest>,
) -> Result<(StatusCode, Json<Invite>), ApiError> {
    let invite = service::create_invite(&state, &caller.context(&source), id, request).await?;
    Ok((StatusCode::CREATED, Json(invite)))
}

/// Revoke an invite code so nobody else can register with it; existing members stay.
#[utoipa::path(delete, path = "/api/v1/classes/{id}/invites/{invite_id}", tag = "classes", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Class id"), ("invite_id" = i64, Path, description = "Invite code id")),
    responses((status = 200, body = Invite), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn revoke_invite(
    State(state): State<AppState>,
    ClientAddr(source): ClientAddr,
    caller: Caller,
    ApiPath((id, invite_id)): ApiPath<(i64, i64)>,
) -> Result<Json<Invite>, ApiError> {
    Ok(Json(
        service::revoke_invite(&state, &caller.context(&source), id, invite_id).await?,
    ))
}
