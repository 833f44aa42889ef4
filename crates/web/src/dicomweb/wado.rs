//! WADO-RS: the stored (de-identified) files of a study, series or instance as
//! `multipart/related; type="application/dicom"`, their metadata as DICOM JSON with bulk data
//! by reference, frames (as stored, or decoded to native samples), bulk data, and rendered
//! PNG pictures windowed by the VOI LUT function. Files are sent as they are stored: voxhub
//! does not transcode, and says so (406) when a client asks for a transfer syntax a file is
//! not in.

use super::multipart::Writer;
use super::pixels::{self, FrameForm};
use super::qido::path_uid;
use super::{DicomwebCaller, Ids, Scope, accepted, dicom_json_response, not_acceptable, scope};
use crate::AppState;
use crate::api::{ApiPath, ApiQuery};
use crate::auth::ClientAddr;
use crate::datasets::{Imaging, imaging, series_target};
use crate::error::ApiError;
use crate::service::Context;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use voxhub_imaging::dicom::{self, DicomImage};
use voxhub_imaging::dicom_json;
use voxhub_imaging::render::WindowLevel;
use voxhub_imaging::thumbnail::thumbnail_png;
use voxhub_store::dicomweb::StoredInstance;

/// The UIDs of a retrieval, checked.
struct Wanted {
    study: String,
    series: Option<String>,
    instance: Option<String>,
}

fn wanted(ids: &Ids) -> Result<Wanted, ApiError> {
    Ok(Wanted {
        study: path_uid(
            "Study Instance UID",
            ids.study.as_deref().unwrap_or_default(),
        )?,
        series: ids
            .series
            .as_deref()
            .map(|s| path_uid("Series Instance UID", s))
            .transpose()?,
        instance: ids
            .instance
            .as_deref()
            .map(|s| path_uid("SOP Instance UID", s))
            .transpose()?,
    })
}

/// The stored files a retrieval names, or 404 saying which UID is not there.
async fn locate(
    state: &AppState,
    scope: &Scope,
    wanted: &Wanted,
) -> Result<Vec<StoredInstance>, ApiError> {
    let found = state
        .store
        .stored_instances(
            &scope.datasets,
            &wanted.study,
            wanted.series.as_deref(),
            wanted.instance.as_deref(),
        )
        .await?;
    if found.is_empty() {
        let (what, uid) = match (&wanted.instance, &wanted.series) {
            (Some(instance), _) => ("instance", instance),
            (None, Some(series)) => ("series", series),
            (None, None) => ("study", &wanted.study),
        };
        let place = if scope.dataset_target.is_some() {
            "this dataset"
        } else {
            "the datasets you may read"
        };
        return Err(ApiError::not_found(format!(
            "there is no {what} {uid} in {place}; search with QIDO-RS (GET …/studies) to see what is there"
        )));
    }
    Ok(found)
}

/// Records the read: one audited read per series touched.
async fn audit(
    state: &AppState,
    ctx: &Context<'_>,
    instances: &[StoredInstance],
    what: &str,
) -> Result<(), ApiError> {
    let imaging = imaging(state)?;
    let mut per_series: BTreeMap<i64, usize> = BTreeMap::new();
    for instance in instances {
        *per_series.entry(instance.series_id).or_default() += 1;
    }
    for (series_id, files) in per_series {
        let series = state.store.series(series_id).await?;
        imaging
            .audit_read(
                state,
                ctx,
                "dicomweb",
                series_target(&series),
                format!(
                    "DICOMweb {what} of series {} ({files} files)",
                    series.series_uid
                ),
            )
            .await?;
    }
    Ok(())
}

/// Reads and parses one stored file.
async fn parsed(imaging: &Imaging, instance: &StoredInstance) -> Result<DicomImage, ApiError> {
    let bytes = imaging.object(&instance.object_id).await?;
    let name = instance.sop_uid.clone();
    tokio::task::spawn_blocking(move || dicom::read_bytes(Path::new(&name), &bytes))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)
}

