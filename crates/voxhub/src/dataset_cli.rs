//! The command line for imaging datasets: `voxhub dataset list|create|show|upload|series|
//! download-nifti|share|delete`, over the server's API. `upload` walks folders, sends the
//! files in batches of multipart requests with a progress bar, and sums up the servers'
//! ingest reports: what was imported, what was already there, what was skipped and why,
//! and what de-identification did.

use crate::cli::{print_json, print_table, s};
use crate::client::{Client, query_escape};
use anyhow::{Context, Result, bail};
use clap::Subcommand;
use reqwest::StatusCode;
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Most files in one upload request.
const BATCH_FILES: usize = 64;
/// Most bytes in one upload request (a single larger file goes alone).
const BATCH_BYTES: u64 = 64 * 1024 * 1024;
/// How long one upload request may take (the server de-identifies every file in it).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// Requests failing one after the other before the upload stops.
const MAX_FAILED_REQUESTS: usize = 3;

#[derive(Subcommand)]
pub enum DatasetCommand {
    /// Datasets you may see: your own and those shared with your classes (admins: all).
    List,
    /// Create a dataset, private or shared read-only with a class you teach.
    Create {
        name: String,
        #[arg(long, default_value = "")]
        description: String,
        /// Share read-only with this class id (see `voxhub class list`).
        #[arg(long)]
        class: Option<i64>,
    },
    /// A dataset's patients, studies and series.
    ///
    /// Each series with its modality, images, dimensions, and whether it forms a volume (and
    /// if not, why).
    Show {
        /// The dataset id (see `voxhub dataset list`).
        id: i64,
    },
    /// Upload files, folders (walked recursively) and zips of DICOM, NIfTI, PNG or JPEG.
    ///
    /// Files go in requests of at most 64 files or 64 MiB, with a progress bar on a terminal.
    /// File names are sent relative to the folder given, so for NIfTI files and pictures its
    /// first sub-folder becomes the patient and each folder a series. Hidden files are left
    /// out. Exit code 0 when something was imported or was already there, 1 when every file
    /// was skipped, 2 when something could not be uploaded.
    Upload {
        /// The dataset id (see `voxhub dataset list`).
        id: i64,
        /// Files, folders and zips.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// The NIfTI files are label masks of this image series (its id).
        #[arg(long)]
        label_of: Option<i64>,
    },
    /// Series of a dataset, with their dimensions and whether they form a volume.
    Series {
        /// The dataset id (see `voxhub dataset list`).
        id: i64,
        /// Only this modality: CT, MR, CR, DX, US…
        #[arg(long)]
        modality: Option<String>,
        /// Text found in the series or study description, body part, patient pseudonym or UIDs.
        #[arg(long)]
        search: Option<String>,
    },
    /// Download a series that forms a volume as NIfTI (.nii.gz).
    DownloadNifti {
        /// The series id (see `voxhub dataset series`).
        series_id: i64,
        /// File to write, readable by you only (default: the name the server gives, in the
        /// current folder).
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Share a dataset read-only with a class (its teachers and students), or make it
    /// private again.
    Share {
        /// The dataset id (see `voxhub dataset list`).
        id: i64,
        /// The class id (see `voxhub class list`).
        #[arg(long, required_unless_present = "private", conflicts_with = "private")]
        class: Option<i64>,
        /// Keep the dataset to yourself.
        #[arg(long)]
        private: bool,
    },
    /// Delete a dataset with all its files, for everyone it is shared with.
    Delete {
        /// The dataset id (see `voxhub dataset list`).
        id: i64,
        /// Confirm the deletion.
        #[arg(long)]
        yes: bool,
    },
}

pub async fn dataset(command: DatasetCommand, client: Client, json: bool) -> Result<ExitCode> {
    match command {
        DatasetCommand::List => {
            let datasets = client.get("/api/v1/datasets").await?;
            if json {
                print_json(&datasets);
            } else {
                print_table(
                    &[
                        "id",
                        "name",
                        "owner",
                        "shared with",
                        "patients",
                        "series",
                        "files",
                        "size",
                        "you may",
                    ],
                    dataset_rows(&datasets),
                );
            }
        }
        DatasetCommand::Create {
            name,
            description,
            class,
        } => {
            let view = client
                .post(
                    "/api/v1/datasets",
                    json!({"name": name, "description": description, "class": class}),
                )
                .await?;
            if json {
                print_json(&view);
            } else {
                println!(
                    "Dataset {} \"{}\" created ({}).",
                    s(&view["id"]),
                    s(&view["name"]),
                    sharing(&view)
                );
                println!(
                    "Upload into it with: voxhub dataset upload {} FOLDER-OR-FILES",
                    s(&view["id"])
                );
            }
        }
        DatasetCommand::Show { id } => show(&client, id, json).await?,
        DatasetCommand::Upload {
            id,
            paths,
            label_of,
        } => return upload(&client, id, &paths, label_of, json).await,
        DatasetCommand::Series {
            id,
            modality,
            search,
        } => {
            let mut query = Vec::new();
            if let Some(modality) = modality {
                query.push(format!("modality={}", query_escape(&modality)));
            }
            if let Some(search) = search {
                query.push(format!("q={}", query_escape(&search)));
            }
            let path = if query.is_empty() {
                format!("/api/v1/datasets/{id}/series")
            } else {
                format!("/api/v1/datasets/{id}/series?{}", query.join("&"))
            };
            let series = client.get(&path).await?;
            if json {
                print_json(&series);
            } else {
                let rows = series
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|r| {
                        vec![
                            s(&r["id"]),
                            s(&r["patient_pseudonym"]),
                            s(&r["series_number"]),
                            s(&r["modality"]),
                            s(&r["description"]),
                            s(&r["instances"]),
                            dimensions(r),
                            volume_text(r),
                        ]
                    })
                    .collect();
                print_table(
                    &[
                        "id",
                        "patient",
                        "number",
                        "modality",
                        "description",
                        "files",
                        "dims",
                        "volume",
                    ],
                    rows,
                );
            }
        }
        DatasetCommand::DownloadNifti { series_id, output } => {
            let mut response = client
                .raw(
                    reqwest::Method::GET,
                    &format!("/api/v1/series/{series_id}/nifti"),
                    None,
                    Some(REQUEST_TIMEOUT),
                )
                .await?;
            let output = output.unwrap_or_else(|| {
                PathBuf::from(
                    attachment_name(response.headers())
                        .unwrap_or_else(|| format!("series-{series_id}.nii.gz")),
                )
            });
            let folder = match output.parent() {
                Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
                _ => PathBuf::from("."),
            };
            // Written beside the target and renamed at the end, so an interrupted download
            // never leaves a truncated .nii.gz under the name asked for.
            let mut partial = tempfile::NamedTempFile::new_in(&folder)
                .with_context(|| format!("cannot write in {}", folder.display()))?;
            let mut total = 0u64;
            while let Some(chunk) = response
                .chunk()
                .await
                .context("the download broke off; try again")?
            {
                partial.write_all(&chunk)?;
                total += chunk.len() as u64;
            }
            partial.flush()?;
            partial
                .persist(&output)
                .with_context(|| format!("cannot write {}", output.display()))?;
            if json {
                print_json(&json!({"series_id": series_id, "file": output, "size_bytes": total}));
            } else {
                println!(
                    "Saved series {series_id} as {} ({}).",
                    output.display(),
                    human_bytes(total)
                );
            }
        }
        DatasetCommand::Share { id, class, private } => {
            let class = if private { None } else { class };
            let view = client
                .call(
                    reqwest::Method::PATCH,
                    &format!("/api/v1/datasets/{id}"),
                    Some(json!({ "class": class })),
                )
                .await?;
            if json {
                print_json(&view);
            } else {
                println!(
                    "Dataset {id} \"{}\" is now {}.",
                    s(&view["name"]),
                    sharing(&view)
                );
            }
        }
        DatasetCommand::Delete { id, yes } => {
            let view = client.get(&format!("/api/v1/datasets/{id}")).await?;
            if !yes {
                bail!(
                    "deleting dataset {id} \"{}\" removes its {} series and {} files for everyone it is shared with; run `voxhub dataset delete {id} --yes` to do it",
                    s(&view["name"]),
                    s(&view["series"]),
                    s(&view["instances"])
                );
            }
            client
                .call(
                    reqwest::Method::DELETE,
                    &format!("/api/v1/datasets/{id}"),
                    None,
                )
                .await?;
            if json {
                print_json(&json!({"deleted": id}));
            } else {
                println!("Dataset {id} \"{}\" was deleted.", s(&view["name"]));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn sharing(view: &Value) -> String {
    match (view["class_id"].as_i64(), view["class_name"].as_str()) {
        (Some(id), Some(name)) => format!("shared read-only with class {name} ({id})"),
        (Some(id), None) => format!("shared read-only with class {id}"),
        _ => "private".into(),
    }
}

fn dataset_rows(datasets: &Value) -> Vec<Vec<String>> {
    datasets
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| {
            vec![
                s(&d["id"]),
                s(&d["name"]),
                s(&d["owner"]),
                d["class_name"]
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| "private".into()),
                s(&d["patients"]),
                s(&d["series"]),
                s(&d["instances"]),
                human_bytes(d["size_bytes"].as_u64().unwrap_or_default()),
                if d["can_change"] == true {
                    "change".into()
                } else {
                    "read".into()
                },
            ]
        })
        .collect()
}

/// `columns x rows x slices` of a volume, or `columns x rows` of its images.
fn dimensions(series: &Value) -> String {
    let summary = &series["summary"];
    if let Some(dims) = summary["volume"]["dims"].as_array() {
        return dims.iter().map(s).collect::<Vec<_>>().join("x");
    }
    match (summary["columns"].as_u64(), summary["rows"].as_u64()) {
        (Some(columns), Some(rows)) => format!("{columns}x{rows}"),
        _ => "-".into(),
    }
}

/// Whether a series forms a volume, and if not, why.
fn volume_text(series: &Value) -> String {
    if series["derived"] == "pending" {
        return "being checked".into();
    }
    let volume = &series["summary"]["volume"];
    if volume["ok"] == true {
        return "yes".into();
    }
    match volume["reason"]
        .as_str()
        .or(series["summary"]["error"].as_str())
    {
        Some(reason) if !reason.is_empty() => format!("no: {reason}"),
        _ => "no".into(),
    }
}

async fn show(client: &Client, id: i64, json: bool) -> Result<()> {
    let dataset = client.get(&format!("/api/v1/datasets/{id}")).await?;
    let patients = client
        .get(&format!("/api/v1/datasets/{id}/patients"))
        .await?;
    let studies = client
        .get(&format!("/api/v1/datasets/{id}/studies"))
        .await?;
    let series = client.get(&format!("/api/v1/datasets/{id}/series")).await?;
    if json {
        print_json(
            &json!({"dataset": dataset, "patients": patients, "studies": studies, "series": series}),
        );
        return Ok(());
    }
    println!(
        "{} (id {id}), owned by {}, {}",
        s(&dataset["name"]),
        s(&dataset["owner"]),
        sharing(&dataset)
    );
    if let Some(description) = dataset["description"].as_str().filter(|d| !d.is_empty()) {
        println!("{description}");
    }
    println!(
        "{} patients, {} studies, {} series, {} files, {}",
        s(&dataset["patients"]),
        s(&dataset["studies"]),
        s(&dataset["series"]),
        s(&dataset["instances"]),
        human_bytes(dataset["size_bytes"].as_u64().unwrap_or_default())
    );
    let mut series_of: BTreeMap<i64, Vec<&Value>> = BTreeMap::new();
    for one in series.as_array().into_iter().flatten() {
        series_of
            .entry(one["study_id"].as_i64().unwrap_or_default())
            .or_default()
            .push(one);
    }
    for patient in patients.as_array().into_iter().flatten() {
        println!();
        println!(
            "patient {}{}",
            s(&patient["pseudonym"]),
            patient["sex"]
                .as_str()
                .filter(|x| !x.is_empty())
                .map(|x| format!(" ({x})"))
                .unwrap_or_default()
        );
        for study in studies
            .as_array()
            .into_iter()
            .flatten()
            .filter(|t| t["patient_id"] == patient["id"])
        {
            let date = study["study_date"]
                .as_str()
                .filter(|d| d.len() == 8)
                .map(|d| format!("{}-{}-{}", &d[..4], &d[4..6], &d[6..]))
                .unwrap_or_else(|| "(no date)".into());
            let description = study["description"].as_str().unwrap_or_default();
            println!(
                "  study {date}{}{} ({} series)",
                if description.is_empty() { "" } else { " " },
                description,
                s(&study["series"])
            );
            let key = study["id"].as_i64().unwrap_or_default();
            for one in series_of.get(&key).into_iter().flatten() {
                println!(
                    "    series {} #{} {}{}: {} images, {}, volume: {}",
                    s(&one["id"]),
                    s(&one["series_number"]),
                    one["modality"]
                        .as_str()
                        .filter(|m| !m.is_empty())
                        .unwrap_or(one["kind"].as_str().unwrap_or("-")),
                    one["description"]
                        .as_str()
                        .filter(|d| !d.is_empty())
                        .map(|d| format!(" \"{d}\""))
                        .unwrap_or_default(),
                    s(&one["instances"]),
                    dimensions(one),
                    volume_text(one)
                );
            }
        }
    }
    Ok(())
}

/// The file name of a `Content-Disposition: attachment; filename="…"` answer, without folders.
fn attachment_name(headers: &reqwest::header::HeaderMap) -> Option<String> {
    let value = headers
        .get(reqwest::header::CONTENT_DISPOSITION)?
        .to_str()
        .ok()?;
    let name = value.split("filename=").nth(1)?.trim().trim_matches('"');
    let name = Path::new(name).file_name()?.to_str()?.to_string();
    (!name.is_empty() && !name.starts_with('.')).then_some(name)
}

pub fn human_bytes(bytes: u64) -> String {
    const MIB: f64 = 1024.0 * 1024.0;
    match bytes {
        b if b < 1024 => format!("{b} B"),
        b if (b as f64) < MIB => format!("{:.1} KiB", b as f64 / 1024.0),
        b if (b as f64) < MIB * 1024.0 => format!("{:.1} MiB", b as f64 / MIB),
        b => format!("{:.2} GiB", b as f64 / MIB / 1024.0),
    }
}

// ---------------------------------------------------------------------------------------
// Upload
// ---------------------------------------------------------------------------------------

/// A local file to send, and the name the server gets (relative to the folder given).
#[derive(Debug, Clone, PartialEq, Eq)]
struct LocalFile {
    name: String,
    path: PathBuf,
    size: u64,
}

/// A file that was not imported, and why.
#[derive(Debug, Clone, Serialize)]
struct Skip {
    name: String,
    reason: String,
}

/// What de-identification did, over every request of the upload.
#[derive(Debug, Default, Serialize)]
struct DeidSummary {
    applied: bool,
    removed: BTreeSet<String>,
    replaced: BTreeSet<String>,
    emptied: BTreeSet<String>,
    uids_replaced: u64,
    private_tags_removed: u64,
    dates: String,
    burned_in_annotation_suspected: Vec<String>,
    other_files_cleaned: u64,
}

/// The whole upload: the servers' reports summed up, and what never reached the server.
#[derive(Debug, Default, Serialize)]
struct UploadSummary {
    dataset_id: i64,
    /// The upload ids (one per request), for `GET /api/v1/uploads/{id}`.
    uploads: Vec<i64>,
    requests: usize,
    /// Local files found (a zip counts once).
    files: usize,
    bytes: u64,
    /// Files the server received, each entry of a zip counted.
    received: u64,
    imported: u64,
    already_present: u64,
    skipped: Vec<Skip>,
    /// Files that did not reach the server because of an error (see `errors`).
    not_uploaded: Vec<Skip>,
    hidden_files_left_out: usize,
    series: BTreeSet<i64>,
    deidentification: DeidSummary,
    originals_kept: bool,
    errors: Vec<String>,
}

impl UploadSummary {
    fn add_report(&mut self, report: &Value) {
        let count = |v: &Value| v.as_u64().unwrap_or_default();
        if let Some(id) = report["upload_id"].as_i64() {
            self.uploads.push(id);
        }
        self.received += count(&report["received"]);
        self.imported += count(&report["imported"]);
        self.already_present += count(&report["already_present"]);
        for skip in report["skipped"].as_array().into_iter().flatten() {
            self.skipped.push(Skip {
                name: s(&skip["name"]),
                reason: s(&skip["reason"]),
            });
        }
        self.series.extend(
            report["series"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_i64),
        );
        self.originals_kept |= report["originals_kept"] == true;
        let deid = &report["deidentification"];
        let first = self.uploads.len() <= 1;
        let ours = &mut self.deidentification;
        // Applied only when every request's files were de-identified.
        ours.applied = deid["applied"] == true && (first || ours.applied);
        let names = |key: &str| -> Vec<String> {
            deid[key]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        };
        ours.removed.extend(names("removed"));
        ours.replaced.extend(names("replaced"));
        ours.emptied.extend(names("emptied"));
        ours.burned_in_annotation_suspected
            .extend(names("burned_in_annotation_suspected"));
        ours.uids_replaced += count(&deid["uids_replaced"]);
        ours.private_tags_removed += count(&deid["private_tags_removed"]);
        ours.other_files_cleaned += count(&deid["other_files_cleaned"]);
        if ours.dates.is_empty() {
            ours.dates = deid["dates"].as_str().unwrap_or_default().to_string();
        }
    }

    /// 0 when something was imported or already there, 1 when everything was skipped, 2
    /// when something could not be uploaded.
    fn exit_code(&self) -> u8 {
        if !self.errors.is_empty() || !self.not_uploaded.is_empty() {
            2
        } else if self.imported + self.already_present > 0 {
            0
        } else {
            1
        }
    }
}

/// The files to send: each file as its name, each folder walked (in name order) with names
/// relative to it. Hidden files and folders (`.DS_Store`, `.git`) are left out and counted.
fn collect_files(paths: &[PathBuf]) -> Result<(Vec<LocalFile>, usize)> {
    let mut files = Vec::new();
    let mut hidden = 0;
    for path in paths {
        let meta = std::fs::metadata(path).with_context(|| {
            format!(
                "cannot read {}; check the path (give files, folders or zips)",
                path.display()
            )
        })?;
        if meta.is_dir() {
            let mut visited = HashSet::new();
            walk(path, "", &mut visited, &mut files, &mut hidden)?;
        } else {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_else(|| path.display().to_string());
            files.push(LocalFile {
                name,
                path: path.clone(),
                size: meta.len(),
            });
        }
    }
    Ok((files, hidden))
}

fn walk(
    dir: &Path,
    prefix: &str,
    visited: &mut HashSet<PathBuf>,
    files: &mut Vec<LocalFile>,
    hidden: &mut usize,
) -> Result<()> {
    // A folder reached again through a symbolic link is not walked twice (no loops).
    let canonical = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    if !visited.insert(canonical) {
        return Ok(());
    }
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot list the folder {}", dir.display()))?
        .collect::<std::io::Result<_>>()
        .with_context(|| format!("cannot list the folder {}", dir.display()))?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let file_name = entry.file_name().to_string_lossy().to_string();
        if file_name.starts_with('.') {
            *hidden += 1;
            continue;
        }
        let path = entry.path();
        let name = format!("{prefix}{file_name}");
        // Follows symbolic links, like a person opening the folder would.
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            walk(&path, &format!("{name}/"), visited, files, hidden)?;
        } else if meta.is_file() {
            files.push(LocalFile {
                name,
                path,
                size: meta.len(),
            });
        }
    }
    Ok(())
}

