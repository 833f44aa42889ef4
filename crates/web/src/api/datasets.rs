//! `/api/v1/datasets`, `/api/v1/series` and `/api/v1/uploads`: imaging datasets, uploads
//! into them with their ingest reports, and browsing patients → studies → series.

use super::{ApiJson, ApiPath, ApiQuery};
use crate::AppState;
use crate::auth::{Caller, ClientAddr, ReadCaller};
use crate::datasets::ingest::{IncomingFile, IngestReport};
use crate::datasets::{self, DatasetChange, DatasetRequest, DatasetView, Imaging, SeriesView};
use crate::error::{ApiError, ErrorBody};
use axum::Json;
use axum::extract::{DefaultBodyLimit, Multipart, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tokio::io::AsyncWriteExt;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use voxhub_store::datasets::{Patient, SeriesFilter, Study, Upload};

pub fn router() -> OpenApiRouter<AppState> {
    let uploads = OpenApiRouter::new()
        .routes(routes!(upload_files))
        .layer(DefaultBodyLimit::disable());
    OpenApiRouter::new()
        .routes(routes!(list_datasets, create_dataset))
        .routes(routes!(get_dataset, update_dataset, delete_dataset))
        .routes(routes!(list_uploads))
        .routes(routes!(get_upload))
        .routes(routes!(list_patients))
        .routes(routes!(list_studies))
        .routes(routes!(list_series))
        .routes(routes!(get_series))
        .routes(routes!(series_thumbnail))
        .routes(routes!(series_nifti))
        .merge(uploads)
}

/// Datasets you may see: your own, those shared with your classes (admins: all).
#[utoipa::path(get, path = "/api/v1/datasets", tag = "datasets", security(("bearer" = [])),
    responses((status = 200, body = Vec<DatasetView>), (status = 401, body = ErrorBody)))]
async fn list_datasets(
    State(state): State<AppState>,
    ClientAddr(source): ClientAddr,
    caller: Caller,
) -> Result<Json<Vec<DatasetView>>, ApiError> {
    Ok(Json(
        datasets::list(&state, &caller.context(&source)).await?,
    ))
}

