//! Imaging datasets and their index: patients (pseudonymised) → studies → series →
//! instances, and the uploads that filled them. Only the index lives here; the files are in
//! the object store under the ids these rows hold.

use crate::{Result, Store, StoreError, WriteTx, escape_like, is_unique_violation, now_ms, now_s};
use serde::Serialize;

/// A dataset as listed, with its owner's and class's names and its size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Dataset {
    pub id: i64,
    pub name: String,
    pub description: String,
    pub owner_id: i64,
    /// The owner's username.
    pub owner: String,
    /// The class it is shared with (read-only), or none: private to its owner.
    pub class_id: Option<i64>,
    pub class_name: Option<String>,
    /// Whether the original (identifiable) files are kept beside the de-identified ones.
    pub keep_originals: bool,
    #[serde(serialize_with = "voxhub_core::timefmt::serialize")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: i64,
    pub patients: i64,
    pub studies: i64,
    pub series: i64,
    pub instances: i64,
    pub size_bytes: i64,
}

/// What permission checks need of a dataset: no counts, so cheap on every slice request.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct DatasetRef {
    pub id: i64,
    pub name: String,
    pub owner_id: i64,
    pub class_id: Option<i64>,
}

const DATASET_SELECT: &str = "SELECT d.id, d.name, d.description, d.owner_id, u.username AS owner,
    d.class_id, c.name AS class_name, d.keep_originals, d.created_at,
    (SELECT COUNT(*) FROM patients p WHERE p.dataset_id = d.id) AS patients,
    (SELECT COUNT(*) FROM studies s WHERE s.dataset_id = d.id) AS studies,
    (SELECT COUNT(*) FROM series r WHERE r.dataset_id = d.id) AS series,
    (SELECT COUNT(*) FROM instances i WHERE i.dataset_id = d.id) AS instances,
    (SELECT COALESCE(SUM(i.size_bytes), 0) FROM instances i WHERE i.dataset_id = d.id) AS size_bytes
    FROM datasets d JOIN users u ON u.id = d.owner_id LEFT JOIN classes c ON c.id = d.class_id";

/// A patient of a dataset, under their pseudonym.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Patient {
    pub id: i64,
    pub dataset_id: i64,
    /// The de-identified Patient ID.
    pub pseudonym: String,
    /// The de-identified Patient's Name.
    pub name: String,
    pub sex: String,
    pub studies: i64,
    pub series: i64,
}

/// A study with its patient and a summary of its series.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Study {
    pub id: i64,
    pub dataset_id: i64,
    pub patient_id: i64,
    pub patient_pseudonym: String,
    pub patient_name: String,
    pub patient_sex: String,
    pub patient_birth_date: String,
    pub study_uid: String,
    /// `YYYYMMDD` as in DICOM (shifted by de-identification), or empty.
    pub study_date: String,
    pub study_time: String,
    pub description: String,
    pub accession_number: String,
    pub referring_physician: String,
    /// Modalities of its series, separated by `\`.
    pub modalities: String,
    pub series: i64,
    pub instances: i64,
}

const STUDY_SELECT: &str = "SELECT s.id, s.dataset_id, s.patient_id, p.pseudonym AS patient_pseudonym,
    p.name AS patient_name, p.sex AS patient_sex, p.birth_date AS patient_birth_date, s.study_uid,
    s.study_date, s.study_time, s.description, s.accession_number, s.referring_physician,
    COALESCE((SELECT GROUP_CONCAT(DISTINCT r.modality) FROM series r WHERE r.study_id = s.id AND r.modality <> ''), '') AS modalities,
    (SELECT COUNT(*) FROM series r WHERE r.study_id = s.id) AS series,
    (SELECT COUNT(*) FROM instances i JOIN series r ON r.id = i.series_id WHERE r.study_id = s.id) AS instances
    FROM studies s JOIN patients p ON p.id = s.patient_id";