/// Groups files into requests of at most [`BATCH_FILES`] files and [`BATCH_BYTES`] bytes; a
/// file larger than that goes alone.
fn batches(files: Vec<LocalFile>) -> VecDeque<Vec<LocalFile>> {
    let mut out = VecDeque::new();
    let mut current: Vec<LocalFile> = Vec::new();
    let mut bytes = 0u64;
    for file in files {
        if !current.is_empty() && (current.len() >= BATCH_FILES || bytes + file.size > BATCH_BYTES)
        {
            out.push_back(std::mem::take(&mut current));
            bytes = 0;
        }
        bytes += file.size;
        current.push(file);
    }
    if !current.is_empty() {
        out.push_back(current);
    }
    out
}

/// A `multipart/form-data` form: `label_of` when given, then one part `file` per file,
/// streamed from disk (a batch is never held in memory). Files that cannot be opened are
/// returned as skipped.
async fn upload_form(
    batch: &[LocalFile],
    label_of: Option<i64>,
) -> (reqwest::multipart::Form, usize, Vec<Skip>) {
    let mut form = reqwest::multipart::Form::new();
    if let Some(series) = label_of {
        form = form.text("label_of", series.to_string());
    }
    let mut parts = 0;
    let mut skipped = Vec::new();
    for file in batch {
        match tokio::fs::File::open(&file.path).await {
            Ok(opened) => {
                let part = reqwest::multipart::Part::stream_with_length(opened, file.size)
                    .file_name(file.name.clone());
                form = form.part("file", part);
                parts += 1;
            }
            Err(error) => skipped.push(Skip {
                name: file.name.clone(),
                reason: format!("could not be read on this computer: {error}"),
            }),
        }
    }
    (form, parts, skipped)
}

