//! `/api/v1/series/{id}/view`, `/slices`, `/value`, `/overlay` and `/metadata`: the web
//! viewer's API (see [`crate::datasets::view`]). These answer the bearer token of the API
//! and, being reads only, the browser's session cookie too, so that the viewer page can show
//! slices as plain images.

use super::{ApiPath, ApiQuery};
use crate::AppState;
use crate::auth::{ClientAddr, ReadCaller};
use crate::datasets::view::{self, MetadataJson, ValueJson, ViewInfo};
use crate::error::{ApiError, ErrorBody};
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(series_view))
        .routes(routes!(series_slice))
        .routes(routes!(series_value))
        .routes(routes!(series_overlay))
        .routes(routes!(series_metadata))
}

/// A PNG answer. With the series's current `v` (from the view answer) the browser may keep
/// it; without, it must ask again.
fn png_response(png: Bytes, version: &str, asked: Option<&str>) -> Response {
    let cache = if asked == Some(version) {
        "private, max-age=86400, immutable"
    } else {
        "private, no-cache"
    };
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("image/png")),
            (header::CACHE_CONTROL, HeaderValue::from_static(cache)),
        ],
        png,
    )
        .into_response()
}

/// What the viewer needs to open a series: its planes with their slice counts, sizes,
/// spacings and edge directions, the opening window and the presets, the units of its
/// values, masks that can be laid over it, and why it cannot be shown when it cannot.
#[utoipa::path(get, path = "/api/v1/series/{id}/view", tag = "datasets", security(("bearer" = [])), params(("id" = i64, Path)),
    responses((status = 200, body = ViewInfo), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody, description = "still being prepared after an upload; try again")))]
