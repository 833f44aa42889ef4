//! The deriver: once a series has stopped changing (uploads arrive in batches), it reads the
//! series's files and writes what browsing, viewing and workloads need: a summary
//! (dimensions, spacing, window, and whether the series forms a volume or why not), a
//! thumbnail, and for volumes the NIfTI file. A series that changes while it is being
//! derived stays pending and is derived again.

use super::{Imaging, imaging};
use crate::AppState;
use crate::error::ApiError;
use serde_json::{Value, json};
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use voxhub_imaging::dicom::{self, DicomImage, Geometry};
use voxhub_imaging::render::{WindowLevel, auto_window};
use voxhub_imaging::thumbnail::thumbnail_png;
use voxhub_imaging::volume::{self, Volume};
use voxhub_imaging::{nifti_export, nifti_read, raster, reformat};
use voxhub_store::datasets::{Instance, Series};

/// The window that maps 8-bit values 0..255 onto themselves.
const UNCHANGED_8BIT: WindowLevel = WindowLevel {
    center: 128.0,
    width: 256.0,
};

/// Longest side of a thumbnail, in pixels.
pub const THUMBNAIL_SIDE: u32 = 160;

/// Starts the deriver loop: it wakes on every upload and once a second.
pub fn spawn(state: AppState) -> Option<tokio::task::JoinHandle<()>> {
    let imaging = state.imaging.clone()?;
    Some(tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = imaging.wake_deriver.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            if let Err(error) = derive_pending(&state, &imaging).await {
                tracing::warn!("deriving series failed: {}", error.message);
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }))
}

/// Derives every pending series whose last change has settled.
pub async fn derive_pending(state: &AppState, imaging: &Arc<Imaging>) -> Result<usize, ApiError> {
    let mut done = 0;
    loop {
        let settled = voxhub_store::now_ms() - imaging.settings.derive_settle_ms;
        let pending = state.store.series_to_derive(settled, 8).await?;
        if pending.is_empty() {
            return Ok(done);
        }
        for (series_id, _) in pending {
            derive_series(state, series_id).await?;
            done += 1;
        }
    }
}

/// What deriving produced for one series.
struct Derived {
    summary: Value,
    thumbnail: Option<Vec<u8>>,
    /// The NIfTI file (gzip) to store, or the id of a stored object that already is one.
    nifti: Option<NiftiOut>,
}

enum NiftiOut {
    Bytes(Vec<u8>),
    Existing(String),
}