/// Create a dataset: private, or shared read-only with a class you teach.
#[utoipa::path(post, path = "/api/v1/datasets", tag = "datasets", security(("bearer" = [])), request_body = DatasetRequest,
    responses((status = 201, body = DatasetView), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn create_dataset(
    State(state): State<AppState>,
    ClientAddr(source): ClientAddr,
    caller: Caller,
    ApiJson(request): ApiJson<DatasetRequest>,
) -> Result<(StatusCode, Json<DatasetView>), ApiError> {
    let view = datasets::create(&state, &caller.context(&source), request).await?;
    Ok((StatusCode::CREATED, Json(view)))
}

#[utoipa::path(get, path = "/api/v1/datasets/{id}", tag = "datasets", security(("bearer" = [])), params(("id" = i64, Path)),
    responses((status = 200, body = DatasetView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_dataset(
    State(state): State<AppState>,
    ClientAddr(source): ClientAddr,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<DatasetView>, ApiError> {
    Ok(Json(
        datasets::readable(&state, &caller.context(&source), id).await?,
    ))
}

/// Rename, describe, share with a class or make private; `keep_originals` is for admins.
#[utoipa::path(patch, path = "/api/v1/datasets/{id}", tag = "datasets", security(("bearer" = [])), params(("id" = i64, Path)), request_body = DatasetChange,
    responses((status = 200, body = DatasetView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn update_dataset(
    State(state): State<AppState>,
    ClientAddr(source): ClientAddr,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
    ApiJson(change): ApiJson<DatasetChange>,
) -> Result<Json<DatasetView>, ApiError> {
    Ok(Json(
        datasets::update(&state, &caller.context(&source), id, change).await?,
    ))
}

/// Delete a dataset with its whole index and files.
#[utoipa::path(delete, path = "/api/v1/datasets/{id}", tag = "datasets", security(("bearer" = [])), params(("id" = i64, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn delete_dataset(
    State(state): State<AppState>,
    ClientAddr(source): ClientAddr,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> Result<StatusCode, ApiError> {
    datasets::delete(&state, &caller.context(&source), id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Writes the parts of a multipart upload to a spool folder, never holding a file in memory,
/// and refuses the upload once it passes the size limit.
pub async fn spool_multipart(
    imaging: &Imaging,
    multipart: &mut Multipart,
) -> Result<(tempfile::TempDir, Vec<IncomingFile>, Option<i64>), ApiError> {
    let bad = |message: &str| ApiError::bad_request("invalid_upload", message.to_string());
    tokio::fs::create_dir_all(&imaging.spool_dir)
        .await
        .map_err(ApiError::internal)?;
    let spool = tempfile::Builder::new()
        .prefix("upload-")
        .tempdir_in(&imaging.spool_dir)
        .map_err(ApiError::internal)?;
    let limit = imaging.settings.max_upload_bytes;
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "upload_too_large",
            format!(
                "the upload is larger than the {} MiB allowed at once; upload the files in several parts (the command line does this for you)",
                limit / (1024 * 1024)
            ),
        )
    };
    let mut files = Vec::new();
    let mut label_of = None;
    let mut total: u64 = 0;
    loop {
        let field = multipart.next_field().await.map_err(|error| {
            if error.status() == StatusCode::PAYLOAD_TOO_LARGE {
                too_large()
            } else {
                bad(&format!("the upload could not be read ({}); send multipart/form-data with parts named 'file'", error.body_text()))
            }
        })?;
        let Some(mut field) = field else { break };
        match field.name() {
            Some("file") => {}
            Some("label_of") => {
                let text = field
                    .text()
                    .await
                    .map_err(|_| bad("label_of could not be read"))?;
                label_of = Some(text.trim().parse::<i64>().map_err(|_| {
                    ApiError::bad_request(
                        "invalid_label_of",
                        "label_of must be the id of the image series the masks label",
                    )
                })?);
                continue;
            }
            Some(other) => {
                return Err(bad(&format!(
                    "unknown form field '{other}'; send files in parts named 'file' (and optionally label_of)"
                )));
            }
            None => {
                return Err(bad(
                    "every part of the upload needs a name; send files in parts named 'file'",
                ));
            }
        }
        let name = field
            .file_name()
            .map(clean_upload_name)
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| format!("file-{}", files.len() + 1));
        let path = spool.path().join(format!("{}", files.len()));
        let mut out = tokio::fs::File::create(&path)
            .await
            .map_err(ApiError::internal)?;
        let mut size: u64 = 0;
        while let Some(chunk) = field
            .chunk()
            .await
            .map_err(|_| bad("the upload was interrupted; try again"))?
        {
            size += chunk.len() as u64;
            total += chunk.len() as u64;
            if total > limit {
                return Err(too_large());
            }
            out.write_all(&chunk).await.map_err(ApiError::internal)?;
        }
        out.flush().await.map_err(ApiError::internal)?;
        files.push(IncomingFile { name, path, size });
    }
    if files.is_empty() {
        return Err(bad(
            "the upload has no files; choose files, a folder or a zip to upload",
        ));
    }
    Ok((spool, files, label_of))
}

/// The uploaded name with its relative folders, without anything that could climb out.
fn clean_upload_name(raw: &str) -> String {
    raw.replace('\\', "/")
        .split('/')
        .filter(|part| !part.is_empty() && *part != "." && *part != "..")
        .map(|part| part.chars().filter(|c| !c.is_control()).collect::<String>())
        .collect::<Vec<_>>()
        .join("/")
}

/// Upload files into a dataset: multipart/form-data with one or more parts named `file`
/// (DICOM with or without preamble, NIfTI `.nii`/`.nii.gz`, PNG, JPEG, or a zip of them;
/// the file name may carry its folder, `case1/0001.dcm`), and optionally `label_of`, the id
/// of the image series that uploaded NIfTI masks label. Files are de-identified, stored and
/// indexed one by one; the report lists what was skipped and why.
#[utoipa::path(post, path = "/api/v1/datasets/{id}/files", tag = "datasets", security(("bearer" = [])), params(("id" = i64, Path)),
    request_body(content_type = "multipart/form-data", description = "parts named `file`, and optionally `label_of`"),
    responses((status = 200, body = IngestReport), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 413, body = ErrorBody)))]
async fn upload_files(
    State(state): State<AppState>,
    ClientAddr(source): ClientAddr,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
    mut multipart: Multipart,
) -> Result<Response, Response> {
    let ctx = caller.context(&source);
    // Refuse before reading a byte of an upload the caller may not make; the unread body
    // is left behind, so the connection must close for the client's next request.
    let imaging = datasets::imaging(&state).map_err(closing)?.clone();
    datasets::changeable(&state, &ctx, id, "dataset.upload")
        .await
        .map_err(closing)?;
    let (_spool, files, label_of) = spool_multipart(&imaging, &mut multipart)
        .await
        .map_err(closing)?;
    let report = datasets::ingest::ingest(&state, &ctx, id, files, label_of)
        .await
        .map_err(IntoResponse::into_response)?;
    Ok(Json(report).into_response())
}

/// Uploads into a dataset, newest first (those who may change the dataset).
#[utoipa::path(get, path = "/api/v1/datasets/{id}/uploads", tag = "datasets", security(("bearer" = [])), params(("id" = i64, Path)),
    responses((status = 200, body = Vec<Upload>), (status = 403, body = ErrorBody)))]
