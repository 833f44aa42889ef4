//! Pages for imaging datasets: the list with the form that creates one; one dataset with its
//! header, upload forms (files, a folder, a zip), search, and the patients → studies → series
//! it holds (thumbnail, modality, body part, date, images, dimensions, spacing, and whether
//! each series forms a volume or why not); renaming, sharing and deleting; and the report of
//! one upload (what was imported, what was skipped and why, what de-identification did).
//! Series open in the viewer at `/series/{id}`.

use super::{Notice, PageCaller, PageError, PageForm, PagePath, PageQuery, csrf_field, page};
use crate::AppState;
use crate::api::datasets::spool_multipart;
use crate::auth::ClientAddr;
use crate::datasets::{self, DatasetChange, DatasetRequest, SeriesView};
use crate::error::ApiError;
use axum::extract::Multipart;
use axum::extract::State;
use axum::extract::multipart::MultipartRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use voxhub_core::role::{ClassRole, Role};
use voxhub_core::timefmt::human;
use voxhub_store::datasets::{SeriesFilter, Study};

/// Seconds between reloads of a page that waits for series to be prepared.
const REFRESH_WHILE_PREPARING_S: u32 = 3;

/// Most skipped files or flagged files listed one by one on a report.
const REPORT_LIST_LIMIT: usize = 500;

#[derive(Deserialize, Default)]
pub struct DatasetQuery {
    done: Option<String>,
    modality: Option<String>,
    q: Option<String>,
}

fn notice_for(done: Option<&str>) -> Option<Notice> {
    let text = match done? {
        "created" => {
            "The dataset was created. Now add images: choose files, a folder or a zip file below."
        }
        "changed" => "The dataset was changed.",
        "deleted" => "The dataset was deleted with all its images.",
        _ => return None,
    };
    Some(Notice::Ok(text.into()))
}

/// "1 study", "3 studies": the count with the right form of the noun.
fn plural(count: i64, one: &str, many: &str) -> String {
    if count == 1 {
        format!("1 {one}")
    } else {
        format!("{count} {many}")
    }
}

fn size_text(bytes: i64) -> String {
    const UNITS: [&str; 4] = ["KB", "MB", "GB", "TB"];
    if bytes < 1000 {
        return format!("{bytes} bytes");
    }
    let mut value = bytes as f64 / 1000.0;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// `YYYYMMDD` as `YYYY-MM-DD`; anything else as it is.
fn dicom_date(raw: &str) -> String {
    let raw = raw.trim();
    if raw.len() == 8 && raw.bytes().all(|b| b.is_ascii_digit()) {
        format!("{}-{}-{}", &raw[..4], &raw[4..6], &raw[6..])
    } else {
        raw.to_string()
    }
}

fn blank(value: Option<&str>) -> Option<String> {
    value
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// A number in millimetres without trailing zeros (0.7, 1.25, 3).
fn millimetres(value: f64) -> String {
    let text = format!("{value:.3}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

fn numbers(value: &Value) -> Vec<f64> {
    value
        .as_array()
        .map(|items| items.iter().filter_map(Value::as_f64).collect())
        .unwrap_or_default()
}

/// Columns × rows (× slices for a volume).
fn dimensions_text(summary: &Value) -> String {
    let dims = numbers(&summary["volume"]["dims"]);
    if dims.len() == 3 && summary["volume"]["ok"].as_bool() == Some(true) {
        return format!("{} × {} × {}", dims[0], dims[1], dims[2]);
    }
    match (summary["columns"].as_u64(), summary["rows"].as_u64()) {
        (Some(columns), Some(rows)) => format!("{columns} × {rows}"),
        _ => String::new(),
    }
}

/// Voxel spacing of a volume, or the pixel spacing of its images, in millimetres.
fn spacing_text(summary: &Value) -> String {
    let spacing = numbers(&summary["volume"]["spacing"]);
    if spacing.len() == 3 && summary["volume"]["ok"].as_bool() == Some(true) {
        return format!(
            "{} × {} × {} mm",
            millimetres(spacing[0]),
            millimetres(spacing[1]),
            millimetres(spacing[2])
        );
    }
    let pixel = numbers(&summary["pixel_spacing"]);
    if pixel.len() == 2 {
        // DICOM gives the row spacing first; show across × down like the dimensions.
        return format!("{} × {} mm", millimetres(pixel[1]), millimetres(pixel[0]));
    }
    String::new()
}

/// Whether a series forms a volume, is still being prepared, or why it does not.
fn volume_cell(view: &SeriesView) -> Markup {
    let summary = &view.summary;
    html! {
        @match view.series.derived.as_str() {
            "pending" => { span.badge.expired.preparing { "preparing…" } }
            "failed" => {
                span.badge.revoked { "cannot be shown" }
                br;
                span.muted.reason { (summary["error"].as_str().unwrap_or("the files could not be read")) }
            }
            _ => {
                @if view.is_volume() {
                    span.badge.active { "volume" }
                } @else {
                    span.badge { "not a volume" }
                    br;
                    span.muted.reason { (summary["volume"]["reason"].as_str().unwrap_or("its images do not form one regular stack of slices")) }
                }
            }
        }
    }
}

/// The classes a person may share datasets with: those they teach (admins: every class).
async fn shareable_classes(
    state: &AppState,
    caller: &PageCaller,
) -> Result<Vec<(i64, String)>, ApiError> {
    if caller.0.user.role == Role::Admin {
        return Ok(state
            .store
            .all_classes()
            .await?
            .into_iter()
            .map(|c| (c.id, c.name))
            .collect());
    }
    Ok(state
        .store
        .memberships_of(caller.0.user.id)
        .await?
        .into_iter()
        .filter(|m| m.role == ClassRole::Teacher)
        .map(|m| (m.id, m.name))
        .collect())
}

/// The "share with" choice: private, or one of the classes the person may share with.
fn share_select(id: &str, classes: &[(i64, String)], selected: Option<i64>) -> Markup {
    html! {
        select id=(id) name="share" {
            option value="" selected[selected.is_none()] { "Private — only you (and administrators) can see it" }
            @for (class_id, name) in classes {
                option value=(class_id) selected[selected == Some(*class_id)] { "Shared read-only with the class " (name) }
            }
        }
    }
}

/// The submitted "share with" value: empty for private, else a class id.
fn parse_share(raw: &str) -> Result<Option<i64>, ApiError> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(None);
    }
    raw.parse::<i64>().map(Some).map_err(|_| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
            "choose a class from the list, or 'Private'",
        )
    })
}

