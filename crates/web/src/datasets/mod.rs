//! Imaging datasets: creating, sharing and deleting them, uploading into them (ingest with
//! de-identification), browsing their index, and the background deriver that makes
//! thumbnails, volume checks and NIfTI files. Like [`crate::service`], every operation checks
//! permission and writes its audit entry; reads of patient data are audited too (see
//! [`Imaging::audit_read`]).
//!
//! | module | owns |
//! | --- | --- |
//! | [`ingest`] | one upload: files, zips, DICOM/NIfTI/pictures, per-file atomic import, the report |
//! | [`derive`] | the background deriver: series summary, thumbnail, volume check, NIfTI |
//! | [`view`] | the web viewer's side: decoded series cached, windowed PNG slices, values, overlays, metadata |

pub mod data_views;
pub mod derive;
pub mod ingest;
pub mod view;

use crate::AppState;
use crate::error::ApiError;
use crate::service::{Context, allowed};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use voxhub_core::audit::Outcome;
use voxhub_core::names;
use voxhub_core::permissions;
use voxhub_core::role::{ClassRole, Role};
use voxhub_imaging::deid::DeidConfig;
use voxhub_storage::{ObjectId, ObjectStore};
use voxhub_store::datasets::{
    Dataset, DatasetRef, NewDataset, Patient, Series, SeriesFilter, Study, Upload,
};

type ReadKey = (i64, String, &'static str);

/// When a person last read a target, and whether that read's audit entry is committed.
struct RecentRead {
    at: Instant,
    committed: bool,
}

/// Forgets a read whose audit entry was not committed, when dropped still armed.
struct Forget<'a> {
    reads: &'a Mutex<HashMap<ReadKey, RecentRead>>,
    key: Option<ReadKey>,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        if let Some(key) = self.key.take()
            && let Ok(mut reads) = self.reads.lock()
        {
            reads.remove(&key);
        }
    }
}

/// Settings of the imaging side, filled from the server's configuration.
#[derive(Debug, Clone)]
pub struct ImagingSettings {
    /// Largest upload (all files of one request together).
    pub max_upload_bytes: u64,
    /// Largest single file, inside a zip too.
    pub max_file_bytes: u64,
    /// De-identification on ingest (on unless the operator turned it off).
    pub deidentify: bool,
    pub deid: DeidConfig,
    /// Decoded volumes kept in memory for the viewer.
    pub volume_cache_bytes: u64,
    /// How long a series must be unchanged before it is derived (uploads come in batches).
    pub derive_settle_ms: i64,
    /// Reads of the same series by the same person in this window make one audit entry.
    pub read_audit_window: Duration,
}

impl Default for ImagingSettings {
    fn default() -> Self {
        Self {
            max_upload_bytes: 4 * 1024 * 1024 * 1024,
            max_file_bytes: 1024 * 1024 * 1024,
            deidentify: true,
            deid: DeidConfig::default(),
            volume_cache_bytes: 1024 * 1024 * 1024,
            derive_settle_ms: 1000,
            read_audit_window: Duration::from_secs(600),
        }
    }
}

/// The imaging side of the server: settings, the object store, where uploads are spooled,
/// and the deriver's wake-up call.
pub struct Imaging {
    pub settings: ImagingSettings,
    pub objects: Arc<dyn ObjectStore>,
    /// Uploads are written here before they are imported (never held in memory whole).
    pub spool_dir: PathBuf,
    pub wake_deriver: tokio::sync::Notify,
    recent_reads: Mutex<HashMap<ReadKey, RecentRead>>,
}

impl Imaging {
    pub fn new(
        settings: ImagingSettings,
        objects: Arc<dyn ObjectStore>,
        spool_dir: PathBuf,
    ) -> Self {
        Self {
            settings,
            objects,
            spool_dir,
            wake_deriver: tokio::sync::Notify::new(),
            recent_reads: Mutex::new(HashMap::new()),
        }
    }