/// A series as indexed, with where it sits and its derived summary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Series {
    pub id: i64,
    pub dataset_id: i64,
    pub study_id: i64,
    pub study_uid: String,
    pub patient_id: i64,
    pub patient_pseudonym: String,
    pub series_uid: String,
    /// `dicom`, `nifti` (one NIfTI volume) or `image` (PNG/JPEG pictures of one folder).
    pub kind: String,
    pub modality: String,
    pub body_part: String,
    pub series_date: String,
    pub series_time: String,
    pub description: String,
    pub series_number: Option<i64>,
    /// For a label (mask) volume: the series it labels.
    pub label_of: Option<i64>,
    /// `pending` while thumbnail, volume check and NIfTI are being made; then `ready` or `failed`.
    pub derived: String,
    /// JSON written by the deriver: dimensions, spacing, window, volume or the reason not.
    #[serde(skip)]
    pub summary: String,
    #[serde(skip)]
    pub thumbnail_object: Option<String>,
    #[serde(skip)]
    pub nifti_object: Option<String>,
    pub instances: i64,
    pub size_bytes: i64,
    #[serde(skip)]
    pub changed_at: i64,
}

const SERIES_SELECT: &str = "SELECT r.id, r.dataset_id, r.study_id, s.study_uid, s.patient_id,
    p.pseudonym AS patient_pseudonym, r.series_uid, r.kind, r.modality, r.body_part, r.series_date,
    r.series_time, r.description, r.series_number, r.label_of, r.derived, r.summary,
    r.thumbnail_object, r.nifti_object,
    (SELECT COUNT(*) FROM instances i WHERE i.series_id = r.id) AS instances,
    (SELECT COALESCE(SUM(i.size_bytes), 0) FROM instances i WHERE i.series_id = r.id) AS size_bytes,
    r.changed_at
    FROM series r JOIN studies s ON s.id = r.study_id JOIN patients p ON p.id = s.patient_id";

/// One stored file of a series.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Instance {
    pub id: i64,
    pub dataset_id: i64,
    pub series_id: i64,
    pub sop_uid: String,
    pub sop_class_uid: String,
    pub instance_number: Option<i64>,
    pub transfer_syntax: String,
    pub rows: Option<i64>,
    pub columns: Option<i64>,
    pub frames: i64,
    /// Geometry from the header, JSON.
    #[serde(skip)]
    pub geometry: String,
    #[serde(skip)]
    pub object_id: String,
    pub size_bytes: i64,
    #[serde(skip)]
    pub original_object_id: Option<String>,
    pub source_name: String,
}

const INSTANCE_SELECT: &str = "SELECT i.id, i.dataset_id, i.series_id, i.sop_uid, i.sop_class_uid,
    i.instance_number, i.transfer_syntax, i.rows, i.columns, i.frames, i.geometry, i.object_id,
    i.size_bytes, i.original_object_id, i.source_name FROM instances i";

/// One upload and its report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Upload {
    pub id: i64,
    pub dataset_id: i64,
    pub user_id: i64,
    pub username: String,
    #[serde(serialize_with = "voxhub_core::timefmt::serialize")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: i64,
    pub received: i64,
    pub imported: i64,
    pub skipped: i64,
    /// The ingest report, JSON.
    #[serde(skip)]
    pub report: String,
}

pub struct NewDataset<'a> {
    pub name: &'a str,
    pub description: &'a str,
    pub owner_id: i64,
    pub class_id: Option<i64>,
}

pub struct NewStudy<'a> {
    pub study_uid: &'a str,
    pub study_date: &'a str,
    pub study_time: &'a str,
    pub description: &'a str,
    pub accession_number: &'a str,
    pub referring_physician: &'a str,
}

pub struct NewSeries<'a> {
    pub series_uid: &'a str,
    pub kind: &'a str,
    pub modality: &'a str,
    pub body_part: &'a str,
    pub series_date: &'a str,
    pub series_time: &'a str,
    pub description: &'a str,
    pub series_number: Option<i64>,
}

pub struct NewInstance<'a> {
    pub dataset_id: i64,
    pub series_id: i64,
    pub sop_uid: &'a str,
    pub sop_class_uid: &'a str,
    pub instance_number: Option<i64>,
    pub transfer_syntax: &'a str,
    pub rows: Option<i64>,
    pub columns: Option<i64>,
    pub frames: i64,
    pub geometry: &'a str,
    pub object_id: &'a str,
    pub size_bytes: i64,
    pub original_object_id: Option<&'a str>,
    pub source_name: &'a str,
}