fn sharing_text(dataset: &voxhub_store::datasets::Dataset) -> Markup {
    html! {
        @match &dataset.class_name {
            Some(class) => { "Shared read-only with the class " strong { (class) } }
            None => { "Private: only its owner and administrators can see it" }
        }
    }
}

// ------------------------------------------------------------------------------------------
// The list of datasets and the create form
// ------------------------------------------------------------------------------------------

#[derive(Deserialize, Default)]
pub struct NewDatasetForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    share: String,
}

async fn list_view(
    state: &AppState,
    caller: &PageCaller,
    source: &str,
    form: &NewDatasetForm,
) -> Result<Markup, ApiError> {
    let views = datasets::list(state, &caller.0.context(source)).await?;
    let classes = shareable_classes(state, caller).await?;
    let selected = form.share.trim().parse::<i64>().ok();
    Ok(html! {
        h1 { "Datasets" }
        p.muted { "Collections of medical images: DICOM, NIfTI, and PNG or JPEG pictures. Every file is de-identified when it is uploaded, before it is stored." }
        @if views.is_empty() {
            div.card #no-datasets { p { "No datasets yet. Create one below, or ask your teacher to share one with your class." } }
        } @else {
            table #datasets {
                thead { tr { th { "Name" } th { "Owner" } th { "Who can see it" } th { "Patients" } th { "Series" } th { "Images" } th { "Size" } th { "Created" } } }
                tbody {
                    @for view in &views {
                        @let d = &view.dataset;
                        tr {
                            td { a href={"/datasets/" (d.id)} { (d.name) }
                                 @if !view.can_change { " " span.badge { "read-only" } } }
                            td { (d.owner) }
                            td { @match &d.class_name { Some(class) => { "class " (class) } None => { "private" } } }
                            td { (d.patients) }
                            td { (d.series) }
                            td { (d.instances) }
                            td { (size_text(d.size_bytes)) }
                            td { (human(d.created_at)) }
                        }
                    }
                }
            }
        }
        h2 { "New dataset" }
        form.card #create-dataset method="post" action="/datasets" {
            (csrf_field(caller))
            label for="dataset_name" { "Name " span.hint { "(e.g. Chest CT — week 3)" } }
            input #dataset_name type="text" name="name" value=(form.name) required maxlength="120";
            label for="dataset_description" { "Description " span.hint { "(optional: what is in it, where it comes from, how it may be used)" } }
            textarea #dataset_description name="description" maxlength="2000" { (form.description) }
            label for="share" { "Who can see it" }
            (share_select("share", &classes, selected))
            p.hint { "Students of a class can look at a shared dataset and download it, but not change it. You can change this later." }
            p { button type="submit" { "Create dataset" } }
        }
    })
}