    /// Records a read of patient data (`how`: `view`, `download`, `dicomweb`…) of `target`.
    /// Repeated reads of the same target by the same person within the window make one entry,
    /// so scrolling through 300 slices is one "view", not 300.
    pub async fn audit_read(
        &self,
        state: &AppState,
        ctx: &Context<'_>,
        how: &'static str,
        target: String,
        detail: String,
    ) -> Result<(), ApiError> {
        let key = (ctx.caller.user.id, target.clone(), how);
        let window = self.settings.read_audit_window;
        let audited = |recent: &HashMap<ReadKey, RecentRead>| {
            recent
                .get(&key)
                .is_some_and(|read| read.at.elapsed() < window && read.committed)
        };
        if audited(&self.recent_reads.lock().expect("read audit lock")) {
            return Ok(());
        }
        // Writes are serialised: once this transaction is open, a read that raced this one
        // has committed its entry (or failed and forgotten it).
        let mut tx = state.store.begin().await?;
        let mut forget = {
            let mut recent = self.recent_reads.lock().expect("read audit lock");
            if audited(&recent) {
                return Ok(());
            }
            let now = Instant::now();
            if recent.len() > 100_000 {
                recent.retain(|_, read| now.duration_since(read.at) < window);
            }
            recent.insert(
                key.clone(),
                RecentRead {
                    at: now,
                    committed: false,
                },
            );
            // Until the entry is committed: a failed or abandoned write (a closed tab)
            // leaves the next read to be audited.
            Forget {
                reads: &self.recent_reads,
                key: Some(key.clone()),
            }
        };
        tx.audit(ctx.entry(
            &format!("dataset.{how}"),
            target,
            Outcome::Success,
            detail,
            false,
        ))
        .await?;
        tx.commit().await?;
        forget.key = None;
        if let Some(read) = self
            .recent_reads
            .lock()
            .expect("read audit lock")
            .get_mut(&key)
        {
            read.committed = true;
        }
        Ok(())
    }

    /// Reads an object, mapping storage failures to clear errors.
    pub async fn object(&self, id: &str) -> Result<Vec<u8>, ApiError> {
        let id = ObjectId::parse(id).map_err(ApiError::internal)?;
        self.objects.get(&id).await.map_err(ApiError::internal)
    }
}

/// The imaging side, or a clear error on a server started without it.
pub fn imaging(state: &AppState) -> Result<&Arc<Imaging>, ApiError> {
    state.imaging.as_ref().ok_or_else(|| {
        ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "imaging_disabled",
            "this server does not keep imaging datasets",
        )
    })
}

pub(crate) fn dataset_target(id: i64, name: &str) -> String {
    format!("dataset:{id} {name}")
}

pub(crate) fn series_target(series: &Series) -> String {
    format!("series:{} dataset:{}", series.id, series.dataset_id)
}

/// A new dataset.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DatasetRequest {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Share read-only with this class (its teachers and admins only); omit to keep it private.
    pub class: Option<i64>,
}

/// Changes to a dataset; absent fields stay as they are.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DatasetChange {
    pub name: Option<String>,
    pub description: Option<String>,
    /// A class id to share with, or `null` to make the dataset private again.
    #[serde(default, with = "double_option")]
    #[schema(value_type = Option<i64>)]
    pub class: Option<Option<i64>>,
    /// Keep the original (identifiable) files of future uploads; admins only.
    pub keep_originals: Option<bool>,
}

mod double_option {
    use serde::{Deserialize, Deserializer};
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<i64>>, D::Error> {
        Option::<i64>::deserialize(d).map(Some)
    }
}

/// A dataset with what the caller may do with it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DatasetView {
    #[serde(flatten)]
    pub dataset: Dataset,
    /// Whether the caller may upload into it, change or delete it.
    pub can_change: bool,
}

fn valid_name(raw: &str) -> Result<String, ApiError> {
    Ok(names::plain_text("name", raw, 120)?)
}

fn valid_description(raw: &str) -> Result<String, ApiError> {
    Ok(names::long_text("description", raw, 2000)?)
}

async fn share_check(
    state: &AppState,
    ctx: &Context<'_>,
    class_id: i64,
    target: &str,
) -> Result<(), ApiError> {
    let class = state.store.class(class_id).await?;
    let membership = state.store.membership(class.id, ctx.caller.user.id).await?;
    allowed(
        ctx,
        state,
        "dataset.share",
        target,
        permissions::can_share_dataset_with(&ctx.caller.actor(), membership),
    )
    .await
}