async fn list_uploads(
    State(state): State<AppState>,
    ClientAddr(source): ClientAddr,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Vec<Upload>>, ApiError> {
    Ok(Json(
        datasets::uploads(&state, &caller.context(&source), id).await?,
    ))
}

/// The ingest report of an upload.
#[utoipa::path(get, path = "/api/v1/uploads/{id}", tag = "datasets", security(("bearer" = [])), params(("id" = i64, Path)),
    responses((status = 200, body = IngestReport), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_upload(
    State(state): State<AppState>,
    ClientAddr(source): ClientAddr,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> Result<Response, ApiError> {
    let upload = state.store.upload(id).await?;
    datasets::changeable(
        &state,
        &caller.context(&source),
        upload.dataset_id,
        "dataset.uploads",
    )
    .await?;
    let mut response = upload.report.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

/// Patients of a dataset, by pseudonym.
#[utoipa::path(get, path = "/api/v1/datasets/{id}/patients", tag = "datasets", security(("bearer" = [])), params(("id" = i64, Path)),
    responses((status = 200, body = Vec<Patient>), (status = 403, body = ErrorBody)))]
async fn list_patients(
    State(state): State<AppState>,
    ClientAddr(source): ClientAddr,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Vec<Patient>>, ApiError> {
    Ok(Json(
        datasets::patients(&state, &caller.context(&source), id).await?,
    ))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct StudyQuery {
    /// Only this patient's studies.
    patient: Option<i64>,
}

/// Studies of a dataset.
#[utoipa::path(get, path = "/api/v1/datasets/{id}/studies", tag = "datasets", security(("bearer" = [])), params(("id" = i64, Path), StudyQuery),
    responses((status = 200, body = Vec<Study>), (status = 403, body = ErrorBody)))]
async fn list_studies(
    State(state): State<AppState>,
    ClientAddr(source): ClientAddr,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
    ApiQuery(query): ApiQuery<StudyQuery>,
) -> Result<Json<Vec<Study>>, ApiError> {
    Ok(Json(
        datasets::studies(&state, &caller.context(&source), id, query.patient).await?,
    ))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct SeriesQuery {
    study: Option<i64>,
    patient: Option<i64>,
    /// CT, MR, CR, DX, US… (any case).
    modality: Option<String>,
    /// Text found in the series or study description, body part, patient pseudonym or UIDs.
    q: Option<String>,
}

/// Series of a dataset, with their summaries; filter by study, patient, modality and text.
#[utoipa::path(get, path = "/api/v1/datasets/{id}/series", tag = "datasets", security(("bearer" = [])), params(("id" = i64, Path), SeriesQuery),
    responses((status = 200, body = Vec<SeriesView>), (status = 403, body = ErrorBody)))]
async fn list_series(
    State(state): State<AppState>,
    ClientAddr(source): ClientAddr,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
    ApiQuery(query): ApiQuery<SeriesQuery>,
) -> Result<Json<Vec<SeriesView>>, ApiError> {
    let blank = |v: Option<String>| v.map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
    let filter = SeriesFilter {
        study_id: query.study,
        patient_id: query.patient,
        modality: blank(query.modality),
        text: blank(query.q),
    };
    Ok(Json(
        datasets::series_list(&state, &caller.context(&source), id, filter).await?,
    ))
}

/// One series with its summary: dimensions, spacing, window, and whether it forms a volume
/// (and if not, why).
#[utoipa::path(get, path = "/api/v1/series/{id}", tag = "datasets", security(("bearer" = [])), params(("id" = i64, Path)),
    responses((status = 200, body = SeriesView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_series(
    State(state): State<AppState>,
    ClientAddr(source): ClientAddr,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<SeriesView>, ApiError> {
    Ok(Json(
        datasets::series(&state, &caller.context(&source), id)
            .await?
            .0,
    ))
}

/// The series's thumbnail (PNG).
#[utoipa::path(get, path = "/api/v1/series/{id}/thumbnail", tag = "datasets", security(("bearer" = [])), params(("id" = i64, Path)),
    responses((status = 200, content_type = "image/png", body = Vec<u8>), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn series_thumbnail(
    State(state): State<AppState>,
    ClientAddr(source): ClientAddr,
    ReadCaller(caller): ReadCaller,
    ApiPath(id): ApiPath<i64>,
) -> Result<Response, ApiError> {
    let png = datasets::thumbnail(&state, &caller.context(&source), id).await?;
    Ok(thumbnail_response(png))
}

/// A thumbnail answer: PNG, kept by the browser for a minute.
pub fn thumbnail_response(png: Vec<u8>) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("image/png")),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("private, max-age=60"),
            ),
        ],
        png,
    )
        .into_response()
}