pub async fn datasets_page(
    State(state): State<AppState>,
    ClientAddr(source): ClientAddr,
    caller: PageCaller,
    PageQuery(query): PageQuery<DatasetQuery>,
) -> Result<Markup, PageError> {
    let content = list_view(&state, &caller, &source, &NewDatasetForm::default()).await?;
    Ok(page(
        &caller,
        "/datasets",
        "Datasets",
        notice_for(query.done.as_deref()),
        content,
    ))
}

pub async fn dataset_create(
    State(state): State<AppState>,
    ClientAddr(source): ClientAddr,
    caller: PageCaller,
    PageForm(form): PageForm<NewDatasetForm>,
) -> Result<Response, PageError> {
    caller.check_csrf(&form.csrf)?;
    let created = match parse_share(&form.share) {
        Ok(class) => {
            datasets::create(
                &state,
                &caller.0.context(&source),
                DatasetRequest {
                    name: form.name.clone(),
                    description: form.description.clone(),
                    class,
                },
            )
            .await
        }
        Err(error) => Err(error),
    };
    match created {
        Ok(view) => Ok(
            Redirect::to(&format!("/datasets/{}?done=created", view.dataset.id)).into_response(),
        ),
        Err(error) if refused_form(&error) => {
            let content = list_view(&state, &caller, &source, &form).await?;
            Ok((
                error.status,
                page(
                    &caller,
                    "/datasets",
                    "Datasets",
                    Some(Notice::Error(error.message)),
                    content,
                ),
            )
                .into_response())
        }
        Err(error) => Err(error.into()),
    }
}

/// Whether an error is about what was typed (shown above the form again) rather than about
/// who may do it or a server failure (shown as an error page).
fn refused_form(error: &ApiError) -> bool {
    error.status.is_client_error()
        && error.status != StatusCode::FORBIDDEN
        && error.status != StatusCode::NOT_FOUND
}

// ------------------------------------------------------------------------------------------
// One dataset
// ------------------------------------------------------------------------------------------

fn upload_forms(caller: &PageCaller, id: i64) -> Markup {
    let action = format!("/datasets/{id}/upload");
    html! {
        div.card #upload {
            h2 style="margin-top:0" { "Add images" }
            p.muted { "DICOM files (with or without the .dcm ending), NIfTI volumes (.nii, .nii.gz), PNG or JPEG pictures, or a zip file of them. Names, IDs, dates and other details that identify a patient are removed or replaced before anything is stored; the report after the upload says exactly what was done." }
            form #upload-files method="post" action=(action) enctype="multipart/form-data" {
                (csrf_field(caller))
                label for="files" { "Files " span.hint { "(choose one or many)" } }
                div.row { div { input #files type="file" name="file" multiple required; } div.shrink { button type="submit" { "Upload files" } } }
            }
            form #upload-folder method="post" action=(action) enctype="multipart/form-data" {
                (csrf_field(caller))
                label for="folder" { "A folder " span.hint { "(everything in it, sub-folders too — e.g. a DICOM export from a CD)" } }
                div.row { div { input #folder type="file" name="file" webkitdirectory multiple required; } div.shrink { button type="submit" { "Upload folder" } } }
            }
            form #upload-zip method="post" action=(action) enctype="multipart/form-data" {
                (csrf_field(caller))
                label for="zip" { "A zip file" }
                div.row { div { input #zip type="file" name="file" accept=".zip,application/zip" required; } div.shrink { button type="submit" { "Upload zip" } } }
            }
            p.hint { "Large uploads take a while: keep this page open until the report appears." }
        }
    }
}

fn search_form(id: i64, modalities: &BTreeSet<String>, query: &DatasetQuery) -> Markup {
    let modality = query.modality.as_deref().unwrap_or("");
    html! {
        form.card #search method="get" action={"/datasets/" (id)} {
            div.row {
                div.shrink style="min-width:10rem" {
                    label for="modality" { "Modality" }
                    select #modality name="modality" {
                        option value="" selected[modality.is_empty()] { "Any" }
                        @for m in modalities {
                            option value=(m) selected[modality.eq_ignore_ascii_case(m)] { (m) }
                        }
                    }
                }
                div {
                    label for="q" { "Text " span.hint { "(description, body part, patient pseudonym or UID)" } }
                    input #q type="search" name="q" value=(query.q.clone().unwrap_or_default()) placeholder="e.g. chest";
                }
                div.shrink { button type="submit" { "Search" } }
            }
            @if blank(query.q.as_deref()).is_some() || !modality.is_empty() {
                p.hint { a href={"/datasets/" (id)} { "Show all series" } }
            }
        }
    }
}

