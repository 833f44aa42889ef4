//! One upload into a dataset. The request's files were spooled to disk by the HTTP layer;
//! here each file (and each entry of a zip) is sniffed, checked, de-identified, stored in the
//! object store and indexed. Import is atomic per file: the object is written whole (or
//! not at all) before the index row that names it, in one transaction per file, so a failure
//! leaves neither a half-written object nor a dangling row, and one bad file never stops
//! the others. Everything skipped is named in the report with its reason.

use super::{Imaging, changeable, dataset_target, imaging};
use crate::AppState;
use crate::error::ApiError;
use crate::service::Context;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;
use voxhub_core::audit::Outcome;
use voxhub_imaging::archive::{self, ArchiveLimits};
use voxhub_imaging::deid::DeidReport;
use voxhub_imaging::ingest::{prepare_dicom, scrub_nifti, scrub_picture};
use voxhub_imaging::sniff::{self, FileKind};
use voxhub_storage::ObjectId;
use voxhub_store::datasets::{Dataset, InstanceInsert, NewInstance, NewSeries, NewStudy};

/// A file of an upload, spooled to disk.
#[derive(Debug)]
pub struct IncomingFile {
    /// The name as uploaded, with its relative folder (`case1/CT/0001.dcm`).
    pub name: String,
    pub path: PathBuf,
    pub size: u64,
}

/// A file that was not imported, and why.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Skipped {
    pub name: String,
    pub reason: String,
}

/// What became of one file that is in the dataset after the upload.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct FileOutcome {
    pub name: String,
    /// `imported`, or `already_present` (the same file was in the dataset before).
    pub outcome: String,
    /// The series it belongs to.
    pub series: i64,
    /// Its id in the index (`/api/v1/series/{series}` lists it).
    pub instance: i64,
}

/// What de-identification did over the whole upload.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct DeidSummary {
    /// Whether the files were de-identified (always, unless the operator turned it off).
    pub applied: bool,
    /// Attributes removed from at least one file (dictionary keywords).
    pub removed: Vec<String>,
    /// Attributes whose value was replaced (pseudonyms, new UIDs, shifted dates).
    pub replaced: Vec<String>,
    /// Attributes kept with an empty value.
    pub emptied: Vec<String>,
    pub uids_replaced: usize,
    pub private_tags_removed: usize,
    /// How dates were handled.
    pub dates: String,
    /// Files whose pixels may show identifying text that cannot be removed automatically.
    pub burned_in_annotation_suspected: Vec<String>,
    /// NIfTI headers and picture metadata cleaned.
    pub other_files_cleaned: usize,
}

/// The ingest report of one upload.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct IngestReport {
    pub upload_id: i64,
    pub dataset_id: i64,
    /// Files received, counting each entry of a zip.
    pub received: usize,
    /// Files imported now.
    pub imported: usize,
    /// Files that were already in the dataset, byte for byte (nothing changed).
    pub already_present: usize,
    pub skipped: Vec<Skipped>,
    /// Every file imported or already present, in upload order.
    pub files: Vec<FileOutcome>,
    /// The series that received files.
    pub series: Vec<i64>,
    pub deidentification: DeidSummary,
    /// Whether the original files were kept (an admin's choice per dataset).
    pub originals_kept: bool,
}

/// One file to import: from the request or from inside a zip.
struct Unit {
    name: String,
    bytes: Vec<u8>,
}

enum Imported {
    New { series_id: i64, instance_id: i64 },
    AlreadyPresent { series_id: i64, instance_id: i64 },
}

struct UnitOutcome {
    result: Result<Imported, String>,
    deid: Option<DeidReport>,
    cleaned_other: bool,
    burned_in: bool,
}

