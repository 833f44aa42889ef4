//! `/api/v1/jobs`, `/api/v1/instances`, `/api/v1/workloads` and `/api/v1/workspace`: the
//! queue, its workloads, their logs, and workspace files.

use super::{ApiJson, ApiPath, ApiQuery};
use crate::AppState;
use crate::auth::{Caller, ClientAddr};
use crate::error::{ApiError, ErrorBody};
use crate::runtime::Size;
use crate::workloads::{self, InstanceRequest, JobRequest, QueueAction, Scope, WorkloadView};
use crate::workspace::{self, Entry};
use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use std::time::Duration;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_workloads))
        .routes(routes!(submit_job))
        .routes(routes!(launch_instance))
        .routes(routes!(list_sizes))
        .routes(routes!(get_workload))
        .routes(routes!(stop_workload))
        .routes(routes!(queue_action))
        .routes(routes!(workload_logs))
        .routes(routes!(list_workspace))
        .routes(routes!(download_file, upload_file))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    /// `mine` or `visible` (default: everything you may see).
    #[param(inline)]
    scope: Option<Scope>,
    /// Only queued, starting and running workloads.
    active: Option<bool>,
}

/// The queue: workloads you may see, newest first, with position, estimated start and time left.
#[utoipa::path(get, path = "/api/v1/workloads", tag = "workloads", security(("bearer" = [])), params(ListQuery),
    responses((status = 200, body = Vec<WorkloadView>), (status = 401, body = ErrorBody)))]
async fn list_workloads(
    State(state): State<AppState>,
    ClientAddr(source): ClientAddr,
    caller: Caller,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<Vec<WorkloadView>>, ApiError> {
    let ctx = caller.context(&source);
    Ok(Json(
        workloads::list(
            &state,
            &ctx,
            query.scope.unwrap_or_default(),
            query.active.unwrap_or(false),
        )
        .await?,
    ))
}

/// Submit a batch job to the queue.
#[utoipa::path(post, path = "/api/v1/jobs", tag = "workloads", security(("bearer" = [])), request_body = JobRequest,
    responses((status = 201, body = WorkloadView), (status = 422, description = "Invalid or impossible request", body = ErrorBody)))]
async fn submit_job(
    State(state): State<AppState>,
    ClientAddr(source): ClientAddr,
    caller: Caller,
    ApiJson(request): ApiJson<JobRequest>,
) -> Result<(StatusCode, Json<WorkloadView>), ApiError> {
    let view = workloads::submit_job(&state, &caller.context(&source), request).await?;
    Ok((StatusCode::CREATED, Json(view)))
}

/// Launch an interactive JupyterLab; open it at `open_url` once it runs.
#[utoipa::path(post, path = "/api/v1/instances", tag = "workloads", security(("bearer" = [])), request_body = InstanceRequest,
    responses((status = 201, body = WorkloadView), (status = 422, body = ErrorBody)))]
async fn launch_instance(
    State(state): State<AppState>,
    ClientAddr(source): ClientAddr,
    caller: Caller,
    ApiJson(request): ApiJson<InstanceRequest>,
) -> Result<(StatusCode, Json<WorkloadView>), ApiError> {
    let view = workloads::launch_instance(&state, &caller.context(&source), request).await?;
    Ok((StatusCode::CREATED, Json(view)))
}

/// The instance sizes you can choose from.
#[utoipa::path(get, path = "/api/v1/sizes", tag = "workloads", security(("bearer" = [])),
    responses((status = 200, body = Vec<Size>)))]
async fn list_sizes(
    State(state): State<AppState>,
    _caller: Caller,
) -> Result<Json<Vec<Size>>, ApiError> {
    Ok(Json(workloads::sizes(&state)?))
}