/// The message of an error answer, or its status.
fn error_message(status: StatusCode, answer: &Value) -> String {
    answer["error"]["message"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| format!("the server answered {status}"))
}

/// Progress on standard error: a bar redrawn in place on a terminal, otherwise a plain
/// line now and then (logs, CI).
struct Progress {
    terminal: bool,
    total_files: usize,
    total_bytes: u64,
    done_files: usize,
    done_bytes: u64,
    started: Instant,
    last_line: Option<Instant>,
}

impl Progress {
    fn new(total_files: usize, total_bytes: u64) -> Self {
        Self {
            terminal: std::io::stderr().is_terminal(),
            total_files,
            total_bytes,
            done_files: 0,
            done_bytes: 0,
            started: Instant::now(),
            last_line: None,
        }
    }

    fn text(&self) -> String {
        let elapsed = self.started.elapsed().as_secs_f64().max(0.001);
        let rate = self.done_bytes as f64 / elapsed;
        format!(
            "{}/{} files, {} of {} ({}/s)",
            self.done_files,
            self.total_files,
            human_bytes(self.done_bytes),
            human_bytes(self.total_bytes),
            human_bytes(rate as u64)
        )
    }

    /// Shows that a request of `files` files is on its way.
    fn sending(&mut self, files: usize) {
        if self.terminal {
            self.draw(&format!("sending {files} files"));
        }
    }

