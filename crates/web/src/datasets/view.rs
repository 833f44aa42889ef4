//! The viewer's side of a series: what the web viewer needs to show it (planes, sizes,
//! windows, units, labels), windowed 8-bit PNG slices, the value under the cursor, label
//! overlays and the attributes of the shown file.
//!
//! A series that forms a volume is decoded once into a [`Volume`] (DICOM files decoded on
//! all cores, NIfTI read whole) and reformatted into axial, coronal and sagittal slices; any
//! other series is a stack of frames (every frame of every file, in display order) decoded
//! one file at a time. Decoded volumes and files live in a process-wide cache bounded by
//! `volume_cache_bytes` (least recently used first out), keyed by the content-addressed ids
//! of the stored files, so that one key always means the same pixels, even for several
//! servers in one process (tests). Each key is loaded once: concurrent requests for a
//! series being loaded wait for that load instead of starting their own. Rendered PNGs are
//! kept in a small cache of their own, so scrolling back and forth re-renders nothing.
//!
//! Every answer goes through [`readable_series`] (the same permission as the series itself)
//! and records a `dataset.view` audit entry (one per person and series in the audit window).

use super::{Imaging, imaging, readable_series, series_target};
use crate::AppState;
use crate::error::ApiError;
use crate::service::Context;
use axum::http::StatusCode;
use bytes::Bytes;
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::future::Future;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use tokio::sync::OnceCell;
use voxhub_imaging::dicom::{self, DicomImage, Geometry, ImagingError};
use voxhub_imaging::reformat::{self, EdgeLabels, Plane, Slice};
use voxhub_imaging::render::{self, WindowLevel};
use voxhub_imaging::volume::{self, Volume};
use voxhub_imaging::{dicom_json, nifti_read, raster};
use voxhub_store::datasets::{Instance, Series};

/// The plane name of a series shown frame by frame.
pub const STACK_PLANE: &str = "stack";
/// Rendered PNGs kept for scrolling back and forth.
pub const PNG_CACHE_BYTES: usize = 64 * 1024 * 1024;
/// Files read from the object store at once while a volume loads.
const PARALLEL_READS: usize = 32;
/// Attributes listed at most in the metadata panel, and the longest value shown.
const MAX_ATTRIBUTES: usize = 2000;
const MAX_VALUE_CHARS: usize = 300;

/// The presets offered besides the file's own window, with the words the viewer shows.
pub const PRESET_LABELS: &[(&str, &str)] = &[
    ("lung", "Lung"),
    ("mediastinum", "Mediastinum"),
    ("bone", "Bone"),
    ("brain", "Brain"),
    ("soft tissue", "Soft tissue"),
];

// ---------------------------------------------------------------------------------------
// What the API answers
// ---------------------------------------------------------------------------------------

/// A window over the shown values (HU for CT): the DICOM VOI LUT function's center and width.
#[derive(Debug, Clone, Copy, Serialize, utoipa::ToSchema)]
pub struct WindowJson {
    pub center: f64,
    pub width: f64,
}

impl From<WindowLevel> for WindowJson {
    fn from(window: WindowLevel) -> Self {
        Self {
            center: window.center,
            width: window.width,
        }
    }
}

/// A window preset button.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PresetJson {
    /// The value of `preset=` in slice addresses: lung, mediastinum, bone, brain,
    /// `soft tissue`, or `file` (the window written in the file).
    pub name: String,
    pub label: String,
    pub center: f64,
    pub width: f64,
}

/// The patient directions of the four edges of a slice (R, L, A, P, S, I).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct EdgesJson {
    pub left: String,
    pub right: String,
    pub top: String,
    pub bottom: String,
}

impl From<EdgeLabels> for EdgesJson {
    fn from(labels: EdgeLabels) -> Self {
        Self {
            left: labels.left,
            right: labels.right,
            top: labels.top,
            bottom: labels.bottom,
        }
    }
}

/// One plane of the series as the viewer scrolls it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PlaneJson {
    /// axial, coronal, sagittal (volumes) or stack (frame by frame).
    pub name: String,
    /// Number of slices (frames); slice numbers run from 0 to `slices - 1`.
    pub slices: usize,
    /// Pixels of a slice as stored: `x` of the value endpoint runs over columns, `y` over rows.
    pub columns: u32,
    pub rows: u32,
    /// Size of the PNG: the coarser axis is stretched so that displayed pixels are square.
    pub display_columns: u32,
    pub display_rows: u32,
    /// Distance between neighbouring columns, then rows (mm), when known.
    pub pixel_spacing_mm: Option<[f64; 2]>,
    /// Distance between neighbouring slices (mm), for volumes.
    pub slice_spacing_mm: Option<f64>,
    /// Where the edges of the picture point in the patient, for volumes.
    pub edges: Option<EdgesJson>,
    /// The slice the viewer opens on (the middle one).
    pub start: usize,
}

/// A label (mask) volume linked to the series, and whether it can be laid over it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct LabelJson {
    pub series: i64,
    pub description: String,
    pub compatible: bool,
    /// Why the mask cannot be laid over this series.
    pub reason: Option<String>,
}

/// Everything the viewer needs to open a series.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ViewInfo {
    pub series: i64,
    pub dataset: i64,
    /// dicom, nifti or image.
    pub kind: String,
    pub modality: String,
    pub description: String,
    /// Changes whenever the series's files change; add it to image addresses as `v=` so
    /// that the browser may keep them.
    pub version: String,
    /// Whether the series is shown as a volume (axial, coronal and sagittal).
    pub volume: bool,
    /// Why the series is shown frame by frame rather than as a volume.
    pub not_volume_reason: Option<String>,
    pub planes: Vec<PlaneJson>,
    /// The window the viewer opens with: the file's own, or one made from the values.
    pub window: Option<WindowJson>,
    /// The window written in the file, when there is one.
    pub file_window: Option<WindowJson>,
    pub presets: Vec<PresetJson>,
    /// "HU" for CT with a rescale, otherwise the file's Rescale Type or "stored value".
    pub units: String,
    /// MONOCHROME1 is shown inverted (low values white), as the modality intends.
    pub photometric: String,
    /// Whether pixels are colour (RGB), which is shown as stored and has no window.
    pub colour: bool,
    /// Label (mask) series that can be laid over this one.
    pub labels: Vec<i64>,
    /// Every label series linked to this one, with the reason when it cannot be laid over.
    pub label_series: Vec<LabelJson>,
    /// Why the pixels cannot be shown (an undecodable transfer syntax), when they cannot.
    pub decode_error: Option<String>,
    /// Where to download the volume as NIfTI, for volumes.
    pub nifti: Option<String>,
}

/// The value under the cursor.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ValueJson {
    /// The modality value (HU for CT), or `[red, green, blue]` for colour pixels.
    #[schema(value_type = Object)]
    pub value: Value,
    pub units: String,
    /// The patient position (LPS: x to the patient's left, y to the back, z to the head), mm.
    pub position_mm: Option<[f64; 3]>,
}

/// One attribute of the shown file.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AttributeJson {
    /// `(gggg,eeee)`; attributes inside a sequence item start with `>`.
    pub tag: String,
    pub keyword: String,
    pub vr: String,
    pub value: String,
}

/// The attributes of the shown file (already de-identified when it was uploaded).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct MetadataJson {
    /// The file (instance) whose attributes these are, for DICOM.
    pub instance: Option<i64>,
    /// The frame within a multi-frame file.
    pub frame: Option<u32>,
    pub attributes: Vec<AttributeJson>,
}

// ---------------------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------------------

/// Which window to render with.
#[derive(Debug, Clone, PartialEq)]
pub enum WindowChoice {
    /// The series's opening window.
    Opening,
    /// A preset by name, `file` included.
    Preset(String),
    Explicit(WindowLevel),
}