/// What inserting an instance did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstanceInsert {
    Inserted(i64),
    /// The same file (same UID, same bytes) was already in the dataset.
    AlreadyPresent(i64),
    /// Another file with the same SOP Instance UID is already in the dataset.
    Conflict,
}

/// Filters for listing series; empty fields match everything.
#[derive(Debug, Clone, Default)]
pub struct SeriesFilter {
    pub study_id: Option<i64>,
    pub patient_id: Option<i64>,
    pub modality: Option<String>,
    /// Matched, case-insensitively, against descriptions, body part, patient pseudonym and UIDs.
    pub text: Option<String>,
}

fn dataset_not_found(id: i64) -> StoreError {
    StoreError::NotFound(format!(
        "there is no dataset with id {id}; check the id in your dataset list"
    ))
}

fn series_not_found(id: i64) -> StoreError {
    StoreError::NotFound(format!(
        "there is no series with id {id}; it may have been deleted with its dataset"
    ))
}

impl WriteTx {
    pub async fn create_dataset(&mut self, new: &NewDataset<'_>) -> Result<i64> {
        sqlx::query_scalar(
            "INSERT INTO datasets (name, description, owner_id, class_id, created_at)
             VALUES ($1, $2, $3, $4, $5) RETURNING id",
        )
        .bind(new.name)
        .bind(new.description)
        .bind(new.owner_id)
        .bind(new.class_id)
        .bind(now_s())
        .fetch_one(self.conn())
        .await
        .map_err(|error| {
            if is_unique_violation(&error) {
                StoreError::Conflict(format!(
                    "you already have a dataset called '{}'; choose another name",
                    new.name
                ))
            } else {
                error.into()
            }
        })
    }

    /// Changes name, description and sharing; `None` leaves a field as it is.
    pub async fn update_dataset(
        &mut self,
        id: i64,
        name: Option<&str>,
        description: Option<&str>,
        class_id: Option<Option<i64>>,
        keep_originals: Option<bool>,
    ) -> Result<()> {
        let (set_class, class) = match class_id {
            Some(class) => (true, class),
            None => (false, None),
        };
        let done = sqlx::query(
            "UPDATE datasets SET name = COALESCE($2, name), description = COALESCE($3, description),
             class_id = CASE WHEN $4 THEN $5 ELSE class_id END,
             keep_originals = COALESCE($6, keep_originals) WHERE id = $1",
        )
        .bind(id)
        .bind(name)
        .bind(description)
        .bind(set_class)
        .bind(class)
        .bind(keep_originals)
        .execute(self.conn())
        .await
        .map_err(|error| {
            if is_unique_violation(&error) {
                StoreError::Conflict(format!(
                    "the owner already has a dataset called '{}'; choose another name",
                    name.unwrap_or_default()
                ))
            } else {
                error.into()
            }
        })?;
        if done.rows_affected() == 0 {
            return Err(dataset_not_found(id));
        }
        Ok(())
    }

    /// Deletes a dataset and its whole index; returns the object ids it referenced, for the
    /// caller to delete from the object store once no other row references them.
    pub async fn delete_dataset(&mut self, id: i64) -> Result<Vec<String>> {
        let objects: Vec<String> = sqlx::query_scalar(
            "SELECT object_id FROM instances WHERE dataset_id = $1
             UNION SELECT original_object_id FROM instances WHERE dataset_id = $1 AND original_object_id IS NOT NULL
             UNION SELECT thumbnail_object FROM series WHERE dataset_id = $1 AND thumbnail_object IS NOT NULL
             UNION SELECT nifti_object FROM series WHERE dataset_id = $1 AND nifti_object IS NOT NULL",
        )
        .bind(id)
        .fetch_all(self.conn())
        .await?;
        sqlx::query("DELETE FROM uploads WHERE dataset_id = $1")
            .bind(id)
            .execute(self.conn())
            .await?;
        sqlx::query("DELETE FROM instances WHERE dataset_id = $1")
            .bind(id)
            .execute(self.conn())
            .await?;
        sqlx::query("UPDATE series SET label_of = NULL WHERE dataset_id = $1")
            .bind(id)
            .execute(self.conn())
            .await?;
        sqlx::query("DELETE FROM series WHERE dataset_id = $1")
            .bind(id)
            .execute(self.conn())
            .await?;
        sqlx::query("DELETE FROM studies WHERE dataset_id = $1")
            .bind(id)
            .execute(self.conn())
            .await?;
        sqlx::query("DELETE FROM patients WHERE dataset_id = $1")
            .bind(id)
            .execute(self.conn())
            .await?;
        let done = sqlx::query("DELETE FROM datasets WHERE id = $1")
            .bind(id)
            .execute(self.conn())
            .await?;
        if done.rows_affected() == 0 {
            return Err(dataset_not_found(id));
        }
        Ok(objects)
    }