    fn advance(&mut self, files: usize, bytes: u64) {
        self.done_files += files;
        self.done_bytes += bytes;
        if self.terminal {
            self.draw("");
        } else if self
            .last_line
            .is_none_or(|at| at.elapsed() >= Duration::from_secs(5))
            || self.done_files == self.total_files
        {
            eprintln!("upload: {}", self.text());
            self.last_line = Some(Instant::now());
        }
    }

    fn draw(&self, note: &str) {
        const WIDTH: usize = 30;
        let fraction = if self.total_bytes == 0 {
            1.0
        } else {
            self.done_bytes as f64 / self.total_bytes as f64
        };
        let filled = ((fraction * WIDTH as f64) as usize).min(WIDTH);
        let mut stderr = std::io::stderr().lock();
        let _ = write!(
            stderr,
            "\r\x1b[2K[{}{}] {:>3}% {}{}{}",
            "#".repeat(filled),
            "-".repeat(WIDTH - filled),
            (fraction * 100.0) as u32,
            self.text(),
            if note.is_empty() { "" } else { " — " },
            note
        );
        let _ = stderr.flush();
    }

    fn finish(&self) {
        if self.terminal {
            let mut stderr = std::io::stderr().lock();
            let _ = write!(stderr, "\r\x1b[2K");
            let _ = stderr.flush();
        }
    }
}