/// The series as a NIfTI volume (`.nii.gz`); a series that does not form a volume is
/// refused (409) with the reason.
#[utoipa::path(get, path = "/api/v1/series/{id}/nifti", tag = "datasets", security(("bearer" = [])), params(("id" = i64, Path)),
    responses((status = 200, content_type = "application/gzip", body = Vec<u8>), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn series_nifti(
    State(state): State<AppState>,
    ClientAddr(source): ClientAddr,
    ReadCaller(caller): ReadCaller,
    ApiPath(id): ApiPath<i64>,
) -> Result<Response, ApiError> {
    let (name, bytes) = datasets::nifti(&state, &caller.context(&source), id).await?;
    Ok(nifti_response(&name, bytes))
}

/// An error answered before the request body was read: the connection closes with it, so
/// that what is left of the body is not read as the client's next request.
pub fn closing(error: ApiError) -> Response {
    let mut response = error.into_response();
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// A `.nii.gz` download.
pub fn nifti_response(name: &str, bytes: Vec<u8>) -> Response {
    let disposition = format!("attachment; filename=\"{name}\"");
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/gzip"),
            ),
            (
                header::CONTENT_DISPOSITION,
                HeaderValue::from_str(&disposition)
                    .unwrap_or(HeaderValue::from_static("attachment")),
            ),
        ],
        bytes,
    )
        .into_response()
}