/// Which stored transfer syntaxes the `Accept` header allows for whole files: `None` for
/// any, and whether a bare (not multipart) `application/dicom` was asked for.
fn accept_files(headers: &HeaderMap) -> Result<(Option<Vec<String>>, bool), ApiError> {
    let ranges = accepted(headers);
    if ranges.is_empty() {
        return Ok((None, false));
    }
    let mut any = false;
    let mut syntaxes = Vec::new();
    let mut bare = false;
    let mut multipart = false;
    for (essence, params) in &ranges {
        let param = |name: &str| {
            params
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.to_ascii_lowercase())
        };
        let part_type = match essence.as_str() {
            "*/*" | "multipart/*" => {
                any = true;
                multipart = true;
                continue;
            }
            "multipart/related" => {
                multipart = true;
                param("type").unwrap_or_else(|| "application/dicom".into())
            }
            "application/dicom" => {
                bare = true;
                essence.clone()
            }
            _ => continue,
        };
        if !matches!(
            part_type.as_str(),
            "application/dicom" | "*/*" | "application/*"
        ) {
            continue;
        }
        match param("transfer-syntax").as_deref() {
            None | Some("*") => any = true,
            Some(uid) => syntaxes.push(uid.to_string()),
        }
    }
    if !any && syntaxes.is_empty() {
        return Err(not_acceptable(
            "DICOM files are sent as multipart/related; type=\"application/dicom\"; ask for that (or application/dicom+json on …/metadata)",
        ));
    }
    Ok((if any { None } else { Some(syntaxes) }, bare && !multipart))
}

/// `GET …/studies/{study}[/series/{series}[/instances/{instance}]]`: the stored files.
pub async fn retrieve(
    State(state): State<AppState>,
    ClientAddr(source): ClientAddr,
    caller: DicomwebCaller,
    headers: HeaderMap,
    ApiPath(ids): ApiPath<Ids>,
) -> Result<Response, ApiError> {
    let ctx = caller.0.context(&source);
    let scope = scope(&state, &ctx, ids.dataset, &headers).await?;
    let wanted = wanted(&ids)?;
    let (syntaxes, bare) = accept_files(&headers)?;
    let instances = locate(&state, &scope, &wanted).await?;
    if let Some(syntaxes) = &syntaxes
        && let Some(other) = instances
            .iter()
            .find(|i| !syntaxes.contains(&i.transfer_syntax))
    {
        return Err(not_acceptable(format!(
            "instance {} is stored in transfer syntax {}, and voxhub sends files as stored (de-identified) without transcoding; ask with transfer-syntax=* or transfer-syntax={}",
            other.sop_uid, other.transfer_syntax, other.transfer_syntax
        )));
    }
    audit(&state, &ctx, &instances, "retrieval of the files").await?;
    let imaging = imaging(&state)?.clone();
    if bare && instances.len() == 1 {
        let bytes = imaging.object(&instances[0].object_id).await?;
        return Ok((
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/dicom"),
            )],
            bytes,
        )
            .into_response());
    }
    let writer = Arc::new(Writer::new());
    let content_type = writer.content_type("application/dicom");
    let (sender, receiver) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(2);
    let urls: Vec<String> = instances
        .iter()
        .map(|i| scope.instance_url(&i.study_uid, &i.series_uid, &i.sop_uid))
        .collect();
    tokio::spawn(async move {
        for (instance, url) in instances.iter().zip(urls) {
            let bytes = match imaging.object(&instance.object_id).await {
                Ok(bytes) => bytes,
                Err(error) => {
                    // The answer has started; breaking it off tells the client it is incomplete.
                    let _ = sender.send(Err(std::io::Error::other(error.message))).await;
                    return;
                }
            };
            let head = writer.part_head(
                &format!(
                    "application/dicom; transfer-syntax={}",
                    instance.transfer_syntax
                ),
                Some(&url),
            );
            for piece in [head, Bytes::from(bytes), writer.part_tail()] {
                if sender.send(Ok(piece)).await.is_err() {
                    return;
                }
            }
        }
        let _ = sender.send(Ok(writer.end())).await;
    });
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_str(&content_type).map_err(ApiError::internal)?,
        )],
        Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(receiver)),
    )
        .into_response())
}

