//! The series viewer page, `/series/{id}`: the image with slice slider, mouse wheel and
//! keys; window presets and window/level by dragging; zoom and pan; axial, coronal and
//! sagittal for volumes; the value under the cursor; the file's attributes; mask overlays.
//! The page is plain HTML from here and a small script (`viewer.js`, with `viewer.css`)
//! served from the binary at a path that changes with their content, so browsers keep them
//! until voxhub is upgraded. Slices come from the viewer API ([`crate::api::viewer`]),
//! which accepts the session cookie, rendered on the server; the script only asks for them
//! and keeps the neighbouring slices loaded ahead of scrolling.

use super::{PageCaller, PageError, PagePath, page};
use crate::AppState;
use crate::auth::ClientAddr;
use crate::datasets;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use sha2::{Digest, Sha256};
use std::sync::OnceLock;

const SCRIPT: &str = include_str!("viewer.js");
const STYLE: &str = include_str!("viewer.css");

/// The presets' buttons: the element id's suffix, the preset name in the API, the words.
const PRESET_BUTTONS: &[(&str, &str, &str)] = &[
    ("lung", "lung", "Lung"),
    ("mediastinum", "mediastinum", "Mediastinum"),
    ("bone", "bone", "Bone"),
    ("brain", "brain", "Brain"),
    ("soft-tissue", "soft tissue", "Soft tissue"),
    ("file", "file", "File's own"),
];

/// A short hash of the script and stylesheet: their address changes whenever they do.
fn asset_version() -> &'static str {
    static VERSION: OnceLock<String> = OnceLock::new();
    VERSION.get_or_init(|| {
        let mut hasher = Sha256::new();
        hasher.update(SCRIPT.as_bytes());
        hasher.update(STYLE.as_bytes());
        hex::encode(&hasher.finalize()[..6])
    })
}

/// `GET /static/viewer/{version}/{file}`: the viewer's script and stylesheet.
pub async fn asset(Path((version, file)): Path<(String, String)>) -> Response {
    let (content_type, body) = match file.as_str() {
        "viewer.js" => ("text/javascript; charset=utf-8", SCRIPT),
        "viewer.css" => ("text/css; charset=utf-8", STYLE),
        _ => return (StatusCode::NOT_FOUND, "no such file").into_response(),
    };
    let cache = if version == asset_version() {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CACHE_CONTROL, HeaderValue::from_static(cache)),
        ],
        body,
    )
        .into_response()
}

