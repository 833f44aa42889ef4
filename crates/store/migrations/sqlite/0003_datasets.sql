-- Imaging datasets and their index: patients (pseudonymised) → studies → series → instances.
-- The bytes live in the object store; these rows hold object ids (SHA-256, lowercase hex).

CREATE TABLE datasets (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    owner_id BIGINT NOT NULL REFERENCES users (id),
    -- NULL: private to the owner; otherwise shared read-only with this class.
    class_id BIGINT REFERENCES classes (id),
    -- Keep the original (identifiable) files beside the de-identified ones; admins only.
    keep_originals BOOLEAN NOT NULL DEFAULT FALSE,
    created_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX datasets_by_owner_name ON datasets (owner_id, name);
CREATE INDEX datasets_by_class ON datasets (class_id);

CREATE TABLE patients (
    id INTEGER PRIMARY KEY,
    dataset_id BIGINT NOT NULL REFERENCES datasets (id) ON DELETE CASCADE,
    -- The de-identified Patient ID (a keyed pseudonym), or a name for files without patients.
    pseudonym TEXT NOT NULL,
    name TEXT NOT NULL DEFAULT '',
    sex TEXT NOT NULL DEFAULT '',
    birth_date TEXT NOT NULL DEFAULT ''
);
CREATE UNIQUE INDEX patients_by_pseudonym ON patients (dataset_id, pseudonym);

CREATE TABLE studies (
    id INTEGER PRIMARY KEY,
    dataset_id BIGINT NOT NULL REFERENCES datasets (id) ON DELETE CASCADE,
    patient_id BIGINT NOT NULL REFERENCES patients (id) ON DELETE CASCADE,
    study_uid TEXT NOT NULL,
    study_date TEXT NOT NULL DEFAULT '',
    study_time TEXT NOT NULL DEFAULT '',
    description TEXT NOT NULL DEFAULT '',
    accession_number TEXT NOT NULL DEFAULT '',
    referring_physician TEXT NOT NULL DEFAULT ''
);
CREATE UNIQUE INDEX studies_by_uid ON studies (dataset_id, study_uid);
CREATE INDEX studies_by_global_uid ON studies (study_uid);

CREATE TABLE series (
    id INTEGER PRIMARY KEY,
    dataset_id BIGINT NOT NULL REFERENCES datasets (id) ON DELETE CASCADE,
    study_id BIGINT NOT NULL REFERENCES studies (id) ON DELETE CASCADE,
    series_uid TEXT NOT NULL,
    -- dicom: DICOM instances; nifti: one NIfTI volume; image: PNG/JPEG pictures of one folder.
    kind TEXT NOT NULL CHECK (kind IN ('dicom', 'nifti', 'image')),
    modality TEXT NOT NULL DEFAULT '',
    body_part TEXT NOT NULL DEFAULT '',
    series_date TEXT NOT NULL DEFAULT '',
    series_time TEXT NOT NULL DEFAULT '',
    description TEXT NOT NULL DEFAULT '',
    series_number INTEGER,
    -- For label (mask) volumes: the image series they label.
    label_of BIGINT REFERENCES series (id) ON DELETE SET NULL,
    -- Derived when the series changes: pending, then ready or failed.
    derived TEXT NOT NULL DEFAULT 'pending' CHECK (derived IN ('pending', 'ready', 'failed')),
    -- Summary, JSON: dimensions, spacing, window, whether it forms a volume and why not.
    summary TEXT NOT NULL DEFAULT '{}',
    thumbnail_object TEXT,
    nifti_object TEXT,
    changed_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX series_by_uid ON series (dataset_id, series_uid);
CREATE INDEX series_by_study ON series (study_id);
CREATE INDEX series_by_global_uid ON series (series_uid);
CREATE INDEX series_pending ON series (derived) WHERE derived = 'pending';

CREATE TABLE instances (
    id INTEGER PRIMARY KEY,
    dataset_id BIGINT NOT NULL REFERENCES datasets (id) ON DELETE CASCADE,
    series_id BIGINT NOT NULL REFERENCES series (id) ON DELETE CASCADE,
    sop_uid TEXT NOT NULL,
    sop_class_uid TEXT NOT NULL DEFAULT '',
    instance_number INTEGER,
    transfer_syntax TEXT NOT NULL DEFAULT '',
    rows INTEGER,
    columns INTEGER,
    frames INTEGER NOT NULL DEFAULT 1,
    -- Geometry as read from the header, JSON (position, orientation, spacing).
    geometry TEXT NOT NULL DEFAULT '{}',
    -- The stored (de-identified) file.
    object_id TEXT NOT NULL,
    size_bytes BIGINT NOT NULL,
    -- The original file, only when the dataset keeps originals.
    original_object_id TEXT,
    -- The file's path as uploaded (for NIfTI and pictures, which have no UIDs of their own).
    source_name TEXT NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX instances_by_uid ON instances (series_id, sop_uid);
CREATE INDEX instances_by_dataset_uid ON instances (dataset_id, sop_uid);
CREATE INDEX instances_by_global_uid ON instances (sop_uid);

-- One row per upload: who, when, and the ingest report.
CREATE TABLE uploads (
    id INTEGER PRIMARY KEY,
    dataset_id BIGINT NOT NULL REFERENCES datasets (id) ON DELETE CASCADE,
    user_id BIGINT NOT NULL REFERENCES users (id),
    created_at BIGINT NOT NULL,
    received INTEGER NOT NULL,
    imported INTEGER NOT NULL,
    skipped INTEGER NOT NULL,
    report TEXT NOT NULL
);
CREATE INDEX uploads_by_dataset ON uploads (dataset_id);