/// The caller's role in the class a dataset is shared with, if any.
async fn membership_in(
    state: &AppState,
    ctx: &Context<'_>,
    class_id: Option<i64>,
) -> Result<Option<ClassRole>, ApiError> {
    Ok(match class_id {
        Some(class_id) => state.store.membership(class_id, ctx.caller.user.id).await?,
        None => None,
    })
}

/// Refuses (and audits) a caller who may not see the dataset; otherwise the dataset and
/// whether they may change it. Reads only the dataset's owner and class, not its counts:
/// this runs on every slice the viewer shows and every DICOMweb request.
pub(crate) async fn read_access(
    state: &AppState,
    ctx: &Context<'_>,
    dataset_id: i64,
) -> Result<(DatasetRef, bool), ApiError> {
    let dataset = state.store.dataset_ref(dataset_id).await?;
    let membership = membership_in(state, ctx, dataset.class_id).await?;
    let actor = ctx.caller.actor();
    allowed(
        ctx,
        state,
        "dataset.read",
        &dataset_target(dataset.id, &dataset.name),
        permissions::can_view_dataset(&actor, dataset.owner_id, membership),
    )
    .await?;
    let can_change = permissions::can_change_dataset(&actor, dataset.owner_id, membership).is_ok();
    Ok((dataset, can_change))
}

/// The dataset if the caller may see it; a refusal is audited.
pub async fn readable(
    state: &AppState,
    ctx: &Context<'_>,
    dataset_id: i64,
) -> Result<DatasetView, ApiError> {
    let (_, can_change) = read_access(state, ctx, dataset_id).await?;
    let dataset = state.store.dataset(dataset_id).await?;
    Ok(DatasetView {
        dataset,
        can_change,
    })
}

/// The dataset if the caller may change it; a refusal is audited under `action`.
pub async fn changeable(
    state: &AppState,
    ctx: &Context<'_>,
    dataset_id: i64,
    action: &str,
) -> Result<Dataset, ApiError> {
    let dataset = state.store.dataset(dataset_id).await?;
    let membership = membership_in(state, ctx, dataset.class_id).await?;
    allowed(
        ctx,
        state,
        action,
        &dataset_target(dataset.id, &dataset.name),
        permissions::can_change_dataset(&ctx.caller.actor(), dataset.owner_id, membership),
    )
    .await?;
    Ok(dataset)
}

/// A series, if the caller may see its dataset; a refusal is audited.
pub async fn readable_series(
    state: &AppState,
    ctx: &Context<'_>,
    series_id: i64,
) -> Result<Series, ApiError> {
    let series = state.store.series(series_id).await?;
    read_access(state, ctx, series.dataset_id).await?;
    Ok(series)
}

pub async fn list(state: &AppState, ctx: &Context<'_>) -> Result<Vec<DatasetView>, ApiError> {
    let actor = ctx.caller.actor();
    let datasets = if actor.role == Role::Admin {
        state.store.all_datasets().await?
    } else {
        state.store.datasets_visible_to(actor.user_id).await?
    };
    let memberships: HashMap<i64, ClassRole> = state
        .store
        .memberships_of(actor.user_id)
        .await?
        .into_iter()
        .map(|m| (m.id, m.role))
        .collect();
    Ok(datasets
        .into_iter()
        .map(|dataset| {
            let membership = dataset.class_id.and_then(|c| memberships.get(&c).copied());
            let can_change =
                permissions::can_change_dataset(&actor, dataset.owner_id, membership).is_ok();
            DatasetView {
                dataset,
                can_change,
            }
        })
        .collect())
}

pub async fn create(
    state: &AppState,
    ctx: &Context<'_>,
    request: DatasetRequest,
) -> Result<DatasetView, ApiError> {
    imaging(state)?;
    let name = valid_name(&request.name)?;
    let description = valid_description(&request.description)?;
    if let Some(class_id) = request.class {
        share_check(state, ctx, class_id, &format!("dataset:new {name}")).await?;
    }
    let mut tx = state.store.begin().await?;
    let id = tx
        .create_dataset(&NewDataset {
            name: &name,
            description: &description,
            owner_id: ctx.caller.user.id,
            class_id: request.class,
        })
        .await?;
    tx.audit(ctx.entry(
        "dataset.create",
        format!("dataset:{id} {name}"),
        Outcome::Success,
        match request.class {
            Some(class) => format!("shared read-only with class {class}"),
            None => "private".into(),
        },
        false,
    ))
    .await?;
    tx.commit().await?;
    Ok(DatasetView {
        dataset: state.store.dataset(id).await?,
        can_change: true,
    })
}