/// Checks `center`/`width`/`preset` of a slice address.
pub fn window_choice(
    center: Option<f64>,
    width: Option<f64>,
    preset: Option<&str>,
) -> Result<WindowChoice, ApiError> {
    let bad = |message: String| ApiError::bad_request("invalid_window", message);
    if let Some(name) = preset {
        if center.is_some() || width.is_some() {
            return Err(bad(
                "give either a preset or center and width, not both".into()
            ));
        }
        let name = preset_name(name).ok_or_else(|| {
            bad(format!(
                "there is no window preset '{name}'; use one of: {}, file",
                PRESET_LABELS
                    .iter()
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?;
        return Ok(WindowChoice::Preset(name.to_string()));
    }
    match (center, width) {
        (None, None) => Ok(WindowChoice::Opening),
        (Some(center), Some(width)) => {
            if !center.is_finite() || center.abs() > 1e9 {
                return Err(bad(format!("window center {center} is not a usable number")));
            }
            if !width.is_finite() || !(1.0..=1e9).contains(&width) {
                return Err(bad(format!(
                    "window width {width} is not allowed: the width must be at least 1 (the DICOM VOI LUT function needs it)"
                )));
            }
            Ok(WindowChoice::Explicit(WindowLevel { center, width }))
        }
        _ => Err(bad(
            "give both center and width of the window (for example center=40&width=400), or a preset".into(),
        )),
    }
}

/// The canonical name of a preset (`soft-tissue` and `soft_tissue` are `soft tissue`).
fn preset_name(raw: &str) -> Option<&'static str> {
    let wanted = raw.trim().to_ascii_lowercase().replace(['-', '_'], " ");
    if wanted == "file" {
        return Some("file");
    }
    PRESET_LABELS
        .iter()
        .map(|(name, _)| *name)
        .find(|name| *name == wanted)
}

/// A slice number from an address segment such as `12.png`.
pub fn slice_number(raw: &str) -> Result<usize, ApiError> {
    raw.strip_suffix(".png")
        .unwrap_or(raw)
        .parse::<usize>()
        .map_err(|_| {
            ApiError::bad_request(
                "invalid_slice",
                format!("'{raw}' is not a slice number; slices are numbered from 0, as in 12.png"),
            )
        })
}

// ---------------------------------------------------------------------------------------
// Decoded series and files, cached
// ---------------------------------------------------------------------------------------

/// A decoded volume with what the viewer needs around it.
pub struct VolumeShown {
    pub volume: Volume,
    pub monochrome1: bool,
    pub photometric: String,
    pub units: String,
    pub file_window: Option<WindowLevel>,
    pub opening_window: WindowLevel,
    /// The instance of each voxel slice (DICOM), first slice first.
    pub instances: Vec<i64>,
    /// Header facts of a NIfTI file, for the metadata panel.
    pub header: Vec<AttributeJson>,
}

/// One decoded file of a stack (a DICOM file with all its frames, or a picture).
pub struct FileShown {
    pub columns: u32,
    pub rows: u32,
    /// 1 (grey) or 3 (RGB, interleaved).
    pub samples: u16,
    pub frames: Vec<Vec<f32>>,
    pub monochrome1: bool,
    pub photometric: String,
    pub units: String,
    pub file_window: Option<WindowLevel>,
    /// Distance between columns, then rows (mm).
    pub pixel_spacing_mm: Option<[f64; 2]>,
    pub geometry: Option<Geometry>,
}

#[derive(Clone)]
enum Decoded {
    Volume(Arc<VolumeShown>),
    File(Arc<FileShown>),
}

type Cell = Arc<OnceCell<Result<Decoded, ApiError>>>;

struct Slot {
    cell: Cell,
    bytes: u64,
    used: u64,
}

#[derive(Default)]
struct DecodedCache {
    slots: HashMap<String, Slot>,
    bytes: u64,
    tick: u64,
}

fn decoded_cache() -> &'static Mutex<DecodedCache> {
    static CACHE: OnceLock<Mutex<DecodedCache>> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

/// Bytes held by decoded volumes and files now (for tests and monitoring).
pub fn cached_bytes() -> u64 {
    decoded_cache().lock().expect("decoded cache lock").bytes
}

/// Whether the DICOM volume of content `version` (a view answer's `version`) is decoded in
/// memory now (for tests and monitoring).
pub fn volume_decoded(version: &str) -> bool {
    decoded_ready(&format!("volume:{version}"))
}

/// Whether the decoded value under `key` is loaded and ready (not loading, not failed).
fn decoded_ready(key: &str) -> bool {
    let cache = decoded_cache().lock().expect("decoded cache lock");
    cache
        .slots
        .get(key)
        .is_some_and(|slot| matches!(slot.cell.get(), Some(Ok(_))))
}

/// The decoded value under `key`, loading it once: the first caller starts `load` in a task
/// of its own (so a closed browser tab does not waste it), later callers wait for it. A
/// failed load is not kept, so the next request tries again.
async fn decoded<F, Fut>(budget: u64, key: String, load: F) -> Result<Decoded, ApiError>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = Result<(Decoded, u64), ApiError>> + Send + 'static,
{
    let cell: Cell = {
        let mut cache = decoded_cache().lock().expect("decoded cache lock");
        cache.tick += 1;
        let tick = cache.tick;
        let slot = cache.slots.entry(key.clone()).or_insert_with(|| Slot {
            cell: Arc::new(OnceCell::new()),
            bytes: 0,
            used: tick,
        });
        slot.used = tick;
        slot.cell.clone()
    };
    if let Some(done) = cell.get() {
        return done.clone();
    }
    let task_cell = cell.clone();
    let task_key = key.clone();
    let task = tokio::spawn(async move {
        task_cell
            .get_or_init(|| async move {
                let (value, bytes) = load().await?;
                keep(budget, &task_key, bytes);
                Ok(value)
            })
            .await
            .clone()
    });
    let result = task
        .await
        .map_err(|error| ApiError::internal(format!("loading the series stopped: {error}")))?;
    if result.is_err() {
        let mut cache = decoded_cache().lock().expect("decoded cache lock");
        if cache
            .slots
            .get(&key)
            .is_some_and(|slot| Arc::ptr_eq(&slot.cell, &cell))
        {
            cache.slots.remove(&key);
        }
    }
    result
}

/// Accounts a finished load and drops the least recently used others beyond the budget.
fn keep(budget: u64, key: &str, bytes: u64) {
    let mut cache = decoded_cache().lock().expect("decoded cache lock");
    let Some(slot) = cache.slots.get_mut(key) else {
        return;
    };
    slot.bytes = bytes;
    cache.bytes += bytes;
    while cache.bytes > budget {
        let oldest = cache
            .slots
            .iter()
            .filter(|(k, slot)| slot.bytes > 0 && k.as_str() != key)
            .min_by_key(|(_, slot)| slot.used)
            .map(|(k, _)| k.clone());
        let Some(oldest) = oldest else { break };
        if let Some(slot) = cache.slots.remove(&oldest) {
            cache.bytes -= slot.bytes;
        }
    }
}

#[derive(Default)]
struct PngCache {
    entries: HashMap<String, (Bytes, u64)>,
    bytes: usize,
    tick: u64,
}

fn png_cache() -> &'static Mutex<PngCache> {
    static CACHE: OnceLock<Mutex<PngCache>> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

fn png_cached(key: &str) -> Option<Bytes> {
    let mut cache = png_cache().lock().expect("png cache lock");
    cache.tick += 1;
    let tick = cache.tick;
    cache.entries.get_mut(key).map(|(png, used)| {
        *used = tick;
        png.clone()
    })
}

fn png_keep(key: String, png: Bytes) {
    let mut cache = png_cache().lock().expect("png cache lock");
    if png.len() > PNG_CACHE_BYTES / 4 {
        return;
    }
    cache.tick += 1;
    let tick = cache.tick;
    cache.bytes += png.len();
    if let Some((old, _)) = cache.entries.insert(key, (png, tick)) {
        cache.bytes -= old.len();
    }
    while cache.bytes > PNG_CACHE_BYTES {
        let oldest = cache
            .entries
            .iter()
            .min_by_key(|(_, (_, used))| *used)
            .map(|(k, _)| k.clone());
        let Some(oldest) = oldest else { break };
        if let Some((png, _)) = cache.entries.remove(&oldest) {
            cache.bytes -= png.len();
        }
    }
}

// ---------------------------------------------------------------------------------------
// Opening a series
// ---------------------------------------------------------------------------------------

/// One frame of a stack: a file and the frame in it.
#[derive(Clone)]
struct FrameRef {
    instance: Instance,
    frame: u32,
}

enum Layout {
    Volume(Arc<VolumeShown>),
    Stack(Vec<FrameRef>),
}

/// A readable series, checked and loaded for viewing.
struct Opened {
    imaging: Arc<Imaging>,
    series: Series,
    summary: Value,
    /// Identifies the content: the ids of the stored files.
    content: String,
    layout: Layout,
    /// Why a DICOM series is shown frame by frame.
    not_volume_reason: Option<String>,
}

fn not_ready() -> ApiError {
    let mut error = ApiError::new(
        StatusCode::CONFLICT,
        "series_not_ready",
        "this series is still being prepared after its upload; try again in a few seconds",
    );
    error.retry_after_s = Some(2);
    error
}

fn cannot_show(reason: &str) -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "cannot_show",
        format!("this series cannot be shown: {reason}"),
    )
}

/// A decoding failure as a 422 that names its cause (the transfer syntax, for one that
/// cannot be decoded exactly); never a picture that might be wrong.
fn decode_refusal(error: &ImagingError) -> ApiError {
    let text = error.to_string();
    let reason = text.strip_prefix("image: ").unwrap_or(&text);
    match error {
        ImagingError::UnsupportedTransferSyntax { .. } | ImagingError::Decode { .. } => {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "undecodable",
                format!("this image is not shown because it cannot be decoded exactly: {reason}"),
            )
        }
        _ => cannot_show(reason),
    }
}

fn summary_of(series: &Series) -> Value {
    serde_json::from_str(&series.summary).unwrap_or(Value::Null)
}

fn window_of(value: &Value) -> Option<WindowLevel> {
    let center = value.get("center")?.as_f64()?;
    let width = value.get("width")?.as_f64()?;
    (center.is_finite() && width >= 1.0).then_some(WindowLevel { center, width })
}

/// Checks the caller may see the series and records the view (once per audit window):
/// what every viewer request does first.
async fn viewed(
    state: &AppState,
    ctx: &Context<'_>,
    series_id: i64,
) -> Result<(Arc<Imaging>, Series), ApiError> {
    let imaging = imaging(state)?.clone();
    let series = readable_series(state, ctx, series_id).await?;
    imaging
        .audit_read(state, ctx, "view", series_target(&series), "viewer".into())
        .await?;
    Ok((imaging, series))
}

/// Checks the caller may see the series, records the view, and loads what is shown.
async fn open(state: &AppState, ctx: &Context<'_>, series_id: i64) -> Result<Opened, ApiError> {
    let (imaging, series) = viewed(state, ctx, series_id).await?;
    load_series(state, imaging, series).await
}

/// Loads a series the caller has been allowed to see.
async fn load_series(
    state: &AppState,
    imaging: Arc<Imaging>,
    series: Series,
) -> Result<Opened, ApiError> {
    let summary = summary_of(&series);
    if summary.get("volume").is_none() {
        return Err(if series.derived == "failed" {
            cannot_show(
                summary["error"]
                    .as_str()
                    .unwrap_or("its files could not be read"),
            )
        } else {
            not_ready()
        });
    }
    if let Some(error) = summary["error"].as_str() {
        return Err(cannot_show(error));
    }
    let (content, instances) = series_files(state, &imaging, &series).await?;
    if instances.is_empty() {
        return Err(cannot_show("it has no files"));
    }
    let budget = imaging.settings.volume_cache_bytes;
    let volume_ok = summary["volume"]["ok"].as_bool() == Some(true);
    let mut not_volume_reason = None;
    let layout = match series.kind.as_str() {
        "nifti" => {
            let instance = instances[0].clone();
            let loader = imaging.clone();
            match decoded(budget, format!("nifti:{content}"), move || {
                load_nifti(loader, instance, budget)
            })
            .await?
            {
                Decoded::Volume(volume) => Layout::Volume(volume),
                Decoded::File(_) => {
                    return Err(ApiError::internal("a NIfTI series decoded as a file"));
                }
            }
        }
        "dicom" if volume_ok => {
            let with_pixels: Vec<Instance> = instances
                .iter()
                .filter(|i| i.rows.is_some())
                .cloned()
                .collect();
            let loader = imaging.clone();
            let modality = series.modality.clone();
            let window = window_of(&summary["window"]);
            match decoded(budget, format!("volume:{content}"), move || {
                load_dicom_volume(loader, with_pixels, modality, window, budget)
            })
            .await?
            {
                Decoded::Volume(volume) => Layout::Volume(volume),
                Decoded::File(_) => {
                    return Err(ApiError::internal("a DICOM volume decoded as a file"));
                }
            }
        }
        _ => {
            if series.kind == "dicom" {
                not_volume_reason = summary["volume"]["reason"].as_str().map(str::to_string);
            }
            Layout::Stack(stack_frames(&series, &summary, &instances))
        }
    };
    Ok(Opened {
        imaging,
        series,
        summary,
        content,
        layout,
        not_volume_reason,
    })
}

