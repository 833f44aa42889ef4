//! STOW-RS: `POST /dicom-web/datasets/{id}/studies` with one DICOM file per part of a
//! `multipart/related; type="application/dicom"` body. The parts are spooled to disk as
//! they arrive and imported by the same ingest as uploads (de-identification, object store,
//! index, upload report and audit). The answer (PS3.18 10.5.3) lists each stored instance
//! under its stored, de-identified UIDs with its Retrieve URL, and each refused part with a
//! failure reason and a comment saying why. De-identification changes every stored file,
//! which the standard calls coercion: such instances carry warning B000 and the answer is
//! 202, or 409 when nothing could be stored.

use super::multipart::{SpooledPart, related_type, spool_parts};
use super::{DicomwebCaller, Ids, Scope, dicom_json_response, scope};
use crate::AppState;
use crate::api::ApiPath;
use crate::auth::ClientAddr;
use crate::datasets::ingest::{IncomingFile, ingest};
use crate::datasets::{changeable, imaging};
use crate::error::ApiError;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use serde_json::{Value, json};
use std::collections::{BTreeSet, HashMap};
use std::io::Read;
use voxhub_imaging::sniff::{self, FileKind};
use voxhub_store::dicomweb::StoredInstance;

/// Failure reasons of PS3.18 Table 10.5.3-2 (and the general status of a duplicate).
const CANNOT_UNDERSTAND: u16 = 0xC000;
const PROCESSING_FAILURE: u16 = 0x0110;
const DUPLICATE_INSTANCE: u16 = 0x0111;
const OUT_OF_RESOURCES: u16 = 0xA700;
/// Warning: the stored instance differs from the one sent (here: de-identified).
const COERCION_OF_DATA_ELEMENTS: u16 = 0xB000;

/// A part that was not stored.
struct Failed {
    sop_class_uid: String,
    sop_instance_uid: String,
    reason: u16,
    comment: String,
}

fn failure_reason(comment: &str) -> u16 {
    if comment.contains("same SOP Instance UID") {
        DUPLICATE_INSTANCE
    } else if comment.contains("larger than") {
        OUT_OF_RESOURCES
    } else if comment.contains("not a readable DICOM")
        || comment.contains("not an imaging file")
        || comment.contains("has no")
        || comment.contains("is missing")
    {
        CANNOT_UNDERSTAND
    } else {
        PROCESSING_FAILURE
    }
}

fn uid_element(uid: &str) -> Value {
    if uid.is_empty() {
        json!({"vr": "UI"})
    } else {
        json!({"vr": "UI", "Value": [uid]})
    }
}

/// The first bytes of a spooled part, enough to tell DICOM by its magic.
fn head_of(part: &SpooledPart) -> std::io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(sniff::SNIFF_BYTES);
    std::fs::File::open(&part.path)?
        .take(sniff::SNIFF_BYTES as u64)
        .read_to_end(&mut head)?;
    Ok(head)
}

/// `POST …/studies`: stores DICOM files into the dataset of the address.
pub async fn store(
    State(state): State<AppState>,
    ClientAddr(source): ClientAddr,
    caller: Result<DicomwebCaller, ApiError>,
    headers: HeaderMap,
    ids: Result<ApiPath<Ids>, ApiError>,
    body: Body,
) -> Response {
    let stored = match (caller, ids) {
        (Ok(caller), Ok(ApiPath(ids))) => {
            store_parts(&state, &caller, &source, &headers, ids, body).await
        }
        (Err(error), _) | (_, Err(error)) => Err(error),
    };
    // A refusal may come before the body was read; the connection cannot carry another
    // request after an unread body, so the client is told not to reuse it.
    stored.unwrap_or_else(crate::api::datasets::closing)
}