/// Imports the files of one upload into a dataset and records the report.
pub async fn ingest(
    state: &AppState,
    ctx: &Context<'_>,
    dataset_id: i64,
    files: Vec<IncomingFile>,
    label_of: Option<i64>,
) -> Result<IngestReport, ApiError> {
    let imaging = imaging(state)?.clone();
    let dataset = changeable(state, ctx, dataset_id, "dataset.upload").await?;
    if let Some(image) = label_of {
        let series = state.store.series(image).await?;
        if series.dataset_id != dataset_id {
            return Err(ApiError::bad_request(
                "invalid_label_of",
                "label_of must name a series of the same dataset",
            ));
        }
    }
    let mut skipped = Vec::new();
    let mut units = Vec::new();
    for file in files {
        expand(&imaging, file, &mut units, &mut skipped).await;
    }
    let received = units.len() + skipped.len();

    // Decode and de-identify on as many threads as there are cores; index one file at a time.
    let parallel = std::thread::available_parallelism().map_or(2, |n| n.get());
    let semaphore = Arc::new(tokio::sync::Semaphore::new(parallel));
    let mut tasks = tokio::task::JoinSet::new();
    for (index, unit) in units.into_iter().enumerate() {
        let permit = semaphore
            .clone()
            .acquire_owned()
            .await
            .map_err(ApiError::internal)?;
        let state = state.clone();
        let imaging = imaging.clone();
        let dataset = dataset.clone();
        tasks.spawn(async move {
            let name = unit.name.clone();
            let outcome = import_unit(&state, &imaging, &dataset, unit).await;
            drop(permit);
            (index, name, outcome)
        });
    }
    let mut outcomes = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        outcomes.push(joined.map_err(ApiError::internal)?);
    }
    outcomes.sort_by_key(|(index, _, _)| *index);

    let mut imported = 0;
    let mut already_present = 0;
    let mut series = BTreeSet::new();
    let mut in_dataset = Vec::new();
    let mut deid = DeidSummary {
        applied: imaging.settings.deidentify,
        dates: match (
            imaging.settings.deidentify,
            imaging.settings.deid.date_policy,
        ) {
            (false, _) => "kept (de-identification is turned off)".into(),
            (true, voxhub_imaging::deid::DatePolicy::ShiftPerPatient) => {
                "shifted by a secret number of days, the same for every file of a patient".into()
            }
            (true, voxhub_imaging::deid::DatePolicy::Remove) => "removed".into(),
        },
        ..Default::default()
    };
    let mut removed = BTreeSet::new();
    let mut replaced = BTreeSet::new();
    let mut emptied = BTreeSet::new();
    let mut new_nifti: Vec<(i64, String)> = Vec::new();
    for (_, name, outcome) in outcomes {
        match outcome.result {
            Ok(Imported::New {
                series_id,
                instance_id,
            }) => {
                imported += 1;
                series.insert(series_id);
                if is_nifti_name(&name) {
                    new_nifti.push((series_id, name.clone()));
                }
                in_dataset.push(FileOutcome {
                    name: name.clone(),
                    outcome: "imported".into(),
                    series: series_id,
                    instance: instance_id,
                });
            }
            Ok(Imported::AlreadyPresent {
                series_id,
                instance_id,
            }) => {
                already_present += 1;
                series.insert(series_id);
                in_dataset.push(FileOutcome {
                    name: name.clone(),
                    outcome: "already_present".into(),
                    series: series_id,
                    instance: instance_id,
                });
            }
            Err(reason) => skipped.push(Skipped {
                name: name.clone(),
                reason,
            }),
        }
        if let Some(report) = outcome.deid {
            removed.extend(report.removed);
            replaced.extend(report.replaced);
            emptied.extend(report.emptied);
            deid.uids_replaced += report.uids_replaced;
            deid.private_tags_removed += report.private_tags_removed;
        }
        if outcome.burned_in {
            deid.burned_in_annotation_suspected.push(name);
        }
        if outcome.cleaned_other {
            deid.other_files_cleaned += 1;
        }
    }
    deid.removed = removed.into_iter().collect();
    deid.replaced = replaced.into_iter().collect();
    deid.emptied = emptied.into_iter().collect();

    link_labels(state, &dataset, &new_nifti, label_of).await?;

    let mut report = IngestReport {
        upload_id: 0,
        dataset_id,
        received,
        imported,
        already_present,
        skipped,
        files: in_dataset,
        series: series.into_iter().collect(),
        deidentification: deid,
        originals_kept: dataset.keep_originals,
    };
    let json = serde_json::to_string(&report).map_err(ApiError::internal)?;
    let mut tx = state.store.begin().await?;
    report.upload_id = tx
        .record_upload(
            dataset_id,
            ctx.caller.user.id,
            received as i64,
            imported as i64,
            report.skipped.len() as i64,
            &json,
        )
        .await?;
    tx.audit(ctx.entry(
        "dataset.upload",
        dataset_target(dataset.id, &dataset.name),
        Outcome::Success,
        format!(
            "upload {}: {received} files, {imported} imported, {already_present} already present, {} skipped",
            report.upload_id,
            report.skipped.len()
        ),
        false,
    ))
    .await?;
    tx.commit().await?;
    imaging.wake_deriver.notify_one();
    Ok(report)
}