fn series_table(dataset_id: i64, series: &[&SeriesView]) -> Markup {
    html! {
        table.series {
            thead { tr { th { "Picture" } th { "Series" } th { "Modality" } th { "Body part" } th { "Date" } th { "Images" } th { "Dimensions" } th { "Spacing" } th { "Volume" } } }
            tbody {
                @for view in series {
                    @let s = &view.series;
                    tr.series-row id={"series-" (s.id)} {
                        td {
                            @if s.thumbnail_object.is_some() {
                                a href={"/series/" (s.id)} {
                                    img.thumbnail src={"/datasets/" (dataset_id) "/series/" (s.id) "/thumbnail"}
                                        alt={"Picture of series " (s.series_number.unwrap_or(s.id))}
                                        loading="lazy" style="max-width:96px;max-height:96px;background:#000;border-radius:4px";
                                }
                            } @else if s.derived == "pending" {
                                span.muted { "preparing…" }
                            } @else {
                                span.muted { "no picture" }
                            }
                        }
                        td {
                            a.open-series href={"/series/" (s.id)} {
                                @if s.description.is_empty() { "Series " (s.series_number.unwrap_or(s.id)) }
                                @else { (s.description) }
                            }
                            @if let Some(number) = s.series_number { br; span.muted { "number " (number) } }
                            @if let Some(of) = s.label_of { br; span.badge { "mask of series " (of) } }
                            @if !view.labels.is_empty() { br; span.muted { (plural(view.labels.len() as i64, "mask", "masks")) } }
                        }
                        td { (s.modality) }
                        td { (s.body_part) }
                        td { (dicom_date(&s.series_date)) }
                        td { (view.summary["images"].as_u64().map(|n| n as i64).unwrap_or(s.instances)) }
                        td { (dimensions_text(&view.summary)) }
                        td { (spacing_text(&view.summary)) }
                        td { (volume_cell(view)) }
                    }
                }
            }
        }
    }
}

/// Patients → studies → series, for the series that match the search.
fn browse(
    dataset_id: i64,
    studies: &[Study],
    series: &[SeriesView],
    filtered: bool,
    can_change: bool,
) -> Markup {
    let mut by_study: BTreeMap<i64, Vec<&SeriesView>> = BTreeMap::new();
    for view in series {
        by_study.entry(view.series.study_id).or_default().push(view);
    }
    // Studies come ordered by patient; group them under each patient in that order.
    let mut patients: Vec<(i64, Vec<&Study>)> = Vec::new();
    for study in studies.iter().filter(|s| by_study.contains_key(&s.id)) {
        match patients.last_mut() {
            Some((patient, list)) if *patient == study.patient_id => list.push(study),
            _ => patients.push((study.patient_id, vec![study])),
        }
    }
    html! {
        @if series.is_empty() {
            div.card #no-series {
                @if filtered { p { "No series matches this search. " a href={"/datasets/" (dataset_id)} { "Show all series" } "." } }
                @else if can_change { p { "This dataset is empty. Add images with the forms above." } }
                @else { p { "This dataset has no images yet." } }
            }
        }
        div #browse {
            @for (_, studies) in &patients {
                @let first = studies[0];
                section.card.patient {
                    h3 style="margin-top:0" {
                        "Patient " span.pseudonym { (first.patient_pseudonym) }
                        @if !first.patient_sex.is_empty() { " " span.muted { "(sex " (first.patient_sex) ")" } }
                    }
                    @for study in studies {
                        div.study {
                            h4 {
                                "Study"
                                @if !study.study_date.is_empty() { " of " (dicom_date(&study.study_date)) }
                                @if !study.description.is_empty() { " — " (study.description) }
                                " " span.muted { "(" (plural(study.series, "series", "series")) ", " (plural(study.instances, "file", "files")) ")" }
                            }
                            @if let Some(list) = by_study.get(&study.id) { (series_table(dataset_id, list)) }
                        }
                    }
                }
            }
        }
    }
}

