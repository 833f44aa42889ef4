//! Read-only views of imaging data for workloads. When a workload starts, the NIfTI files of
//! every series its owner may read (their own datasets and those shared with their classes)
//! are laid out under `<data-dir>/data-views/<user id>`, and the workload gets that path in
//! `VOXHUB_DATA`:
//!
//! ```text
//! $VOXHUB_DATA/README.txt                 what this is, and one line per dataset
//! $VOXHUB_DATA/<dataset>/README.txt       its volumes by series id, and the series that are not volumes and why
//! $VOXHUB_DATA/<dataset>/<patient pseudonym>/<study date or UID>_<study description>/<series number>_<description>.nii.gz
//! ```
//!
//! Names keep ASCII letters, digits, `-` and `.` (anything else becomes `_`, at most 80
//! characters, never hidden); two series that would get the same name are told apart by
//! their id (`3_AXIAL_17.nii.gz`).
//!
//! Files are hard links to the object store's files, so a view costs no space; where a link
//! cannot be made (another filesystem, an object store that is not local) the object is
//! copied. Files are 0444 and folders 0555. When workloads run as the user's own uid (the
//! server runs as root), the tree belongs to root with the user's group and its top folder
//! is 0550, so no other user's workload can enter it; otherwise workloads run as the
//! server's own user, who owns the tree, and the modes guard against accidents only.
//!
//! The view is made again at each start of one of the user's workloads (data uploaded since
//! appears): it is built in a new hidden folder, then the symbolic link `<user id>` is
//! renamed over to point at it, so a running workload sees the old tree or the new one,
//! never half of one. Replaced trees, and the views of users with no queued or running
//! workload, are removed at the same time, so deleted or unshared data does not linger.

use crate::AppState;
use crate::runtime::Runtime;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use voxhub_core::audit::{NewEntry, Outcome};
use voxhub_storage::{ObjectId, ObjectStore};
use voxhub_store::StoreError;
use voxhub_store::datasets::{Dataset, Series, SeriesFilter, Study};
use voxhub_store::workloads::Workload;

/// The environment variable that names a workload's view.
pub const ENV_VAR: &str = "VOXHUB_DATA";

/// The folder of the views, in the data directory.
pub const DIR_NAME: &str = "data-views";

const README: &str = "README.txt";

/// Longest name of a file or folder in a view, in characters.
const NAME_MAX: usize = 80;

/// One build (and prune) at a time: two workloads of one user may start together.
static BUILD_LOCK: Mutex<()> = Mutex::new(());

/// A dataset as the index holds it.
#[derive(Debug, Clone)]
pub struct DatasetIndex {
    pub dataset: Dataset,
    pub studies: Vec<Study>,
    pub series: Vec<Series>,
}

/// A file of a view, relative to its top folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewFile {
    pub path: PathBuf,
    pub content: Content,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    /// The object with this id (a `.nii.gz`).
    Object(String),
    Text(String),
}

/// What a build did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Built {
    /// The path workloads get (the symbolic link to the tree).
    pub path: PathBuf,
    pub linked: usize,
    pub copied: usize,
    /// Objects that could be neither linked nor read (deleted meanwhile, damaged).
    pub missing: usize,
}

/// The folder of every user's view: `data-views` beside the workspaces, in the data
/// directory.
pub fn views_root(runtime: &Runtime) -> Option<PathBuf> {
    runtime
        .workspaces_root
        .parent()
        .map(|data_dir| data_dir.join(DIR_NAME))
}

/// Builds the view of a starting workload's owner and returns the variable that names it,
/// or nothing on a server without datasets. A failure is logged and the workload starts
/// without the variable rather than not at all.
pub async fn workload_env(
    state: &AppState,
    runtime: &Runtime,
    workload: &Workload,
) -> Option<(String, String)> {
    let imaging = state.imaging.as_ref()?;
    let root = views_root(runtime)?;
    match prepare(state, &imaging.objects, runtime, &root, workload).await {
        Ok(built) => Some((ENV_VAR.to_string(), built.path.display().to_string())),
        Err(error) => {
            tracing::warn!(
                "the data view of {} for workload {} could not be made: {error}",
                workload.owner,
                workload.id
            );
            None
        }
    }
}