/// `GET …/metadata`: the DICOM JSON of each file, bulk data (pixels and other binary
/// values) by `BulkDataURI`.
pub async fn metadata(
    State(state): State<AppState>,
    ClientAddr(source): ClientAddr,
    caller: DicomwebCaller,
    headers: HeaderMap,
    ApiPath(ids): ApiPath<Ids>,
) -> Result<Response, ApiError> {
    let ctx = caller.0.context(&source);
    let scope = scope(&state, &ctx, ids.dataset, &headers).await?;
    let wanted = wanted(&ids)?;
    super::accept_json(&headers)?;
    let instances = locate(&state, &scope, &wanted).await?;
    audit(&state, &ctx, &instances, "metadata").await?;
    let imaging = imaging(&state)?.clone();
    let parallel = std::thread::available_parallelism().map_or(2, |n| n.get());
    let semaphore = Arc::new(tokio::sync::Semaphore::new(parallel));
    let mut tasks = tokio::task::JoinSet::new();
    for (index, instance) in instances.into_iter().enumerate() {
        let permit = semaphore
            .clone()
            .acquire_owned()
            .await
            .map_err(ApiError::internal)?;
        let imaging = imaging.clone();
        let url = scope.instance_url(&instance.study_uid, &instance.series_uid, &instance.sop_uid);
        tasks.spawn(async move {
            let bytes = imaging.object(&instance.object_id).await?;
            let json = tokio::task::spawn_blocking(move || {
                let image = dicom::read_bytes(Path::new(&instance.sop_uid), &bytes)
                    .map_err(ApiError::internal)?;
                let bulk = |tag| format!("{url}/bulkdata/{}", dicom_json::tag_key(tag));
                let mut json = dicom_json::to_json(image.object(), |_| true, Some(&bulk));
                if let Some(object) = json.as_object_mut() {
                    object.entry("00083002").or_insert_with(
                        || json!({"vr": "UI", "Value": [image.transfer_syntax_uid]}),
                    );
                }
                Ok::<Value, ApiError>(json)
            })
            .await
            .map_err(ApiError::internal)?;
            drop(permit);
            json.map(|json| (index, json))
        });
    }
    let mut results = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        results.push(joined.map_err(ApiError::internal)??);
    }
    results.sort_by_key(|(index, _)| *index);
    Ok(dicom_json_response(
        StatusCode::OK,
        Value::Array(results.into_iter().map(|(_, json)| json).collect()),
    ))
}

/// The one instance an instance-level address names.
async fn one_instance(
    state: &AppState,
    ctx: &Context<'_>,
    ids: &Ids,
    headers: &HeaderMap,
) -> Result<StoredInstance, ApiError> {
    let scope = scope(state, ctx, ids.dataset, headers).await?;
    let wanted = wanted(ids)?;
    Ok(locate(state, &scope, &wanted).await?.remove(0))
}

/// Frame numbers from `1,3,5`: 1-based, at most `count`.
fn frame_numbers(raw: &str, count: i64) -> Result<Vec<usize>, ApiError> {
    let numbers = raw
        .split(',')
        .map(|n| n.trim().parse::<usize>().ok().filter(|&n| n >= 1))
        .collect::<Option<Vec<usize>>>()
        .filter(|n| !n.is_empty() && n.len() <= 10_000)
        .ok_or_else(|| {
            ApiError::bad_request(
                "invalid_frames",
                format!("'{raw}' is not a list of frame numbers; frames are counted from 1, as in frames/1 or frames/1,2,3"),
            )
        })?;
    if let Some(&beyond) = numbers.iter().find(|&&n| n as i64 > count) {
        return Err(ApiError::not_found(format!(
            "the instance has {count} frame{}, so there is no frame {beyond}",
            if count == 1 { "" } else { "s" }
        )));
    }
    Ok(numbers)
}