/// The full page of one dataset (also shown again, with a notice, after a refused change).
async fn dataset_view(
    state: &AppState,
    caller: &PageCaller,
    source: &str,
    id: i64,
    query: &DatasetQuery,
    notice: Option<Notice>,
) -> Result<Markup, ApiError> {
    let ctx = caller.0.context(source);
    let view = datasets::readable(state, &ctx, id).await?;
    let dataset = &view.dataset;
    let modality = blank(query.modality.as_deref());
    let text = blank(query.q.as_deref());
    let filtered = modality.is_some() || text.is_some();
    let series = datasets::series_list(
        state,
        &ctx,
        id,
        SeriesFilter {
            modality,
            text,
            ..SeriesFilter::default()
        },
    )
    .await?;
    let studies = datasets::studies(state, &ctx, id, None).await?;
    let modalities: BTreeSet<String> = studies
        .iter()
        .flat_map(|s| s.modalities.split(['\\', ',']))
        .map(|m| m.trim().to_uppercase())
        .filter(|m| !m.is_empty())
        .collect();
    let uploads = if view.can_change {
        datasets::uploads(state, &ctx, id).await?
    } else {
        Vec::new()
    };
    let preparing = series.iter().any(|s| s.series.derived == "pending");
    let classes = if view.can_change {
        shareable_classes(state, caller).await?
    } else {
        Vec::new()
    };
    let mut share_choices = classes.clone();
    if let (Some(class_id), Some(name)) = (dataset.class_id, &dataset.class_name)
        && !share_choices.iter().any(|(c, _)| *c == class_id)
    {
        // A co-owner who does not teach the current class can keep it as it is.
        share_choices.push((class_id, name.clone()));
    }
    let content = html! {
        @if preparing {
            // Reload until every series is prepared; no script needed.
            meta http-equiv="refresh" content=(REFRESH_WHILE_PREPARING_S);
        }
        p { a href="/datasets" { "← Datasets" } }
        h1 #dataset-name { (dataset.name) }
        div.card #dataset-header {
            @if !dataset.description.is_empty() { p #dataset-description style="white-space:pre-line" { (dataset.description) } }
            table {
                tr { th { "Owner" } td #dataset-owner { (dataset.owner) } }
                tr { th { "Who can see it" } td #dataset-sharing { (sharing_text(dataset)) } }
                tr { th { "Contents" } td #dataset-counts {
                    (plural(dataset.patients, "patient", "patients")) " · " (plural(dataset.studies, "study", "studies")) " · "
                    (plural(dataset.series, "series", "series")) " · " (plural(dataset.instances, "file", "files")) " · " (size_text(dataset.size_bytes))
                } }
                tr { th { "Created" } td { (human(dataset.created_at)) } }
            }
            @if !view.can_change {
                p.muted #read-only { "You can look at this dataset and download from it, but not change it (read-only)." }
            }
        }
        @if view.can_change { (upload_forms(caller, id)) }
        h2 { "Images" }
        @if preparing { p.notice.ok role="status" #preparing { "Some series are still being prepared (pictures, volume check, NIfTI file). This page reloads by itself until they are ready." } }
        (search_form(id, &modalities, query))
        (browse(id, &studies, &series, filtered, view.can_change))
        @if view.can_change {
            @if !uploads.is_empty() {
                h2 { "Uploads" }
                table #uploads {
                    thead { tr { th { "When" } th { "By" } th { "Files received" } th { "Imported" } th { "Skipped" } th {} } }
                    tbody {
                        @for upload in uploads.iter().take(50) {
                            tr {
                                td { (human(upload.created_at)) }
                                td { (upload.username) }
                                td { (upload.received) }
                                td { (upload.imported) }
                                td { (upload.skipped) }
                                td { a href={"/datasets/" (id) "/uploads/" (upload.id)} { "Report" } }
                            }
                        }
                    }
                }
            }
            h2 { "Settings" }
            form.card #change-dataset method="post" action={"/datasets/" (id)} {
                (csrf_field(caller))
                label for="change_name" { "Name" }
                input #change_name type="text" name="name" value=(dataset.name) required maxlength="120";
                label for="change_description" { "Description" }
                textarea #change_description name="description" maxlength="2000" { (dataset.description) }
                label for="change_share" { "Who can see it" }
                (share_select("change_share", &share_choices, dataset.class_id))
                p { button type="submit" { "Save changes" } }
            }
            div.card #delete {
                p { "Deleting the dataset removes all its images for everyone" @if let Some(class) = &dataset.class_name { ", the students of " (class) " included" } ". It cannot be undone." }
                a.button style="background:var(--danger)" href={"/datasets/" (id) "/delete"} { "Delete this dataset…" }
            }
        }
    };
    Ok(page(caller, "/datasets", &dataset.name, notice, content))
}

pub async fn dataset_page(
    State(state): State<AppState>,
    ClientAddr(source): ClientAddr,
    caller: PageCaller,
    PagePath(id): PagePath<i64>,
    PageQuery(query): PageQuery<DatasetQuery>,
) -> Result<Markup, PageError> {
    let notice = notice_for(query.done.as_deref());
    Ok(dataset_view(&state, &caller, &source, id, &query, notice).await?)
}

#[derive(Deserialize)]
pub struct ChangeForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    share: String,
}

pub async fn dataset_update(
    State(state): State<AppState>,
    ClientAddr(source): ClientAddr,
    caller: PageCaller,
    PagePath(id): PagePath<i64>,
    PageForm(form): PageForm<ChangeForm>,
) -> Result<Response, PageError> {
    caller.check_csrf(&form.csrf)?;
    let changed = match parse_share(&form.share) {
        Ok(class) => {
            datasets::update(
                &state,
                &caller.0.context(&source),
                id,
                DatasetChange {
                    name: Some(form.name),
                    description: Some(form.description),
                    class: Some(class),
                    keep_originals: None,
                },
            )
            .await
        }
        Err(error) => Err(error),
    };
    match changed {
        Ok(_) => Ok(Redirect::to(&format!("/datasets/{id}?done=changed")).into_response()),
        Err(error) if refused_form(&error) => {
            let status = error.status;
            let content = dataset_view(
                &state,
                &caller,
                &source,
                id,
                &DatasetQuery::default(),
                Some(Notice::Error(error.message)),
            )
            .await?;
            Ok((status, content).into_response())
        }
        Err(error) => Err(error.into()),
    }
}