/// `GET /series/{id}`: the viewer.
pub async fn viewer_page(
    State(state): State<AppState>,
    ClientAddr(source): ClientAddr,
    caller: PageCaller,
    PagePath(id): PagePath<i64>,
) -> Result<Markup, PageError> {
    let (series, dataset) = datasets::series(&state, &caller.0.context(&source), id).await?;
    let s = &series.series;
    let title = if s.description.is_empty() {
        format!("Series {}", s.series_number.unwrap_or(s.id))
    } else {
        s.description.clone()
    };
    let api = format!("/api/v1/series/{id}");
    let version = asset_version();
    let content = html! {
        link rel="stylesheet" href={"/static/viewer/" (version) "/viewer.css"};
        p.breadcrumb {
            a href="/datasets" { "Datasets" } " › "
            a href={"/datasets/" (dataset.dataset.id)} { (dataset.dataset.name) } " › "
            span { (s.patient_pseudonym) }
        }
        h1 #viewer-title {
            (title)
            @if !s.modality.is_empty() { " " span.badge { (s.modality) } }
        }
        div #viewer .viewer data-series=(id) data-api=(api) {
            p #viewer-status .muted role="status" aria-live="polite" { "Loading the images…" }
            p #viewer-error .notice.error role="alert" hidden {}
            p #not-volume-reason .notice.info hidden {}
            div .viewer-toolbar role="toolbar" aria-label="Viewer controls" {
                div #plane-buttons .viewer-group role="group" aria-label="Plane" hidden {
                    button #plane-axial type="button" .secondary data-plane="axial" aria-pressed="true" title="Slices across the body, seen from the feet" { "Axial" }
                    button #plane-coronal type="button" .secondary data-plane="coronal" aria-pressed="false" title="Slices from front to back, seen from the front" { "Coronal" }
                    button #plane-sagittal type="button" .secondary data-plane="sagittal" aria-pressed="false" title="Slices from side to side, seen from the patient's left" { "Sagittal" }
                }
                div #preset-buttons .viewer-group role="group" aria-label="Window presets" {
                    @for (suffix, name, label) in PRESET_BUTTONS {
                        button id={"preset-" (suffix)} type="button" .secondary data-preset=(name) aria-pressed="false" { (label) }
                    }
                }
                div .viewer-group role="group" aria-label="Zoom and move" {
                    button #zoom-out type="button" .secondary aria-label="Zoom out" title="Zoom out (−, or Ctrl + mouse wheel)" { "−" }
                    button #zoom-in type="button" .secondary aria-label="Zoom in" title="Zoom in (+, or Ctrl + mouse wheel)" { "+" }
                    button #zoom-reset type="button" .secondary title="Fit the image in the window (0)" { "Fit" }
                    button #pan-mode type="button" .secondary aria-pressed="false" title="When on, dragging with the left button moves the image (or drag with the middle button)" { "Move image" }
                }
            }
            div .viewer-main {
                div #viewer-stage .viewer-stage tabindex="0" role="img" aria-roledescription="medical image viewer"
                    aria-label="Image. Mouse wheel or arrow keys: next and previous slice; Page Up and Page Down: 10 slices; drag: window and level; Ctrl + wheel: zoom." {
                    div #viewer-canvas .viewer-canvas {
                        img #viewer-image alt="" draggable="false";
                        img #overlay-image .overlay alt="" draggable="false" hidden;
                    }
                    span #edge-top .edge.edge-top aria-hidden="true" {}
                    span #edge-bottom .edge.edge-bottom aria-hidden="true" {}
                    span #edge-left .edge.edge-left aria-hidden="true" {}
                    span #edge-right .edge.edge-right aria-hidden="true" {}
                    span #slice-corner .corner aria-hidden="true" {}
                }
                aside .viewer-side aria-label="Slice, window and values" {
                    label for="slice-slider" { "Slice " span #slice-label { "–" } }
                    input #slice-slider type="range" min="0" max="0" value="0" step="1" disabled;
                    p { span.muted { "Window: " } span #wl-readout aria-live="polite" { "–" } }
                    p { span.muted { "Under the cursor: " } span #value-readout { "–" } }
                    div #overlay-controls hidden {
                        h2 { "Mask" }
                        label.inline-check { input #overlay-toggle type="checkbox"; " Show the mask" }
                        label for="overlay-select" { "Mask series" }
                        select #overlay-select {}
                        label for="overlay-opacity" { "Mask opacity " span #overlay-opacity-label { "50%" } }
                        input #overlay-opacity type="range" min="0" max="100" value="50" step="5";
                    }
                    ul #label-problems .muted hidden {}
                    p {
                        a #download-nifti .button href={(api) "/nifti"} download hidden { "Download NIfTI" }
                    }
                    details #metadata-panel {
                        summary { "File details (attributes)" }
                        label for="metadata-filter" { "Find an attribute" }
                        input #metadata-filter type="search" placeholder="name, tag or value";
                        div .metadata-scroll {
                            table #metadata-table { thead { tr { th { "Tag" } th { "Name" } th { "VR" } th { "Value" } } } tbody {} }
                        }
                    }
                    details .viewer-help {
                        summary { "How to use the viewer" }
                        ul {
                            li { "Next or previous slice: mouse wheel, arrow keys, or the slider. Page Up / Page Down: 10 slices. Home / End: first and last." }
                            li { "Brightness and contrast (window and level): drag over the image with the left or right button — sideways changes the width, up and down the center. Or choose a preset." }
                            li { "Zoom: Ctrl + mouse wheel, the + and − buttons or keys; Fit or 0 resets. Move the image: drag with the middle button, or turn on “Move image”." }
                            li { "The value under the cursor is in Hounsfield units (HU) for CT; the position is in millimetres from the scanner's origin (R/L, A/P, S/I)." }
                        }
                    }
                }
            }
        }
        script src={"/static/viewer/" (version) "/viewer.js"} defer {}
    };
    Ok(page(&caller, "/datasets", &title, None, content))
}