/// Reads what the owner may see from the index, builds their view, prunes the others, and
/// audits which datasets were made readable to the workload.
pub async fn prepare(
    state: &AppState,
    objects: &Arc<dyn ObjectStore>,
    runtime: &Runtime,
    root: &Path,
    workload: &Workload,
) -> Result<Built, String> {
    let store_error = |e: StoreError| e.to_string();
    let mut indexes = Vec::new();
    for id in state
        .store
        .dataset_ids_visible_to(workload.owner_id)
        .await
        .map_err(store_error)?
    {
        let dataset = match state.store.dataset(id).await {
            Ok(dataset) => dataset,
            // Deleted since it was listed.
            Err(StoreError::NotFound(_)) => continue,
            Err(error) => return Err(error.to_string()),
        };
        let studies = state.store.studies(id, None).await.map_err(store_error)?;
        let series = state
            .store
            .series_list(id, &SeriesFilter::default())
            .await
            .map_err(store_error)?;
        indexes.push(DatasetIndex {
            dataset,
            studies,
            series,
        });
    }
    let files = plan(&indexes);
    let volumes = files
        .iter()
        .filter(|f| matches!(f.content, Content::Object(_)))
        .count();
    let mut keep: HashSet<i64> = state
        .store
        .active_workloads()
        .await
        .map_err(store_error)?
        .iter()
        .map(|w| w.owner_id)
        .collect();
    keep.insert(workload.owner_id);
    let job = BuildJob {
        root: root.to_path_buf(),
        user_id: workload.owner_id,
        files,
        group: runtime.run_as(workload.owner_id).map(|r| r.gid),
        keep,
        objects: Arc::clone(objects),
        handle: tokio::runtime::Handle::current(),
    };
    let built = tokio::task::spawn_blocking(move || job.run())
        .await
        .map_err(|e| format!("the build stopped unexpectedly: {e}"))?
        .map_err(|e| e.to_string())?;
    if built.missing > 0 {
        tracing::warn!(
            "{} volumes of the data view of {} could not be read from the object store",
            built.missing,
            workload.owner
        );
    }
    if !indexes.is_empty() {
        let ids: Vec<String> = indexes.iter().map(|i| i.dataset.id.to_string()).collect();
        let mut tx = state.store.begin().await.map_err(store_error)?;
        tx.audit(NewEntry {
            actor_id: Some(workload.owner_id),
            actor_name: workload.owner.clone(),
            action: "dataset.workload".into(),
            target: format!("workload:{} {}", workload.id, workload.name),
            source: "local".into(),
            outcome: Outcome::Success,
            detail: format!(
                "{volumes} volumes of datasets {} readable to the workload under {ENV_VAR}",
                ids.join(", ")
            ),
            admin_power: false,
        })
        .await
        .map_err(store_error)?;
        tx.commit().await.map_err(store_error)?;
    }
    Ok(built)
}

// ---------------------------------------------------------------------------------------
// The plan: names and READMEs from the index (no I/O)
// ---------------------------------------------------------------------------------------

/// A name for a file or folder: ASCII letters, digits, `-` and `.` kept, runs of anything
/// else made one `_`, never starting or ending with `_`, `-` or `.` (so never hidden, never
/// `..`), at most [`NAME_MAX`] characters; empty when nothing is left.
pub fn clean_name(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len().min(NAME_MAX));
    for c in raw.chars() {
        let c = if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
            c
        } else {
            '_'
        };
        if c == '_' && (out.is_empty() || out.ends_with('_')) {
            continue;
        }
        out.push(c);
        if out.len() >= NAME_MAX {
            break;
        }
    }
    out.trim_matches(['_', '-', '.']).to_string()
}

/// Cleaned parts joined with `_`, empty parts left out, within [`NAME_MAX`].
fn joined(parts: &[&str]) -> String {
    let parts: Vec<String> = parts
        .iter()
        .map(|p| clean_name(p))
        .filter(|p| !p.is_empty())
        .collect();
    clean_name(&parts.join("_"))
}