async fn upload(
    client: &Client,
    dataset_id: i64,
    paths: &[PathBuf],
    label_of: Option<i64>,
    json: bool,
) -> Result<ExitCode> {
    match upload_all(client, dataset_id, paths, label_of).await {
        Ok(summary) => {
            if json {
                print_json(&serde_json::to_value(&summary)?);
            } else {
                print_summary(&summary, dataset_id);
            }
            Ok(ExitCode::from(summary.exit_code()))
        }
        Err(error) => {
            eprintln!("error: {error:#}");
            Ok(ExitCode::from(2))
        }
    }
}

/// Sends every file; fails only when nothing can be uploaded at all (no such dataset, not
/// allowed, no files); errors of single requests are in the summary.
async fn upload_all(
    client: &Client,
    dataset_id: i64,
    paths: &[PathBuf],
    label_of: Option<i64>,
) -> Result<UploadSummary> {
    let dataset = client
        .get(&format!("/api/v1/datasets/{dataset_id}"))
        .await?;
    if dataset["can_change"] != true {
        bail!(
            "dataset {dataset_id} \"{}\" is shared with you read-only; upload into a dataset of your own (voxhub dataset create NAME)",
            s(&dataset["name"])
        );
    }
    let (files, hidden) = collect_files(paths)?;
    if files.is_empty() {
        bail!(
            "there are no files to upload in {}{}",
            paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            if hidden > 0 {
                format!(" ({hidden} hidden files left out)")
            } else {
                String::new()
            }
        );
    }
    let mut summary = UploadSummary {
        dataset_id,
        files: files.len(),
        bytes: files.iter().map(|f| f.size).sum(),
        hidden_files_left_out: hidden,
        ..Default::default()
    };
    let mut progress = Progress::new(summary.files, summary.bytes);
    let mut queue = batches(files);
    let path = format!("/api/v1/datasets/{dataset_id}/files");
    let mut failed_in_a_row = 0;
    while let Some(batch) = queue.pop_front() {
        let batch_bytes: u64 = batch.iter().map(|f| f.size).sum();
        let (form, parts, unreadable) = upload_form(&batch, label_of).await;
        summary.skipped.extend(unreadable);
        if parts == 0 {
            progress.advance(batch.len(), batch_bytes);
            continue;
        }
        progress.sending(parts);
        summary.requests += 1;
        let answer = client.post_form(&path, form, REQUEST_TIMEOUT).await;
        match answer {
            Ok((status, report)) if status.is_success() => {
                failed_in_a_row = 0;
                summary.add_report(&report);
                progress.advance(batch.len(), batch_bytes);
            }
            Ok((StatusCode::PAYLOAD_TOO_LARGE, _)) if batch.len() > 1 => {
                // The server takes less at once than this request held: send halves.
                let mut first = batch;
                let second = first.split_off(first.len() / 2);
                queue.push_front(second);
                queue.push_front(first);
            }
            Ok((StatusCode::PAYLOAD_TOO_LARGE, answer)) => {
                summary.skipped.push(Skip {
                    name: batch[0].name.clone(),
                    reason: error_message(StatusCode::PAYLOAD_TOO_LARGE, &answer),
                });
                progress.advance(1, batch_bytes);
            }
            Ok((status, answer))
                if matches!(
                    status,
                    StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN | StatusCode::NOT_FOUND
                ) =>
            {
                // Every other request would be refused the same way.
                summary.errors.push(error_message(status, &answer));
                summary.not_uploaded.extend(not_uploaded(&batch, "refused"));
                for rest in queue.drain(..) {
                    summary.not_uploaded.extend(not_uploaded(&rest, "not sent"));
                }
                break;
            }
            other => {
                let message = match other {
                    Ok((status, answer)) => error_message(status, &answer),
                    Err(error) => format!("{error:#}"),
                };
                summary.errors.push(message);
                summary.not_uploaded.extend(not_uploaded(&batch, "failed"));
                progress.advance(batch.len(), batch_bytes);
                failed_in_a_row += 1;
                if failed_in_a_row >= MAX_FAILED_REQUESTS {
                    summary.errors.push(format!(
                        "stopped after {MAX_FAILED_REQUESTS} failed requests in a row; run the same command again later (files already uploaded are recognised)"
                    ));
                    for rest in queue.drain(..) {
                        summary.not_uploaded.extend(not_uploaded(&rest, "not sent"));
                    }
                    break;
                }
            }
        }
    }
    progress.finish();
    Ok(summary)
}