type FilesKey = (usize, i64, i64, String);
type FilesMemo = Mutex<(HashMap<FilesKey, (String, Arc<Vec<Instance>>)>, usize)>;

/// File rows the memo of [`series_files`] holds at most (about 0.5 KB each).
const REMEMBERED_FILES: usize = 100_000;

/// The files of a series and its content key, remembered while the series is unchanged
/// (every new file changes `changed_at`), so that scrolling does not read the file list
/// again for every slice. The key names the server's imaging side by its address, so two
/// servers in one process (tests) do not share entries.
async fn series_files(
    state: &AppState,
    imaging: &Arc<Imaging>,
    series: &Series,
) -> Result<(String, Arc<Vec<Instance>>), ApiError> {
    static FILES: OnceLock<FilesMemo> = OnceLock::new();
    let files = FILES.get_or_init(Default::default);
    let key = (
        Arc::as_ptr(imaging) as usize,
        series.id,
        series.changed_at,
        series.series_uid.clone(),
    );
    if let Some(known) = files.lock().expect("series files lock").0.get(&key) {
        return Ok(known.clone());
    }
    let instances = state.store.instances(series.id).await?;
    let content = content_key(series, &instances);
    let count = instances.len();
    let known = (content, Arc::new(instances));
    let mut files = files.lock().expect("series files lock");
    let (memo, held) = &mut *files;
    if *held + count > REMEMBERED_FILES {
        memo.clear();
        *held = 0;
    }
    if memo.insert(key, known.clone()).is_none() {
        *held += count;
    }
    Ok(known)
}

/// A short stable key of a series's content: its kind and the ids of its stored files.
fn content_key(series: &Series, instances: &[Instance]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(series.kind.as_bytes());
    for instance in instances {
        hasher.update(b"\n");
        hasher.update(instance.object_id.as_bytes());
        hasher.update(instance.frames.to_le_bytes());
    }
    hex::encode(&hasher.finalize()[..12])
}

/// Every frame of every image file, files in the summary's display order.
fn stack_frames(series: &Series, summary: &Value, instances: &[Instance]) -> Vec<FrameRef> {
    let shown: Vec<&Instance> = instances
        .iter()
        .filter(|i| series.kind != "dicom" || i.rows.is_some())
        .collect();
    let by_id: HashMap<i64, &Instance> = shown.iter().map(|i| (i.id, *i)).collect();
    let mut ordered: Vec<&Instance> = summary["order"]
        .as_array()
        .map(|order| {
            order
                .iter()
                .filter_map(Value::as_i64)
                .filter_map(|id| by_id.get(&id).copied())
                .collect()
        })
        .unwrap_or_default();
    // Files added since the summary was made come last, until it is made again.
    for instance in &shown {
        if !ordered.iter().any(|o| o.id == instance.id) {
            ordered.push(instance);
        }
    }
    ordered
        .into_iter()
        .flat_map(|instance| {
            (0..instance.frames.max(1) as u32).map(move |frame| FrameRef {
                instance: instance.clone(),
                frame,
            })
        })
        .collect()
}

/// Runs `work` over `items` on every core, keeping the order.
fn on_all_cores<T: Send, R: Send>(items: Vec<T>, work: impl Fn(T) -> R + Sync) -> Vec<R> {
    if items.is_empty() {
        return Vec::new();
    }
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(items.len());
    let per_thread = items.len().div_ceil(threads);
    let mut groups: Vec<Vec<T>> = Vec::with_capacity(threads);
    let mut items = items.into_iter();
    loop {
        let group: Vec<T> = items.by_ref().take(per_thread).collect();
        if group.is_empty() {
            break;
        }
        groups.push(group);
    }
    let work = &work;
    std::thread::scope(|scope| {
        let handles: Vec<_> = groups
            .into_iter()
            .map(|group| scope.spawn(move || group.into_iter().map(work).collect::<Vec<R>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|handle| {
                handle
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    })
}

async fn read_objects(
    imaging: &Arc<Imaging>,
    instances: &[Instance],
) -> Result<Vec<Vec<u8>>, ApiError> {
    let mut files: Vec<Option<Vec<u8>>> = vec![None; instances.len()];
    let mut reads = tokio::task::JoinSet::new();
    let mut next = 0;
    while next < instances.len() || !reads.is_empty() {
        while next < instances.len() && reads.len() < PARALLEL_READS {
            let imaging = imaging.clone();
            let object = instances[next].object_id.clone();
            let index = next;
            reads.spawn(async move { (index, imaging.object(&object).await) });
            next += 1;
        }
        if let Some(joined) = reads.join_next().await {
            let (index, bytes) = joined.map_err(ApiError::internal)?;
            files[index] = Some(bytes?);
        }
    }
    Ok(files.into_iter().map(Option::unwrap_or_default).collect())
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|error| ApiError::internal(format!("decoding stopped unexpectedly: {error}")))?
}

fn too_large(bytes: u64, budget: u64) -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "series_too_large",
        format!(
            "this series needs {} MiB of memory to be shown, more than the {} MiB the viewer may use; ask your administrator to raise the viewer's memory (volume_cache_bytes)",
            bytes / (1024 * 1024),
            budget / (1024 * 1024)
        ),
    )
}

/// "HU" for CT with a rescale, the file's Rescale Type when it names one, else "stored value".
fn units_of(image: &DicomImage, modality: &str) -> String {
    let object = image.object();
    let has_rescale = object.element_by_name("RescaleIntercept").is_ok()
        || object.element_by_name("RescaleSlope").is_ok();
    if modality.eq_ignore_ascii_case("CT") && has_rescale {
        return "HU".into();
    }
    if let Ok(element) = object.element_by_name("RescaleType")
        && let Ok(text) = element.to_str()
    {
        let text = text.trim();
        if !text.is_empty() && text != "US" {
            return text.to_string();
        }
    }
    "stored value".into()
}

fn file_window(image: &DicomImage) -> Option<WindowLevel> {
    image
        .windows
        .first()
        .filter(|w| w.center.is_finite() && w.width >= 1.0)
        .map(|w| WindowLevel {
            center: w.center,
            width: w.width,
        })
}

async fn load_dicom_volume(
    imaging: Arc<Imaging>,
    instances: Vec<Instance>,
    modality: String,
    summary_window: Option<WindowLevel>,
    budget: u64,
) -> Result<(Decoded, u64), ApiError> {
    let first = &instances[0];
    let needed = instances.len() as u64
        * first.rows.unwrap_or(0).max(0) as u64
        * first.columns.unwrap_or(0).max(0) as u64
        * 4;
    if needed > budget {
        return Err(too_large(needed, budget));
    }
    let files = read_objects(&imaging, &instances).await?;
    let ids: Vec<i64> = instances.iter().map(|i| i.id).collect();
    blocking(move || build_dicom_volume(files, &ids, &modality, summary_window)).await
}

fn build_dicom_volume(
    files: Vec<Vec<u8>>,
    ids: &[i64],
    modality: &str,
    summary_window: Option<WindowLevel>,
) -> Result<(Decoded, u64), ApiError> {
    let images: Vec<DicomImage> =
        on_all_cores(files, |bytes| dicom::read_bytes(Path::new("image"), &bytes))
            .into_iter()
            .collect::<Result<_, _>>()
            .map_err(|e| decode_refusal(&e))?;
    let geometries = images
        .iter()
        .map(|image| image.geometry.as_ref())
        .collect::<Option<Vec<&Geometry>>>()
        .ok_or_else(|| cannot_show("some images have no size or position"))?;
    let geometry = volume::plan(&geometries).map_err(|e| {
        cannot_show(&format!(
            "it no longer forms a volume ({e}); reload the page"
        ))
    })?;
    let slice_len = geometry.rows as usize * geometry.columns as usize;
    let mut voxels = vec![0f32; slice_len * geometry.order.len()];
    let jobs: Vec<(&mut [f32], usize)> = voxels
        .chunks_mut(slice_len)
        .zip(geometry.order.iter().copied())
        .collect();
    let images_ref = &images;
    let results = on_all_cores(jobs, |(out, index)| -> Result<(), ApiError> {
        let frames = dicom::pixels(&images_ref[index]).map_err(|e| decode_refusal(&e))?;
        if frames.samples_per_pixel != 1 {
            return Err(cannot_show(&format!(
                "its slices are colour ({}), not a scalar volume",
                frames.photometric_interpretation
            )));
        }
        let values = frames
            .frames
            .first()
            .filter(|v| v.len() == out.len())
            .ok_or_else(|| cannot_show("a slice has a different size than the others"))?;
        out.copy_from_slice(values);
        Ok(())
    });
    results.into_iter().collect::<Result<Vec<()>, _>>()?;
    let middle = &images[geometry.order[geometry.order.len() / 2]];
    let photometric = middle
        .pixel_format
        .as_ref()
        .map(|p| p.photometric_interpretation.clone())
        .unwrap_or_else(|| "MONOCHROME2".into());
    let units = units_of(middle, modality);
    let file_window = file_window(middle);
    let instances = geometry.order.iter().map(|&i| ids[i]).collect();
    let volume = Volume { geometry, voxels };
    let opening_window = summary_window
        .or(file_window)
        .unwrap_or_else(|| middle_window(&volume));
    let bytes = volume.voxels.len() as u64 * 4;
    Ok((
        Decoded::Volume(Arc::new(VolumeShown {
            volume,
            monochrome1: photometric == "MONOCHROME1",
            photometric,
            units,
            file_window,
            opening_window,
            instances,
            header: Vec::new(),
        })),
        bytes,
    ))
}

fn middle_window(volume: &Volume) -> WindowLevel {
    let len = reformat::plane_len(volume, Plane::Axial);
    match reformat::slice(volume, Plane::Axial, len / 2) {
        Ok(slice) => render::auto_window(&slice.values),
        Err(_) => render::auto_window(&volume.voxels),
    }
}