async fn store_parts(
    state: &AppState,
    caller: &DicomwebCaller,
    source: &str,
    headers: &HeaderMap,
    ids: Ids,
    body: Body,
) -> Result<Response, ApiError> {
    let ctx = caller.0.context(source);
    let Some(dataset_id) = ids.dataset else {
        return Err(ApiError::bad_request(
            "dataset_required",
            "STOW-RS stores into one dataset: POST to /dicom-web/datasets/{id}/studies with the id of a dataset you may change (GET /api/v1/datasets lists them)",
        ));
    };
    let imaging = imaging(state)?.clone();
    // Refuse before reading a byte of a store the caller may not make.
    changeable(state, &ctx, dataset_id, "dataset.upload").await?;
    let scope: Scope = scope(state, &ctx, Some(dataset_id), headers).await?;
    let related = related_type(
        headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok()),
    )?;
    if let Some(part_type) = &related.part_type
        && part_type != "application/dicom"
    {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!(
                "voxhub stores whole DICOM files (type=\"application/dicom\"), not {part_type}; send each file as one part"
            ),
        ));
    }
    tokio::fs::create_dir_all(&imaging.spool_dir)
        .await
        .map_err(ApiError::internal)?;
    let spool = tempfile::Builder::new()
        .prefix("stow-")
        .tempdir_in(&imaging.spool_dir)
        .map_err(ApiError::internal)?;
    let parts = spool_parts(
        body.into_data_stream(),
        &related.boundary,
        spool.path(),
        imaging.settings.max_upload_bytes,
    )
    .await?;
    if parts.is_empty() {
        return Err(ApiError::bad_request(
            "malformed_multipart",
            "the request has no parts; send one DICOM file per part",
        ));
    }

    let nonce = format!("{:08x}", rand::random::<u32>());
    let mut failed = Vec::new();
    let mut files = Vec::new();
    for (index, part) in parts.iter().enumerate() {
        let number = index + 1;
        let refuse = |comment: String| Failed {
            sop_class_uid: String::new(),
            sop_instance_uid: String::new(),
            reason: CANNOT_UNDERSTAND,
            comment,
        };
        if let Some(content_type) = &part.content_type
            && content_type != "application/dicom"
        {
            failed.push(refuse(format!(
                "part {number} is {content_type}; only application/dicom parts are stored"
            )));
            continue;
        }
        let head = head_of(part).map_err(ApiError::internal)?;
        if sniff::kind("", &head) != FileKind::Dicom {
            failed.push(refuse(format!("part {number} is not a DICOM file")));
            continue;
        }
        files.push(IncomingFile {
            name: format!("dicomweb-{nonce}/part-{number}.dcm"),
            path: part.path.clone(),
            size: part.size,
        });
    }
    let names: Vec<String> = files.iter().map(|f| f.name.clone()).collect();
    let mut stored: Vec<StoredInstance> = Vec::new();
    if !files.is_empty() {
        let report = ingest(state, &ctx, dataset_id, files, None).await?;
        let skipped: HashMap<&str, &str> = report
            .skipped
            .iter()
            .map(|s| (s.name.as_str(), s.reason.as_str()))
            .collect();
        let in_dataset: HashMap<&str, i64> = report
            .files
            .iter()
            .map(|f| (f.name.as_str(), f.instance))
            .collect();
        for name in &names {
            if let Some(reason) = skipped.get(name.as_str()) {
                let part = name
                    .rsplit('/')
                    .next()
                    .unwrap_or(name)
                    .trim_end_matches(".dcm");
                failed.push(Failed {
                    sop_class_uid: String::new(),
                    sop_instance_uid: String::new(),
                    reason: failure_reason(reason),
                    comment: format!("{part}: {reason}"),
                });
                continue;
            }
            let instance = match in_dataset.get(name.as_str()) {
                Some(&id) => state.store.stored_instance_by_id(dataset_id, id).await?,
                None => None,
            };
            match instance {
                Some(instance) => stored.push(instance),
                None => failed.push(Failed {
                    sop_class_uid: String::new(),
                    sop_instance_uid: String::new(),
                    reason: PROCESSING_FAILURE,
                    comment: format!(
                        "{name}: the file was imported but could not be found in the index again"
                    ),
                }),
            }
        }
    }
    drop(spool);

    let coerced = imaging.settings.deidentify;
    let mut answer = serde_json::Map::new();
    let studies: BTreeSet<&str> = stored.iter().map(|i| i.study_uid.as_str()).collect();
    if studies.len() == 1 {
        let study = studies.iter().next().expect("one study");
        answer.insert(
            "00081190".into(),
            json!({"vr": "UR", "Value": [scope.study_url(study)]}),
        );
    }
    if !failed.is_empty() {
        let items: Vec<Value> = failed
            .iter()
            .map(|f| {
                json!({
                    "00081150": uid_element(&f.sop_class_uid),
                    "00081155": uid_element(&f.sop_instance_uid),
                    "00081197": {"vr": "US", "Value": [f.reason]},
                    "00000902": {"vr": "LO", "Value": [f.comment]},
                })
            })
            .collect();
        answer.insert("00081198".into(), json!({"vr": "SQ", "Value": items}));
    }
    if !stored.is_empty() {
        let items: Vec<Value> = stored
            .iter()
            .map(|i| {
                let mut item = json!({
                    "00081150": uid_element(&i.sop_class_uid),
                    "00081155": uid_element(&i.sop_uid),
                    "00081190": {"vr": "UR", "Value": [scope.instance_url(&i.study_uid, &i.series_uid, &i.sop_uid)]},
                });
                if coerced {
                    item["00081196"] = json!({"vr": "US", "Value": [COERCION_OF_DATA_ELEMENTS]});
                }
                item
            })
            .collect();
        answer.insert("00081199".into(), json!({"vr": "SQ", "Value": items}));
    }
    let status = if stored.is_empty() {
        StatusCode::CONFLICT
    } else if failed.is_empty() && !coerced {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    Ok(dicom_json_response(status, Value::Object(answer)))
}