fn not_uploaded(batch: &[LocalFile], how: &str) -> Vec<Skip> {
    batch
        .iter()
        .map(|f| Skip {
            name: f.name.clone(),
            reason: format!("{how} (see the errors)"),
        })
        .collect()
}

fn print_summary(summary: &UploadSummary, dataset_id: i64) {
    let expanded = if summary.received as usize > summary.files {
        format!(
            "; with the zips' contents the server received {} files",
            summary.received
        )
    } else {
        String::new()
    };
    println!(
        "Sent {} files ({}) to dataset {dataset_id} in {} requests{expanded}.",
        summary.files,
        human_bytes(summary.bytes),
        summary.requests,
    );
    println!("  imported:        {}", summary.imported);
    println!("  already present: {}", summary.already_present);
    println!("  skipped:         {}", summary.skipped.len());
    print_skips(&summary.skipped);
    if summary.hidden_files_left_out > 0 {
        println!(
            "  hidden files left out: {} (names starting with a dot)",
            summary.hidden_files_left_out
        );
    }
    let deid = &summary.deidentification;
    if summary.uploads.is_empty() {
        // Nothing reached the server, so there is nothing to say about it.
    } else if deid.applied {
        println!(
            "De-identification: {} attributes removed, {} replaced, {} emptied; {} UIDs replaced; {} private tags removed; dates {}{}.",
            deid.removed.len(),
            deid.replaced.len(),
            deid.emptied.len(),
            deid.uids_replaced,
            deid.private_tags_removed,
            deid.dates,
            if deid.other_files_cleaned > 0 {
                format!(
                    "; {} NIfTI/picture headers cleaned",
                    deid.other_files_cleaned
                )
            } else {
                String::new()
            }
        );
        if !deid.burned_in_annotation_suspected.is_empty() {
            println!(
                "  Check these files for names burned into the pixels, which cannot be removed automatically: {}",
                deid.burned_in_annotation_suspected.join(", ")
            );
        }
    } else {
        println!("De-identification: OFF on this server; the files were stored as they are.");
    }
    if summary.originals_kept {
        println!(
            "The original (identifiable) files were kept too (an administrator's choice for this dataset)."
        );
    }
    if !summary.not_uploaded.is_empty() || !summary.errors.is_empty() {
        println!("  not uploaded:    {}", summary.not_uploaded.len());
        for error in &summary.errors {
            println!("Error: {error}");
        }
    }
    if !summary.series.is_empty() {
        println!(
            "{} series received files; see them with: voxhub dataset show {dataset_id}",
            summary.series.len()
        );
    }
}