pub async fn dataset_delete_page(
    State(state): State<AppState>,
    ClientAddr(source): ClientAddr,
    caller: PageCaller,
    PagePath(id): PagePath<i64>,
) -> Result<Markup, PageError> {
    let dataset =
        datasets::changeable(&state, &caller.0.context(&source), id, "dataset.delete").await?;
    let content = html! {
        p { a href={"/datasets/" (id)} { "← Back to the dataset" } }
        h1 { "Delete " (dataset.name) "?" }
        div.card #confirm-delete {
            p { "This removes " (plural(dataset.patients, "patient", "patients")) ", " (plural(dataset.series, "series", "series")) " and "
                (plural(dataset.instances, "file", "files")) " (" (size_text(dataset.size_bytes)) ") for everyone"
                @if let Some(class) = &dataset.class_name { ", the students of the class " (class) " included" } "." }
            p { strong { "It cannot be undone." } " Workloads that already copied files keep their copies." }
            form method="post" action={"/datasets/" (id) "/delete"} {
                (csrf_field(&caller))
                button.danger type="submit" { "Yes, delete this dataset" }
                " " a href={"/datasets/" (id)} { "No, keep it" }
            }
        }
    };
    Ok(page(
        &caller,
        "/datasets",
        &format!("Delete {}", dataset.name),
        None,
        content,
    ))
}

#[derive(Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

pub async fn dataset_delete(
    State(state): State<AppState>,
    ClientAddr(source): ClientAddr,
    caller: PageCaller,
    PagePath(id): PagePath<i64>,
    PageForm(form): PageForm<CsrfForm>,
) -> Result<Response, PageError> {
    caller.check_csrf(&form.csrf)?;
    datasets::delete(&state, &caller.0.context(&source), id).await?;
    Ok(Redirect::to("/datasets?done=deleted").into_response())
}

/// A series thumbnail for pages (the API's needs a bearer token; this one the session cookie).
pub async fn series_thumbnail(
    State(state): State<AppState>,
    ClientAddr(source): ClientAddr,
    caller: PageCaller,
    PagePath((id, series_id)): PagePath<(i64, i64)>,
) -> Result<Response, PageError> {
    let ctx = caller.0.context(&source);
    let series = datasets::readable_series(&state, &ctx, series_id).await?;
    if series.dataset_id != id {
        return Err(ApiError::not_found("this dataset has no such series").into());
    }
    let png = datasets::thumbnail(&state, &ctx, series_id).await?;
    Ok(crate::api::datasets::thumbnail_response(png))
}

// ------------------------------------------------------------------------------------------
// Uploads and their reports
// ------------------------------------------------------------------------------------------

/// An upload refused for what was sent (no file, too large, unreadable): a page that says
/// why and leads back to the dataset.
fn upload_failed(caller: &PageCaller, id: i64, error: ApiError) -> Response {
    let content = html! {
        h1 { "The upload did not work" }
        div.card {
            p { "Nothing was imported." }
            p { a.button href={"/datasets/" (id)} { "Back to the dataset" } " and try again." }
        }
    };
    (
        error.status,
        page(
            caller,
            "/datasets",
            "Upload did not work",
            Some(Notice::Error(error.message)),
            content,
        ),
    )
        .into_response()
}