    /// The patient with this pseudonym in the dataset, created if new.
    pub async fn upsert_patient(
        &mut self,
        dataset_id: i64,
        pseudonym: &str,
        name: &str,
        sex: &str,
        birth_date: &str,
    ) -> Result<i64> {
        if let Some(id) =
            sqlx::query_scalar("SELECT id FROM patients WHERE dataset_id = $1 AND pseudonym = $2")
                .bind(dataset_id)
                .bind(pseudonym)
                .fetch_optional(self.conn())
                .await?
        {
            return Ok(id);
        }
        Ok(sqlx::query_scalar(
            "INSERT INTO patients (dataset_id, pseudonym, name, sex, birth_date) VALUES ($1, $2, $3, $4, $5) RETURNING id",
        )
        .bind(dataset_id)
        .bind(pseudonym)
        .bind(name)
        .bind(sex)
        .bind(birth_date)
        .fetch_one(self.conn())
        .await?)
    }

    /// The study with this UID in the dataset, created (under `patient_id`) if new.
    pub async fn upsert_study(
        &mut self,
        dataset_id: i64,
        patient_id: i64,
        study: &NewStudy<'_>,
    ) -> Result<i64> {
        if let Some(id) =
            sqlx::query_scalar("SELECT id FROM studies WHERE dataset_id = $1 AND study_uid = $2")
                .bind(dataset_id)
                .bind(study.study_uid)
                .fetch_optional(self.conn())
                .await?
        {
            return Ok(id);
        }
        Ok(sqlx::query_scalar(
            "INSERT INTO studies (dataset_id, patient_id, study_uid, study_date, study_time, description,
             accession_number, referring_physician) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
        )
        .bind(dataset_id)
        .bind(patient_id)
        .bind(study.study_uid)
        .bind(study.study_date)
        .bind(study.study_time)
        .bind(study.description)
        .bind(study.accession_number)
        .bind(study.referring_physician)
        .fetch_one(self.conn())
        .await?)
    }

    /// The series with this UID in the dataset, created (under `study_id`) if new.
    pub async fn upsert_series(
        &mut self,
        dataset_id: i64,
        study_id: i64,
        series: &NewSeries<'_>,
    ) -> Result<i64> {
        if let Some(id) =
            sqlx::query_scalar("SELECT id FROM series WHERE dataset_id = $1 AND series_uid = $2")
                .bind(dataset_id)
                .bind(series.series_uid)
                .fetch_optional(self.conn())
                .await?
        {
            return Ok(id);
        }
        let now = now_s();
        Ok(sqlx::query_scalar(
            "INSERT INTO series (dataset_id, study_id, series_uid, kind, modality, body_part, series_date,
             series_time, description, series_number, changed_at, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING id",
        )
        .bind(dataset_id)
        .bind(study_id)
        .bind(series.series_uid)
        .bind(series.kind)
        .bind(series.modality)
        .bind(series.body_part)
        .bind(series.series_date)
        .bind(series.series_time)
        .bind(series.description)
        .bind(series.series_number)
        .bind(now_ms())
        .bind(now)
        .fetch_one(self.conn())
        .await?)
    }

    /// Adds a file to a series and marks the series for deriving again.
    pub async fn insert_instance(&mut self, new: &NewInstance<'_>) -> Result<InstanceInsert> {
        let existing: Option<(i64, String)> = sqlx::query_as(
            "SELECT id, object_id FROM instances WHERE dataset_id = $1 AND sop_uid = $2",
        )
        .bind(new.dataset_id)
        .bind(new.sop_uid)
        .fetch_optional(self.conn())
        .await?;
        if let Some((id, object_id)) = existing {
            return Ok(if object_id == new.object_id {
                InstanceInsert::AlreadyPresent(id)
            } else {
                InstanceInsert::Conflict
            });
        }
        let id = sqlx::query_scalar(
            "INSERT INTO instances (dataset_id, series_id, sop_uid, sop_class_uid, instance_number,
             transfer_syntax, rows, columns, frames, geometry, object_id, size_bytes, original_object_id,
             source_name, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) RETURNING id",
        )
        .bind(new.dataset_id)
        .bind(new.series_id)
        .bind(new.sop_uid)
        .bind(new.sop_class_uid)
        .bind(new.instance_number)
        .bind(new.transfer_syntax)
        .bind(new.rows)
        .bind(new.columns)
        .bind(new.frames)
        .bind(new.geometry)
        .bind(new.object_id)
        .bind(new.size_bytes)
        .bind(new.original_object_id)
        .bind(new.source_name)
        .bind(now_s())
        .fetch_one(self.conn())
        .await?;
        self.mark_series_changed(new.series_id).await?;
        Ok(InstanceInsert::Inserted(id))
    }

    /// Marks a series for deriving (thumbnail, volume check, NIfTI) again.
    pub async fn mark_series_changed(&mut self, series_id: i64) -> Result<()> {
        sqlx::query("UPDATE series SET derived = 'pending', changed_at = $2 WHERE id = $1")
            .bind(series_id)
            .bind(now_ms())
            .execute(self.conn())
            .await?;
        Ok(())
    }

    /// Links a label (mask) series to the image series it labels, or unlinks it.
    pub async fn set_label_of(&mut self, series_id: i64, label_of: Option<i64>) -> Result<()> {
        let done = sqlx::query("UPDATE series SET label_of = $2 WHERE id = $1")
            .bind(series_id)
            .bind(label_of)
            .execute(self.conn())
            .await?;
        if done.rows_affected() == 0 {
            return Err(series_not_found(series_id));
        }
        Ok(())
    }

    /// Stores what the deriver made, unless the series changed again since `seen_changed_at`
    /// (then it stays pending and is derived again). Returns whether it was stored.
    pub async fn set_derived(
        &mut self,
        series_id: i64,
        seen_changed_at: i64,
        state: &str,
        summary: &str,
        thumbnail_object: Option<&str>,
        nifti_object: Option<&str>,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE series SET derived = $3, summary = $4, thumbnail_object = $5, nifti_object = $6
             WHERE id = $1 AND changed_at = $2",
        )
        .bind(series_id)
        .bind(seen_changed_at)
        .bind(state)
        .bind(summary)
        .bind(thumbnail_object)
        .bind(nifti_object)
        .execute(self.conn())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn record_upload(
        &mut self,
        dataset_id: i64,
        user_id: i64,
        received: i64,
        imported: i64,
        skipped: i64,
        report: &str,
    ) -> Result<i64> {
        Ok(sqlx::query_scalar(
            "INSERT INTO uploads (dataset_id, user_id, created_at, received, imported, skipped, report)
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
        )
        .bind(dataset_id)
        .bind(user_id)
        .bind(now_s())
        .bind(received)
        .bind(imported)
        .bind(skipped)
        .bind(report)
        .fetch_one(self.conn())
        .await?)
    }
}

