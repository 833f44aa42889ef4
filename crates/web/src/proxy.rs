//! The authenticated reverse proxy to interactive instances at `/i/<id>/…`, for HTTP and
//! WebSocket. Only the instance's owner (and admins) get through; the instance's own
//! token is added here and never reaches the browser, and voxhub's cookies and bearer
//! tokens are taken off every request before it reaches code the user controls.

use crate::AppState;
use crate::auth::{Caller, SESSION_COOKIE, authenticate_secret, cookie};
use crate::error::ApiError;
use crate::pages::PageError;
use axum::body::Body;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use hyper_util::rt::TokioIo;
use voxhub_core::permissions;
use voxhub_store::workloads::State as WorkloadState;

/// Cookies that belong to voxhub itself and must never reach an instance.
const OWN_COOKIES: &[&str] = &[SESSION_COOKIE, crate::auth::PRELOGIN_CSRF_COOKIE];

/// What the proxy needs to know of a request before it is forwarded.
struct Incoming {
    headers: axum::http::HeaderMap,
    is_get: bool,
    path_and_query: String,
}

impl Incoming {
    /// Browsers carry the session cookie; programs a bearer token. Errors are shown as a
    /// page to the first and as JSON to the second.
    fn is_browser(&self) -> bool {
        self.headers.get(header::AUTHORIZATION).is_none()
    }
}

async fn caller(state: &AppState, request: &Incoming) -> Result<Caller, Response> {
    let secret = request
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string)
        .or_else(|| cookie(&request.headers, SESSION_COOKIE).map(str::to_string));
    let Some(secret) = secret else {
        if request.is_browser() && request.is_get {
            return Err(Redirect::to(&format!(
                "/login?next={}",
                crate::pages::url_escape(&request.path_and_query)
            ))
            .into_response());
        }
        return Err(
            ApiError::unauthorized("unauthenticated", "log in to open this environment")
                .into_response(),
        );
    };
    authenticate_secret(state, &secret)
        .await
        .map_err(|error| error.into_response())
}

fn refuse(request: &Incoming, error: ApiError) -> Response {
    if request.is_browser() {
        PageError(error).into_response()
    } else {
        error.into_response()
    }
}

/// The workload id at the start of `/i/<id>/…`.
fn workload_id(path: &str) -> Option<i64> {
    path.strip_prefix("/i/")?.split('/').next()?.parse().ok()
}