/// Receives an upload from the dataset page's forms: the CSRF value comes first, then the
/// files, spooled to disk and imported like the API's uploads; answers with the report.
pub async fn dataset_upload(
    State(state): State<AppState>,
    ClientAddr(source): ClientAddr,
    caller: PageCaller,
    PagePath(id): PagePath<i64>,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Response, PageError> {
    let ctx = caller.0.context(&source);
    let imaging = datasets::imaging(&state)?.clone();
    // Refuse before reading a byte of an upload the caller may not make.
    datasets::changeable(&state, &ctx, id, "dataset.upload").await?;
    let mut multipart = match multipart {
        Ok(multipart) => multipart,
        Err(_) => {
            return Ok(upload_failed(
                &caller,
                id,
                ApiError::bad_request(
                    "invalid_upload",
                    "the upload could not be read; choose files with the form on the dataset page and press Upload",
                ),
            ));
        }
    };
    // Forms put the CSRF field first, so it is checked before any file is read.
    let csrf = match multipart.next_field().await {
        Ok(Some(field)) if field.name() == Some("csrf") => field.text().await.unwrap_or_default(),
        _ => String::new(),
    };
    caller.check_csrf(&csrf)?;
    let (_spool, files, label_of) = match spool_multipart(&imaging, &mut multipart).await {
        Ok(spooled) => spooled,
        Err(error) if refused_form(&error) => return Ok(upload_failed(&caller, id, error)),
        Err(error) => return Err(error.into()),
    };
    if files.iter().all(|file| file.size == 0) {
        return Ok(upload_failed(
            &caller,
            id,
            ApiError::bad_request(
                "invalid_upload",
                "no file was chosen, or the chosen files are empty; choose files, a folder or a zip file and press Upload",
            ),
        ));
    }
    match datasets::ingest::ingest(&state, &ctx, id, files, label_of).await {
        Ok(report) => Ok(
            Redirect::to(&format!("/datasets/{id}/uploads/{}", report.upload_id)).into_response(),
        ),
        Err(error) if refused_form(&error) => Ok(upload_failed(&caller, id, error)),
        Err(error) => Err(error.into()),
    }
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn count(value: &Value) -> u64 {
    value.as_u64().unwrap_or(0)
}

/// What de-identification did over an upload.
fn deidentification_section(deid: &Value) -> Markup {
    let removed = strings(&deid["removed"]);
    let replaced = strings(&deid["replaced"]);
    let emptied = strings(&deid["emptied"]);
    let list = |items: &[String]| {
        if items.is_empty() {
            "none".to_string()
        } else {
            items.join(", ")
        }
    };
    html! {
        h2 { "De-identification" }
        div.card #deidentification {
            @if deid["applied"].as_bool() == Some(true) {
                p { "Every DICOM file was de-identified before it was stored, following the DICOM Basic Application Confidentiality Profile (PS3.15): details that identify the patient, the staff or the institution were removed or replaced with pseudonyms." }
                table {
                    tr { th { "Attributes removed" } td #deid-removed { (list(&removed)) } }
                    tr { th { "Attributes replaced" } td #deid-replaced { (list(&replaced)) } }
                    @if !emptied.is_empty() { tr { th { "Attributes emptied" } td #deid-emptied { (list(&emptied)) } } }
                    tr { th { "Identifiers (UIDs) replaced" } td #deid-uids { (count(&deid["uids_replaced"])) } }
                    tr { th { "Private (vendor) attributes removed" } td #deid-private { (count(&deid["private_tags_removed"])) } }
                    tr { th { "Dates" } td #deid-dates { (deid["dates"].as_str().unwrap_or("")) } }
                    @if count(&deid["other_files_cleaned"]) > 0 {
                        tr { th { "NIfTI and pictures cleaned" } td { (count(&deid["other_files_cleaned"])) " files: their descriptions and metadata were removed" } }
                    }
                }
            } @else {
                p.notice.error role="alert" #deid-off { "De-identification is turned off on this server: the files were stored as they were uploaded. Do not upload data that identifies patients; ask your administrator." }
            }
        }
    }
}

fn burned_in_warning(files: &[String]) -> Markup {
    html! {
        @if !files.is_empty() {
            div.notice role="alert" #burned-in style="background:#fffaeb;border-color:#fedf89;color:#b54708" {
                strong { "Check these images for text burned into the pixels. " }
                "Names, dates or IDs written into the picture itself (common in ultrasound, screenshots and scanned documents) cannot be removed automatically. Look at "
                (plural(files.len() as i64, "file", "files"))
                " below in the viewer; if any shows identifying text, delete it from the dataset."
                ul {
                    @for name in files.iter().take(REPORT_LIST_LIMIT) { li { (name) } }
                    @if files.len() > REPORT_LIST_LIMIT { li { "and " (files.len() - REPORT_LIST_LIMIT) " more" } }
                }
            }
        }
    }
}

pub async fn upload_report_page(
    State(state): State<AppState>,
    ClientAddr(source): ClientAddr,
    caller: PageCaller,
    PagePath((id, upload_id)): PagePath<(i64, i64)>,
) -> Result<Markup, PageError> {
    let ctx = caller.0.context(&source);
    let dataset = datasets::changeable(&state, &ctx, id, "dataset.uploads").await?;
    let upload = state
        .store
        .upload(upload_id)
        .await
        .map_err(ApiError::from)?;
    if upload.dataset_id != id {
        return Err(ApiError::not_found(
            "this dataset has no such upload; open the report from the dataset's list of uploads",
        )
        .into());
    }
    let report: Value = serde_json::from_str(&upload.report).unwrap_or(Value::Null);
    let skipped: Vec<(String, String)> = report["skipped"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|s| {
                    (
                        s["name"].as_str().unwrap_or("").to_string(),
                        s["reason"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let imported = count(&report["imported"]);
    let already = count(&report["already_present"]);
    let mut series = Vec::new();
    for series_id in report["series"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_i64)
        .take(200)
    {
        // A series deleted since (with its dataset) is simply not listed.
        if let Ok(found) = state.store.series(series_id).await
            && found.dataset_id == id
        {
            series.push(SeriesView::new(found, Vec::new()));
        }
    }
    let preparing = series.iter().any(|s| s.series.derived == "pending");
    let burned_in = strings(&report["deidentification"]["burned_in_annotation_suspected"]);
    let content = html! {
        @if preparing { meta http-equiv="refresh" content=(REFRESH_WHILE_PREPARING_S); }
        p { a href={"/datasets/" (id)} { "← " (dataset.name) } }
        h1 #report-title { "Upload report" }
        p.muted { "Uploaded by " (upload.username) ", " (human(upload.created_at)) "." }
        @if imported == 0 && already == 0 {
            p.notice.error role="alert" #nothing-imported { "Nothing was imported. The list below says why each file was skipped; fix what it says and upload again." }
        }
        div.card #report-counts {
            table {
                tr { th { "Files received" } td #count-received { (count(&report["received"])) } }
                tr { th { "Imported" } td #count-imported { (imported) } }
                @if already > 0 { tr { th { "Already in the dataset" } td #count-already { (already) " (identical files, nothing changed)" } } }
                tr { th { "Skipped" } td #count-skipped { (skipped.len()) } }
            }
        }
        (burned_in_warning(&burned_in))
        h2 { "Skipped files" }
        @if skipped.is_empty() {
            p.muted #no-skipped { "No file was skipped." }
        } @else {
            table #skipped {
                thead { tr { th { "File" } th { "Why it was skipped" } } }
                tbody {
                    @for (name, reason) in skipped.iter().take(REPORT_LIST_LIMIT) {
                        tr { td { code { (name) } } td { (reason) } }
                    }
                }
            }
            @if skipped.len() > REPORT_LIST_LIMIT { p.muted { "and " (skipped.len() - REPORT_LIST_LIMIT) " more." } }
        }
        (deidentification_section(&report["deidentification"]))
        @if report["originals_kept"].as_bool() == Some(true) {
            p.notice role="status" #originals-kept style="background:#fffaeb;border-color:#fedf89;color:#b54708" {
                "The original (identifiable) files were kept as well, because an administrator chose so for this dataset. Only administrators can reach them."
            }
        }
        @if !series.is_empty() {
            h2 { "Series that received files" }
            @if preparing { p.muted { "Some series are still being prepared; this page reloads by itself." } }
            @let list: Vec<&SeriesView> = series.iter().collect();
            (series_table(id, &list))
        }
        p { a.button #back-to-dataset href={"/datasets/" (id)} { "Back to the dataset" } }
    };
    Ok(page(&caller, "/datasets", "Upload report", None, content))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn dicom_dates_are_shown_with_dashes() {
        assert_eq!(dicom_date("20240131"), "2024-01-31");
        assert_eq!(dicom_date(""), "");
        assert_eq!(dicom_date("2024"), "2024");
    }

    #[test]
    fn sizes_are_shown_in_decimal_units() {
        assert_eq!(size_text(512), "512 bytes");
        assert_eq!(size_text(1_500_000), "1.5 MB");
        assert_eq!(size_text(2_000_000_000), "2.0 GB");
    }

    #[test]
    fn a_volume_shows_its_three_dimensions_and_spacings() {
        let summary = json!({"rows": 128, "columns": 120, "pixel_spacing": [0.5, 0.7],
            "volume": {"ok": true, "dims": [120, 128, 30], "spacing": [0.7, 0.5, 1.25]}});
        assert_eq!(dimensions_text(&summary), "120 × 128 × 30");
        assert_eq!(spacing_text(&summary), "0.7 × 0.5 × 1.25 mm");
    }

    #[test]
    fn images_that_are_not_a_volume_show_their_pixel_grid() {
        let summary = json!({"rows": 128, "columns": 120, "pixel_spacing": [0.5, 0.7],
            "volume": {"ok": false, "reason": "missing slices"}});
        assert_eq!(dimensions_text(&summary), "120 × 128");
        assert_eq!(spacing_text(&summary), "0.7 × 0.5 mm");
        assert_eq!(dimensions_text(&json!(null)), "");
    }

    #[test]
    fn a_share_choice_is_private_or_a_class_id() {
        assert_eq!(parse_share("").unwrap(), None);
        assert_eq!(parse_share(" 7 ").unwrap(), Some(7));
        assert!(parse_share("class").is_err());
    }
}