async fn load_nifti(
    imaging: Arc<Imaging>,
    instance: Instance,
    budget: u64,
) -> Result<(Decoded, u64), ApiError> {
    let bytes = imaging.object(&instance.object_id).await?;
    blocking(move || {
        let name = if instance.source_name.ends_with(".gz") {
            "volume.nii.gz"
        } else {
            "volume.nii"
        };
        let read = nifti_read::read_bytes(name, &bytes).map_err(|e| cannot_show(&e.to_string()))?;
        let size = read.volume.voxels.len() as u64 * 4;
        if size > budget {
            return Err(too_large(size, budget));
        }
        let header = nifti_header(&read);
        let opening_window = middle_window(&read.volume);
        Ok((
            Decoded::Volume(Arc::new(VolumeShown {
                volume: read.volume,
                monochrome1: false,
                photometric: "MONOCHROME2".into(),
                units: "stored value".into(),
                file_window: None,
                opening_window,
                instances: Vec::new(),
                header,
            })),
            size,
        ))
    })
    .await
}

fn nifti_header(read: &nifti_read::NiftiVolume) -> Vec<AttributeJson> {
    let g = &read.volume.geometry;
    let row = |keyword: &str, value: String| AttributeJson {
        tag: String::new(),
        keyword: keyword.into(),
        vr: String::new(),
        value,
    };
    let mut rows = vec![
        row(
            "Format",
            format!(
                "{}{}",
                match read.version {
                    nifti_read::NiftiVersion::Nifti1 => "NIfTI-1",
                    nifti_read::NiftiVersion::Nifti2 => "NIfTI-2",
                },
                if read.compressed { " (gzip)" } else { "" }
            ),
        ),
        row("Data type", read.datatype.to_string()),
        row(
            "Dimensions",
            read.dims
                .iter()
                .map(i64::to_string)
                .collect::<Vec<_>>()
                .join(" × "),
        ),
        row(
            "Voxel size (mm)",
            g.spacing_mm
                .iter()
                .map(|s| format!("{s:.4}"))
                .collect::<Vec<_>>()
                .join(" × "),
        ),
        row("Orientation from", read.affine_source.to_string()),
        row(
            "Scaling",
            format!(
                "slope {} intercept {}",
                read.scale_slope, read.scale_intercept
            ),
        ),
        row("Description", read.description.clone()),
    ];
    if read.extra_volumes > 0 {
        rows.push(row(
            "Further volumes",
            format!("{} (only the first is shown)", read.extra_volumes),
        ));
    }
    for note in &read.notes {
        rows.push(row("Note", note.clone()));
    }
    rows
}

/// Decodes one file of a stack, cached by its content.
async fn file_shown(
    imaging: &Arc<Imaging>,
    kind: &str,
    modality: &str,
    instance: &Instance,
) -> Result<Arc<FileShown>, ApiError> {
    let budget = imaging.settings.volume_cache_bytes;
    let loader = imaging.clone();
    let object = instance.object_id.clone();
    let picture = kind == "image";
    let modality = modality.to_string();
    let key = format!("file:{kind}:{object}");
    match decoded(budget, key, move || async move {
        let bytes = loader.object(&object).await?;
        blocking(move || {
            if picture {
                decode_picture(&bytes)
            } else {
                decode_dicom_file(&bytes, &modality)
            }
        })
        .await
    })
    .await?
    {
        Decoded::File(file) => Ok(file),
        Decoded::Volume(_) => Err(ApiError::internal("a file decoded as a volume")),
    }
}

fn decode_dicom_file(bytes: &[u8], modality: &str) -> Result<(Decoded, u64), ApiError> {
    let image = dicom::read_bytes(Path::new("image"), bytes).map_err(|e| decode_refusal(&e))?;
    let frames = dicom::pixels(&image).map_err(|e| decode_refusal(&e))?;
    let samples = frames.samples_per_pixel;
    let bytes: u64 = frames.frames.iter().map(|f| f.len() as u64 * 4).sum();
    let photometric = frames.photometric_interpretation.clone();
    let file_window = if samples == 1 {
        file_window(&image)
    } else {
        None
    };
    let pixel_spacing_mm = image
        .geometry
        .as_ref()
        .and_then(|g| g.pixel_spacing_mm)
        .map(|[between_rows, between_columns]| [between_columns, between_rows]);
    Ok((
        Decoded::File(Arc::new(FileShown {
            columns: frames.columns,
            rows: frames.rows,
            samples,
            monochrome1: photometric == "MONOCHROME1",
            photometric,
            units: if samples == 1 {
                units_of(&image, modality)
            } else {
                "RGB".into()
            },
            file_window,
            pixel_spacing_mm,
            geometry: image.geometry.clone(),
            frames: frames.frames,
        })),
        bytes,
    ))
}

fn decode_picture(bytes: &[u8]) -> Result<(Decoded, u64), ApiError> {
    let picture = raster::read_bytes("picture", bytes).map_err(|e| cannot_show(&e.to_string()))?;
    let samples = u16::from(picture.samples_per_pixel);
    let file_window = if samples != 1 {
        None
    } else if picture.bits > 8 {
        Some(render::auto_window(&picture.values))
    } else {
        // Center 128, width 256 maps 0..=255 onto itself exactly.
        Some(WindowLevel {
            center: 128.0,
            width: 256.0,
        })
    };
    let size = picture.values.len() as u64 * 4;
    Ok((
        Decoded::File(Arc::new(FileShown {
            columns: picture.columns,
            rows: picture.rows,
            samples,
            monochrome1: false,
            photometric: if samples == 1 {
                "MONOCHROME2".into()
            } else {
                "RGB".into()
            },
            units: if samples == 1 {
                "stored value".into()
            } else {
                "RGB".into()
            },
            file_window,
            pixel_spacing_mm: None,
            geometry: None,
            frames: vec![picture.values],
        })),
        size,
    ))
}

// ---------------------------------------------------------------------------------------
// Planes and slices
// ---------------------------------------------------------------------------------------

/// The plane a slice address names, for this series.
fn plane_of(opened: &Opened, name: &str) -> Result<Option<Plane>, ApiError> {
    match &opened.layout {
        Layout::Volume(_) => volume_plane(name).map(Some),
        Layout::Stack(_) if name == STACK_PLANE => Ok(None),
        Layout::Stack(_) => Err(ApiError::bad_request(
            "invalid_plane",
            format!(
                "there is no plane '{name}'; this series is not a volume, so its images are shown one by one in the plane 'stack'"
            ),
        )),
    }
}

/// A plane of a volume by name.
fn volume_plane(name: &str) -> Result<Plane, ApiError> {
    Plane::from_name(name).ok_or_else(|| {
        ApiError::bad_request(
            "invalid_plane",
            format!(
                "there is no plane '{name}'; this series is a volume: use axial, coronal or sagittal"
            ),
        )
    })
}

fn out_of_range(plane: &str, index: usize, len: usize) -> ApiError {
    ApiError::bad_request(
        "invalid_slice",
        format!(
            "slice {index} does not exist: the {plane} plane has {len} slices, numbered 0 to {}",
            len.saturating_sub(1)
        ),
    )
}

/// A decoded frame of a stack and the file it belongs to.
async fn stack_frame(
    opened: &Opened,
    frames: &[FrameRef],
    index: usize,
) -> Result<(Arc<FileShown>, FrameRef), ApiError> {
    let frame = frames
        .get(index)
        .cloned()
        .ok_or_else(|| out_of_range(STACK_PLANE, index, frames.len()))?;
    if let Some(reason) = opened.summary["decode_error"].as_str() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "undecodable",
            format!("this image is not shown because it cannot be decoded exactly: {reason}"),
        ));
    }
    let file = file_shown(
        &opened.imaging,
        &opened.series.kind,
        &opened.series.modality,
        &frame.instance,
    )
    .await?;
    if file.frames.get(frame.frame as usize).is_none() {
        return Err(cannot_show(
            "the file has fewer frames than its header says",
        ));
    }
    Ok((file, frame))
}

fn resolve_window(
    choice: &WindowChoice,
    file: Option<WindowLevel>,
    opening: WindowLevel,
) -> WindowLevel {
    match choice {
        WindowChoice::Opening => opening,
        WindowChoice::Explicit(window) => *window,
        WindowChoice::Preset(name) if name == "file" => file.unwrap_or(opening),
        WindowChoice::Preset(name) => render::preset(name).unwrap_or(opening),
    }
}

fn window_key(window: Option<WindowLevel>) -> String {
    match window {
        Some(w) => format!("{:016x}:{:016x}", w.center.to_bits(), w.width.to_bits()),
        None => "raw".into(),
    }
}

/// A windowed slice (or frame) as PNG, and the series's content version.
pub async fn slice_png(
    state: &AppState,
    ctx: &Context<'_>,
    series_id: i64,
    plane: &str,
    index: &str,
    choice: WindowChoice,
) -> Result<(Bytes, String), ApiError> {
    // A slice rendered before is answered from the PNG cache without opening (decoding)
    // the series again: the permission check and the audit still run first, and the key
    // holds the series's content, so a changed series is never answered from old pixels.
    let (imaging, series) = viewed(state, ctx, series_id).await?;
    let (content, _) = series_files(state, &imaging, &series).await?;
    let request_key = format!(
        "request|{content}|{}|{plane}|{index}|{choice:?}",
        series.derived
    );
    if let Some(png) = png_cached(&request_key) {
        return Ok((png, content));
    }
    let number = slice_number(index)?;
    if let Some((png, version)) =
        slice_from_one_file(state, &imaging, &series, plane, number, &choice).await?
    {
        png_keep(request_key, png.clone());
        return Ok((png, version));
    }
    let (png, version) = render_slice(state, imaging, series, plane, index, choice).await?;
    png_keep(request_key, png.clone());
    Ok((png, version))
}

/// What the viewer shows of a DICOM volume before, or without, decoding it: the stack's
/// geometry planned from the index and the description of its middle file, the same
/// values [`build_dicom_volume`] gives, without the voxels.
struct Outline {
    /// The stack's geometry, with no voxels: for plane sizes, positions and edges only.
    shape: Volume,
    /// The index ids and stored objects of the image files, in stack order.
    files: Vec<(i64, String)>,
    monochrome1: bool,
    photometric: String,
    units: String,
    file_window: Option<WindowLevel>,
    opening_window: WindowLevel,
}

type OutlineMemo = Mutex<(HashMap<(usize, String), Arc<Outline>>, usize)>;