async fn series_view(
    State(state): State<AppState>,
    ClientAddr(source): ClientAddr,
    ReadCaller(caller): ReadCaller,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<ViewInfo>, ApiError> {
    Ok(Json(
        view::view_info(&state, &caller.context(&source), id).await?,
    ))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct WindowQuery {
    /// Window center (with `width`), in the series's units (HU for CT).
    center: Option<f64>,
    /// Window width, at least 1 (with `center`).
    width: Option<f64>,
    /// A preset instead of center and width: lung, mediastinum, bone, brain, `soft tissue`,
    /// or file (the window written in the file).
    preset: Option<String>,
    /// The `version` of the view answer; with it the browser may keep the image.
    v: Option<String>,
}

/// One slice as an 8-bit PNG, windowed in floating point by the DICOM VOI LUT function
/// (MONOCHROME1 inverted; colour shown as stored), with square pixels. `plane` is axial,
/// coronal or sagittal for a volume and `stack` for a series shown frame by frame; `index`
/// is the slice number, as in `12.png`. With neither center/width nor a preset, the
/// series's opening window is used. Pixels that cannot be decoded exactly are refused
/// (422, naming the transfer syntax), never shown wrong.
#[utoipa::path(get, path = "/api/v1/series/{id}/slices/{plane}/{index}", tag = "datasets", security(("bearer" = [])),
    params(("id" = i64, Path), ("plane" = String, Path, description = "axial, coronal, sagittal or stack"), ("index" = String, Path, description = "slice number from 0, as `12.png`"), WindowQuery),
    responses((status = 200, content_type = "image/png", body = Vec<u8>), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn series_slice(
    State(state): State<AppState>,
    ClientAddr(source): ClientAddr,
    ReadCaller(caller): ReadCaller,
    ApiPath((id, plane, index)): ApiPath<(i64, String, String)>,
    ApiQuery(query): ApiQuery<WindowQuery>,
) -> Result<Response, ApiError> {
    let choice = view::window_choice(query.center, query.width, query.preset.as_deref())?;
    let (png, version) =
        view::slice_png(&state, &caller.context(&source), id, &plane, &index, choice).await?;
    Ok(png_response(png, &version, query.v.as_deref()))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct ValueQuery {
    /// axial, coronal, sagittal or stack (required).
    plane: Option<String>,
    /// Slice number from 0 (required).
    index: Option<usize>,
    /// Column of the slice as stored (not of the stretched PNG), from 0 at the left
    /// (required).
    x: Option<usize>,
    /// Row of the slice as stored, from 0 at the top (required).
    y: Option<usize>,
}

/// The value of one pixel (HU for CT, otherwise the stored units) and its position in the
/// patient in millimetres.
#[utoipa::path(get, path = "/api/v1/series/{id}/value", tag = "datasets", security(("bearer" = [])), params(("id" = i64, Path), ValueQuery),
    responses((status = 200, body = ValueJson), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn series_value(
    State(state): State<AppState>,
    ClientAddr(source): ClientAddr,
    ReadCaller(caller): ReadCaller,
    ApiPath(id): ApiPath<i64>,
    ApiQuery(query): ApiQuery<ValueQuery>,
) -> Result<Json<ValueJson>, ApiError> {
    let (Some(plane), Some(index), Some(x), Some(y)) = (query.plane, query.index, query.x, query.y)
    else {
        return Err(ApiError::bad_request(
            "invalid_query",
            "say which pixel: plane, index (the slice), x (the column) and y (the row), as in ?plane=axial&index=12&x=200&y=310",
        ));
    };
    Ok(Json(
        view::value_at(&state, &caller.context(&source), id, &plane, index, x, y).await?,
    ))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct OverlayQuery {
    /// The `version` of the view answer; with it the browser may keep the image.
    v: Option<String>,
}

/// One slice of a mask (label volume) as an RGBA PNG of the same size as the image slice:
/// label 0 transparent, every other label its own colour (the viewer sets the opacity).
/// The mask must lie on exactly the image's grid (409 with the reason otherwise).
#[utoipa::path(get, path = "/api/v1/series/{id}/overlay/{label_series}/{plane}/{index}", tag = "datasets", security(("bearer" = [])),
    params(("id" = i64, Path), ("label_series" = i64, Path, description = "a mask series listed in the view answer's labels"), ("plane" = String, Path, description = "axial, coronal or sagittal"), ("index" = String, Path, description = "slice number from 0, as `12.png`"), OverlayQuery),
    responses((status = 200, content_type = "image/png", body = Vec<u8>), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn series_overlay(
    State(state): State<AppState>,
    ClientAddr(source): ClientAddr,
    ReadCaller(caller): ReadCaller,
    ApiPath((id, label_series, plane, index)): ApiPath<(i64, i64, String, String)>,
    ApiQuery(query): ApiQuery<OverlayQuery>,
) -> Result<Response, ApiError> {
    let (png, version) = view::overlay_png(
        &state,
        &caller.context(&source),
        id,
        label_series,
        &plane,
        &index,
    )
    .await?;
    Ok(png_response(png, &version, query.v.as_deref()))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct MetadataQuery {
    /// The plane shown (axial, coronal, sagittal or stack); axial when not given.
    plane: Option<String>,
    /// The slice shown; the middle one when not given.
    index: Option<usize>,
}

/// The attributes of the file shown at a slice (de-identified when it was uploaded), as a
/// list of tag, keyword, VR and value; header facts for NIfTI and pictures.
#[utoipa::path(get, path = "/api/v1/series/{id}/metadata", tag = "datasets", security(("bearer" = [])), params(("id" = i64, Path), MetadataQuery),
    responses((status = 200, body = MetadataJson), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn series_metadata(
    State(state): State<AppState>,
    ClientAddr(source): ClientAddr,
    ReadCaller(caller): ReadCaller,
    ApiPath(id): ApiPath<i64>,
    ApiQuery(query): ApiQuery<MetadataQuery>,
) -> Result<Json<MetadataJson>, ApiError> {
    Ok(Json(
        view::metadata(
            &state,
            &caller.context(&source),
            id,
            query.plane.as_deref(),
            query.index,
        )
        .await?,
    ))
}