pub async fn update(
    state: &AppState,
    ctx: &Context<'_>,
    dataset_id: i64,
    change: DatasetChange,
) -> Result<DatasetView, ApiError> {
    let dataset = changeable(state, ctx, dataset_id, "dataset.update").await?;
    let target = dataset_target(dataset.id, &dataset.name);
    let name = change.name.as_deref().map(valid_name).transpose()?;
    let description = change
        .description
        .as_deref()
        .map(valid_description)
        .transpose()?;
    if let Some(Some(class_id)) = change.class
        && dataset.class_id != Some(class_id)
    {
        share_check(state, ctx, class_id, &target).await?;
    }
    let mut admin_power = false;
    if change.keep_originals.is_some() {
        allowed(
            ctx,
            state,
            "dataset.keep_originals",
            &target,
            permissions::require_admin(
                &ctx.caller.actor(),
                "choose to keep original (identifiable) files",
            ),
        )
        .await?;
        admin_power = true;
    }
    let mut details = Vec::new();
    if let Some(name) = &name {
        details.push(format!("name '{name}'"));
    }
    if description.is_some() {
        details.push("description".into());
    }
    match change.class {
        Some(Some(class)) => details.push(format!("shared with class {class}")),
        Some(None) => details.push("made private".into()),
        None => {}
    }
    if let Some(keep) = change.keep_originals {
        details.push(format!("keep originals {keep}"));
    }
    let mut tx = state.store.begin().await?;
    tx.update_dataset(
        dataset_id,
        name.as_deref(),
        description.as_deref(),
        change.class,
        change.keep_originals,
    )
    .await?;
    tx.audit(ctx.entry(
        "dataset.update",
        target,
        Outcome::Success,
        details.join(", "),
        admin_power,
    ))
    .await?;
    tx.commit().await?;
    readable(state, ctx, dataset_id).await
}

/// Deletes a dataset, its index and the objects no other dataset references.
pub async fn delete(state: &AppState, ctx: &Context<'_>, dataset_id: i64) -> Result<(), ApiError> {
    let imaging = imaging(state)?;
    let dataset = changeable(state, ctx, dataset_id, "dataset.delete").await?;
    let mut tx = state.store.begin().await?;
    let objects = tx.delete_dataset(dataset_id).await?;
    tx.audit(ctx.entry(
        "dataset.delete",
        dataset_target(dataset.id, &dataset.name),
        Outcome::Success,
        format!("{} series, {} files", dataset.series, dataset.instances),
        false,
    ))
    .await?;
    tx.commit().await?;
    for object in objects {
        if !state.store.object_referenced(&object).await?
            && let Ok(id) = ObjectId::parse(&object)
            && let Err(error) = imaging.objects.delete(&id).await
        {
            tracing::warn!(
                "could not delete object {object} of deleted dataset {dataset_id}: {error}"
            );
        }
    }
    Ok(())
}

pub async fn patients(
    state: &AppState,
    ctx: &Context<'_>,
    dataset_id: i64,
) -> Result<Vec<Patient>, ApiError> {
    read_access(state, ctx, dataset_id).await?;
    Ok(state.store.patients(dataset_id).await?)
}

pub async fn studies(
    state: &AppState,
    ctx: &Context<'_>,
    dataset_id: i64,
    patient_id: Option<i64>,
) -> Result<Vec<Study>, ApiError> {
    read_access(state, ctx, dataset_id).await?;
    Ok(state.store.studies(dataset_id, patient_id).await?)
}

/// A series as listed and shown: the index row and its derived summary.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SeriesView {
    #[serde(flatten)]
    pub series: Series,
    /// Dimensions, spacing, window and whether the series forms a volume (and if not, why).
    #[schema(value_type = Object)]
    pub summary: serde_json::Value,
    /// Label (mask) series linked to this one.
    pub labels: Vec<i64>,
}

impl SeriesView {
    pub fn new(series: Series, labels: Vec<i64>) -> Self {
        let summary = serde_json::from_str(&series.summary).unwrap_or(serde_json::Value::Null);
        Self {
            series,
            summary,
            labels,
        }
    }