/// The outline of a series that forms a DICOM volume (`None` for anything else, or when
/// its index does not give everything the volume would), remembered per content.
async fn outline(
    imaging: &Arc<Imaging>,
    series: &Series,
    content: &str,
    instances: &[Instance],
) -> Result<Option<Arc<Outline>>, ApiError> {
    static OUTLINES: OnceLock<OutlineMemo> = OnceLock::new();
    let memo = OUTLINES.get_or_init(Default::default);
    let key = (Arc::as_ptr(imaging) as usize, content.to_string());
    if let Some(known) = memo.lock().expect("outline lock").0.get(&key) {
        return Ok(Some(known.clone()));
    }
    let summary = summary_of(series);
    // The window the volume opens with is the summary's when it has one (see
    // build_dicom_volume); without it, it would come from the decoded middle slice.
    // A summary being made again (files were added) may no longer describe the files.
    let (true, Some(opening_window)) = (
        series.kind == "dicom"
            && series.derived == "ready"
            && summary["volume"]["ok"].as_bool() == Some(true),
        window_of(&summary["window"]),
    ) else {
        return Ok(None);
    };
    let with_pixels: Vec<&Instance> = instances.iter().filter(|i| i.rows.is_some()).collect();
    let Some(geometries) = with_pixels
        .iter()
        .map(|i| super::derive::geometry_of(i))
        .collect::<Option<Vec<Geometry>>>()
    else {
        return Ok(None);
    };
    let Ok(geometry) = volume::plan(&geometries.iter().collect::<Vec<_>>()) else {
        return Ok(None);
    };
    let middle = with_pixels[geometry.order[geometry.order.len() / 2]];
    let bytes = imaging.object(&middle.object_id).await?;
    let modality = series.modality.clone();
    let Ok(description) = blocking(move || {
        let image =
            dicom::read_bytes(Path::new("image"), &bytes).map_err(|e| decode_refusal(&e))?;
        let photometric = image
            .pixel_format
            .as_ref()
            .map(|p| p.photometric_interpretation.clone())
            .unwrap_or_else(|| "MONOCHROME2".into());
        Ok((
            photometric,
            units_of(&image, &modality),
            file_window(&image),
        ))
    })
    .await
    else {
        return Ok(None);
    };
    let (photometric, units, file_window) = description;
    let files = geometry
        .order
        .iter()
        .map(|&i| (with_pixels[i].id, with_pixels[i].object_id.clone()))
        .collect();
    let outline = Arc::new(Outline {
        shape: Volume {
            geometry,
            voxels: Vec::new(),
        },
        files,
        monochrome1: photometric == "MONOCHROME1",
        photometric,
        units,
        file_window,
        opening_window,
    });
    // About 100 bytes per file: at most some ten megabytes for the series viewed lately.
    let mut memo = memo.lock().expect("outline lock");
    let (outlines, held) = &mut *memo;
    let count = outline.files.len();
    if *held + count > REMEMBERED_FILES {
        outlines.clear();
        *held = 0;
    }
    if outlines.insert(key, outline.clone()).is_none() {
        *held += count;
    }
    Ok(Some(outline))
}

type StoredSliceKey = (usize, String, usize);
type StoredSlices = Mutex<std::collections::VecDeque<(StoredSliceKey, Arc<Vec<f32>>)>>;

/// Decoded stored slices kept for re-rendering with another window and for values under
/// the cursor: at most this many, and at most [`KEPT_STORED_BYTES`].
const KEPT_STORED_SLICES: usize = 16;
const KEPT_STORED_BYTES: usize = 64 * 1024 * 1024;

/// The modality values of stored slice `stored` of an outlined volume, decoded from its one
/// file (or kept from a recent request); `None` when the file does not give one scalar
/// slice of the stack's size, which the decoded volume would refuse with the reason.
async fn stored_slice(
    imaging: &Arc<Imaging>,
    content: &str,
    outline: &Arc<Outline>,
    stored: usize,
) -> Result<Option<Arc<Vec<f32>>>, ApiError> {
    static KEPT: OnceLock<StoredSlices> = OnceLock::new();
    let kept = KEPT.get_or_init(Default::default);
    let key = (Arc::as_ptr(imaging) as usize, content.to_string(), stored);
    {
        let mut kept = kept.lock().expect("stored slices lock");
        if let Some(at) = kept.iter().position(|(k, _)| *k == key) {
            let entry = kept.remove(at).expect("found");
            let values = entry.1.clone();
            kept.push_back(entry);
            return Ok(Some(values));
        }
    }
    let expected = outline.shape.geometry.rows as usize * outline.shape.geometry.columns as usize;
    // One slice may take what a whole decoded series may (its values as 32-bit floats).
    if expected as u64 * 4 > imaging.settings.volume_cache_bytes {
        return Ok(None);
    }
    let bytes = imaging.object(&outline.files[stored].1).await?;
    let values = blocking(move || {
        Ok(dicom::read_bytes(Path::new("image"), &bytes)
            .and_then(|image| dicom::pixels(&image))
            .ok()
            .filter(|frames| frames.samples_per_pixel == 1)
            .and_then(|frames| frames.frames.into_iter().next())
            .filter(|values| values.len() == expected))
    })
    .await?;
    Ok(values.map(|values| {
        let values = Arc::new(values);
        let mut kept = kept.lock().expect("stored slices lock");
        kept.push_back((key, values.clone()));
        let bytes = |kept: &std::collections::VecDeque<(StoredSliceKey, Arc<Vec<f32>>)>| {
            kept.iter().map(|(_, v)| v.len() * 4).sum::<usize>()
        };
        while kept.len() > KEPT_STORED_SLICES
            || (kept.len() > 1 && bytes(&kept) > KEPT_STORED_BYTES)
        {
            kept.pop_front();
        }
        values
    }))
}

/// Where slice `index` of `plane` of an outlined volume comes from one stored file, that
/// file's index in the stack; `None` for a plane across the stack, a refusal past its end.
fn stored_index(outline: &Outline, plane: Plane, index: usize) -> Result<Option<usize>, ApiError> {
    let len = reformat::plane_len(&outline.shape, plane);
    if index >= len {
        return Err(out_of_range(plane.name(), index, len));
    }
    Ok(reformat::stack_slice(&outline.shape.geometry, plane, index))
}

/// Where slice `index` of `plane` of a series comes from one stored file while its volume
/// is not decoded in memory: the plane, the series's content key, its outline and the
/// file's index in the stack. `None` sends the request to the decoded volume (another
/// plane, another kind of series, a volume already in memory); past the end is refused.
async fn one_file_slice(
    state: &AppState,
    imaging: &Arc<Imaging>,
    series: &Series,
    plane: &str,
    index: usize,
) -> Result<Option<(Plane, String, Arc<Outline>, usize)>, ApiError> {
    let Some(plane) = Plane::from_name(plane).filter(|_| series.kind == "dicom") else {
        return Ok(None);
    };
    let (content, instances) = series_files(state, imaging, series).await?;
    if decoded_ready(&format!("volume:{content}")) {
        return Ok(None);
    }
    let Some(outline) = outline(imaging, series, &content, &instances).await? else {
        return Ok(None);
    };
    Ok(stored_index(&outline, plane, index)?.map(|stored| (plane, content, outline, stored)))
}

/// The PNG cache key of a volume's slice: the same whether the picture was made from the
/// decoded volume or from one stored file.
fn volume_png_key(
    content: &str,
    plane: Plane,
    index: usize,
    window: WindowLevel,
    monochrome1: bool,
) -> String {
    format!(
        "{content}|{}|{index}|{}|{monochrome1}",
        plane.name(),
        window_key(Some(window))
    )
}

/// A slice of a DICOM volume's own plane (axial for an axial series) rendered from its one
/// stored file, while the volume is not decoded in memory: a first look at a large series,
/// or many series looked at in turn, costs one file, not the whole series. The picture is
/// the one the decoded volume gives (same geometry, values, window and cache key); `None`
/// sends the request to the decoded volume: another plane, or anything unexpected.
async fn slice_from_one_file(
    state: &AppState,
    imaging: &Arc<Imaging>,
    series: &Series,
    plane: &str,
    index: usize,
    choice: &WindowChoice,
) -> Result<Option<(Bytes, String)>, ApiError> {
    let Some((plane, content, outline, stored)) =
        one_file_slice(state, imaging, series, plane, index).await?
    else {
        return Ok(None);
    };
    let window = resolve_window(choice, outline.file_window, outline.opening_window);
    // The key the decoded volume's picture of this slice has.
    let key = volume_png_key(&content, plane, index, window, outline.monochrome1);
    if let Some(png) = png_cached(&key) {
        return Ok(Some((png, content)));
    }
    let Some(values) = stored_slice(imaging, &content, &outline, stored).await? else {
        return Ok(None);
    };
    let png = blocking(move || {
        let slice = reformat::slice_of_stack_slice(&outline.shape.geometry, plane, values.to_vec())
            .map_err(|e| ApiError::internal(e.to_string()))?;
        Ok(Bytes::from(render::render_slice_png(
            &slice,
            window,
            outline.monochrome1,
        )))
    })
    .await?;
    png_keep(key, png.clone());
    Ok(Some((png, content)))
}

/// The value under the cursor in a DICOM volume's own plane from its one stored file,
/// while the volume is not decoded: the same answer the decoded volume gives.
async fn value_from_one_file(
    state: &AppState,
    imaging: &Arc<Imaging>,
    series: &Series,
    plane: &str,
    (index, x, y): (usize, usize, usize),
) -> Result<Option<ValueJson>, ApiError> {
    let Some((plane, content, outline, stored)) =
        one_file_slice(state, imaging, series, plane, index).await?
    else {
        return Ok(None);
    };
    let Some(values) = stored_slice(imaging, &content, &outline, stored).await? else {
        return Ok(None);
    };
    let geometry = &outline.shape.geometry;
    let slice = reformat::slice_of_stack_slice(geometry, plane, values.to_vec())
        .map_err(|e| ApiError::internal(e.to_string()))?;
    if x >= slice.columns as usize || y >= slice.rows as usize {
        return Err(outside_slice(x, y, slice.columns, slice.rows));
    }
    Ok(Some(ValueJson {
        value: number(slice.values[y * slice.columns as usize + x]),
        units: outline.units.clone(),
        position_mm: Some(reformat::point_mm(
            &outline.shape,
            plane,
            index,
            x as f64,
            y as f64,
        )),
    }))
}

fn outside_slice(x: usize, y: usize, columns: u32, rows: u32) -> ApiError {
    ApiError::bad_request(
        "invalid_position",
        format!(
            "pixel ({x}, {y}) is outside the slice, which has {columns} columns (x 0 to {}) and {rows} rows (y 0 to {})",
            columns.saturating_sub(1),
            rows.saturating_sub(1)
        ),
    )
}

