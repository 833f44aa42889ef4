//! DICOMweb at `/dicom-web`, so that viewers, scripts and other tools reach the datasets
//! through the standard (PS3.18): QIDO-RS searches, WADO-RS retrieval (files, metadata,
//! frames, rendered pictures, bulk data) and STOW-RS storage.
//!
//! Two roots serve the same API. `/dicom-web` covers every dataset the caller may read
//! (their own, those shared with their classes; admins all of them): a dataset they may
//! not read is simply not there. `/dicom-web/datasets/{id}` is one dataset (403 when the
//! caller may not read it); storing needs a target, so STOW-RS is only offered there, and
//! goes through the same ingest and de-identification as uploads.
//!
//! Callers authenticate as for the API (`Authorization: Bearer …`, an API token or a login
//! session); reads also accept the browser's session cookie. Every retrieval of patient
//! data is an audited read (`dataset.dicomweb`, per series), and so is every search
//! (`dataset.dicomweb_search`), de-duplicated over the read-audit window.
//!
//! These routes are outside `/api` and not in the OpenAPI document: DICOMweb is described
//! by the standard, not by JSON schemas.
//!
//! | module | owns |
//! | --- | --- |
//! | [`qido`] | searches, their query keys and the DICOM JSON of results |
//! | [`wado`] | retrieval: instances, metadata, frames, rendered PNG, bulk data |
//! | [`stow`] | storing: reading the multipart request, ingest, the store response |
//! | [`multipart`] | `multipart/related` read as a stream and written |
//! | [`pixels`] | the bytes of frames, as stored or decoded |

pub mod multipart;
pub mod pixels;
pub mod qido;
pub mod stow;
pub mod wado;

use crate::AppState;
use crate::auth::{Caller, ReadCaller};
use crate::datasets::{dataset_target, imaging, read_access};
use crate::error::ApiError;
use crate::service::Context;
use axum::Router;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use voxhub_core::role::Role;

/// The DICOMweb routes, under both roots.
pub fn router() -> Router<AppState> {
    let mut router = Router::new();
    for root in ["/dicom-web", "/dicom-web/datasets/{dataset}"] {
        let instance = format!("{root}/studies/{{study}}/series/{{series}}/instances/{{instance}}");
        router = router
            .route(
                &format!("{root}/studies"),
                get(qido::studies).post(stow::store),
            )
            .route(&format!("{root}/series"), get(qido::series))
            .route(&format!("{root}/instances"), get(qido::instances))
            .route(&format!("{root}/studies/{{study}}"), get(wado::retrieve))
            .route(
                &format!("{root}/studies/{{study}}/metadata"),
                get(wado::metadata),
            )
            .route(
                &format!("{root}/studies/{{study}}/series"),
                get(qido::series),
            )
            .route(
                &format!("{root}/studies/{{study}}/instances"),
                get(qido::instances),
            )
            .route(
                &format!("{root}/studies/{{study}}/series/{{series}}"),
                get(wado::retrieve),
            )
            .route(
                &format!("{root}/studies/{{study}}/series/{{series}}/metadata"),
                get(wado::metadata),
            )
            .route(
                &format!("{root}/studies/{{study}}/series/{{series}}/instances"),
                get(qido::instances),
            )
            .route(&instance, get(wado::retrieve))
            .route(&format!("{instance}/metadata"), get(wado::metadata))
            .route(&format!("{instance}/rendered"), get(wado::rendered))
            .route(&format!("{instance}/frames/{{frames}}"), get(wado::frames))
            .route(
                &format!("{instance}/frames/{{frames}}/rendered"),
                get(wado::rendered),
            )
            .route(
                &format!("{instance}/bulkdata/{{tag}}"),
                get(wado::bulk_data),
            );
    }
    router
}

/// The parts of a DICOMweb address.
#[derive(Debug, Default, Deserialize)]
pub struct Ids {
    pub dataset: Option<i64>,
    pub study: Option<String>,
    pub series: Option<String>,
    pub instance: Option<String>,
    pub frames: Option<String>,
    pub tag: Option<String>,
}

/// The caller of a DICOMweb request: a bearer token, or for reads the browser's session
/// cookie (a cookie never authorises a store, which a page elsewhere could trigger).
pub struct DicomwebCaller(pub Caller);

impl FromRequestParts<AppState> for DicomwebCaller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        ReadCaller::from_request_parts(parts, state)
            .await
            .map(|ReadCaller(caller)| DicomwebCaller(caller))
            .map_err(|mut error| {
                if error.code == "unauthenticated" {
                    error.message = "DICOMweb needs your identity: send 'Authorization: Bearer <token>' with an API token (POST /api/v1/tokens or `voxhub token create`)".into();
                }
                error
            })
    }
}

/// What a request reaches: the datasets, and the root its URLs are written under.
pub struct Scope {
    /// The datasets searched and retrieved from.
    pub datasets: Vec<i64>,
    /// `http://host/dicom-web` or `http://host/dicom-web/datasets/{id}`.
    pub root: String,
    /// The one dataset of a dataset root, as `dataset:{id} {name}` for the audit log.
    pub dataset_target: Option<String>,
}

impl Scope {
    pub fn study_url(&self, study: &str) -> String {
        format!("{}/studies/{study}", self.root)
    }