    /// Whether the series forms a volume (known once derived).
    pub fn is_volume(&self) -> bool {
        self.summary["volume"]["ok"].as_bool() == Some(true)
    }
}

pub async fn series_list(
    state: &AppState,
    ctx: &Context<'_>,
    dataset_id: i64,
    filter: SeriesFilter,
) -> Result<Vec<SeriesView>, ApiError> {
    read_access(state, ctx, dataset_id).await?;
    let all = state.store.series_list(dataset_id, &filter).await?;
    let mut labels: HashMap<i64, Vec<i64>> = HashMap::new();
    for series in &all {
        if let Some(of) = series.label_of {
            labels.entry(of).or_default().push(series.id);
        }
    }
    Ok(all
        .into_iter()
        .map(|series| {
            let linked = labels.remove(&series.id).unwrap_or_default();
            SeriesView::new(series, linked)
        })
        .collect())
}

pub async fn series(
    state: &AppState,
    ctx: &Context<'_>,
    series_id: i64,
) -> Result<(SeriesView, DatasetView), ApiError> {
    let series = state.store.series(series_id).await?;
    let dataset = readable(state, ctx, series.dataset_id).await?;
    let labels = state
        .store
        .labels_of(series_id)
        .await?
        .into_iter()
        .map(|l| l.id)
        .collect();
    Ok((SeriesView::new(series, labels), dataset))
}

pub async fn uploads(
    state: &AppState,
    ctx: &Context<'_>,
    dataset_id: i64,
) -> Result<Vec<Upload>, ApiError> {
    changeable(state, ctx, dataset_id, "dataset.uploads").await?;
    Ok(state.store.uploads(dataset_id).await?)
}

/// The thumbnail of a series (PNG), once derived.
pub async fn thumbnail(
    state: &AppState,
    ctx: &Context<'_>,
    series_id: i64,
) -> Result<Vec<u8>, ApiError> {
    let imaging = imaging(state)?;
    let series = readable_series(state, ctx, series_id).await?;
    let Some(object) = series.thumbnail_object.as_deref() else {
        if series.derived == "pending" {
            let mut error = ApiError::new(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "not_ready",
                "the thumbnail is still being made; try again in a moment",
            );
            error.retry_after_s = Some(1);
            return Err(error);
        }
        return Err(ApiError::not_found("this series has no picture to show"));
    };
    imaging
        .audit_read(
            state,
            ctx,
            "view",
            series_target(&series),
            "thumbnail".into(),
        )
        .await?;
    imaging.object(object).await
}

/// The series as a NIfTI volume (`.nii.gz`), made now if the deriver has not yet.
pub async fn nifti(
    state: &AppState,
    ctx: &Context<'_>,
    series_id: i64,
) -> Result<(String, Vec<u8>), ApiError> {
    let imaging = imaging(state)?;
    let series = readable_series(state, ctx, series_id).await?;
    let object = match series.nifti_object.clone() {
        Some(object) if series.derived == "ready" => object,
        _ => {
            derive::derive_series(state, series.id).await?;
            let series = state.store.series(series_id).await?;
            match series.nifti_object {
                Some(object) => object,
                None => {
                    let summary: serde_json::Value =
                        serde_json::from_str(&series.summary).unwrap_or_default();
                    let reason = summary["volume"]["reason"]
                        .as_str()
                        .unwrap_or("it is not a volume")
                        .to_string();
                    return Err(ApiError::new(
                        axum::http::StatusCode::CONFLICT,
                        "not_a_volume",
                        format!("this series cannot be downloaded as NIfTI: {reason}"),
                    ));
                }
            }
        }
    };
    imaging
        .audit_read(
            state,
            ctx,
            "download",
            series_target(&series),
            "NIfTI".into(),
        )
        .await?;
    let bytes = imaging.object(&object).await?;
    Ok((download_name(&series), bytes))
}

/// A file name for a series download: its number and description, in safe characters.
pub fn download_name(series: &Series) -> String {
    let mut base: String = format!(
        "series-{}-{}",
        series.series_number.unwrap_or(series.id),
        series.description
    )
    .chars()
    .map(|c| {
        if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
            c
        } else {
            '_'
        }
    })
    .collect();
    base.truncate(80);
    let base = base.trim_end_matches(['_', '-', '.']).to_string();
    format!("{base}.nii.gz")
}