/// Renders a slice of a series the caller was allowed to see, loading (decoding) the
/// series when it is not in the cache.
async fn render_slice(
    state: &AppState,
    imaging: Arc<Imaging>,
    series: Series,
    plane: &str,
    index: &str,
    choice: WindowChoice,
) -> Result<(Bytes, String), ApiError> {
    let index = slice_number(index)?;
    let opened = load_series(state, imaging, series).await?;
    let plane_choice = plane_of(&opened, plane)?;
    let version = opened.content.clone();
    match &opened.layout {
        Layout::Volume(shown) => {
            let plane = plane_choice.expect("volumes have planes");
            let len = reformat::plane_len(&shown.volume, plane);
            if index >= len {
                return Err(out_of_range(plane.name(), index, len));
            }
            let window = resolve_window(&choice, shown.file_window, shown.opening_window);
            let key = volume_png_key(&opened.content, plane, index, window, shown.monochrome1);
            if let Some(png) = png_cached(&key) {
                return Ok((png, version));
            }
            let shown = shown.clone();
            let png = blocking(move || {
                let slice = reformat::slice(&shown.volume, plane, index)
                    .map_err(|e| ApiError::bad_request("invalid_slice", e.to_string()))?;
                Ok(Bytes::from(render::render_slice_png(
                    &slice,
                    window,
                    shown.monochrome1,
                )))
            })
            .await?;
            png_keep(key, png.clone());
            Ok((png, version))
        }
        Layout::Stack(frames) => {
            let (file, frame) = stack_frame(&opened, frames, index).await?;
            let opening = window_of(&opened.summary["window"])
                .or(file.file_window)
                .unwrap_or(WindowLevel {
                    center: 128.0,
                    width: 256.0,
                });
            let window = if file.samples == 1 {
                Some(resolve_window(&choice, file.file_window, opening))
            } else {
                // Colour is shown as stored unless a window is asked for.
                match &choice {
                    WindowChoice::Opening => None,
                    WindowChoice::Preset(name) if name == "file" => None,
                    other => Some(resolve_window(other, None, opening)),
                }
            };
            let key = format!(
                "{}|stack|{index}|{}|{}",
                opened.content,
                window_key(window),
                file.monochrome1
            );
            if let Some(png) = png_cached(&key) {
                return Ok((png, version));
            }
            let png = blocking(move || render_frame(&file, frame.frame as usize, window)).await?;
            png_keep(key, png.clone());
            Ok((png, version))
        }
    }
}

fn render_frame(
    file: &FileShown,
    frame: usize,
    window: Option<WindowLevel>,
) -> Result<Bytes, ApiError> {
    let values = &file.frames[frame];
    if file.samples == 3 {
        return render::render_rgb_png(values, file.columns, file.rows, window)
            .map(Bytes::from)
            .map_err(|e| cannot_show(&e.to_string()));
    }
    let slice = Slice {
        columns: file.columns,
        rows: file.rows,
        values: values.clone(),
        pixel_spacing_mm: file.pixel_spacing_mm.unwrap_or([1.0, 1.0]),
        labels: EdgeLabels {
            left: String::new(),
            right: String::new(),
            top: String::new(),
            bottom: String::new(),
        },
    };
    let window = window.unwrap_or(WindowLevel {
        center: 128.0,
        width: 256.0,
    });
    Ok(Bytes::from(render::render_slice_png(
        &slice,
        window,
        file.monochrome1,
    )))
}

// ---------------------------------------------------------------------------------------
// The viewer's description of a series
// ---------------------------------------------------------------------------------------

fn presets(file: Option<WindowLevel>, opening: WindowLevel) -> Vec<PresetJson> {
    let mut list: Vec<PresetJson> = PRESET_LABELS
        .iter()
        .filter_map(|(name, label)| {
            render::preset(name).map(|w| PresetJson {
                name: (*name).into(),
                label: (*label).into(),
                center: w.center,
                width: w.width,
            })
        })
        .collect();
    // `file` is the window written in the file, or the automatic one when it has none.
    let (label, w) = match file {
        Some(w) => ("File's own", w),
        None => ("Automatic", opening),
    };
    list.push(PresetJson {
        name: "file".into(),
        label: label.into(),
        center: w.center,
        width: w.width,
    });
    list
}

/// The view answer of a volume: its planes (from the geometry alone), windows, units.
fn describe_volume(
    info: &mut ViewInfo,
    volume: &Volume,
    opening_window: WindowLevel,
    file_window: Option<WindowLevel>,
    units: &str,
    photometric: &str,
) {
    info.volume = true;
    info.not_volume_reason = None;
    info.planes = volume_planes(volume);
    info.window = Some(opening_window.into());
    info.file_window = file_window.map(Into::into);
    info.presets = presets(file_window, opening_window);
    info.units = units.to_string();
    info.photometric = photometric.to_string();
    info.nifti = Some(format!("/api/v1/series/{}/nifti", info.series));
}

fn volume_planes(volume: &Volume) -> Vec<PlaneJson> {
    Plane::ALL
        .iter()
        .map(|&plane| {
            let (columns, rows) = reformat::plane_size(volume, plane);
            let slices = reformat::plane_len(volume, plane);
            // The spacing of a slice's pixels and between slices, from an empty slice's
            // geometry: the distance between neighbouring pixel centres.
            let spacing = |a: [f64; 3], b: [f64; 3]| {
                ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2) + (a[2] - b[2]).powi(2)).sqrt()
            };
            let origin = reformat::point_mm(volume, plane, 0, 0.0, 0.0);
            let across = spacing(origin, reformat::point_mm(volume, plane, 0, 1.0, 0.0));
            let down = spacing(origin, reformat::point_mm(volume, plane, 0, 0.0, 1.0));
            let through = spacing(origin, reformat::point_mm(volume, plane, 1, 0.0, 0.0));
            let (display_columns, display_rows) =
                render::display_size(columns, rows, [across, down]);
            PlaneJson {
                name: plane.name().into(),
                slices,
                columns,
                rows,
                display_columns,
                display_rows,
                pixel_spacing_mm: Some([across, down]),
                slice_spacing_mm: Some(through),
                edges: Some(reformat::labels(volume, plane).into()),
                start: slices / 2,
            }
        })
        .collect()
}

/// Whether a label volume lies on exactly the grid of the image volume: the same number of
/// voxels in each plane and the same patient position of the grid's corners (within a tenth
/// of the finest spacing), so that the same slice of both shows the same place.
pub fn same_grid(image: &Volume, label: &Volume) -> Result<(), String> {
    let dims = |v: &Volume| {
        let (columns, rows) = reformat::plane_size(v, Plane::Axial);
        format!("{columns}×{rows}×{}", reformat::plane_len(v, Plane::Axial))
    };
    let finest = image
        .geometry
        .spacing_mm
        .iter()
        .copied()
        .fold(f64::INFINITY, f64::min);
    let tolerance = (finest * 0.1).max(1e-3);
    for plane in Plane::ALL {
        let size = reformat::plane_size(image, plane);
        let len = reformat::plane_len(image, plane);
        if size != reformat::plane_size(label, plane) || len != reformat::plane_len(label, plane) {
            return Err(format!(
                "the mask has {} voxels where the image has {}; it was made for another image",
                dims(label),
                dims(image)
            ));
        }
        let (w, h) = (
            f64::from(size.0.saturating_sub(1)),
            f64::from(size.1.saturating_sub(1)),
        );
        let last = len.saturating_sub(1);
        for (x, y, index) in [(0.0, 0.0, 0), (w, 0.0, 0), (0.0, h, 0), (0.0, 0.0, last)] {
            let a = reformat::point_mm(image, plane, index, x, y);
            let b = reformat::point_mm(label, plane, index, x, y);
            let distance =
                ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2) + (a[2] - b[2]).powi(2)).sqrt();
            if distance.is_nan() || distance > tolerance {
                return Err(format!(
                    "the mask lies {distance:.2} mm away from the image at a corner of its grid; it was made on a different grid (position, orientation or spacing)"
                ));
            }
        }
    }
    Ok(())
}

/// A label series loaded and checked against the image volume, with its content key.
async fn label_volume(
    state: &AppState,
    opened: &Opened,
    label: Series,
) -> Result<(Arc<VolumeShown>, String), String> {
    let Layout::Volume(image) = &opened.layout else {
        return Err("masks can only be laid over a series that forms a volume".into());
    };
    if label.derived == "pending" && label.summary.trim() == "{}" {
        return Err("the mask is still being prepared; reload in a few seconds".into());
    }
    let loaded = load_series(state, opened.imaging.clone(), label)
        .await
        .map_err(|e| e.message)?;
    let Layout::Volume(mask) = loaded.layout else {
        return Err("the mask is not a volume".into());
    };
    same_grid(&image.volume, &mask.volume)?;
    Ok((mask, loaded.content))
}