/// How frames may be sent, from the `Accept` header: as stored (with the part's media
/// type), or decoded.
fn accept_frames(
    headers: &HeaderMap,
    transfer_syntax: &str,
) -> Result<(FrameForm, &'static str), ApiError> {
    let ranges = accepted(headers);
    let native = pixels::is_native(transfer_syntax);
    let compressed_type = pixels::compressed_media_type(transfer_syntax);
    if ranges.is_empty() {
        return Ok((FrameForm::Uncompressed, "application/octet-stream"));
    }
    let mut as_stored: Option<&'static str> = None;
    let mut uncompressed = false;
    for (essence, params) in &ranges {
        let param = |name: &str| {
            params
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.to_ascii_lowercase())
        };
        let (part_type, syntax) = match essence.as_str() {
            "multipart/related" => (
                param("type").unwrap_or_else(|| "*/*".into()),
                param("transfer-syntax"),
            ),
            "*/*" | "multipart/*" => ("*/*".to_string(), None),
            other => (other.to_string(), param("transfer-syntax")),
        };
        match part_type.as_str() {
            "application/octet-stream" => match syntax.as_deref() {
                None => uncompressed = true,
                Some(pixels::EXPLICIT_VR_LITTLE_ENDIAN) => uncompressed = true,
                Some("*") => as_stored = as_stored.or(Some("application/octet-stream")),
                Some(uid) if uid == transfer_syntax => {
                    as_stored = as_stored.or(Some("application/octet-stream"));
                }
                Some(_) => {}
            },
            "*/*" | "image/*" => {
                if native {
                    uncompressed = true;
                } else if let Some(media) = compressed_type {
                    as_stored = as_stored.or(Some(media));
                }
            }
            other => {
                if compressed_type == Some(other)
                    && syntax
                        .as_deref()
                        .is_none_or(|s| s == "*" || s == transfer_syntax)
                {
                    as_stored = as_stored.or(compressed_type);
                }
            }
        }
    }
    if native && (uncompressed || as_stored.is_some()) {
        return Ok((FrameForm::Uncompressed, "application/octet-stream"));
    }
    if let Some(media) = as_stored {
        return Ok((FrameForm::AsStored, media));
    }
    if uncompressed {
        return Ok((FrameForm::Uncompressed, "application/octet-stream"));
    }
    Err(not_acceptable(match compressed_type {
        Some(media) => format!(
            "this instance is stored compressed (transfer syntax {transfer_syntax}); ask for multipart/related; type=\"application/octet-stream\" to have it decoded, or type=\"{media}\" for the frames as stored"
        ),
        None => {
            "frames are sent as multipart/related; type=\"application/octet-stream\"; ask for that"
                .into()
        }
    }))
}

/// `GET …/instances/{instance}/frames/{frames}`: the frames' pixel data.
pub async fn frames(
    State(state): State<AppState>,
    ClientAddr(source): ClientAddr,
    caller: DicomwebCaller,
    headers: HeaderMap,
    ApiPath(ids): ApiPath<Ids>,
) -> Result<Response, ApiError> {
    let ctx = caller.0.context(&source);
    let instance = one_instance(&state, &ctx, &ids, &headers).await?;
    if instance.rows.is_none() {
        return Err(ApiError::not_found(
            "this instance has no image, so it has no frames",
        ));
    }
    let numbers = frame_numbers(ids.frames.as_deref().unwrap_or_default(), instance.frames)?;
    let (form, media) = accept_frames(&headers, &instance.transfer_syntax)?;
    audit(&state, &ctx, std::slice::from_ref(&instance), "frames").await?;
    let image = parsed(imaging(&state)?, &instance).await?;
    let frames = tokio::task::spawn_blocking(move || pixels::frames(&image, &numbers, form))
        .await
        .map_err(ApiError::internal)?
        .map_err(|reason| {
            not_acceptable(format!(
                "the frames cannot be sent uncompressed: {reason}; ask for them as stored (transfer-syntax=*) or as rendered pictures (…/rendered)"
            ))
        })?;
    let writer = Writer::new();
    let parts: Vec<(String, Vec<u8>)> = frames
        .into_iter()
        .map(|frame| {
            (
                format!("{media}; transfer-syntax={}", frame.transfer_syntax),
                frame.bytes,
            )
        })
        .collect();
    let body = writer.whole(&parts);
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_str(&writer.content_type(media)).map_err(ApiError::internal)?,
        )],
        body,
    )
        .into_response())
}

fn parse_window(raw: &str) -> Result<WindowLevel, ApiError> {
    let bad = |what: &str| {
        ApiError::bad_request(
            "invalid_window",
            format!(
                "window={raw}: {what}; give window=center,width,linear such as window=40,400,linear"
            ),
        )
    };
    let parts: Vec<&str> = raw.split(',').map(str::trim).collect();
    if !(2..=3).contains(&parts.len()) {
        return Err(bad(
            "expected a center, a width and optionally the function",
        ));
    }
    let center: f64 = parts[0]
        .parse()
        .map_err(|_| bad("the center is not a number"))?;
    let width: f64 = parts[1]
        .parse()
        .map_err(|_| bad("the width is not a number"))?;
    if !center.is_finite() || !width.is_finite() || width < 1.0 {
        return Err(bad("the width must be a number of at least 1"));
    }
    if let Some(function) = parts.get(2)
        && !function.eq_ignore_ascii_case("linear")
    {
        return Err(bad("only the linear VOI LUT function is offered"));
    }
    Ok(WindowLevel { center, width })
}