fn is_nifti_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower.ends_with(".nii") || lower.ends_with(".nii.gz")
}

/// Reads a spooled file and, for a zip, its entries, into units; what cannot be read is skipped.
async fn expand(
    imaging: &Imaging,
    file: IncomingFile,
    units: &mut Vec<Unit>,
    skipped: &mut Vec<Skipped>,
) {
    if file.size > imaging.settings.max_file_bytes {
        skipped.push(Skipped {
            name: file.name,
            reason: format!(
                "the file is larger than the {} MiB allowed for one file",
                imaging.settings.max_file_bytes / (1024 * 1024)
            ),
        });
        return;
    }
    let mut head = [0u8; 512];
    let head_len =
        match std::fs::File::open(&file.path).and_then(|mut f| read_up_to(&mut f, &mut head)) {
            Ok(len) => len,
            Err(error) => {
                skipped.push(Skipped {
                    name: file.name,
                    reason: format!("the upload could not be read back: {error}"),
                });
                return;
            }
        };
    if sniff::kind(&file.name, &head[..head_len]) == FileKind::Zip {
        let max_file = imaging.settings.max_file_bytes;
        let path = file.path.clone();
        let name = file.name.clone();
        let expanded = tokio::task::spawn_blocking(move || {
            let mut entries = Vec::new();
            let limits = ArchiveLimits {
                max_entry_bytes: max_file,
                ..ArchiveLimits::default()
            };
            let result = std::fs::File::open(&path)
                .map_err(|e| e.to_string())
                .and_then(|reader| {
                    archive::expand(
                        std::io::BufReader::new(reader),
                        &limits,
                        |entry, bytes| -> Result<(), std::convert::Infallible> {
                            entries.push(Unit {
                                name: format!("{name}/{entry}"),
                                bytes: bytes.to_vec(),
                            });
                            Ok(())
                        },
                    )
                    .map_err(|e| e.to_string())
                });
            (entries, result)
        })
        .await;
        match expanded {
            Ok((entries, Ok(expansion))) => {
                units.extend(entries);
                skipped.extend(
                    expansion
                        .skipped
                        .into_iter()
                        .filter(|skip| !skip.reason.is_metadata())
                        .map(|skip| Skipped {
                            name: format!("{}/{}", file.name, skip.name),
                            reason: skip.reason.to_string(),
                        }),
                );
            }
            Ok((entries, Err(error))) => {
                units.extend(entries);
                skipped.push(Skipped {
                    name: file.name,
                    reason: format!("the zip file could not be read: {error}"),
                });
            }
            Err(error) => skipped.push(Skipped {
                name: file.name,
                reason: format!("the zip file could not be read: {error}"),
            }),
        }
        return;
    }
    match tokio::fs::read(&file.path).await {
        Ok(bytes) => units.push(Unit {
            name: file.name,
            bytes,
        }),
        Err(error) => skipped.push(Skipped {
            name: file.name,
            reason: format!("the upload could not be read back: {error}"),
        }),
    }
}