/// What the viewer needs to open a series.
pub async fn view_info(
    state: &AppState,
    ctx: &Context<'_>,
    series_id: i64,
) -> Result<ViewInfo, ApiError> {
    let (imaging, series) = viewed(state, ctx, series_id).await?;
    let summary = summary_of(&series);
    let mut info = ViewInfo {
        series: series.id,
        dataset: series.dataset_id,
        kind: series.kind.clone(),
        modality: series.modality.clone(),
        description: series.description.clone(),
        version: String::new(),
        volume: false,
        not_volume_reason: summary["volume"]["reason"].as_str().map(str::to_string),
        planes: Vec::new(),
        window: None,
        file_window: None,
        presets: Vec::new(),
        units: "stored value".into(),
        photometric: summary["photometric"].as_str().unwrap_or("").to_string(),
        colour: false,
        labels: Vec::new(),
        label_series: Vec::new(),
        decode_error: summary["decode_error"]
            .as_str()
            .or(summary["error"].as_str())
            .map(str::to_string),
        nifti: None,
    };
    if info.decode_error.is_some() {
        return Ok(info);
    }
    let labels = state.store.labels_of(series.id).await?;
    if labels.is_empty() && series.kind == "dicom" {
        // A volume opens from its outline: slices come one file at a time until something
        // needs the decoded volume (another plane, a value under the cursor).
        let (content, instances) = series_files(state, &imaging, &series).await?;
        if let Some(outline) = outline(&imaging, &series, &content, &instances).await? {
            info.version = content;
            describe_volume(
                &mut info,
                &outline.shape,
                outline.opening_window,
                outline.file_window,
                &outline.units,
                &outline.photometric,
            );
            return Ok(info);
        }
    }
    let opened = load_series(state, imaging, series).await?;
    info.version = opened.content.clone();
    match &opened.layout {
        Layout::Volume(shown) => describe_volume(
            &mut info,
            &shown.volume,
            shown.opening_window,
            shown.file_window,
            &shown.units,
            &shown.photometric,
        ),
        Layout::Stack(frames) => {
            info.volume = false;
            if info.not_volume_reason.is_none() {
                info.not_volume_reason = opened.not_volume_reason.clone();
            }
            if frames.is_empty() {
                return Ok(info);
            }
            let start = frames.len() / 2;
            match stack_frame(&opened, frames, start).await {
                Ok((file, _)) => {
                    let opening = window_of(&opened.summary["window"])
                        .or(file.file_window)
                        .unwrap_or(WindowLevel {
                            center: 128.0,
                            width: 256.0,
                        });
                    info.colour = file.samples != 1;
                    info.units = file.units.clone();
                    info.photometric = file.photometric.clone();
                    if !info.colour {
                        info.window = Some(opening.into());
                        info.file_window = file.file_window.map(Into::into);
                        info.presets = presets(file.file_window, opening);
                    } else {
                        info.presets = Vec::new();
                    }
                    let spacing = file.pixel_spacing_mm;
                    let (display_columns, display_rows) = if file.samples == 1 {
                        render::display_size(file.columns, file.rows, spacing.unwrap_or([1.0, 1.0]))
                    } else {
                        (file.columns, file.rows)
                    };
                    info.planes = vec![PlaneJson {
                        name: STACK_PLANE.into(),
                        slices: frames.len(),
                        columns: file.columns,
                        rows: file.rows,
                        display_columns,
                        display_rows,
                        pixel_spacing_mm: spacing,
                        slice_spacing_mm: None,
                        edges: None,
                        start,
                    }];
                }
                Err(error) => {
                    info.decode_error = Some(
                        error
                            .message
                            .trim_start_matches("this series cannot be shown: ")
                            .to_string(),
                    );
                }
            }
        }
    }
    for label in labels {
        let id = label.id;
        let description = label.description.clone();
        let checked = if label.dataset_id != opened.series.dataset_id {
            Err("the mask belongs to another dataset".to_string())
        } else {
            label_volume(state, &opened, label).await.map(|_| ())
        };
        if checked.is_ok() {
            info.labels.push(id);
        }
        info.label_series.push(LabelJson {
            series: id,
            description,
            compatible: checked.is_ok(),
            reason: checked.err(),
        });
    }
    Ok(info)
}

// ---------------------------------------------------------------------------------------
// Overlay, value and metadata
// ---------------------------------------------------------------------------------------

/// A label slice as an RGBA PNG of the same size as the image slice.
pub async fn overlay_png(
    state: &AppState,
    ctx: &Context<'_>,
    series_id: i64,
    label_id: i64,
    plane: &str,
    index: &str,
) -> Result<(Bytes, String), ApiError> {
    let index = slice_number(index)?;
    let opened = open(state, ctx, series_id).await?;
    let plane_choice = plane_of(&opened, plane)?;
    let label = state.store.series(label_id).await?;
    if label.label_of != Some(series_id) || label.dataset_id != opened.series.dataset_id {
        return Err(ApiError::not_found(format!(
            "series {label_id} is not a mask (label) of series {series_id}; the viewer's information lists the masks of a series"
        )));
    }
    let Layout::Volume(image) = &opened.layout else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "overlay_not_possible",
            "masks can only be laid over a series that forms a volume",
        ));
    };
    let plane = plane_choice.expect("volumes have planes");
    let len = reformat::plane_len(&image.volume, plane);
    if index >= len {
        return Err(out_of_range(plane.name(), index, len));
    }
    let (mask, mask_content) = label_volume(state, &opened, label)
        .await
        .map_err(|reason| {
            ApiError::new(
                StatusCode::CONFLICT,
                "overlay_not_possible",
                format!("this mask cannot be laid over the image: {reason}"),
            )
        })?;
    let version = opened.content.clone();
    let key = format!(
        "{}|overlay:{label_id}:{mask_content}|{}|{index}",
        opened.content,
        plane.name()
    );
    if let Some(png) = png_cached(&key) {
        return Ok((png, version));
    }
    let image = image.clone();
    let png = blocking(move || {
        let slice = reformat::slice(&mask.volume, plane, index)
            .map_err(|e| ApiError::bad_request("invalid_slice", e.to_string()))?;
        let (columns, rows) = reformat::plane_size(&image.volume, plane);
        let spacing = image_spacing(&image.volume, plane);
        Ok(Bytes::from(render::render_label_png(
            &slice.values,
            columns,
            rows,
            spacing,
        )))
    })
    .await?;
    png_keep(key, png.clone());
    Ok((png, version))
}

fn image_spacing(volume: &Volume, plane: Plane) -> [f64; 2] {
    let origin = reformat::point_mm(volume, plane, 0, 0.0, 0.0);
    let distance = |b: [f64; 3]| {
        ((origin[0] - b[0]).powi(2) + (origin[1] - b[1]).powi(2) + (origin[2] - b[2]).powi(2))
            .sqrt()
    };
    [
        distance(reformat::point_mm(volume, plane, 0, 1.0, 0.0)),
        distance(reformat::point_mm(volume, plane, 0, 0.0, 1.0)),
    ]
}

fn number(value: f32) -> Value {
    serde_json::Number::from_f64(f64::from(value))
        .map(Value::Number)
        .unwrap_or(Value::Null)
}

/// The value at pixel (`x`, `y`) of a slice, with its units and patient position.
pub async fn value_at(
    state: &AppState,
    ctx: &Context<'_>,
    series_id: i64,
    plane: &str,
    index: usize,
    x: usize,
    y: usize,
) -> Result<ValueJson, ApiError> {
    let (imaging, series) = viewed(state, ctx, series_id).await?;
    if let Some(value) = value_from_one_file(state, &imaging, &series, plane, (index, x, y)).await?
    {
        return Ok(value);
    }
    let opened = load_series(state, imaging, series).await?;
    let plane_choice = plane_of(&opened, plane)?;
    let outside = |columns: u32, rows: u32| outside_slice(x, y, columns, rows);
    match &opened.layout {
        Layout::Volume(shown) => {
            let plane = plane_choice.expect("volumes have planes");
            let volume = &shown.volume;
            let len = reformat::plane_len(volume, plane);
            if index >= len {
                return Err(out_of_range(plane.name(), index, len));
            }
            let (columns, rows) = reformat::plane_size(volume, plane);
            let value = reformat::value_at(volume, plane, index, x, y)
                .ok_or_else(|| outside(columns, rows))?;
            Ok(ValueJson {
                value: number(value),
                units: shown.units.clone(),
                position_mm: Some(reformat::point_mm(volume, plane, index, x as f64, y as f64)),
            })
        }
        Layout::Stack(frames) => {
            let (file, frame) = stack_frame(&opened, frames, index).await?;
            if x >= file.columns as usize || y >= file.rows as usize {
                return Err(outside(file.columns, file.rows));
            }
            let values = &file.frames[frame.frame as usize];
            let samples = file.samples as usize;
            let at = (y * file.columns as usize + x) * samples;
            let value = if samples == 1 {
                number(values[at])
            } else {
                Value::Array(
                    values[at..at + samples]
                        .iter()
                        .map(|&v| number(v))
                        .collect(),
                )
            };
            let position_mm = file
                .geometry
                .as_ref()
                .filter(|g| g.number_of_frames <= 1)
                .and_then(|g| {
                    let position = g.image_position_mm?;
                    let orientation = g.image_orientation?;
                    let [between_rows, between_columns] = g.pixel_spacing_mm?;
                    Some(std::array::from_fn(|axis| {
                        position[axis]
                            + orientation[axis] * between_columns * x as f64
                            + orientation[3 + axis] * between_rows * y as f64
                    }))
                });
            Ok(ValueJson {
                value,
                units: file.units.clone(),
                position_mm,
            })
        }
    }
}

/// The attributes of the file shown at `index` of `plane` (the middle one when not given).
pub async fn metadata(
    state: &AppState,
    ctx: &Context<'_>,
    series_id: i64,
    plane: Option<&str>,
    index: Option<usize>,
) -> Result<MetadataJson, ApiError> {
    let (imaging, series) = viewed(state, ctx, series_id).await?;
    // A volume's file at a slice of any plane follows from its outline: nothing decoded.
    if series.kind == "dicom" {
        let (content, instances) = series_files(state, &imaging, &series).await?;
        if let Some(outline) = outline(&imaging, &series, &content, &instances).await? {
            let plane = plane.map_or(Ok(Plane::Axial), volume_plane)?;
            let len = reformat::plane_len(&outline.shape, plane);
            let index = index.unwrap_or(len / 2);
            if index >= len {
                return Err(out_of_range(plane.name(), index, len));
            }
            let (id, object) = &outline.files[voxel_slice(&outline.shape, plane, index)];
            let bytes = imaging.object(object).await?;
            let attributes = blocking(move || {
                let image = dicom::read_bytes(Path::new("image"), &bytes)
                    .map_err(|e| decode_refusal(&e))?;
                Ok(dicom_attributes(&image))
            })
            .await?;
            return Ok(MetadataJson {
                instance: Some(*id),
                frame: None,
                attributes,
            });
        }
    }
    let opened = load_series(state, imaging, series).await?;
    let (instance_id, frame) = match &opened.layout {
        Layout::Volume(shown) => {
            if shown.instances.is_empty() {
                return Ok(MetadataJson {
                    instance: None,
                    frame: None,
                    attributes: shown.header.clone(),
                });
            }
            let plane = match plane {
                Some(name) => plane_of(&opened, name)?.expect("volumes have planes"),
                None => Plane::Axial,
            };
            let volume = &shown.volume;
            let len = reformat::plane_len(volume, plane);
            let index = index.unwrap_or(len / 2);
            if index >= len {
                return Err(out_of_range(plane.name(), index, len));
            }
            (shown.instances[voxel_slice(volume, plane, index)], None)
        }
        Layout::Stack(frames) => {
            if let Some(name) = plane {
                plane_of(&opened, name)?;
            }
            let index = index.unwrap_or(frames.len() / 2);
            let frame = frames
                .get(index)
                .ok_or_else(|| out_of_range(STACK_PLANE, index, frames.len()))?;
            (
                frame.instance.id,
                (frame.instance.frames > 1).then_some(frame.frame),
            )
        }
    };
    let instance = state.store.instance(instance_id).await?;
    let bytes = opened.imaging.object(&instance.object_id).await?;
    let picture = opened.series.kind == "image";
    let attributes = blocking(move || {
        if picture {
            let picture =
                raster::read_bytes("picture", &bytes).map_err(|e| cannot_show(&e.to_string()))?;
            let row = |keyword: &str, value: String| AttributeJson {
                tag: String::new(),
                keyword: keyword.into(),
                vr: String::new(),
                value,
            };
            return Ok(vec![
                row("Format", picture.format.to_string()),
                row("Columns", picture.columns.to_string()),
                row("Rows", picture.rows.to_string()),
                row("Samples per pixel", picture.samples_per_pixel.to_string()),
                row("Bits", picture.bits.to_string()),
            ]);
        }
        let image =
            dicom::read_bytes(Path::new("image"), &bytes).map_err(|e| decode_refusal(&e))?;
        Ok(dicom_attributes(&image))
    })
    .await?;
    Ok(MetadataJson {
        instance: Some(instance_id),
        frame,
        attributes,
    })
}