    pub fn series_url(&self, study: &str, series: &str) -> String {
        format!("{}/studies/{study}/series/{series}", self.root)
    }

    pub fn instance_url(&self, study: &str, series: &str, instance: &str) -> String {
        format!(
            "{}/studies/{study}/series/{series}/instances/{instance}",
            self.root
        )
    }

    /// Records a search of the index: once per kind and set of datasets within the window.
    pub async fn audit_search(
        &self,
        state: &AppState,
        ctx: &Context<'_>,
        kind: &str,
        detail: String,
    ) -> Result<(), ApiError> {
        let datasets = match &self.dataset_target {
            Some(target) => target.clone(),
            None => {
                let mut ids: Vec<String> = self
                    .datasets
                    .iter()
                    .take(50)
                    .map(ToString::to_string)
                    .collect();
                if self.datasets.len() > 50 {
                    ids.push(format!("… ({} datasets)", self.datasets.len()));
                }
                format!("datasets:{}", ids.join(","))
            }
        };
        imaging(state)?
            .audit_read(
                state,
                ctx,
                "dicomweb_search",
                format!("{datasets} {kind}"),
                detail,
            )
            .await
    }
}

/// The scheme and host the caller used, for absolute Retrieve URLs; relative when unknown.
/// Behind a trusted reverse proxy its `X-Forwarded-Host` and `X-Forwarded-Proto` say them.
fn origin(state: &AppState, headers: &HeaderMap) -> String {
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|h| h.to_str().ok())
            .map(|h| h.rsplit(',').next().unwrap_or(h).trim().to_string())
    };
    let valid_host = |h: &String| {
        !h.is_empty()
            && h.len() <= 255
            && h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'))
    };
    let trusted = state.settings.trust_forwarded_for;
    let host = trusted
        .then(|| text("x-forwarded-host"))
        .flatten()
        .filter(valid_host)
        .or_else(|| text(header::HOST.as_str()).filter(valid_host));
    let scheme = match trusted
        .then(|| text("x-forwarded-proto"))
        .flatten()
        .as_deref()
    {
        Some("https") => "https",
        Some("http") => "http",
        _ if state.settings.secure_cookies => "https",
        _ => "http",
    };
    host.map_or_else(String::new, |host| format!("{scheme}://{host}"))
}

/// The datasets a request reaches: the one in its address (if the caller may read it), or
/// every dataset the caller may read.
pub async fn scope(
    state: &AppState,
    ctx: &Context<'_>,
    dataset: Option<i64>,
    headers: &HeaderMap,
) -> Result<Scope, ApiError> {
    imaging(state)?;
    let origin = origin(state, headers);
    match dataset {
        Some(id) => {
            let (dataset, _) = read_access(state, ctx, id).await?;
            Ok(Scope {
                datasets: vec![id],
                root: format!("{origin}/dicom-web/datasets/{id}"),
                dataset_target: Some(dataset_target(dataset.id, &dataset.name)),
            })
        }
        None => {
            let user = &ctx.caller.user;
            let datasets = if user.role == Role::Admin {
                state.store.all_dataset_ids().await?
            } else {
                state.store.dataset_ids_visible_to(user.id).await?
            };
            Ok(Scope {
                datasets,
                root: format!("{origin}/dicom-web"),
                dataset_target: None,
            })
        }
    }
}

/// The media ranges of an `Accept` header: essence and parameters, those with `q=0` left out.
pub fn accepted(headers: &HeaderMap) -> Vec<(String, Vec<(String, String)>)> {
    let mut ranges = Vec::new();
    for value in headers.get_all(header::ACCEPT) {
        let Ok(value) = value.to_str() else { continue };
        let mut current = String::new();
        let mut quoted = false;
        let mut pieces = Vec::new();
        for c in value.chars() {
            match c {
                '"' => {
                    quoted = !quoted;
                    current.push(c);
                }
                ',' if !quoted => pieces.push(std::mem::take(&mut current)),
                _ => current.push(c),
            }
        }
        pieces.push(current);
        for piece in pieces {
            let (essence, params) = multipart::media_type(&piece);
            if essence.is_empty() {
                continue;
            }
            let refused = params
                .iter()
                .any(|(name, value)| name == "q" && value.parse::<f32>().is_ok_and(|q| q <= 0.0));
            if !refused {
                ranges.push((essence, params));
            }
        }
    }
    ranges
}

/// Refuses a search whose caller takes neither DICOM JSON nor JSON.
pub fn accept_json(headers: &HeaderMap) -> Result<(), ApiError> {
    let ranges = accepted(headers);
    if ranges.is_empty()
        || ranges.iter().any(|(essence, _)| {
            matches!(
                essence.as_str(),
                "application/dicom+json" | "application/json" | "application/*" | "*/*"
            )
        })
    {
        return Ok(());
    }
    Err(not_acceptable(
        "voxhub answers DICOMweb searches and metadata in JSON; ask for application/dicom+json (XML is not offered)",
    ))
}

pub fn not_acceptable(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::NOT_ACCEPTABLE, "not_acceptable", message)
}

/// A DICOM JSON answer.
pub fn dicom_json_response(status: StatusCode, body: serde_json::Value) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/dicom+json"),
        )],
        body.to_string(),
    )
        .into_response()
}