/// Lists skipped files with their reasons; many of them are grouped by reason.
fn print_skips(skipped: &[Skip]) {
    const LIST_MAX: usize = 20;
    if skipped.len() <= LIST_MAX {
        for skip in skipped {
            println!("    {}: {}", skip.name, skip.reason);
        }
        return;
    }
    let mut by_reason: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for skip in skipped {
        by_reason
            .entry(skip.reason.as_str())
            .or_default()
            .push(skip.name.as_str());
    }
    for (reason, names) in by_reason {
        let shown: Vec<&str> = names.iter().take(3).copied().collect();
        println!(
            "    {} files: {reason} (e.g. {}{})",
            names.len(),
            shown.join(", "),
            if names.len() > shown.len() {
                ", …"
            } else {
                ""
            }
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, size: u64) -> LocalFile {
        LocalFile {
            name: name.into(),
            path: PathBuf::from(name),
            size,
        }
    }

    #[test]
    fn batches_hold_at_most_64_files_or_64_mib_and_a_large_file_goes_alone() {
        let files: Vec<LocalFile> = (0..130).map(|i| file(&format!("{i}"), 10)).collect();
        let sizes: Vec<usize> = batches(files).iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![64, 64, 2]);
        let files = vec![
            file("a", 40 << 20),
            file("b", 40 << 20),
            file("huge", 200 << 20),
            file("c", 1),
        ];
        let names: Vec<Vec<String>> = batches(files)
            .iter()
            .map(|b| b.iter().map(|f| f.name.clone()).collect())
            .collect();
        assert_eq!(names, vec![vec!["a"], vec!["b"], vec!["huge"], vec!["c"]]);
    }

    #[test]
    fn folders_are_walked_in_order_with_names_relative_to_them_and_hidden_files_left_out() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("case1/ct")).unwrap();
        std::fs::create_dir_all(dir.path().join(".git")).unwrap();
        std::fs::write(dir.path().join("case1/ct/b.dcm"), b"bb").unwrap();
        std::fs::write(dir.path().join("case1/ct/a.dcm"), b"a").unwrap();
        std::fs::write(dir.path().join("case1/.DS_Store"), b"x").unwrap();
        std::fs::write(dir.path().join("top.nii"), b"nii").unwrap();
        std::os::unix::fs::symlink(dir.path(), dir.path().join("case1/loop")).unwrap();
        let (files, hidden) = collect_files(&[dir.path().to_path_buf()]).unwrap();
        let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, vec!["case1/ct/a.dcm", "case1/ct/b.dcm", "top.nii"]);
        assert_eq!(hidden, 2);
        let (single, _) = collect_files(&[dir.path().join("case1/ct/b.dcm")]).unwrap();
        assert_eq!(single[0].name, "b.dcm");
        assert_eq!(single[0].size, 2);
        let missing = collect_files(&[dir.path().join("nope")]).unwrap_err();
        assert!(
            format!("{missing:#}").contains("cannot read"),
            "{missing:#}"
        );
    }

    #[test]
    fn reports_add_up_and_the_exit_code_says_what_happened() {
        let mut summary = UploadSummary::default();
        assert_eq!(summary.exit_code(), 1);
        summary.add_report(&json!({
            "upload_id": 4, "received": 3, "imported": 2, "already_present": 0,
            "skipped": [{"name": "junk.txt", "reason": "not an imaging file"}], "series": [9],
            "deidentification": {"applied": true, "removed": ["PatientAge"], "replaced": ["PatientID"],
              "emptied": [], "uids_replaced": 6, "private_tags_removed": 1, "dates": "shifted",
              "burned_in_annotation_suspected": [], "other_files_cleaned": 0},
            "originals_kept": false
        }));
        summary.add_report(&json!({
            "upload_id": 5, "received": 1, "imported": 0, "already_present": 1, "skipped": [],
            "series": [9, 10], "deidentification": {"applied": true, "removed": ["PatientAge", "OtherPatientIDs"],
              "replaced": [], "emptied": [], "uids_replaced": 3, "private_tags_removed": 0, "dates": "shifted"}
        }));
        assert_eq!(
            (summary.received, summary.imported, summary.already_present),
            (4, 2, 1)
        );
        assert_eq!(summary.skipped.len(), 1);
        assert_eq!(summary.series.len(), 2);
        assert_eq!(summary.deidentification.removed.len(), 2);
        assert_eq!(summary.deidentification.uids_replaced, 9);
        assert!(summary.deidentification.applied);
        assert_eq!(summary.exit_code(), 0);
        summary.errors.push("the server answered 500".into());
        assert_eq!(summary.exit_code(), 2);
    }
}