pub async fn proxy(State(state): State<AppState>, request: Request) -> Response {
    // The same source address as every other request records (proxy headers included).
    let (mut parts, body) = request.into_parts();
    let source = match crate::auth::ClientAddr::from_request_parts(&mut parts, &state).await {
        Ok(crate::auth::ClientAddr(source)) => source,
        Err(_) => "unknown".into(),
    };
    let mut request = Request::from_parts(parts, body);
    let path_and_query = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    let incoming = Incoming {
        headers: request.headers().clone(),
        is_get: request.method() == axum::http::Method::GET,
        path_and_query: path_and_query.clone(),
    };
    let Some(id) = workload_id(request.uri().path()) else {
        return refuse(
            &incoming,
            ApiError::not_found("there is no environment at this address"),
        );
    };
    let caller = match caller(&state, &incoming).await {
        Ok(caller) => caller,
        Err(response) => return response,
    };
    let Some(runtime) = state.runtime.as_deref() else {
        return refuse(
            &incoming,
            ApiError::unavailable("this server does not run environments"),
        );
    };
    let workload = match state.store.workload(id).await {
        Ok(workload) if workload.kind == "instance" => workload,
        Ok(_) | Err(voxhub_store::StoreError::NotFound(_)) => {
            return refuse(
                &incoming,
                ApiError::not_found(format!(
                    "there is no environment {id}; open yours from the queue page"
                )),
            );
        }
        Err(error) => return refuse(&incoming, error.into()),
    };
    if let Err(denied) = permissions::can_enter_instance(&caller.actor(), workload.owner_id) {
        let ctx = caller.context(&source);
        let target = format!("workload:{id} {}", workload.name);
        let _ = crate::service::allowed(
            &ctx,
            &state,
            "instance.open",
            &target,
            Err::<(), _>(denied.clone()),
        )
        .await;
        return refuse(&incoming, denied.into());
    }
    match workload.state {
        WorkloadState::Running => {}
        WorkloadState::Queued | WorkloadState::Starting => {
            let mut error = ApiError::unavailable(
                "this environment is still starting; wait a few seconds and reload the page",
            );
            error.retry_after_s = Some(3);
            return refuse(&incoming, error);
        }
        ended => {
            return refuse(
                &incoming,
                ApiError::new(
                    StatusCode::GONE,
                    "ended",
                    format!(
                        "this environment has ended ({}); launch a new one from the queue page",
                        ended.label()
                    ),
                ),
            );
        }
    }
    let (Some(port), Some(secret)) = (workload.port, workload.secret.clone()) else {
        return refuse(
            &incoming,
            ApiError::internal("running instance without a port"),
        );
    };

    let Ok(uri) = format!("http://127.0.0.1:{port}{path_and_query}").parse::<axum::http::Uri>()
    else {
        return refuse(
            &incoming,
            ApiError::bad_request("invalid_path", "the address is not valid"),
        );
    };
    let upgrade = request.headers().get(header::UPGRADE).is_some();
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut request));

    let (mut parts, body) = request.into_parts();
    parts.uri = uri;
    let headers = &mut parts.headers;
    headers.remove(header::AUTHORIZATION);
    let kept_cookies: Vec<String> = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .map(str::trim)
        .filter(|pair| {
            !OWN_COOKIES
                .iter()
                .any(|own| pair.split('=').next() == Some(own))
        })
        .map(str::to_string)
        .collect();
    headers.remove(header::COOKIE);
    if !kept_cookies.is_empty()
        && let Ok(value) = HeaderValue::from_str(&kept_cookies.join("; "))
    {
        headers.insert(header::COOKIE, value);
    }
    if let Ok(value) = HeaderValue::from_str(&format!("token {secret}")) {
        headers.insert(header::AUTHORIZATION, value);
    }
    let backend_request = Request::from_parts(parts, body);

    let mut response = match runtime.http.request(backend_request).await {
        Ok(response) => response,
        Err(error) => {
            tracing::warn!(workload = id, "proxy to the instance failed: {error}");
            return refuse(
                &incoming,
                ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    "instance_unreachable",
                    "the environment did not answer; wait a moment and reload, or stop it and launch a new one",
                ),
            );
        }
    };

    if response.status() == StatusCode::SWITCHING_PROTOCOLS
        && let Some(client_upgrade) = client_upgrade
    {
        let backend_upgrade = hyper::upgrade::on(&mut response);
        tokio::spawn(async move {
            match (client_upgrade.await, backend_upgrade.await) {
                (Ok(client), Ok(backend)) => {
                    let _ = tokio::io::copy_bidirectional(
                        &mut TokioIo::new(client),
                        &mut TokioIo::new(backend),
                    )
                    .await;
                }
                (Err(error), _) | (_, Err(error)) => {
                    tracing::debug!(workload = id, "websocket upgrade failed: {error}")
                }
            }
        });
        let (parts, _) = response.into_parts();
        return Response::from_parts(parts, Body::empty());
    }
    let (parts, body) = response.into_parts();
    Response::from_parts(parts, Body::new(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_workload_id_is_read_from_the_first_segment() {
        assert_eq!(workload_id("/i/12/lab"), Some(12));
        assert_eq!(workload_id("/i/12"), Some(12));
        assert_eq!(workload_id("/i/abc/lab"), None);
        assert_eq!(workload_id("/x/12/lab"), None);
    }
}