fn parse_viewport(raw: &str) -> Result<(u32, u32), ApiError> {
    let parts: Vec<&str> = raw.split(',').map(str::trim).collect();
    let size = |text: &str| text.parse::<u32>().ok().filter(|v| (1..=8192).contains(v));
    match (
        parts.first().and_then(|t| size(t)),
        parts.get(1).and_then(|t| size(t)),
    ) {
        (Some(width), Some(height)) => Ok((width, height)),
        _ => Err(ApiError::bad_request(
            "invalid_viewport",
            format!(
                "viewport={raw}: give the width and height in pixels (1 to 8192), such as viewport=256,256"
            ),
        )),
    }
}

/// `GET …/instances/{instance}/rendered` (its first frame) and
/// `…/frames/{frame}/rendered`: a PNG windowed as asked (`window=center,width,linear`), as
/// the file says, or from its values; `viewport=width,height` shrinks it to fit.
pub async fn rendered(
    State(state): State<AppState>,
    ClientAddr(source): ClientAddr,
    caller: DicomwebCaller,
    headers: HeaderMap,
    ApiPath(ids): ApiPath<Ids>,
    ApiQuery(query): ApiQuery<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let ctx = caller.0.context(&source);
    // `quality` and `annotation` do not apply to lossless PNG without burned-in text.
    let window = query.get("window").map(|w| parse_window(w)).transpose()?;
    let viewport = query
        .get("viewport")
        .map(|v| parse_viewport(v))
        .transpose()?;
    let ranges = accepted(&headers);
    if !ranges.is_empty()
        && !ranges
            .iter()
            .any(|(essence, _)| matches!(essence.as_str(), "image/png" | "image/*" | "*/*"))
    {
        return Err(not_acceptable(
            "voxhub renders pictures as PNG; ask for image/png",
        ));
    }
    let instance = one_instance(&state, &ctx, &ids, &headers).await?;
    if instance.rows.is_none() {
        return Err(ApiError::not_found("this instance has no image to render"));
    }
    let frame = match ids.frames.as_deref() {
        Some(raw) => {
            let numbers = frame_numbers(raw, instance.frames)?;
            if numbers.len() > 1 {
                return Err(ApiError::bad_request(
                    "invalid_frames",
                    "a PNG holds one frame; ask for one frame at a time, as frames/1/rendered",
                ));
            }
            numbers[0]
        }
        None => 1,
    };
    audit(
        &state,
        &ctx,
        std::slice::from_ref(&instance),
        "rendered picture",
    )
    .await?;
    let image = parsed(imaging(&state)?, &instance).await?;
    let png = tokio::task::spawn_blocking(move || -> Result<Vec<u8>, String> {
        let decoded = dicom::pixels(&image).map_err(|e| e.to_string())?;
        let values = decoded
            .frames
            .get(frame - 1)
            .ok_or_else(|| format!("the file has no frame {frame}"))?;
        let colour = decoded.samples_per_pixel == 3;
        let window = window.unwrap_or_else(|| {
            if colour {
                WindowLevel {
                    center: 128.0,
                    width: 256.0,
                }
            } else {
                crate::datasets::derive::opening_window(&image, values)
            }
        });
        let (columns, rows) = (decoded.columns, decoded.rows);
        let longest = columns.max(rows).max(1);
        let max_side = match viewport {
            Some((width, height)) => {
                let scale = (f64::from(width) / f64::from(columns.max(1)))
                    .min(f64::from(height) / f64::from(rows.max(1)))
                    .min(1.0);
                ((f64::from(longest) * scale).round() as u32).max(1)
            }
            None => longest,
        };
        Ok(thumbnail_png(
            values,
            columns,
            rows,
            decoded.samples_per_pixel,
            window,
            decoded.photometric_interpretation == "MONOCHROME1",
            max_side,
        ))
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(|reason| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "cannot_render",
            format!("this image cannot be rendered: {reason}"),
        )
    })?;
    Ok((
        [(header::CONTENT_TYPE, HeaderValue::from_static("image/png"))],
        png,
    )
        .into_response())
}