/// One workload.
#[utoipa::path(get, path = "/api/v1/workloads/{id}", tag = "workloads", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Workload id")),
    responses((status = 200, body = WorkloadView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_workload(
    State(state): State<AppState>,
    ClientAddr(source): ClientAddr,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<WorkloadView>, ApiError> {
    Ok(Json(
        workloads::get(&state, &caller.context(&source), id).await?,
    ))
}

/// Stop a running workload or cancel a queued one (owner or admin). The workspace is kept.
#[utoipa::path(post, path = "/api/v1/workloads/{id}/stop", tag = "workloads", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Workload id")),
    responses((status = 200, body = WorkloadView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn stop_workload(
    State(state): State<AppState>,
    ClientAddr(source): ClientAddr,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<WorkloadView>, ApiError> {
    Ok(Json(
        workloads::stop(&state, &caller.context(&source), id).await?,
    ))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct QueueActionRequest {
    /// `hold`, `release`, `up` or `down`.
    action: QueueAction,
}

/// Hold, release or move a queued workload (admins).
#[utoipa::path(post, path = "/api/v1/workloads/{id}/queue", tag = "workloads", security(("bearer" = [])), request_body = QueueActionRequest,
    params(("id" = i64, Path, description = "Workload id")),
    responses((status = 200, body = WorkloadView), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn queue_action(
    State(state): State<AppState>,
    ClientAddr(source): ClientAddr,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
    ApiJson(request): ApiJson<QueueActionRequest>,
) -> Result<Json<WorkloadView>, ApiError> {
    Ok(Json(
        workloads::queue_action(&state, &caller.context(&source), id, request.action).await?,
    ))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct LogQuery {
    /// Start from this byte offset (from the `X-Log-Offset` header of an earlier answer).
    offset: Option<u64>,
    /// Keep the answer open and send new output as it comes, until the workload ends.
    follow: Option<bool>,
}

const LOG_PIECE_BYTES: usize = 256 * 1024;

/// The workload's output (stdout and stderr), as plain text. With `follow=true` the
/// answer streams new output like `tail -f` until the workload ends.
#[utoipa::path(get, path = "/api/v1/workloads/{id}/logs", tag = "workloads", security(("bearer" = [])), params(("id" = i64, Path, description = "Workload id"), LogQuery),
    responses((status = 200, description = "Log text; `X-Log-Offset` gives the offset to continue from", content_type = "text/plain"), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn workload_logs(
    State(state): State<AppState>,
    ClientAddr(source): ClientAddr,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
    ApiQuery(query): ApiQuery<LogQuery>,
) -> Result<Response, ApiError> {
    log_response(
        state,
        caller,
        source,
        id,
        query.offset.unwrap_or(0),
        query.follow.unwrap_or(false),
    )
    .await
}

/// Plain-text log answer, shared with the web page that follows a log in the browser.
pub async fn log_response(
    state: AppState,
    caller: Caller,
    source: String,
    id: i64,
    offset: u64,
    follow: bool,
) -> Result<Response, ApiError> {
    let (workload, first) = workloads::log_chunk(
        &state,
        &caller.context(&source),
        id,
        offset,
        LOG_PIECE_BYTES,
    )
    .await?;
    let text_headers = |response: &mut Response, next: u64| {
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(
            "x-content-type-options",
            HeaderValue::from_static("nosniff"),
        );
        if let Ok(value) = HeaderValue::from_str(&next.to_string()) {
            headers.insert("x-log-offset", value);
        }
    };
    if !follow {
        let mut data = first.data;
        let mut next = first.next_offset;
        // Without follow, answer everything there is (in pieces, to bound memory per read).
        while data.len() < 64 * 1024 * 1024 {
            let (_, more) =
                workloads::log_chunk(&state, &caller.context(&source), id, next, LOG_PIECE_BYTES)
                    .await?;
            if more.data.is_empty() {
                break;
            }
            data.extend_from_slice(&more.data);
            next = more.next_offset;
        }
        let mut response = Body::from(data).into_response();
        text_headers(&mut response, next);
        return Ok(response);
    }
    let (sender, receiver) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(8);
    let mut offset = first.next_offset;
    let first_data = first.data;
    tokio::spawn(async move {
        if !first_data.is_empty()
            && sender
                .send(Ok(bytes::Bytes::from(first_data)))
                .await
                .is_err()
        {
            return;
        }
        let mut ended_polls = 0;
        loop {
            let ctx = caller.context(&source);
            let Ok((current, chunk)) =
                workloads::log_chunk(&state, &ctx, id, offset, LOG_PIECE_BYTES).await
            else {
                return;
            };
            offset = chunk.next_offset;
            if !chunk.data.is_empty() {
                if sender
                    .send(Ok(bytes::Bytes::from(chunk.data)))
                    .await
                    .is_err()
                {
                    return;
                }
                continue;
            }
            // After the end, read once more so output written at the last moment is sent.
            if !current.state.is_active() {
                ended_polls += 1;
                if ended_polls > 1 {
                    return;
                }
            }
            if sender.is_closed() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    });
    let _ = workload;
    let mut response =
        Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(receiver)).into_response();
    text_headers(&mut response, offset);
    response
        .headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct WorkspaceQuery {
    /// A path relative to the workspace (default: its top).
    path: Option<String>,
    /// Whose workspace (admins only; default: your own).
    user: Option<String>,
}

/// The files and folders in your workspace.
#[utoipa::path(get, path = "/api/v1/workspace", tag = "workspace", security(("bearer" = [])), params(WorkspaceQuery),
    responses((status = 200, body = Vec<Entry>), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn list_workspace(
    State(state): State<AppState>,
    ClientAddr(source): ClientAddr,
    caller: Caller,
    ApiQuery(query): ApiQuery<WorkspaceQuery>,
) -> Result<Json<Vec<Entry>>, ApiError> {
    let ctx = caller.context(&source);
    Ok(Json(
        workspace::list(
            &state,
            &ctx,
            query.user.as_deref(),
            query.path.as_deref().unwrap_or(""),
        )
        .await?,
    ))
}

/// Download one file of your workspace.
#[utoipa::path(get, path = "/api/v1/workspace/file", tag = "workspace", security(("bearer" = [])), params(WorkspaceQuery),
    responses((status = 200, description = "The file", content_type = "application/octet-stream"), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn download_file(
    State(state): State<AppState>,
    ClientAddr(source): ClientAddr,
    caller: Caller,
    ApiQuery(query): ApiQuery<WorkspaceQuery>,
) -> Result<Response, ApiError> {
    let ctx = caller.context(&source);
    file_response(
        &state,
        &ctx,
        query.user.as_deref(),
        query.path.as_deref().unwrap_or(""),
    )
    .await
}

/// A download answer, shared with the workspace page.
pub async fn file_response(
    state: &AppState,
    ctx: &crate::service::Context<'_>,
    user: Option<&str>,
    path: &str,
) -> Result<Response, ApiError> {
    let (file, size, name) = workspace::open_file(state, ctx, user, path).await?;
    let body = Body::from_stream(tokio_util_stream(file));
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
    let safe: String = name
        .chars()
        .filter(|c| c.is_ascii_graphic() && *c != '"' && *c != '\\')
        .collect();
    if let Ok(value) = HeaderValue::from_str(&format!("attachment; filename=\"{safe}\"")) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    Ok(response)
}

/// Streams a file in 64 KiB pieces.
fn tokio_util_stream(
    file: tokio::fs::File,
) -> tokio_stream::wrappers::ReceiverStream<Result<bytes::Bytes, std::io::Error>> {
    let (sender, receiver) = tokio::sync::mpsc::channel(4);
    tokio::spawn(async move {
        use tokio::io::AsyncReadExt;
        let mut file = file;
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            match file.read(&mut buffer).await {
                Ok(0) => return,
                Ok(n) => {
                    if sender
                        .send(Ok(bytes::Bytes::copy_from_slice(&buffer[..n])))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                Err(error) => {
                    let _ = sender.send(Err(error)).await;
                    return;
                }
            }
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(receiver)
}

/// Upload one file into your workspace (the request body is the file). Replaces a file of
/// the same name; folders on the way are created.
#[utoipa::path(put, path = "/api/v1/workspace/file", tag = "workspace", security(("bearer" = [])), params(WorkspaceQuery),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses((status = 200, body = Entry), (status = 403, body = ErrorBody), (status = 413, body = ErrorBody)))]
async fn upload_file(
    State(state): State<AppState>,
    ClientAddr(source): ClientAddr,
    caller: Caller,
    ApiQuery(query): ApiQuery<WorkspaceQuery>,
    body: Body,
) -> Result<Json<Entry>, ApiError> {
    let limit = workloads::runtime(&state)?.settings.max_upload_bytes;
    let bytes = axum::body::to_bytes(body, limit).await.map_err(|_| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "file_too_large",
            format!(
                "the file is larger than the {} MiB allowed for one upload",
                limit / (1024 * 1024)
            ),
        )
    })?;
    let ctx = caller.context(&source);
    Ok(Json(
        workspace::save_file(
            &state,
            &ctx,
            query.user.as_deref(),
            query.path.as_deref().unwrap_or(""),
            &bytes,
        )
        .await?,
    ))
}