/// The non-empty texts, separated by spaces.
fn words(parts: &[&str]) -> String {
    parts
        .iter()
        .map(|p| p.trim())
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// `1 volume`, `2 volumes`, `3 series`.
fn count(n: usize, noun: &str) -> String {
    if n == 1 || noun.ends_with('s') {
        format!("{n} {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// The names taken in one folder; a clash is settled with the thing's id.
#[derive(Default)]
struct Names {
    taken: HashSet<String>,
}

impl Names {
    fn reserving(names: &[&str]) -> Self {
        Self {
            taken: names.iter().map(|n| n.to_lowercase()).collect(),
        }
    }

    /// `base + suffix`, or `base_<id> + suffix` when taken (compared without case, so the
    /// tree also copies to filesystems that ignore case).
    fn claim(&mut self, base: &str, id: i64, suffix: &str) -> String {
        let mut candidate = format!("{base}{suffix}");
        let mut attempt = 1;
        while !self.taken.insert(candidate.to_lowercase()) {
            candidate = if attempt == 1 {
                format!("{base}_{id}{suffix}")
            } else {
                format!("{base}_{id}-{attempt}{suffix}")
            };
            attempt += 1;
        }
        candidate
    }
}

/// Where a series stands for the view.
enum Standing<'a> {
    Volume(&'a str),
    Absent(String),
}

fn standing(series: &Series) -> Standing<'_> {
    let summary: serde_json::Value = serde_json::from_str(&series.summary).unwrap_or_default();
    match (series.derived.as_str(), series.nifti_object.as_deref()) {
        ("ready", Some(object)) => Standing::Volume(object),
        ("pending", _) => Standing::Absent(
            "still being prepared when this workload started; it will be in the next workload you start"
                .into(),
        ),
        _ => Standing::Absent(
            summary["volume"]["reason"]
                .as_str()
                .or(summary["error"].as_str())
                .filter(|r| !r.is_empty())
                .map_or_else(|| "it does not form a volume".into(), |r| format!("not a volume: {r}")),
        ),
    }
}

/// Every file of a user's view of these datasets.
pub fn plan(datasets: &[DatasetIndex]) -> Vec<ViewFile> {
    let mut files = Vec::new();
    let mut top = Names::reserving(&[README]);
    let mut lines = Vec::new();
    for index in datasets {
        let dataset = &index.dataset;
        let base = clean_name(&dataset.name);
        let base = if base.is_empty() {
            format!("dataset-{}", dataset.id)
        } else {
            base
        };
        let folder = top.claim(&base, dataset.id, "");
        let studies: HashMap<i64, &Study> = index.studies.iter().map(|s| (s.id, s)).collect();
        let mut series: Vec<&Series> = index.series.iter().collect();
        series.sort_by(|a, b| {
            let study = |s: &Series| {
                studies
                    .get(&s.study_id)
                    .map(|t| (t.study_date.clone(), t.id))
            };
            (&a.patient_pseudonym, study(a), a.series_number, a.id).cmp(&(
                &b.patient_pseudonym,
                study(b),
                b.series_number,
                b.id,
            ))
        });
        let mut patients = Names::reserving(&[README]);
        let mut patient_folders: HashMap<i64, String> = HashMap::new();
        let mut study_names: HashMap<i64, Names> = HashMap::new();
        let mut study_folders: HashMap<i64, String> = HashMap::new();
        let mut series_names: HashMap<i64, Names> = HashMap::new();
        let mut volumes = Vec::new();
        let mut absent = Vec::new();
        for s in series {
            let study = studies.get(&s.study_id);
            let study_label = study
                .map(|t| {
                    if t.study_date.is_empty() {
                        t.study_uid.clone()
                    } else {
                        t.study_date.clone()
                    }
                })
                .unwrap_or_default();
            let study_description = study.map(|t| t.description.clone()).unwrap_or_default();
            let number = s
                .series_number
                .map_or_else(|| format!("series-{}", s.id), |n| n.to_string());
            let label = if s.label_of.is_some() { "label" } else { "" };
            match standing(s) {
                Standing::Volume(object) => {
                    let patient = patient_folders.entry(s.patient_id).or_insert_with(|| {
                        let base = clean_name(&s.patient_pseudonym);
                        let base = if base.is_empty() {
                            "patient".to_string()
                        } else {
                            base
                        };
                        patients.claim(&base, s.patient_id, "")
                    });
                    let study_folder = study_folders.entry(s.study_id).or_insert_with(|| {
                        let base = joined(&[&study_label, &study_description]);
                        let base = if base.is_empty() {
                            "study".to_string()
                        } else {
                            base
                        };
                        study_names
                            .entry(s.patient_id)
                            .or_default()
                            .claim(&base, s.study_id, "")
                    });
                    let base = joined(&[&number, &s.description, label]);
                    let name = series_names
                        .entry(s.study_id)
                        .or_default()
                        .claim(&base, s.id, ".nii.gz");
                    let path = PathBuf::from(&folder)
                        .join(patient.as_str())
                        .join(study_folder.as_str())
                        .join(&name);
                    volumes.push(format!(
                        "  series {}: {}  ({}{} images)",
                        s.id,
                        path.strip_prefix(&folder).unwrap_or(&path).display(),
                        if s.modality.is_empty() {
                            String::new()
                        } else {
                            format!("{}, ", s.modality)
                        },
                        s.instances
                    ));
                    files.push(ViewFile {
                        path,
                        content: Content::Object(object.to_string()),
                    });
                }
                Standing::Absent(reason) => absent.push(format!(
                    "  series {} (patient {}, study {}, series {}): {reason}",
                    s.id,
                    s.patient_pseudonym,
                    words(&[&study_label, &study_description]),
                    words(&[&number, &s.description]),
                )),
            }
        }
        let mut text = format!(
            "Dataset \"{}\" (id {}), owned by {}; {}.\n",
            dataset.name,
            dataset.id,
            dataset.owner,
            match (&dataset.class_id, &dataset.class_name) {
                (Some(id), Some(name)) =>
                    format!("shared read-only with class \"{name}\" (id {id})"),
                (Some(id), None) => format!("shared read-only with class {id}"),
                _ => "private".to_string(),
            }
        );
        if !dataset.description.trim().is_empty() {
            text.push_str(&format!("{}\n", dataset.description.trim()));
        }
        text.push_str(
            "\nEach series that forms a volume is here as NIfTI (.nii.gz), read-only:\n  \
             <patient pseudonym>/<study date or UID>_<study description>/<series number>_<series description>.nii.gz\n\n",
        );
        text.push_str(&format!("Volumes ({}), by series id:\n", volumes.len()));
        if volumes.is_empty() {
            text.push_str("  (none)\n");
        }
        for line in &volumes {
            text.push_str(line);
            text.push('\n');
        }
        if !absent.is_empty() {
            text.push_str(&format!("\nSeries not here ({}), and why:\n", absent.len()));
            for line in &absent {
                text.push_str(line);
                text.push('\n');
            }
        }
        files.push(ViewFile {
            path: PathBuf::from(&folder).join(README),
            content: Content::Text(text),
        });
        lines.push(format!(
            "  {folder}/  dataset {} \"{}\": {}, {} not",
            dataset.id,
            dataset.name,
            count(volumes.len(), "volume"),
            count(absent.len(), "series")
        ));
    }
    let mut text = String::from(
        "Imaging data you may read, as NIfTI volumes (.nii.gz), read-only.\n\n\
         This folder ($VOXHUB_DATA) holds every series of your own datasets and of the datasets\n\
         shared with your classes that forms a volume, laid out as\n  \
         <dataset>/<patient pseudonym>/<study date or UID>_<study description>/<series number>_<series description>.nii.gz\n\
         Each dataset's README.txt lists its volumes by series id, and the series that are not\n\
         volumes with the reason. The folder is made again each time one of your workloads starts,\n\
         so data uploaded later is in your next workload. Copy files into your workspace to change them.\n\n",
    );
    text.push_str("Datasets:\n");
    if lines.is_empty() {
        text.push_str(
            "  (none yet: upload a dataset, or ask your teacher to share one with your class)\n",
        );
    }
    for line in lines {
        text.push_str(&line);
        text.push('\n');
    }
    files.push(ViewFile {
        path: PathBuf::from(README),
        content: Content::Text(text),
    });
    files
}

// ---------------------------------------------------------------------------------------
// The build: files, modes, the atomic switch, pruning (blocking I/O)
// ---------------------------------------------------------------------------------------

struct BuildJob {
    root: PathBuf,
    user_id: i64,
    files: Vec<ViewFile>,
    /// The group that alone may enter the tree (workloads run as the user's own uid).
    group: Option<u32>,
    /// Users whose views stay (they have a queued or running workload).
    keep: HashSet<i64>,
    objects: Arc<dyn ObjectStore>,
    handle: tokio::runtime::Handle,
}

fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

impl BuildJob {
    fn run(self) -> io::Result<Built> {
        let _one_at_a_time = BUILD_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        std::fs::create_dir_all(&self.root)?;
        // Workload users pass through to their own view; nobody lists the others.
        set_mode(&self.root, 0o711)?;
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let tree_name = format!(".{}-{stamp:x}", self.user_id);
        let tree = self.root.join(&tree_name);
        std::fs::DirBuilder::new().mode(0o700).create(&tree)?;
        let built = match self.fill(&tree) {
            Ok(built) => built,
            Err(error) => {
                remove_tree(&tree).ok();
                return Err(error);
            }
        };
        let link = self.root.join(self.user_id.to_string());
        let temporary_link = self.root.join(format!(".{}-link-{stamp:x}", self.user_id));
        std::os::unix::fs::symlink(&tree_name, &temporary_link)?;
        if std::fs::symlink_metadata(&link).is_ok_and(|m| m.is_dir()) {
            remove_tree(&link)?;
        }
        std::fs::rename(&temporary_link, &link)?;
        self.prune();
        Ok(Built {
            path: link,
            ..built
        })
    }

    /// Writes every file into `tree`, then sets the modes (folders last, deepest first, so
    /// the server can still write while it builds).
    fn fill(&self, tree: &Path) -> io::Result<Built> {
        let mut built = Built::default();
        let mut folders = BTreeSet::new();
        for file in &self.files {
            let destination = tree.join(&file.path);
            let mut parent = file.path.parent();
            while let Some(folder) = parent.filter(|p| !p.as_os_str().is_empty()) {
                folders.insert(folder.to_path_buf());
                parent = folder.parent();
            }
            if let Some(folder) = destination.parent() {
                std::fs::create_dir_all(folder)?;
            }
            match &file.content {
                Content::Text(text) => {
                    std::fs::write(&destination, text)?;
                    set_mode(&destination, 0o444)?;
                }
                Content::Object(id) => match self.place_object(id, &destination) {
                    Ok(true) => built.linked += 1,
                    Ok(false) => built.copied += 1,
                    Err(error) => {
                        tracing::warn!("volume {} of a data view: {error}", file.path.display());
                        built.missing += 1;
                    }
                },
            }
        }
        for folder in folders.iter().rev() {
            set_mode(&tree.join(folder), 0o555)?;
        }
        match self.group {
            Some(gid) => {
                std::os::unix::fs::chown(tree, None, Some(gid))?;
                set_mode(tree, 0o550)?;
            }
            None => set_mode(tree, 0o555)?,
        }
        Ok(built)
    }

    /// Hard-links the object's file (true), or copies the object when that fails (false).
    fn place_object(&self, id: &str, destination: &Path) -> Result<bool, String> {
        let id = ObjectId::parse(id).map_err(|e| e.to_string())?;
        if let Some(source) = self.objects.local_path(&id)
            && std::fs::hard_link(&source, destination).is_ok()
        {
            // The link shares the object's file, which the store keeps 0600: make it
            // readable (only through this tree; the store's own folder stays 0700).
            let readonly = std::fs::metadata(destination)
                .map(|m| m.permissions().mode() & 0o777 == 0o444)
                .unwrap_or(false);
            if !readonly {
                set_mode(destination, 0o444).map_err(|e| e.to_string())?;
            }
            return Ok(true);
        }
        let bytes = self
            .handle
            .block_on(self.objects.get(&id))
            .map_err(|e| e.to_string())?;
        std::fs::write(destination, bytes).map_err(|e| e.to_string())?;
        set_mode(destination, 0o444).map_err(|e| e.to_string())?;
        Ok(false)
    }

    /// Removes the views of users with no queued or running workload, and every tree no
    /// view points at (replaced ones, and what a crash left).
    fn prune(&self) {
        let Ok(entries) = std::fs::read_dir(&self.root) else {
            return;
        };
        let entries: Vec<_> = entries.flatten().collect();
        let mut live = HashSet::new();
        for entry in &entries {
            let path = entry.path();
            if !entry.file_type().is_ok_and(|t| t.is_symlink()) {
                continue;
            }
            let user = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<i64>().ok());
            match user {
                Some(user) if self.keep.contains(&user) => {
                    if let Ok(target) = std::fs::read_link(&path) {
                        live.insert(target.into_os_string());
                    }
                }
                _ => {
                    std::fs::remove_file(&path).ok();
                }
            }
        }
        for entry in &entries {
            let is_symlink = entry.file_type().is_ok_and(|t| t.is_symlink());
            if !is_symlink
                && !live.contains(&entry.file_name())
                && let Err(error) = remove_tree(&entry.path())
            {
                tracing::warn!(
                    "could not remove the old data view {}: {error}",
                    entry.path().display()
                );
            }
        }
    }
}

/// Removes a tree whose folders are read-only (which blocks removing their entries when
/// the server is not root).
fn remove_tree(path: &Path) -> io::Result<()> {
    fn writable(path: &Path) -> io::Result<()> {
        let meta = std::fs::symlink_metadata(path)?;
        if meta.is_dir() {
            set_mode(path, 0o700)?;
            for entry in std::fs::read_dir(path)? {
                writable(&entry?.path())?;
            }
        }
        Ok(())
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => {
            writable(path)?;
            std::fs::remove_dir_all(path)
        }
        Ok(_) => std::fs::remove_file(path),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn dataset(id: i64, name: &str) -> Dataset {
        Dataset {
            id,
            name: name.into(),
            description: String::new(),
            owner_id: 1,
            owner: "teacher".into(),
            class_id: None,
            class_name: None,
            keep_originals: false,
            created_at: 0,
            patients: 1,
            studies: 1,
            series: 1,
            instances: 1,
            size_bytes: 1,
        }
    }

    fn study(id: i64, date: &str, description: &str) -> Study {
        Study {
            id,
            dataset_id: 1,
            patient_id: 1,
            patient_pseudonym: "P1".into(),
            patient_name: String::new(),
            patient_sex: String::new(),
            patient_birth_date: String::new(),
            study_uid: format!("1.2.3.{id}"),
            study_date: date.into(),
            study_time: String::new(),
            description: description.into(),
            accession_number: String::new(),
            referring_physician: String::new(),
            modalities: "CT".into(),
            series: 1,
            instances: 1,
        }
    }

    fn series(
        id: i64,
        study_id: i64,
        number: Option<i64>,
        description: &str,
        derived: &str,
        summary: &str,
    ) -> Series {
        Series {
            id,
            dataset_id: 1,
            study_id,
            study_uid: format!("1.2.3.{study_id}"),
            patient_id: 1,
            patient_pseudonym: "P1/x".into(),
            series_uid: format!("1.2.4.{id}"),
            kind: "dicom".into(),
            modality: "CT".into(),
            body_part: String::new(),
            series_date: String::new(),
            series_time: String::new(),
            description: description.into(),
            series_number: number,
            label_of: None,
            derived: derived.into(),
            summary: summary.into(),
            thumbnail_object: None,
            nifti_object: (derived == "ready" && summary.contains("\"ok\":true"))
                .then(|| format!("{id:064x}")),
            instances: 10,
            size_bytes: 100,
            changed_at: 0,
        }
    }

    #[test]
    fn names_keep_safe_characters_and_are_never_hidden_or_parent_folders() {
        assert_eq!(
            clean_name("Chest CT (w/o contrast)"),
            "Chest_CT_w_o_contrast"
        );
        assert_eq!(clean_name("../../etc/passwd"), "etc_passwd");
        assert_eq!(clean_name(".hidden"), "hidden");
        assert_eq!(clean_name(".."), "");
        assert_eq!(clean_name("Schädel 1.0mm"), "Sch_del_1.0mm");
        assert_eq!(clean_name(&"x".repeat(200)).len(), NAME_MAX);
    }

    #[test]
    fn volumes_are_laid_out_by_patient_study_and_series_and_clashes_get_the_id() {
        let ok = r#"{"volume":{"ok":true,"dims":[4,4,10]}}"#;
        let index = DatasetIndex {
            dataset: dataset(7, "Chest CT"),
            studies: vec![study(1, "20210304", "CHEST W/O")],
            series: vec![
                series(11, 1, Some(3), "AXIAL 1mm", "ready", ok),
                series(12, 1, Some(3), "AXIAL 1mm", "ready", ok),
                series(
                    13,
                    1,
                    Some(4),
                    "SCOUT",
                    "ready",
                    r#"{"volume":{"ok":false,"reason":"the series has only 2 slices"}}"#,
                ),
                series(14, 1, None, "", "pending", "{}"),
            ],
        };
        let files = plan(&[index]);
        let paths: Vec<String> = files.iter().map(|f| f.path.display().to_string()).collect();
        assert!(
            paths.contains(&"Chest_CT/P1_x/20210304_CHEST_W_O/3_AXIAL_1mm.nii.gz".to_string()),
            "{paths:?}"
        );
        assert!(
            paths.contains(&"Chest_CT/P1_x/20210304_CHEST_W_O/3_AXIAL_1mm_12.nii.gz".to_string()),
            "{paths:?}"
        );
        assert!(paths.contains(&"Chest_CT/README.txt".to_string()));
        assert!(paths.contains(&"README.txt".to_string()));
        assert_eq!(
            files
                .iter()
                .filter(|f| matches!(f.content, Content::Object(_)))
                .count(),
            2
        );
        let readme = files
            .iter()
            .find(|f| f.path == Path::new("Chest_CT/README.txt"))
            .unwrap();
        let Content::Text(text) = &readme.content else {
            panic!()
        };
        assert!(
            text.contains("series 13") && text.contains("the series has only 2 slices"),
            "{text}"
        );
        assert!(
            text.contains("series 14") && text.contains("still being prepared"),
            "{text}"
        );
        assert!(
            text.contains("series 11: P1_x/20210304_CHEST_W_O/3_AXIAL_1mm.nii.gz"),
            "{text}"
        );
    }

    #[test]
    fn datasets_with_the_same_name_get_their_id_and_readme_stays_free() {
        let files = plan(&[
            DatasetIndex {
                dataset: dataset(1, "Brain"),
                studies: vec![],
                series: vec![],
            },
            DatasetIndex {
                dataset: dataset(2, "brain"),
                studies: vec![],
                series: vec![],
            },
            DatasetIndex {
                dataset: dataset(3, "README.txt"),
                studies: vec![],
                series: vec![],
            },
            DatasetIndex {
                dataset: dataset(4, "%%%"),
                studies: vec![],
                series: vec![],
            },
        ]);
        let paths: Vec<String> = files.iter().map(|f| f.path.display().to_string()).collect();
        assert!(paths.contains(&"Brain/README.txt".to_string()), "{paths:?}");
        assert!(
            paths.contains(&"brain_2/README.txt".to_string()),
            "{paths:?}"
        );
        assert!(
            paths.contains(&"README.txt_3/README.txt".to_string()),
            "{paths:?}"
        );
        assert!(
            paths.contains(&"dataset-4/README.txt".to_string()),
            "{paths:?}"
        );
    }

    /// A store whose objects are not local files (like S3 will be): views copy them. The
    /// methods are what `#[async_trait]` makes of the trait's `async fn`s.
    struct NotLocal(voxhub_storage::LocalStore);

    type Boxed<'a, T> = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<T, voxhub_storage::StorageError>> + Send + 'a>,
    >;

    impl ObjectStore for NotLocal {
        fn put<'s, 'b, 'a>(&'s self, bytes: &'b [u8]) -> Boxed<'a, ObjectId>
        where
            's: 'a,
            'b: 'a,
            Self: 'a,
        {
            self.0.put(bytes)
        }
        fn put_file<'s, 'b, 'a>(&'s self, path: &'b Path) -> Boxed<'a, ObjectId>
        where
            's: 'a,
            'b: 'a,
            Self: 'a,
        {
            self.0.put_file(path)
        }
        fn get<'s, 'b, 'a>(&'s self, id: &'b ObjectId) -> Boxed<'a, Vec<u8>>
        where
            's: 'a,
            'b: 'a,
            Self: 'a,
        {
            self.0.get(id)
        }
        fn open<'s, 'b, 'a>(&'s self, id: &'b ObjectId) -> Boxed<'a, voxhub_storage::ObjectReader>
        where
            's: 'a,
            'b: 'a,
            Self: 'a,
        {
            self.0.open(id)
        }
        fn exists<'s, 'b, 'a>(&'s self, id: &'b ObjectId) -> Boxed<'a, bool>
        where
            's: 'a,
            'b: 'a,
            Self: 'a,
        {
            self.0.exists(id)
        }
        fn size<'s, 'b, 'a>(&'s self, id: &'b ObjectId) -> Boxed<'a, u64>
        where
            's: 'a,
            'b: 'a,
            Self: 'a,
        {
            self.0.size(id)
        }
        fn delete<'s, 'b, 'a>(&'s self, id: &'b ObjectId) -> Boxed<'a, ()>
        where
            's: 'a,
            'b: 'a,
            Self: 'a,
        {
            self.0.delete(id)
        }
        fn list<'s, 'a>(&'s self) -> Boxed<'a, Vec<ObjectId>>
        where
            's: 'a,
            Self: 'a,
        {
            self.0.list()
        }
        fn sweep_temporaries<'s, 'a>(&'s self, older_than: std::time::Duration) -> Boxed<'a, usize>
        where
            's: 'a,
            Self: 'a,
        {
            self.0.sweep_temporaries(older_than)
        }
    }

    async fn build(
        root: &Path,
        user_id: i64,
        objects: Arc<dyn ObjectStore>,
        object: &ObjectId,
        keep: &[i64],
    ) -> Built {
        let job = BuildJob {
            root: root.to_path_buf(),
            user_id,
            files: vec![
                ViewFile {
                    path: PathBuf::from("CT/P1/20240101/3_AXIAL.nii.gz"),
                    content: Content::Object(object.to_string()),
                },
                ViewFile {
                    path: PathBuf::from(README),
                    content: Content::Text("hello".into()),
                },
            ],
            group: None,
            keep: keep.iter().copied().collect(),
            objects,
            handle: tokio::runtime::Handle::current(),
        };
        tokio::task::spawn_blocking(move || job.run())
            .await
            .unwrap()
            .unwrap()
    }

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    fn trees(root: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(root)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_view_links_objects_read_only_and_a_rebuild_replaces_it_whole() {
        let dir = tempfile::tempdir().unwrap();
        let store = voxhub_storage::LocalStore::new(dir.path().join("objects")).unwrap();
        let object = store.put(b"nifti bytes").await.unwrap();
        let objects: Arc<dyn ObjectStore> = Arc::new(store.clone());
        let root = dir.path().join(DIR_NAME);
        let first = build(&root, 5, objects.clone(), &object, &[5]).await;
        assert_eq!((first.linked, first.copied, first.missing), (1, 0, 0));
        assert_eq!(first.path, root.join("5"));
        let file = first.path.join("CT/P1/20240101/3_AXIAL.nii.gz");
        assert_eq!(std::fs::read(&file).unwrap(), b"nifti bytes");
        assert_eq!(mode(&file), 0o444);
        assert_eq!(
            std::fs::metadata(&file).unwrap().nlink(),
            2,
            "a link, not a copy"
        );
        assert_eq!(mode(&first.path.join("CT/P1")), 0o555);
        assert_eq!(mode(&first.path), 0o555);
        assert_eq!(mode(&first.path.join(README)), 0o444);
        assert_eq!(mode(&root), 0o711);
        // The store still reads (and checks) the object it shares with the view.
        assert_eq!(store.get(&object).await.unwrap(), b"nifti bytes");

        let before = std::fs::read_link(&first.path).unwrap();
        build(&root, 6, objects.clone(), &object, &[5, 6]).await;
        let again = build(&root, 5, objects.clone(), &object, &[5, 6]).await;
        assert_ne!(std::fs::read_link(&again.path).unwrap(), before);
        assert_eq!(
            trees(&root).len(),
            4,
            "two links, two trees: {:?}",
            trees(&root)
        );
        // User 6 has no workload left: their view goes at the next build.
        build(&root, 5, objects, &object, &[5]).await;
        let left = trees(&root);
        assert_eq!(left.len(), 2, "{left:?}");
        assert!(left.contains(&"5".to_string()) && !left.contains(&"6".to_string()));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn objects_that_are_not_local_files_are_copied() {
        let dir = tempfile::tempdir().unwrap();
        let store = voxhub_storage::LocalStore::new(dir.path().join("objects")).unwrap();
        let object = store.put(b"remote bytes").await.unwrap();
        let root = dir.path().join(DIR_NAME);
        let built = build(&root, 9, Arc::new(NotLocal(store)), &object, &[9]).await;
        assert_eq!((built.linked, built.copied), (0, 1));
        let file = built.path.join("CT/P1/20240101/3_AXIAL.nii.gz");
        assert_eq!(std::fs::read(&file).unwrap(), b"remote bytes");
        assert_eq!(std::fs::metadata(&file).unwrap().nlink(), 1);
        assert_eq!(mode(&file), 0o444);
        let missing = ObjectId::for_content(b"never stored");
        let store = voxhub_storage::LocalStore::new(dir.path().join("objects")).unwrap();
        let built = build(&root, 9, Arc::new(store), &missing, &[9]).await;
        assert_eq!(
            built.missing, 1,
            "a missing object is left out, the rest is built"
        );
        assert!(built.path.join(README).is_file());
    }
}