/// Derives one series now (the deriver does this in the background; a NIfTI download of a
/// series not yet derived does it at once).
pub async fn derive_series(state: &AppState, series_id: i64) -> Result<(), ApiError> {
    let imaging = imaging(state)?.clone();
    let series = state.store.series(series_id).await?;
    let changed_at = series.changed_at;
    let instances = state.store.instances(series_id).await?;
    let derived = match derive(&imaging, &series, &instances).await {
        Ok(derived) => derived,
        Err(reason) => Derived {
            summary: json!({ "error": reason, "volume": { "ok": false, "reason": reason } }),
            thumbnail: None,
            nifti: None,
        },
    };
    let failed = derived.summary.get("error").is_some();
    let thumbnail = match derived.thumbnail {
        Some(png) => Some(
            imaging
                .objects
                .put(&png)
                .await
                .map_err(ApiError::internal)?
                .to_string(),
        ),
        None => None,
    };
    let nifti = match derived.nifti {
        Some(NiftiOut::Bytes(bytes)) => Some(
            imaging
                .objects
                .put(&bytes)
                .await
                .map_err(ApiError::internal)?
                .to_string(),
        ),
        Some(NiftiOut::Existing(id)) => Some(id),
        None => None,
    };
    let mut tx = state.store.begin().await?;
    tx.set_derived(
        series_id,
        changed_at,
        if failed { "failed" } else { "ready" },
        &derived.summary.to_string(),
        thumbnail.as_deref(),
        nifti.as_deref(),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

async fn derive(
    imaging: &Imaging,
    series: &Series,
    instances: &[Instance],
) -> Result<Derived, String> {
    if instances.is_empty() {
        return Err("the series has no files".into());
    }
    match series.kind.as_str() {
        "dicom" => derive_dicom(imaging, instances).await,
        "nifti" => {
            let object = instances[0].object_id.clone();
            let bytes = load(imaging, &object).await?;
            let name = instances[0].source_name.clone();
            blocking(move || derive_nifti(&name, &bytes, object)).await
        }
        _ => derive_pictures(imaging, instances).await,
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| format!("deriving stopped unexpectedly: {e}"))?
}

async fn load(imaging: &Imaging, object: &str) -> Result<Vec<u8>, String> {
    imaging.object(object).await.map_err(|e| e.message)
}

/// The geometry of an instance from its stored JSON.
pub fn geometry_of(instance: &Instance) -> Option<Geometry> {
    let g: Value = serde_json::from_str(&instance.geometry).ok()?;
    let array = |key: &str| -> Option<Vec<f64>> {
        g.get(key)?.as_array()?.iter().map(Value::as_f64).collect()
    };
    Some(Geometry {
        rows: g.get("rows")?.as_u64()? as u32,
        columns: g.get("columns")?.as_u64()? as u32,
        number_of_frames: g.get("frames").and_then(Value::as_u64).unwrap_or(1) as u32,
        pixel_spacing_mm: array("pixel_spacing").and_then(|v| v.try_into().ok()),
        image_position_mm: array("position").and_then(|v| v.try_into().ok()),
        image_orientation: array("orientation").and_then(|v| v.try_into().ok()),
        slice_thickness_mm: g.get("thickness").and_then(Value::as_f64),
    })
}

fn window_json(window: WindowLevel) -> Value {
    json!({ "center": window.center, "width": window.width })
}

fn gzip(bytes: &[u8]) -> Result<Vec<u8>, String> {
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(bytes.len() / 2),
        flate2::Compression::fast(),
    );
    encoder
        .write_all(bytes)
        .and_then(|()| encoder.finish())
        .map_err(|e| format!("could not compress the NIfTI file: {e}"))
}

/// The window an image opens with: the file's own, or one from its values.
pub(crate) fn opening_window(image: &DicomImage, values: &[f32]) -> WindowLevel {
    image
        .windows
        .first()
        .filter(|w| w.width >= 1.0)
        .map(|w| WindowLevel {
            center: w.center,
            width: w.width,
        })
        .unwrap_or_else(|| auto_window(values))
}

async fn derive_dicom(imaging: &Imaging, instances: &[Instance]) -> Result<Derived, String> {
    let with_pixels: Vec<&Instance> = instances.iter().filter(|i| i.rows.is_some()).collect();
    if with_pixels.is_empty() {
        return Ok(Derived {
            summary: json!({
                "kind": "dicom",
                "images": 0,
                "files": instances.len(),
                "volume": { "ok": false, "reason": "the series has no images (a report, plan or other non-image object)" },
            }),
            thumbnail: None,
            nifti: None,
        });
    }
    let geometries: Vec<Option<Geometry>> = with_pixels.iter().map(|i| geometry_of(i)).collect();
    let frames: i64 = with_pixels.iter().map(|i| i.frames).sum();
    // Display order and volume check come from geometry alone.
    let plan = if with_pixels.len() < 2 {
        Err(if frames > 1 {
            "a multi-frame image; its frames are shown one by one".to_string()
        } else {
            "a single image, not a stack of slices".to_string()
        })
    } else if with_pixels.iter().any(|i| i.frames > 1) {
        Err("the series contains multi-frame images; their frames are shown one by one".to_string())
    } else {
        match geometries
            .iter()
            .map(Option::as_ref)
            .collect::<Option<Vec<&Geometry>>>()
        {
            Some(all) => volume::plan(&all).map_err(|e| e.to_string()),
            None => Err("some images have no readable geometry".to_string()),
        }
    };
    let order: Vec<usize> = match &plan {
        Ok(stack) => stack.order.clone(),
        Err(_) => (0..with_pixels.len()).collect(),
    };
    let middle = with_pixels[order[order.len() / 2]];
    let middle_bytes = load(imaging, &middle.object_id).await?;
    let (thumbnail, window, decode_error, photometric) = blocking(move || {
        let image =
            dicom::read_bytes(Path::new("image"), &middle_bytes).map_err(|e| e.to_string())?;
        match dicom::pixels(&image) {
            Ok(frames) => {
                let values = &frames.frames[frames.frames.len() / 2];
                // Colour is shown as stored; greys open with the file's window.
                let window = if frames.samples_per_pixel == 3 {
                    UNCHANGED_8BIT
                } else {
                    opening_window(&image, values)
                };
                let mono1 = frames.photometric_interpretation == "MONOCHROME1";
                let png = thumbnail_png(
                    values,
                    frames.columns,
                    frames.rows,
                    frames.samples_per_pixel,
                    window,
                    mono1,
                    THUMBNAIL_SIDE,
                );
                Ok((
                    Some(png),
                    Some(window),
                    None,
                    frames.photometric_interpretation.clone(),
                ))
            }
            Err(error) => Ok((
                None,
                None,
                Some(error.to_string().trim_start_matches("image: ").to_string()),
                image
                    .pixel_format
                    .as_ref()
                    .map(|p| p.photometric_interpretation.clone())
                    .unwrap_or_default(),
            )),
        }
    })
    .await?;
    let first = geometries.iter().flatten().next();
    let mut summary = json!({
        "kind": "dicom",
        "images": with_pixels.len(),
        "files": instances.len(),
        "frames": frames,
        "rows": first.map(|g| g.rows),
        "columns": first.map(|g| g.columns),
        "pixel_spacing": first.and_then(|g| g.pixel_spacing_mm),
        "photometric": photometric,
        "window": window.map(window_json),
        "order": order.iter().map(|&i| with_pixels[i].id).collect::<Vec<_>>(),
    });
    if let Some(reason) = &decode_error {
        summary["decode_error"] = json!(reason);
    }
    let mut nifti = None;
    match plan {
        Ok(stack) if decode_error.is_none() => {
            summary["volume"] = json!({
                "ok": true,
                "dims": [stack.columns, stack.rows, stack.order.len()],
                "spacing": stack.spacing_mm,
            });
            let mut files = Vec::with_capacity(with_pixels.len());
            for instance in &with_pixels {
                files.push(load(imaging, &instance.object_id).await?);
            }
            let built = blocking(move || {
                let images = files
                    .iter()
                    .map(|bytes| {
                        dicom::read_bytes(Path::new("slice"), bytes).map_err(|e| e.to_string())
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let volume = volume::assemble(&images).map_err(|e| e.to_string())?;
                let encoded = nifti_export::encode(&volume).map_err(|e| e.to_string())?;
                gzip(&encoded)
            })
            .await;
            match built {
                Ok(bytes) => nifti = Some(NiftiOut::Bytes(bytes)),
                Err(reason) => summary["volume"] = json!({ "ok": false, "reason": reason }),
            }
        }
        Ok(_) => {
            summary["volume"] =
                json!({ "ok": false, "reason": decode_error.clone().unwrap_or_default() });
        }
        Err(reason) => summary["volume"] = json!({ "ok": false, "reason": reason }),
    }
    Ok(Derived {
        summary,
        thumbnail,
        nifti,
    })
}

/// Thumbnail and summary of a NIfTI volume (a label volume included).
fn derive_nifti(name: &str, bytes: &[u8], object: String) -> Result<Derived, String> {
    let read = nifti_read::read_bytes(name, bytes).map_err(|e| e.to_string())?;
    let volume: &Volume = &read.volume;
    let g = &volume.geometry;
    let axial = reformat::slice(
        volume,
        reformat::Plane::Axial,
        reformat::plane_len(volume, reformat::Plane::Axial) / 2,
    )
    .map_err(|e| e.to_string())?;
    let window = auto_window(&axial.values);
    let thumbnail = thumbnail_png(
        &axial.values,
        axial.columns,
        axial.rows,
        1,
        window,
        false,
        THUMBNAIL_SIDE,
    );
    let nifti = if bytes.starts_with(&[0x1f, 0x8b]) {
        NiftiOut::Existing(object)
    } else {
        NiftiOut::Bytes(gzip(bytes)?)
    };
    Ok(Derived {
        summary: json!({
            "kind": "nifti",
            "images": volume.slices(),
            "rows": g.rows,
            "columns": g.columns,
            "pixel_spacing": [g.spacing_mm[1], g.spacing_mm[0]],
            "window": window_json(window),
            "integral": read.integer_values,
            "extra_volumes": read.extra_volumes,
            "volume": {
                "ok": true,
                "dims": [g.columns, g.rows, volume.slices()],
                "spacing": g.spacing_mm,
            },
        }),
        thumbnail: Some(thumbnail),
        nifti: Some(nifti),
    })
}

async fn derive_pictures(imaging: &Imaging, instances: &[Instance]) -> Result<Derived, String> {
    let mut ordered: Vec<&Instance> = instances.iter().collect();
    ordered.sort_by(|a, b| a.source_name.cmp(&b.source_name));
    let first = load(imaging, &ordered[0].object_id).await?;
    let (thumbnail, columns, rows) = blocking(move || {
        let picture = raster::read_bytes("picture", &first).map_err(|e| e.to_string())?;
        let window = if picture.bits > 8 {
            auto_window(&picture.values)
        } else {
            UNCHANGED_8BIT
        };
        let png = thumbnail_png(
            &picture.values,
            picture.columns,
            picture.rows,
            u16::from(picture.samples_per_pixel),
            window,
            false,
            THUMBNAIL_SIDE,
        );
        Ok((png, picture.columns, picture.rows))
    })
    .await?;
    Ok(Derived {
        summary: json!({
            "kind": "image",
            "images": instances.len(),
            "rows": rows,
            "columns": columns,
            "order": ordered.iter().map(|i| i.id).collect::<Vec<_>>(),
            "volume": { "ok": false, "reason": "pictures (PNG/JPEG) are not a volume" },
        }),
        thumbnail: Some(thumbnail),
        nifti: None,
    })
}