/// The voxel slice (in volume order) through the centre of slice `index` of `plane`.
fn voxel_slice(volume: &Volume, plane: Plane, index: usize) -> usize {
    let g = &volume.geometry;
    let (columns, rows) = reformat::plane_size(volume, plane);
    let centre = reformat::point_mm(
        volume,
        plane,
        index,
        f64::from(columns.saturating_sub(1)) / 2.0,
        f64::from(rows.saturating_sub(1)) / 2.0,
    );
    let along: f64 = (0..3)
        .map(|a| (centre[a] - g.origin_mm[a]) * g.normal[a])
        .sum();
    let slice = (along / g.spacing_mm[2]).round();
    (slice.max(0.0) as usize).min(volume.slices().saturating_sub(1))
}

fn dicom_attributes(image: &DicomImage) -> Vec<AttributeJson> {
    let json = dicom_json::to_json(image.object(), |tag| tag.group() != 0x7FE0, None);
    let mut out = vec![AttributeJson {
        tag: "(0002,0010)".into(),
        keyword: "TransferSyntaxUID".into(),
        vr: "UI".into(),
        value: format!(
            "{} ({})",
            image.transfer_syntax_uid,
            image.transfer_syntax_name()
        ),
    }];
    flatten_attributes(&json, "", &mut out);
    out
}

fn flatten_attributes(json: &Value, prefix: &str, out: &mut Vec<AttributeJson>) {
    let Some(attributes) = json.as_object() else {
        return;
    };
    for (key, attribute) in attributes {
        if out.len() >= MAX_ATTRIBUTES {
            return;
        }
        let tag = if key.len() == 8 {
            format!("{prefix}({},{})", &key[..4], &key[4..])
        } else {
            format!("{prefix}{key}")
        };
        let vr = attribute["vr"].as_str().unwrap_or("").to_string();
        let keyword = keyword(key).to_string();
        if vr == "SQ" {
            let items = attribute["Value"].as_array().map_or(&[][..], Vec::as_slice);
            out.push(AttributeJson {
                tag,
                keyword,
                vr,
                value: format!(
                    "sequence of {} item{}",
                    items.len(),
                    if items.len() == 1 { "" } else { "s" }
                ),
            });
            for item in items {
                flatten_attributes(item, &format!("{prefix}>"), out);
            }
            continue;
        }
        let value = if let Some(binary) = attribute["InlineBinary"].as_str() {
            format!("binary data, {} bytes", binary.len() / 4 * 3)
        } else if attribute.get("BulkDataURI").is_some() {
            "binary data".into()
        } else {
            attribute["Value"]
                .as_array()
                .map(|values| {
                    values
                        .iter()
                        .map(|v| match v {
                            Value::String(s) => s.clone(),
                            Value::Null => String::new(),
                            Value::Object(name) => name
                                .get("Alphabetic")
                                .and_then(Value::as_str)
                                .unwrap_or("")
                                .to_string(),
                            other => other.to_string(),
                        })
                        .collect::<Vec<_>>()
                        .join("\\")
                })
                .unwrap_or_default()
        };
        let value = if value.chars().count() > MAX_VALUE_CHARS {
            format!(
                "{}…",
                value.chars().take(MAX_VALUE_CHARS).collect::<String>()
            )
        } else {
            value
        };
        out.push(AttributeJson {
            tag,
            keyword,
            vr,
            value,
        });
    }
}

/// Keywords of the attributes most often looked at; others show their tag only.
fn keyword(key: &str) -> &'static str {
    const KEYWORDS: &[(&str, &str)] = &[
        ("00080005", "SpecificCharacterSet"),
        ("00080008", "ImageType"),
        ("00080012", "InstanceCreationDate"),
        ("00080013", "InstanceCreationTime"),
        ("00080016", "SOPClassUID"),
        ("00080018", "SOPInstanceUID"),
        ("00080020", "StudyDate"),
        ("00080021", "SeriesDate"),
        ("00080022", "AcquisitionDate"),
        ("00080023", "ContentDate"),
        ("00080030", "StudyTime"),
        ("00080031", "SeriesTime"),
        ("00080032", "AcquisitionTime"),
        ("00080033", "ContentTime"),
        ("00080050", "AccessionNumber"),
        ("00080060", "Modality"),
        ("00080064", "ConversionType"),
        ("00080070", "Manufacturer"),
        ("00080080", "InstitutionName"),
        ("00080090", "ReferringPhysicianName"),
        ("00081010", "StationName"),
        ("00081030", "StudyDescription"),
        ("0008103E", "SeriesDescription"),
        ("00081090", "ManufacturerModelName"),
        ("00100010", "PatientName"),
        ("00100020", "PatientID"),
        ("00100030", "PatientBirthDate"),
        ("00100040", "PatientSex"),
        ("00101010", "PatientAge"),
        ("00120062", "PatientIdentityRemoved"),
        ("00120063", "DeidentificationMethod"),
        ("00120064", "DeidentificationMethodCodeSequence"),
        ("00180015", "BodyPartExamined"),
        ("00180050", "SliceThickness"),
        ("00180060", "KVP"),
        ("00180088", "SpacingBetweenSlices"),
        ("00181020", "SoftwareVersions"),
        ("00181030", "ProtocolName"),
        ("00181120", "GantryDetectorTilt"),
        ("00181150", "ExposureTime"),
        ("00181151", "XRayTubeCurrent"),
        ("00181152", "Exposure"),
        ("00181210", "ConvolutionKernel"),
        ("00185100", "PatientPosition"),
        ("00080100", "CodeValue"),
        ("00080102", "CodingSchemeDesignator"),
        ("00080104", "CodeMeaning"),
        ("0020000D", "StudyInstanceUID"),
        ("0020000E", "SeriesInstanceUID"),
        ("00200010", "StudyID"),
        ("00200011", "SeriesNumber"),
        ("00200012", "AcquisitionNumber"),
        ("00200013", "InstanceNumber"),
        ("00200020", "PatientOrientation"),
        ("00200032", "ImagePositionPatient"),
        ("00200037", "ImageOrientationPatient"),
        ("00200052", "FrameOfReferenceUID"),
        ("00201040", "PositionReferenceIndicator"),
        ("00201041", "SliceLocation"),
        ("00280002", "SamplesPerPixel"),
        ("00280004", "PhotometricInterpretation"),
        ("00280006", "PlanarConfiguration"),
        ("00280008", "NumberOfFrames"),
        ("00280010", "Rows"),
        ("00280011", "Columns"),
        ("00280030", "PixelSpacing"),
        ("00280100", "BitsAllocated"),
        ("00280101", "BitsStored"),
        ("00280102", "HighBit"),
        ("00280103", "PixelRepresentation"),
        ("00280301", "BurnedInAnnotation"),
        ("00281050", "WindowCenter"),
        ("00281051", "WindowWidth"),
        ("00281052", "RescaleIntercept"),
        ("00281053", "RescaleSlope"),
        ("00281054", "RescaleType"),
        ("00281055", "WindowCenterWidthExplanation"),
        ("00281101", "RedPaletteColorLookupTableDescriptor"),
        ("00281102", "GreenPaletteColorLookupTableDescriptor"),
        ("00281103", "BluePaletteColorLookupTableDescriptor"),
        ("00281201", "RedPaletteColorLookupTableData"),
        ("00281202", "GreenPaletteColorLookupTableData"),
        ("00281203", "BluePaletteColorLookupTableData"),
        ("00282110", "LossyImageCompression"),
        ("00282112", "LossyImageCompressionRatio"),
        ("00282114", "LossyImageCompressionMethod"),
        ("00283010", "VOILUTSequence"),
        ("00400244", "PerformedProcedureStepStartDate"),
        ("00400253", "PerformedProcedureStepID"),
    ];
    KEYWORDS
        .iter()
        .find(|(tag, _)| *tag == key)
        .map_or("", |(_, keyword)| keyword)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_choice_accepts_presets_and_pairs_and_refuses_the_rest() {
        assert_eq!(
            window_choice(None, None, None).unwrap(),
            WindowChoice::Opening
        );
        assert_eq!(
            window_choice(None, None, Some("soft-tissue")).unwrap(),
            WindowChoice::Preset("soft tissue".into())
        );
        assert_eq!(
            window_choice(None, None, Some("file")).unwrap(),
            WindowChoice::Preset("file".into())
        );
        assert_eq!(
            window_choice(Some(40.0), Some(400.0), None).unwrap(),
            WindowChoice::Explicit(WindowLevel {
                center: 40.0,
                width: 400.0
            })
        );
        for (center, width, preset) in [
            (Some(40.0), None, None),
            (None, Some(400.0), None),
            (Some(40.0), Some(0.5), None),
            (Some(f64::NAN), Some(400.0), None),
            (Some(40.0), Some(400.0), Some("lung")),
            (None, None, Some("liver")),
        ] {
            let error = window_choice(center, width, preset).unwrap_err();
            assert_eq!(
                error.status,
                StatusCode::BAD_REQUEST,
                "{center:?} {width:?} {preset:?}"
            );
        }
    }

    #[test]
    fn slice_numbers_come_with_or_without_png() {
        assert_eq!(slice_number("12.png").unwrap(), 12);
        assert_eq!(slice_number("0").unwrap(), 0);
        assert!(slice_number("-1.png").is_err());
        assert!(slice_number("one.png").is_err());
    }

    #[test]
    fn on_all_cores_keeps_the_order() {
        let out = on_all_cores((0..1000).collect(), |i: i32| i * 2);
        assert_eq!(out, (0..1000).map(|i| i * 2).collect::<Vec<_>>());
        assert!(on_all_cores(Vec::<i32>::new(), |i| i).is_empty());
    }
}