impl Store {
    pub async fn dataset(&self, id: i64) -> Result<Dataset> {
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "{DATASET_SELECT} WHERE d.id = $1"
        )))
        .bind(id)
        .fetch_optional(self.pool())
        .await?
        .ok_or_else(|| dataset_not_found(id))
    }

    /// The owner and class of a dataset, for permission checks.
    pub async fn dataset_ref(&self, id: i64) -> Result<DatasetRef> {
        sqlx::query_as("SELECT id, name, owner_id, class_id FROM datasets WHERE id = $1")
            .bind(id)
            .fetch_optional(self.pool())
            .await?
            .ok_or_else(|| dataset_not_found(id))
    }

    /// Every dataset, for admins.
    pub async fn all_datasets(&self) -> Result<Vec<Dataset>> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "{DATASET_SELECT} ORDER BY d.name COLLATE NOCASE, d.id"
        )))
        .fetch_all(self.pool())
        .await?)
    }

    /// The datasets a user owns or that are shared with one of their classes.
    pub async fn datasets_visible_to(&self, user_id: i64) -> Result<Vec<Dataset>> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "{DATASET_SELECT} WHERE d.owner_id = $1
             OR d.class_id IN (SELECT class_id FROM class_members WHERE user_id = $1)
             ORDER BY d.name COLLATE NOCASE, d.id"
        )))
        .bind(user_id)
        .fetch_all(self.pool())
        .await?)
    }

    /// The ids of the datasets a user may read (owned or shared with one of their classes).
    pub async fn dataset_ids_visible_to(&self, user_id: i64) -> Result<Vec<i64>> {
        Ok(sqlx::query_scalar(
            "SELECT id FROM datasets WHERE owner_id = $1
             OR class_id IN (SELECT class_id FROM class_members WHERE user_id = $1) ORDER BY id",
        )
        .bind(user_id)
        .fetch_all(self.pool())
        .await?)
    }

    pub async fn patients(&self, dataset_id: i64) -> Result<Vec<Patient>> {
        Ok(sqlx::query_as(
            "SELECT p.id, p.dataset_id, p.pseudonym, p.name, p.sex,
             (SELECT COUNT(*) FROM studies s WHERE s.patient_id = p.id) AS studies,
             (SELECT COUNT(*) FROM series r JOIN studies s ON s.id = r.study_id WHERE s.patient_id = p.id) AS series
             FROM patients p WHERE p.dataset_id = $1 ORDER BY p.pseudonym",
        )
        .bind(dataset_id)
        .fetch_all(self.pool())
        .await?)
    }

    pub async fn studies(&self, dataset_id: i64, patient_id: Option<i64>) -> Result<Vec<Study>> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "{STUDY_SELECT} WHERE s.dataset_id = $1 AND ($2 IS NULL OR s.patient_id = $2)
             ORDER BY p.pseudonym, s.study_date, s.id"
        )))
        .bind(dataset_id)
        .bind(patient_id)
        .fetch_all(self.pool())
        .await?)
    }

    pub async fn study(&self, id: i64) -> Result<Study> {
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "{STUDY_SELECT} WHERE s.id = $1"
        )))
        .bind(id)
        .fetch_optional(self.pool())
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("there is no study with id {id}")))
    }

    pub async fn series_list(&self, dataset_id: i64, filter: &SeriesFilter) -> Result<Vec<Series>> {
        let text = filter
            .text
            .as_deref()
            .map(|t| format!("%{}%", escape_like(t)));
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "{SERIES_SELECT} WHERE r.dataset_id = $1
             AND ($2 IS NULL OR r.study_id = $2)
             AND ($3 IS NULL OR s.patient_id = $3)
             AND ($4 IS NULL OR r.modality = $4 COLLATE NOCASE)
             AND ($5 IS NULL OR r.description LIKE $5 ESCAPE '\\' OR s.description LIKE $5 ESCAPE '\\'
                  OR r.body_part LIKE $5 ESCAPE '\\' OR p.pseudonym LIKE $5 ESCAPE '\\'
                  OR r.series_uid LIKE $5 ESCAPE '\\' OR s.study_uid LIKE $5 ESCAPE '\\')
             ORDER BY p.pseudonym, s.study_date, s.id, r.series_number, r.id"
        )))
        .bind(dataset_id)
        .bind(filter.study_id)
        .bind(filter.patient_id)
        .bind(filter.modality.as_deref())
        .bind(text)
        .fetch_all(self.pool())
        .await?)
    }

    pub async fn series(&self, id: i64) -> Result<Series> {
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "{SERIES_SELECT} WHERE r.id = $1"
        )))
        .bind(id)
        .fetch_optional(self.pool())
        .await?
        .ok_or_else(|| series_not_found(id))
    }

    /// The label (mask) series that label `series_id`.
    pub async fn labels_of(&self, series_id: i64) -> Result<Vec<Series>> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "{SERIES_SELECT} WHERE r.label_of = $1 ORDER BY r.id"
        )))
        .bind(series_id)
        .fetch_all(self.pool())
        .await?)
    }

    /// A series's files, by instance number then id (display order is decided by geometry).
    pub async fn instances(&self, series_id: i64) -> Result<Vec<Instance>> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "{INSTANCE_SELECT} WHERE i.series_id = $1 ORDER BY i.instance_number, i.id"
        )))
        .bind(series_id)
        .fetch_all(self.pool())
        .await?)
    }

    pub async fn instance(&self, id: i64) -> Result<Instance> {
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "{INSTANCE_SELECT} WHERE i.id = $1"
        )))
        .bind(id)
        .fetch_optional(self.pool())
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("there is no instance with id {id}")))
    }

    /// Series waiting to be derived whose last change is older than `settled_ms`.
    pub async fn series_to_derive(
        &self,
        settled_before_ms: i64,
        limit: i64,
    ) -> Result<Vec<(i64, i64)>> {
        Ok(sqlx::query_as(
            "SELECT id, changed_at FROM series WHERE derived = 'pending' AND changed_at <= $1
             ORDER BY changed_at LIMIT $2",
        )
        .bind(settled_before_ms)
        .bind(limit)
        .fetch_all(self.pool())
        .await?)
    }

    pub async fn uploads(&self, dataset_id: i64) -> Result<Vec<Upload>> {
        Ok(sqlx::query_as(
            "SELECT up.id, up.dataset_id, up.user_id, u.username, up.created_at, up.received,
             up.imported, up.skipped, up.report FROM uploads up JOIN users u ON u.id = up.user_id
             WHERE up.dataset_id = $1 ORDER BY up.id DESC",
        )
        .bind(dataset_id)
        .fetch_all(self.pool())
        .await?)
    }

    pub async fn upload(&self, id: i64) -> Result<Upload> {
        sqlx::query_as(
            "SELECT up.id, up.dataset_id, up.user_id, u.username, up.created_at, up.received,
             up.imported, up.skipped, up.report FROM uploads up JOIN users u ON u.id = up.user_id
             WHERE up.id = $1",
        )
        .bind(id)
        .fetch_optional(self.pool())
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("there is no upload with id {id}")))
    }

    /// Whether any index row still references an object (before deleting it from storage).
    pub async fn object_referenced(&self, object_id: &str) -> Result<bool> {
        Ok(sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM instances WHERE object_id = $1 OR original_object_id = $1)
             OR EXISTS (SELECT 1 FROM series WHERE thumbnail_object = $1 OR nifti_object = $1)",
        )
        .bind(object_id)
        .fetch_one(self.pool())
        .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{store, student};

    async fn dataset_with_series(store: &Store) -> (i64, i64, i64) {
        let mut tx = store.begin().await.unwrap();
        let owner = student(&mut tx, "anna").await;
        let dataset = tx
            .create_dataset(&NewDataset {
                name: "Chest CT",
                description: "",
                owner_id: owner.id,
                class_id: None,
            })
            .await
            .unwrap();
        let patient = tx
            .upsert_patient(dataset, "P1", "Anon", "F", "")
            .await
            .unwrap();
        let study = tx
            .upsert_study(
                dataset,
                patient,
                &NewStudy {
                    study_uid: "2.25.1",
                    study_date: "20200101",
                    study_time: "",
                    description: "CT chest",
                    accession_number: "",
                    referring_physician: "",
                },
            )
            .await
            .unwrap();
        let series = tx
            .upsert_series(
                dataset,
                study,
                &NewSeries {
                    series_uid: "2.25.2",
                    kind: "dicom",
                    modality: "CT",
                    body_part: "CHEST",
                    series_date: "",
                    series_time: "",
                    description: "Lung 1 mm",
                    series_number: Some(3),
                },
            )
            .await
            .unwrap();
        tx.commit().await.unwrap();
        (owner.id, dataset, series)
    }

    fn instance<'a>(dataset: i64, series: i64, uid: &'a str, object: &'a str) -> NewInstance<'a> {
        NewInstance {
            dataset_id: dataset,
            series_id: series,
            sop_uid: uid,
            sop_class_uid: "1.2.840.10008.5.1.4.1.1.2",
            instance_number: Some(1),
            transfer_syntax: "1.2.840.10008.1.2.1",
            rows: Some(512),
            columns: Some(512),
            frames: 1,
            geometry: "{}",
            object_id: object,
            size_bytes: 10,
            original_object_id: None,
            source_name: "a.dcm",
        }
    }

    #[tokio::test]
    async fn the_same_file_twice_is_one_instance_and_a_different_one_is_a_conflict() {
        let (store, _dir) = store().await;
        let (_, dataset, series) = dataset_with_series(&store).await;
        let mut tx = store.begin().await.unwrap();
        let first = tx
            .insert_instance(&instance(dataset, series, "1.1", "aa"))
            .await
            .unwrap();
        let InstanceInsert::Inserted(id) = first else {
            panic!("{first:?}")
        };
        assert_eq!(
            tx.insert_instance(&instance(dataset, series, "1.1", "aa"))
                .await
                .unwrap(),
            InstanceInsert::AlreadyPresent(id)
        );
        assert_eq!(
            tx.insert_instance(&instance(dataset, series, "1.1", "bb"))
                .await
                .unwrap(),
            InstanceInsert::Conflict
        );
        tx.commit().await.unwrap();
        let listed = store.dataset(dataset).await.unwrap();
        assert_eq!(
            (
                listed.patients,
                listed.studies,
                listed.series,
                listed.instances
            ),
            (1, 1, 1, 1)
        );
    }

    #[tokio::test]
    async fn a_change_after_deriving_started_keeps_the_series_pending() {
        let (store, _dir) = store().await;
        let (_, dataset, series) = dataset_with_series(&store).await;
        let seen = store.series(series).await.unwrap().changed_at;
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        let mut tx = store.begin().await.unwrap();
        tx.insert_instance(&instance(dataset, series, "1.1", "aa"))
            .await
            .unwrap();
        assert!(
            !tx.set_derived(series, seen, "ready", "{}", None, None)
                .await
                .unwrap()
        );
        tx.commit().await.unwrap();
        assert_eq!(store.series(series).await.unwrap().derived, "pending");
        let now = store.series(series).await.unwrap().changed_at;
        let mut tx = store.begin().await.unwrap();
        assert!(
            tx.set_derived(series, now, "ready", "{}", Some("t"), None)
                .await
                .unwrap()
        );
        tx.commit().await.unwrap();
        assert_eq!(store.series(series).await.unwrap().derived, "ready");
    }

    #[tokio::test]
    async fn deleting_a_dataset_returns_its_objects_and_leaves_no_rows() {
        let (store, _dir) = store().await;
        let (owner, dataset, series) = dataset_with_series(&store).await;
        let mut tx = store.begin().await.unwrap();
        tx.insert_instance(&instance(dataset, series, "1.1", "aa"))
            .await
            .unwrap();
        let objects = tx.delete_dataset(dataset).await.unwrap();
        tx.commit().await.unwrap();
        assert_eq!(objects, vec!["aa".to_string()]);
        assert!(!store.object_referenced("aa").await.unwrap());
        assert!(store.datasets_visible_to(owner).await.unwrap().is_empty());
        assert!(matches!(
            store.series(series).await,
            Err(StoreError::NotFound(_))
        ));
    }

    #[tokio::test]
    async fn search_matches_text_literally_and_modality_in_any_case() {
        let (store, _dir) = store().await;
        let (_, dataset, _) = dataset_with_series(&store).await;
        let found = |modality: Option<&str>, text: Option<&str>| {
            let filter = SeriesFilter {
                modality: modality.map(String::from),
                text: text.map(String::from),
                ..Default::default()
            };
            let store = store.clone();
            async move { store.series_list(dataset, &filter).await.unwrap().len() }
        };
        assert_eq!(found(Some("ct"), None).await, 1);
        assert_eq!(found(Some("MR"), None).await, 0);
        assert_eq!(found(None, Some("lung")).await, 1);
        assert_eq!(found(None, Some("%")).await, 0);
    }
}