fn read_up_to(reader: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// A stable UID under the `2.25` root from a name (for NIfTI and pictures, which have none).
fn derived_uid(parts: &[&str]) -> String {
    let mut hash = Sha256::new();
    for part in parts {
        hash.update(part.as_bytes());
        hash.update([0]);
    }
    let digest = hash.finalize();
    let value = u128::from_be_bytes(digest[..16].try_into().expect("16 bytes")) >> 2;
    format!("2.25.{value}")
}

/// The folder of an uploaded path and its first component (the case or patient folder).
fn folders(name: &str) -> (String, String) {
    let parts: Vec<&str> = name.split('/').filter(|p| !p.is_empty()).collect();
    let folder = if parts.len() > 1 {
        parts[..parts.len() - 1].join("/")
    } else {
        String::new()
    };
    let top = if parts.len() > 1 {
        parts[0].to_string()
    } else {
        String::new()
    };
    (folder, top)
}

fn file_name(name: &str) -> &str {
    name.rsplit('/').next().unwrap_or(name)
}

async fn import_unit(
    state: &AppState,
    imaging: &Imaging,
    dataset: &Dataset,
    unit: Unit,
) -> UnitOutcome {
    let head_len = unit.bytes.len().min(512);
    let kind = sniff::kind(&unit.name, &unit.bytes[..head_len]);
    match kind {
        FileKind::Dicom => import_dicom(state, imaging, dataset, unit).await,
        FileKind::Nifti | FileKind::Png | FileKind::Jpeg => {
            import_other(state, imaging, dataset, unit, kind).await
        }
        FileKind::Zip => {
            failed("nested archives are not expanded; upload the inner zip separately")
        }
        _ => failed(
            "not an imaging file voxhub reads (DICOM, NIfTI .nii/.nii.gz, PNG, JPEG or a zip of them)",
        ),
    }
}

fn failed(reason: impl Into<String>) -> UnitOutcome {
    UnitOutcome {
        result: Err(reason.into()),
        deid: None,
        cleaned_other: false,
        burned_in: false,
    }
}

fn geometry_json(image: &voxhub_imaging::dicom::DicomImage) -> String {
    let Some(g) = &image.geometry else {
        return "{}".into();
    };
    serde_json::json!({
        "rows": g.rows,
        "columns": g.columns,
        "frames": g.number_of_frames,
        "pixel_spacing": g.pixel_spacing_mm,
        "position": g.image_position_mm,
        "orientation": g.image_orientation,
        "thickness": g.slice_thickness_mm,
    })
    .to_string()
}

async fn import_dicom(
    state: &AppState,
    imaging: &Imaging,
    dataset: &Dataset,
    unit: Unit,
) -> UnitOutcome {
    let deid = imaging
        .settings
        .deidentify
        .then(|| imaging.settings.deid.clone());
    let name = unit.name.clone();
    let keep_original = dataset.keep_originals;
    let prepared = tokio::task::spawn_blocking(move || {
        let prepared = prepare_dicom(&name, &unit.bytes, deid.as_ref());
        (prepared, keep_original.then_some(unit.bytes))
    })
    .await;
    let (prepared, original) = match prepared {
        Ok((Ok(prepared), original)) => (prepared, original),
        Ok((Err(error), _)) => return failed(strip_name(&error.to_string(), &unit.name)),
        Err(error) => return failed(format!("the file could not be processed: {error}")),
    };
    let burned_in = prepared
        .report
        .as_ref()
        .is_some_and(|r| r.burned_in_annotation_suspected);
    let deid_report = prepared.report.clone();
    let outcome = store_dicom(state, imaging, dataset, &unit.name, &prepared, original).await;
    UnitOutcome {
        result: outcome,
        deid: deid_report,
        cleaned_other: false,
        burned_in,
    }
}

/// Error messages of the library start with the file's name; the report names it already.
fn strip_name(message: &str, name: &str) -> String {
    message
        .strip_prefix(name)
        .map(|rest| {
            let rest = rest.trim_start_matches([':', ' ']);
            rest.strip_prefix("is ").unwrap_or(rest)
        })
        .unwrap_or(message)
        .to_string()
}

async fn store_dicom(
    state: &AppState,
    imaging: &Imaging,
    dataset: &Dataset,
    name: &str,
    prepared: &voxhub_imaging::ingest::PreparedDicom,
    original: Option<Vec<u8>>,
) -> Result<Imported, String> {
    let (object, original_object) = put_objects(imaging, &prepared.bytes, original).await?;
    let image = &prepared.image;
    let a = &image.attributes;
    let text = |v: &Option<String>| v.clone().unwrap_or_default();
    let geometry = geometry_json(image);
    let index = async {
        let mut tx = state.store.begin().await?;
        let patient_id = tx
            .upsert_patient(
                dataset.id,
                a.patient_id
                    .as_deref()
                    .filter(|p| !p.is_empty())
                    .unwrap_or("(no patient ID)"),
                &text(&a.patient_name),
                &text(&a.patient_sex),
                &text(&a.patient_birth_date),
            )
            .await?;
        let study_id = tx
            .upsert_study(
                dataset.id,
                patient_id,
                &NewStudy {
                    study_uid: a.study_instance_uid.as_deref().unwrap_or_default(),
                    study_date: &text(&a.study_date),
                    study_time: &text(&a.study_time),
                    description: &text(&a.study_description),
                    accession_number: &text(&a.accession_number),
                    referring_physician: &text(&a.referring_physician_name),
                },
            )
            .await?;
        let series_id = tx
            .upsert_series(
                dataset.id,
                study_id,
                &NewSeries {
                    series_uid: a.series_instance_uid.as_deref().unwrap_or_default(),
                    kind: "dicom",
                    modality: &text(&a.modality),
                    body_part: &text(&a.body_part_examined),
                    series_date: &text(&a.series_date),
                    series_time: &text(&a.series_time),
                    description: &text(&a.series_description),
                    series_number: a.series_number.map(i64::from),
                },
            )
            .await?;
        let inserted = tx
            .insert_instance(&NewInstance {
                dataset_id: dataset.id,
                series_id,
                sop_uid: a.sop_instance_uid.as_deref().unwrap_or_default(),
                sop_class_uid: &text(&a.sop_class_uid),
                instance_number: a.instance_number.map(i64::from),
                transfer_syntax: &image.transfer_syntax_uid,
                rows: image.geometry.as_ref().map(|g| i64::from(g.rows)),
                columns: image.geometry.as_ref().map(|g| i64::from(g.columns)),
                frames: image
                    .geometry
                    .as_ref()
                    .map_or(1, |g| i64::from(g.number_of_frames)),
                geometry: &geometry,
                object_id: object.as_str(),
                size_bytes: prepared.bytes.len() as i64,
                original_object_id: original_object.as_ref().map(|o| o.as_str()),
                source_name: name,
            })
            .await?;
        tx.commit().await?;
        Ok::<_, voxhub_store::StoreError>((series_id, inserted))
    };
    indexed(
        index.await,
        "a different file with the same SOP Instance UID is already in this dataset; the dataset was left as it was",
    )
}

/// Stores a file (and its original, when the dataset keeps originals) in the object store.
async fn put_objects(
    imaging: &Imaging,
    bytes: &[u8],
    original: Option<Vec<u8>>,
) -> Result<(ObjectId, Option<ObjectId>), String> {
    let storage_error = |e: voxhub_storage::StorageError| {
        tracing::error!("storing an uploaded file failed: {e}");
        "the file could not be stored; try again, and tell your administrator if it keeps failing"
            .to_string()
    };
    let object = imaging.objects.put(bytes).await.map_err(storage_error)?;
    let original = match original {
        Some(bytes) => Some(imaging.objects.put(&bytes).await.map_err(storage_error)?),
        None => None,
    };
    Ok((object, original))
}

/// What indexing one file came to, in the report's words.
fn indexed(
    result: Result<(i64, InstanceInsert), voxhub_store::StoreError>,
    conflict: &str,
) -> Result<Imported, String> {
    match result {
        Ok((series_id, InstanceInsert::Inserted(instance_id))) => Ok(Imported::New {
            series_id,
            instance_id,
        }),
        Ok((series_id, InstanceInsert::AlreadyPresent(instance_id))) => {
            Ok(Imported::AlreadyPresent {
                series_id,
                instance_id,
            })
        }
        Ok((_, InstanceInsert::Conflict)) => Err(conflict.into()),
        Err(error) => {
            tracing::error!("indexing an uploaded file failed: {error}");
            Err("the file could not be indexed; try again, and tell your administrator if it keeps failing".into())
        }
    }
}

/// A NIfTI file or picture that was read whole: the cleaned bytes, the original when kept,
/// and its columns, rows and slices.
type Checked = (Vec<u8>, Option<Vec<u8>>, [i64; 3]);

/// NIfTI volumes and pictures: checked by reading them whole, cleaned of free-text
/// metadata, stored, and indexed under the folder they were uploaded in.
async fn import_other(
    state: &AppState,
    imaging: &Imaging,
    dataset: &Dataset,
    unit: Unit,
    kind: FileKind,
) -> UnitOutcome {
    let name = unit.name.clone();
    let keep_original = dataset.keep_originals;
    let checked = tokio::task::spawn_blocking(move || -> Result<Checked, String> {
        let dims = match kind {
            FileKind::Nifti => {
                let volume = voxhub_imaging::nifti_read::read_bytes(&name, &unit.bytes)
                    .map_err(|e| e.to_string())?;
                let g = &volume.volume.geometry;
                [
                    g.columns as i64,
                    g.rows as i64,
                    volume.volume.slices() as i64,
                ]
            }
            _ => {
                let picture = voxhub_imaging::raster::read_bytes(&name, &unit.bytes)
                    .map_err(|e| e.to_string())?;
                [i64::from(picture.columns), i64::from(picture.rows), 1]
            }
        };
        let clean = match kind {
            FileKind::Nifti => scrub_nifti(&unit.bytes),
            _ => scrub_picture(&unit.bytes),
        }
        .map_err(|e| e.to_string())?;
        Ok((clean, keep_original.then_some(unit.bytes), dims))
    })
    .await;
    let (clean, original, dims) = match checked {
        Ok(Ok(checked)) => checked,
        Ok(Err(reason)) => return failed(strip_name(&reason, &unit.name)),
        Err(error) => return failed(format!("the file could not be processed: {error}")),
    };
    let result = store_other(
        state, imaging, dataset, &unit.name, kind, clean, original, dims,
    )
    .await;
    UnitOutcome {
        result,
        deid: None,
        cleaned_other: true,
        burned_in: kind != FileKind::Nifti,
    }
}

#[allow(clippy::too_many_arguments)]
async fn store_other(
    state: &AppState,
    imaging: &Imaging,
    dataset: &Dataset,
    name: &str,
    kind: FileKind,
    clean: Vec<u8>,
    original: Option<Vec<u8>>,
    dims: [i64; 3],
) -> Result<Imported, String> {
    let (object, original_object) = put_objects(imaging, &clean, original).await?;
    let (folder, top) = folders(name);
    let patient = if top.is_empty() {
        "(uploaded files)".to_string()
    } else {
        top
    };
    let is_nifti = kind == FileKind::Nifti;
    let dataset_key = dataset.id.to_string();
    let study_uid = derived_uid(&[&dataset_key, "study", &patient]);
    // A NIfTI file is a series of its own; the pictures of one folder form one series.
    let (series_key, series_kind, description, modality) = if is_nifti {
        (name.to_string(), "nifti", file_name(name).to_string(), "")
    } else {
        let description = if folder.is_empty() {
            "Pictures".to_string()
        } else {
            folder.clone()
        };
        (format!("pictures:{folder}"), "image", description, "XC")
    };
    let series_uid = derived_uid(&[&dataset_key, "series", &series_key]);
    let sop_uid = derived_uid(&[&dataset_key, "file", name]);
    let index = async {
        let mut tx = state.store.begin().await?;
        let patient_id = tx.upsert_patient(dataset.id, &patient, "", "", "").await?;
        let study_id = tx
            .upsert_study(
                dataset.id,
                patient_id,
                &NewStudy {
                    study_uid: &study_uid,
                    study_date: "",
                    study_time: "",
                    description: "Uploaded files",
                    accession_number: "",
                    referring_physician: "",
                },
            )
            .await?;
        let series_id = tx
            .upsert_series(
                dataset.id,
                study_id,
                &NewSeries {
                    series_uid: &series_uid,
                    kind: series_kind,
                    modality,
                    body_part: "",
                    series_date: "",
                    series_time: "",
                    description: &description,
                    series_number: None,
                },
            )
            .await?;
        let inserted = tx
            .insert_instance(&NewInstance {
                dataset_id: dataset.id,
                series_id,
                sop_uid: &sop_uid,
                sop_class_uid: "",
                instance_number: None,
                transfer_syntax: "",
                rows: Some(dims[1]),
                columns: Some(dims[0]),
                frames: dims[2],
                geometry: "{}",
                object_id: object.as_str(),
                size_bytes: clean.len() as i64,
                original_object_id: original_object.as_ref().map(|o| o.as_str()),
                source_name: name,
            })
            .await?;
        tx.commit().await?;
        Ok::<_, voxhub_store::StoreError>((series_id, inserted))
    };
    indexed(
        index.await,
        "a different file with the same name is already in this dataset; rename the file or delete the dataset's copy first",
    )
}

/// Label suffixes that mark a NIfTI file as the mask of the image of the same name.
const LABEL_SUFFIXES: &[&str] = &[
    "_seg", "_label", "_labels", "_mask", "-seg", "-label", "-labels", "-mask",
];

fn strip_nifti_ext(name: &str) -> &str {
    name.strip_suffix(".gz")
        .unwrap_or(name)
        .strip_suffix(".nii")
        .unwrap_or(name)
}

/// Links new NIfTI label volumes to their image: the one named in `label_of`, or the NIfTI
/// of the same name without the label suffix (`case1_seg.nii.gz` → `case1.nii.gz`).
async fn link_labels(
    state: &AppState,
    dataset: &Dataset,
    new_nifti: &[(i64, String)],
    label_of: Option<i64>,
) -> Result<(), ApiError> {
    if new_nifti.is_empty() {
        return Ok(());
    }
    let all = state
        .store
        .series_list(dataset.id, &Default::default())
        .await?;
    let by_stem: BTreeMap<String, i64> = all
        .iter()
        .filter(|s| s.kind == "nifti")
        .map(|s| (strip_nifti_ext(&s.description).to_ascii_lowercase(), s.id))
        .collect();
    let mut tx = state.store.begin().await?;
    for (series_id, name) in new_nifti {
        let stem = strip_nifti_ext(file_name(name)).to_ascii_lowercase();
        let image = match label_of {
            Some(image) => Some(image),
            None => LABEL_SUFFIXES
                .iter()
                .find_map(|suffix| stem.strip_suffix(suffix))
                .and_then(|base| by_stem.get(base).copied()),
        };
        if let Some(image) = image.filter(|image| image != series_id) {
            tx.set_label_of(*series_id, Some(image)).await?;
            tx.mark_series_changed(image).await?;
        }
    }
    tx.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_uids_are_stable_valid_and_distinct() {
        let a = derived_uid(&["1", "series", "x"]);
        assert_eq!(a, derived_uid(&["1", "series", "x"]));
        assert_ne!(a, derived_uid(&["1", "series", "y"]));
        assert_ne!(derived_uid(&["1", "ab"]), derived_uid(&["1a", "b"]));
        assert!(a.len() <= 64, "{a}");
        assert!(a.starts_with("2.25.") && a[5..].chars().all(|c| c.is_ascii_digit()));
    }

    #[test]
    fn folders_name_the_case() {
        assert_eq!(
            folders("case1/ct/a.png"),
            ("case1/ct".into(), "case1".into())
        );
        assert_eq!(folders("a.png"), (String::new(), String::new()));
        assert_eq!(strip_nifti_ext("a_seg.nii.gz"), "a_seg");
        assert_eq!(strip_nifti_ext("a.nii"), "a");
    }
}