/// `GET …/instances/{instance}/bulkdata/{tag}`: a binary value named by a `BulkDataURI`.
pub async fn bulk_data(
    State(state): State<AppState>,
    ClientAddr(source): ClientAddr,
    caller: DicomwebCaller,
    headers: HeaderMap,
    ApiPath(ids): ApiPath<Ids>,
) -> Result<Response, ApiError> {
    let ctx = caller.0.context(&source);
    let tag = ids.tag.as_deref().unwrap_or_default().to_ascii_uppercase();
    if tag.len() != 8 || !tag.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::bad_request(
            "invalid_tag",
            "bulk data is named by its tag as eight hex digits, as in …/bulkdata/7FE00010",
        ));
    }
    let instance = one_instance(&state, &ctx, &ids, &headers).await?;
    audit(&state, &ctx, std::slice::from_ref(&instance), "bulk data").await?;
    let image = parsed(imaging(&state)?, &instance).await?;
    let wanted = tag.clone();
    let bytes = tokio::task::spawn_blocking(move || pixels::binary_value(&image, &wanted))
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found(format!("the instance has no bulk data {tag}")))?;
    let writer = Writer::new();
    let part_type = if pixels::is_native(&instance.transfer_syntax) || tag != "7FE00010" {
        format!(
            "application/octet-stream; transfer-syntax={}",
            pixels::EXPLICIT_VR_LITTLE_ENDIAN
        )
    } else {
        format!(
            "application/octet-stream; transfer-syntax={}",
            instance.transfer_syntax
        )
    };
    let body = writer.whole(&[(part_type, bytes)]);
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_str(&writer.content_type("application/octet-stream"))
                .map_err(ApiError::internal)?,
        )],
        body,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(accept: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT, HeaderValue::from_str(accept).unwrap());
        headers
    }

    const JP2: &str = "1.2.840.10008.1.2.4.90";

    #[test]
    fn frames_are_decoded_unless_the_stored_form_is_acceptable() {
        let none = HeaderMap::new();
        assert_eq!(
            accept_frames(&none, JP2).unwrap(),
            (FrameForm::Uncompressed, "application/octet-stream")
        );
        assert_eq!(
            accept_frames(
                &headers("multipart/related; type=\"application/octet-stream\""),
                JP2
            )
            .unwrap(),
            (FrameForm::Uncompressed, "application/octet-stream")
        );
        assert_eq!(
            accept_frames(&headers("multipart/related; type=\"*/*\""), JP2).unwrap(),
            (FrameForm::AsStored, "image/jp2")
        );
        assert_eq!(
            accept_frames(
                &headers("multipart/related; type=\"application/octet-stream\"; transfer-syntax=*"),
                JP2
            )
            .unwrap(),
            (FrameForm::AsStored, "application/octet-stream")
        );
        let refused =
            accept_frames(&headers("multipart/related; type=\"image/jpeg\""), JP2).unwrap_err();
        assert_eq!(refused.status, StatusCode::NOT_ACCEPTABLE);
        assert!(refused.message.contains("image/jp2"), "{}", refused.message);
        assert_eq!(
            accept_frames(
                &headers("multipart/related; type=\"*/*\""),
                "1.2.840.10008.1.2.1"
            )
            .unwrap(),
            (FrameForm::Uncompressed, "application/octet-stream")
        );
    }

    #[test]
    fn files_are_sent_as_stored_or_refused_when_a_syntax_is_demanded() {
        assert_eq!(accept_files(&HeaderMap::new()).unwrap(), (None, false));
        assert_eq!(
            accept_files(&headers("multipart/related; type=\"application/dicom\"")).unwrap(),
            (None, false)
        );
        assert_eq!(
            accept_files(&headers(
                "multipart/related; type=\"application/dicom\"; transfer-syntax=1.2.840.10008.1.2.1"
            ))
            .unwrap(),
            (Some(vec!["1.2.840.10008.1.2.1".to_string()]), false)
        );
        assert_eq!(
            accept_files(&headers("application/dicom")).unwrap(),
            (None, true)
        );
        assert_eq!(
            accept_files(&headers("application/json"))
                .unwrap_err()
                .status,
            StatusCode::NOT_ACCEPTABLE
        );
    }

    #[test]
    fn window_and_viewport_are_checked() {
        assert_eq!(
            parse_window("40,400,linear").unwrap(),
            WindowLevel {
                center: 40.0,
                width: 400.0
            }
        );
        assert!(
            parse_window("40,400,sigmoid")
                .unwrap_err()
                .message
                .contains("linear")
        );
        assert!(parse_window("40,0").is_err());
        assert!(parse_window("a,b").is_err());
        assert_eq!(parse_viewport("128,64").unwrap(), (128, 64));
        assert!(parse_viewport("0,64").is_err());
        assert_eq!(frame_numbers("1,2", 2).unwrap(), vec![1, 2]);
        assert_eq!(
            frame_numbers("3", 2).unwrap_err().status,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            frame_numbers("0", 2).unwrap_err().status,
            StatusCode::BAD_REQUEST
        );
    }
}
