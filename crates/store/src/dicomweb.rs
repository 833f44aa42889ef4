//! The index as DICOMweb sees it: QIDO-RS searches for studies, series and instances, and
//! the stored files behind a WADO-RS retrieval, always restricted to a list of datasets the
//! caller may read. Only DICOM series take part (NIfTI volumes and pictures have no DICOM
//! files to serve).
//!
//! The same DICOM file uploaded into two datasets has the same (pseudonymous) UIDs in both,
//! so results are grouped by UID: one study, series or instance however many of the
//! visible datasets hold it, counted once.

use crate::{Result, Store, escape_like};
use sqlx::{QueryBuilder, Sqlite};

/// An attribute a search can match on, at the level of the table that holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Key {
    PatientId,
    PatientName,
    PatientBirthDate,
    PatientSex,
    StudyInstanceUid,
    StudyDate,
    StudyTime,
    AccessionNumber,
    StudyDescription,
    ReferringPhysicianName,
    /// Matches studies with at least one series of one of the given modalities.
    ModalitiesInStudy,
    SeriesInstanceUid,
    Modality,
    SeriesNumber,
    SeriesDescription,
    BodyPartExamined,
    SeriesDate,
    SeriesTime,
    SopInstanceUid,
    SopClassUid,
    InstanceNumber,
}

/// The level of a search: what one result is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Study,
    Series,
    Instance,
}

impl Key {
    /// The lowest level whose search can match on this key (study keys work at every level).
    pub fn level(self) -> Level {
        match self {
            Key::PatientId
            | Key::PatientName
            | Key::PatientBirthDate
            | Key::PatientSex
            | Key::StudyInstanceUid
            | Key::StudyDate
            | Key::StudyTime
            | Key::AccessionNumber
            | Key::StudyDescription
            | Key::ReferringPhysicianName
            | Key::ModalitiesInStudy => Level::Study,
            Key::SeriesInstanceUid
            | Key::Modality
            | Key::SeriesNumber
            | Key::SeriesDescription
            | Key::BodyPartExamined
            | Key::SeriesDate
            | Key::SeriesTime => Level::Series,
            Key::SopInstanceUid | Key::SopClassUid | Key::InstanceNumber => Level::Instance,
        }
    }

    fn column(self) -> &'static str {
        match self {
            Key::PatientId => "p.pseudonym",
            Key::PatientName => "p.name",
            Key::PatientBirthDate => "p.birth_date",
            Key::PatientSex => "p.sex",
            Key::StudyInstanceUid => "s.study_uid",
            Key::StudyDate => "s.study_date",
            Key::StudyTime => "s.study_time",
            Key::AccessionNumber => "s.accession_number",
            Key::StudyDescription => "s.description",
            Key::ReferringPhysicianName => "s.referring_physician",
            Key::ModalitiesInStudy => "m.modality",
            Key::SeriesInstanceUid => "r.series_uid",
            Key::Modality => "r.modality",
            Key::SeriesNumber => "r.series_number",
            Key::SeriesDescription => "r.description",
            Key::BodyPartExamined => "r.body_part",
            Key::SeriesDate => "r.series_date",
            Key::SeriesTime => "r.series_time",
            Key::SopInstanceUid => "i.sop_uid",
            Key::SopClassUid => "i.sop_class_uid",
            Key::InstanceNumber => "i.instance_number",
        }
    }
}

/// How a key's value matches (PS3.4 C.2.2.2), already parsed and checked by the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    /// Single value matching: the stored value equals this.
    Equals(String),
    /// Single value matching, ignoring ASCII case (person names).
    EqualsIgnoringCase(String),
    /// Wild card matching: `*` any run of characters, `?` one character; ignores ASCII case.
    Wildcard(String),
    /// List of UID matching: any of these values.
    AnyOf(Vec<String>),
    /// Range matching (dates, times): between the bounds, both included; a missing bound is
    /// open. Empty stored values never match a range.
    Range {
        from: Option<String>,
        to: Option<String>,
    },
    /// A whole number (Series Number, Instance Number).
    Number(i64),
}

/// A search over the index.
#[derive(Debug, Clone, Default)]
pub struct Search {
    /// The datasets searched; nothing matches outside them.
    pub datasets: Vec<i64>,
    pub conditions: Vec<(Key, Condition)>,
    pub limit: i64,
    pub offset: i64,
}

/// One study found, across the visible datasets that hold it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct FoundStudy {
    pub study_uid: String,
    /// The first visible dataset holding the study.
    pub dataset_id: i64,
    pub patient_id: String,
    pub patient_name: String,
    pub patient_sex: String,
    pub patient_birth_date: String,
    pub study_date: String,
    pub study_time: String,
    pub study_description: String,
    pub accession_number: String,
    pub referring_physician: String,
    /// Modalities of its series, separated by commas.
    pub modalities: String,
    pub series: i64,
    pub instances: i64,
}

/// One series found, with its study's and patient's attributes.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct FoundSeries {
    pub series_uid: String,
    pub study_uid: String,
    pub dataset_id: i64,
    pub patient_id: String,
    pub patient_name: String,
    pub patient_sex: String,
    pub patient_birth_date: String,
    pub study_date: String,
    pub study_time: String,
    pub study_description: String,
    pub accession_number: String,
    pub referring_physician: String,
    pub modality: String,
    pub series_description: String,
    pub series_number: Option<i64>,
    pub body_part: String,
    pub series_date: String,
    pub series_time: String,
    pub instances: i64,
}

/// One instance found, with its series's, study's and patient's attributes.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct FoundInstance {
    pub sop_uid: String,
    pub series_uid: String,
    pub study_uid: String,
    pub dataset_id: i64,
    pub patient_id: String,
    pub patient_name: String,
    pub patient_sex: String,
    pub patient_birth_date: String,
    pub study_date: String,
    pub study_time: String,
    pub study_description: String,
    pub accession_number: String,
    pub referring_physician: String,
    pub modality: String,
    pub series_description: String,
    pub series_number: Option<i64>,
    pub sop_class_uid: String,
    pub instance_number: Option<i64>,
    pub rows: Option<i64>,
    pub columns: Option<i64>,
    pub frames: i64,
    pub transfer_syntax: String,
}

/// A stored DICOM file to retrieve, and where it sits in the index.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct StoredInstance {
    pub instance_id: i64,
    pub dataset_id: i64,
    pub series_id: i64,
    pub study_uid: String,
    pub series_uid: String,
    pub sop_uid: String,
    pub sop_class_uid: String,
    pub instance_number: Option<i64>,
    pub transfer_syntax: String,
    pub rows: Option<i64>,
    pub columns: Option<i64>,
    pub frames: i64,
    pub object_id: String,
    pub size_bytes: i64,
}

const PATIENT_STUDY_COLUMNS: &str = "MIN(p.pseudonym) AS patient_id, MIN(p.name) AS patient_name,
    MIN(p.sex) AS patient_sex, MIN(p.birth_date) AS patient_birth_date,
    MIN(s.study_date) AS study_date, MIN(s.study_time) AS study_time,
    MIN(s.description) AS study_description, MIN(s.accession_number) AS accession_number,
    MIN(s.referring_physician) AS referring_physician";

/// `IN (…)` over the dataset ids, or `IN (NULL)` (matching nothing) for none.
fn push_datasets(query: &mut QueryBuilder<Sqlite>, column: &str, datasets: &[i64]) {
    query.push(format_args!(" {column} IN ("));
    if datasets.is_empty() {
        query.push("NULL");
    }
    let mut list = query.separated(", ");
    for id in datasets {
        list.push_bind(*id);
    }
    query.push(")");
}

/// Turns DICOM wild cards into a `LIKE` pattern, everything else matched literally.
fn like_pattern(wildcard: &str) -> String {
    escape_like(wildcard).replace('*', "%").replace('?', "_")
}

fn push_condition(query: &mut QueryBuilder<Sqlite>, column: &str, condition: &Condition) {
    match condition {
        Condition::Equals(value) => {
            query
                .push(format_args!(" AND {column} = "))
                .push_bind(value.clone());
        }
        Condition::EqualsIgnoringCase(value) => {
            query
                .push(format_args!(" AND {column} LIKE "))
                .push_bind(escape_like(value))
                .push(" ESCAPE '\\'");
        }
        Condition::Wildcard(pattern) => {
            query
                .push(format_args!(" AND {column} LIKE "))
                .push_bind(like_pattern(pattern))
                .push(" ESCAPE '\\'");
        }
        Condition::AnyOf(values) => {
            query.push(format_args!(" AND {column} IN ("));
            if values.is_empty() {
                query.push("NULL");
            }
            let mut list = query.separated(", ");
            for value in values {
                list.push_bind(value.clone());
            }
            query.push(")");
        }
        Condition::Range { from, to } => {
            query.push(format_args!(" AND {column} <> ''"));
            if let Some(from) = from {
                query
                    .push(format_args!(" AND {column} >= "))
                    .push_bind(from.clone());
            }
            if let Some(to) = to {
                query
                    .push(format_args!(" AND {column} <= "))
                    .push_bind(to.clone());
            }
        }
        Condition::Number(number) => {
            query
                .push(format_args!(" AND {column} = "))
                .push_bind(*number);
        }
    }
}

/// The conditions of a search that apply at `level` (keys of lower levels are left out:
/// the caller has reported them as not supported there).
fn push_conditions(query: &mut QueryBuilder<Sqlite>, search: &Search, level: Level) {
    for (key, condition) in &search.conditions {
        if key.level() > level {
            continue;
        }
        if *key == Key::ModalitiesInStudy {
            query.push(
                " AND EXISTS (SELECT 1 FROM series m WHERE m.study_id = s.id AND m.kind = 'dicom'",
            );
            push_condition(query, key.column(), condition);
            query.push(")");
        } else {
            push_condition(query, key.column(), condition);
        }
    }
}

fn push_page(query: &mut QueryBuilder<Sqlite>, search: &Search) {
    query
        .push(" LIMIT ")
        .push_bind(search.limit.max(0))
        .push(" OFFSET ")
        .push_bind(search.offset.max(0));
}

impl Store {
    /// Studies matching a search, by study date (newest first), then UID.
    pub async fn search_studies(&self, search: &Search) -> Result<Vec<FoundStudy>> {
        let mut query = QueryBuilder::<Sqlite>::new(format!(
            "SELECT s.study_uid, MIN(s.dataset_id) AS dataset_id, {PATIENT_STUDY_COLUMNS},
             COALESCE(GROUP_CONCAT(DISTINCT NULLIF(r.modality, '')), '') AS modalities,
             COUNT(DISTINCT r.series_uid) AS series, COUNT(DISTINCT i.sop_uid) AS instances
             FROM studies s JOIN patients p ON p.id = s.patient_id
             JOIN series r ON r.study_id = s.id AND r.kind = 'dicom'
             LEFT JOIN instances i ON i.series_id = r.id
             WHERE"
        ));
        push_datasets(&mut query, "s.dataset_id", &search.datasets);
        push_conditions(&mut query, search, Level::Study);
        query.push(" GROUP BY s.study_uid ORDER BY MIN(s.study_date) DESC, s.study_uid");
        push_page(&mut query, search);
        Ok(query
            .build_query_as::<FoundStudy>()
            .fetch_all(self.pool())
            .await?)
    }

    /// Series matching a search, by study, series number, then UID.
    pub async fn search_series(&self, search: &Search) -> Result<Vec<FoundSeries>> {
        let mut query = QueryBuilder::<Sqlite>::new(format!(
            "SELECT r.series_uid, MIN(s.study_uid) AS study_uid, MIN(r.dataset_id) AS dataset_id,
             {PATIENT_STUDY_COLUMNS},
             MIN(r.modality) AS modality, MIN(r.description) AS series_description,
             MIN(r.series_number) AS series_number, MIN(r.body_part) AS body_part,
             MIN(r.series_date) AS series_date, MIN(r.series_time) AS series_time,
             COUNT(DISTINCT i.sop_uid) AS instances
             FROM series r JOIN studies s ON s.id = r.study_id JOIN patients p ON p.id = s.patient_id
             LEFT JOIN instances i ON i.series_id = r.id
             WHERE r.kind = 'dicom' AND"
        ));
        push_datasets(&mut query, "r.dataset_id", &search.datasets);
        push_conditions(&mut query, search, Level::Series);
        query.push(
            " GROUP BY r.series_uid ORDER BY MIN(s.study_uid), MIN(r.series_number), r.series_uid",
        );
        push_page(&mut query, search);
        Ok(query
            .build_query_as::<FoundSeries>()
            .fetch_all(self.pool())
            .await?)
    }

    /// Instances matching a search, by study, series, instance number, then UID.
    pub async fn search_instances(&self, search: &Search) -> Result<Vec<FoundInstance>> {
        let mut query = QueryBuilder::<Sqlite>::new(format!(
            "SELECT i.sop_uid, MIN(r.series_uid) AS series_uid, MIN(s.study_uid) AS study_uid,
             MIN(i.dataset_id) AS dataset_id, {PATIENT_STUDY_COLUMNS},
             MIN(r.modality) AS modality, MIN(r.description) AS series_description,
             MIN(r.series_number) AS series_number, MIN(i.sop_class_uid) AS sop_class_uid,
             MIN(i.instance_number) AS instance_number, MIN(i.rows) AS rows,
             MIN(i.columns) AS columns, MIN(i.frames) AS frames,
             MIN(i.transfer_syntax) AS transfer_syntax
             FROM instances i JOIN series r ON r.id = i.series_id
             JOIN studies s ON s.id = r.study_id JOIN patients p ON p.id = s.patient_id
             WHERE r.kind = 'dicom' AND"
        ));
        push_datasets(&mut query, "i.dataset_id", &search.datasets);
        push_conditions(&mut query, search, Level::Instance);
        query.push(
            " GROUP BY i.sop_uid ORDER BY MIN(s.study_uid), MIN(r.series_number),
             MIN(r.series_uid), MIN(i.instance_number), i.sop_uid",
        );
        push_page(&mut query, search);
        Ok(query
            .build_query_as::<FoundInstance>()
            .fetch_all(self.pool())
            .await?)
    }

    /// The stored files of a study, or of one of its series, or one instance, in the given
    /// datasets: by series number, series, instance number. A file held by several of the
    /// datasets is listed once (from the first dataset).
    pub async fn stored_instances(
        &self,
        datasets: &[i64],
        study_uid: &str,
        series_uid: Option<&str>,
        sop_uid: Option<&str>,
    ) -> Result<Vec<StoredInstance>> {
        let mut query = QueryBuilder::<Sqlite>::new(
            "SELECT i.id AS instance_id, i.dataset_id, i.series_id, s.study_uid, r.series_uid,
             i.sop_uid, i.sop_class_uid, i.instance_number, i.transfer_syntax, i.rows, i.columns,
             i.frames, i.object_id, i.size_bytes
             FROM instances i JOIN series r ON r.id = i.series_id JOIN studies s ON s.id = r.study_id
             WHERE r.kind = 'dicom' AND",
        );
        push_datasets(&mut query, "i.dataset_id", datasets);
        query
            .push(" AND s.study_uid = ")
            .push_bind(study_uid.to_string());
        if let Some(series_uid) = series_uid {
            query
                .push(" AND r.series_uid = ")
                .push_bind(series_uid.to_string());
        }
        if let Some(sop_uid) = sop_uid {
            query
                .push(" AND i.sop_uid = ")
                .push_bind(sop_uid.to_string());
        }
        query.push(
            " ORDER BY r.series_number, r.series_uid, i.instance_number, i.sop_uid, i.dataset_id",
        );
        let rows = query
            .build_query_as::<StoredInstance>()
            .fetch_all(self.pool())
            .await?;
        let mut seen = std::collections::HashSet::new();
        Ok(rows
            .into_iter()
            .filter(|row| seen.insert(row.sop_uid.clone()))
            .collect())
    }

    /// An instance of a dataset by its id (as an upload's report names it).
    pub async fn stored_instance_by_id(
        &self,
        dataset_id: i64,
        instance_id: i64,
    ) -> Result<Option<StoredInstance>> {
        Ok(sqlx::query_as(
            "SELECT i.id AS instance_id, i.dataset_id, i.series_id, s.study_uid, r.series_uid,
             i.sop_uid, i.sop_class_uid, i.instance_number, i.transfer_syntax, i.rows, i.columns,
             i.frames, i.object_id, i.size_bytes
             FROM instances i JOIN series r ON r.id = i.series_id JOIN studies s ON s.id = r.study_id
             WHERE i.dataset_id = $1 AND i.id = $2",
        )
        .bind(dataset_id)
        .bind(instance_id)
        .fetch_optional(self.pool())
        .await?)
    }

    /// The ids of every dataset (for admins, who may read them all).
    pub async fn all_dataset_ids(&self) -> Result<Vec<i64>> {
        Ok(sqlx::query_scalar("SELECT id FROM datasets ORDER BY id")
            .fetch_all(self.pool())
            .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datasets::{NewDataset, NewInstance, NewSeries, NewStudy};
    use crate::test_support::{store, student};

    struct Fixture {
        first: i64,
        second: i64,
        other: i64,
    }

    /// Two datasets of one owner holding the same study (as after uploading a file twice),
    /// the second with an extra MR series, and another dataset with a different patient.
    async fn fixture(store: &Store) -> Fixture {
        let mut tx = store.begin().await.unwrap();
        let owner = student(&mut tx, "anna").await;
        let mut ids = Vec::new();
        for name in ["first", "second", "other"] {
            ids.push(
                tx.create_dataset(&NewDataset {
                    name,
                    description: "",
                    owner_id: owner.id,
                    class_id: None,
                })
                .await
                .unwrap(),
            );
        }
        let add = async |tx: &mut crate::WriteTx,
                         dataset: i64,
                         patient: (&str, &str),
                         study: (&str, &str, &str),
                         series: (&str, &str, i64),
                         sop: &str,
                         number: i64| {
            let patient = tx
                .upsert_patient(dataset, patient.0, patient.1, "F", "")
                .await
                .unwrap();
            let study = tx
                .upsert_study(
                    dataset,
                    patient,
                    &NewStudy {
                        study_uid: study.0,
                        study_date: study.1,
                        study_time: "",
                        description: study.2,
                        accession_number: "ACC1",
                        referring_physician: "",
                    },
                )
                .await
                .unwrap();
            let series_id = tx
                .upsert_series(
                    dataset,
                    study,
                    &NewSeries {
                        series_uid: series.0,
                        kind: "dicom",
                        modality: series.1,
                        body_part: "",
                        series_date: "",
                        series_time: "",
                        description: "",
                        series_number: Some(series.2),
                    },
                )
                .await
                .unwrap();
            tx.insert_instance(&NewInstance {
                dataset_id: dataset,
                series_id,
                sop_uid: sop,
                sop_class_uid: "1.2.840.10008.5.1.4.1.1.2",
                instance_number: Some(number),
                transfer_syntax: "1.2.840.10008.1.2.1",
                rows: Some(2),
                columns: Some(2),
                frames: 1,
                geometry: "{}",
                object_id: &format!("object-{sop}"),
                size_bytes: 10,
                original_object_id: None,
                source_name: &format!("upload/{sop}.dcm"),
            })
            .await
            .unwrap();
        };
        let (first, second, other) = (ids[0], ids[1], ids[2]);
        let doe = ("PSEUDO1", "Doe^Jane");
        let chest = ("2.25.1", "20200102", "CT chest");
        add(
            &mut tx,
            first,
            doe,
            chest,
            ("2.25.11", "CT", 1),
            "2.25.111",
            1,
        )
        .await;
        add(
            &mut tx,
            first,
            doe,
            chest,
            ("2.25.11", "CT", 1),
            "2.25.112",
            2,
        )
        .await;
        add(
            &mut tx,
            second,
            doe,
            chest,
            ("2.25.11", "CT", 1),
            "2.25.111",
            1,
        )
        .await;
        add(
            &mut tx,
            second,
            doe,
            chest,
            ("2.25.12", "MR", 2),
            "2.25.121",
            1,
        )
        .await;
        add(
            &mut tx,
            other,
            ("PSEUDO2", "Roe^Richard"),
            ("2.25.2", "20210305", "MR head"),
            ("2.25.21", "MR", 1),
            "2.25.211",
            1,
        )
        .await;
        tx.commit().await.unwrap();
        Fixture {
            first,
            second,
            other,
        }
    }

    fn search(datasets: &[i64], conditions: Vec<(Key, Condition)>) -> Search {
        Search {
            datasets: datasets.to_vec(),
            conditions,
            limit: 100,
            offset: 0,
        }
    }

    #[tokio::test]
    async fn a_study_held_by_two_datasets_is_one_result_counting_each_file_once() {
        let (store, _dir) = store().await;
        let f = fixture(&store).await;
        let found = store
            .search_studies(&search(&[f.first, f.second], vec![]))
            .await
            .unwrap();
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!((found[0].series, found[0].instances), (2, 3));
        let mut modalities: Vec<&str> = found[0].modalities.split(',').collect();
        modalities.sort();
        assert_eq!(modalities, ["CT", "MR"]);
        assert_eq!(found[0].dataset_id, f.first);
    }

    #[tokio::test]
    async fn nothing_outside_the_given_datasets_is_found() {
        let (store, _dir) = store().await;
        let f = fixture(&store).await;
        let only_other = search(&[f.other], vec![]);
        let studies = store.search_studies(&only_other).await.unwrap();
        assert_eq!(studies.len(), 1);
        assert_eq!(studies[0].study_uid, "2.25.2");
        assert!(
            store
                .search_studies(&search(&[], vec![]))
                .await
                .unwrap()
                .is_empty()
        );
        assert!(
            store
                .search_series(&search(&[], vec![]))
                .await
                .unwrap()
                .is_empty()
        );
        assert!(
            store
                .search_instances(&search(&[], vec![]))
                .await
                .unwrap()
                .is_empty()
        );
        assert!(
            store
                .stored_instances(&[f.other], "2.25.1", None, None)
                .await
                .unwrap()
                .is_empty()
        );
    }

    #[tokio::test]
    async fn names_match_with_wild_cards_in_any_case_and_literally_otherwise() {
        let (store, _dir) = store().await;
        let f = fixture(&store).await;
        let all = [f.first, f.second, f.other];
        let count = |key: Key, condition: Condition| {
            let store = store.clone();
            let query = search(&all, vec![(key, condition)]);
            async move { store.search_studies(&query).await.unwrap().len() }
        };
        assert_eq!(
            count(Key::PatientName, Condition::Wildcard("doe*".into())).await,
            1
        );
        assert_eq!(
            count(Key::PatientName, Condition::Wildcard("?oe^*".into())).await,
            2
        );
        assert_eq!(
            count(Key::PatientName, Condition::Wildcard("%".into())).await,
            0
        );
        assert_eq!(
            count(
                Key::PatientName,
                Condition::EqualsIgnoringCase("DOE^JANE".into())
            )
            .await,
            1
        );
        assert_eq!(
            count(Key::PatientId, Condition::Equals("PSEUDO2".into())).await,
            1
        );
        assert_eq!(
            count(Key::PatientId, Condition::Equals("pseudo2".into())).await,
            0
        );
        assert_eq!(
            count(
                Key::StudyInstanceUid,
                Condition::AnyOf(vec!["2.25.1".into(), "2.25.2".into()])
            )
            .await,
            2
        );
        assert_eq!(
            count(
                Key::StudyDate,
                Condition::Range {
                    from: Some("20210101".into()),
                    to: None
                }
            )
            .await,
            1
        );
        assert_eq!(
            count(
                Key::StudyDate,
                Condition::Range {
                    from: Some("20200101".into()),
                    to: Some("20211231".into())
                }
            )
            .await,
            2
        );
        assert_eq!(
            count(Key::ModalitiesInStudy, Condition::AnyOf(vec!["CT".into()])).await,
            1
        );
        assert_eq!(
            count(Key::ModalitiesInStudy, Condition::AnyOf(vec!["MR".into()])).await,
            2
        );
    }

    #[tokio::test]
    async fn series_and_instances_are_listed_once_and_paged() {
        let (store, _dir) = store().await;
        let f = fixture(&store).await;
        let both = [f.first, f.second];
        let series = store
            .search_series(&search(
                &both,
                vec![(Key::StudyInstanceUid, Condition::Equals("2.25.1".into()))],
            ))
            .await
            .unwrap();
        let uids: Vec<_> = series
            .iter()
            .map(|s| (s.series_uid.as_str(), s.instances))
            .collect();
        assert_eq!(uids, [("2.25.11", 2), ("2.25.12", 1)]);
        let instances = store
            .search_instances(&search(
                &both,
                vec![(Key::SeriesInstanceUid, Condition::Equals("2.25.11".into()))],
            ))
            .await
            .unwrap();
        let uids: Vec<_> = instances.iter().map(|i| i.sop_uid.as_str()).collect();
        assert_eq!(uids, ["2.25.111", "2.25.112"]);
        let mut page = search(&both, vec![(Key::InstanceNumber, Condition::Number(1))]);
        page.limit = 1;
        page.offset = 1;
        let second_page = store.search_instances(&page).await.unwrap();
        assert_eq!(second_page.len(), 1);
        assert_eq!(second_page[0].sop_uid, "2.25.121");
        let files = store
            .stored_instances(&both, "2.25.1", None, None)
            .await
            .unwrap();
        let listed: Vec<_> = files
            .iter()
            .map(|i| (i.sop_uid.as_str(), i.dataset_id))
            .collect();
        assert_eq!(
            listed,
            [
                ("2.25.111", f.first),
                ("2.25.112", f.first),
                ("2.25.121", f.second)
            ]
        );
        let by_id = store
            .stored_instance_by_id(f.second, files[2].instance_id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(by_id.series_uid, "2.25.12");
        // Only within its dataset.
        let elsewhere = store
            .stored_instance_by_id(f.first, files[2].instance_id)
            .await
            .unwrap();
        assert!(elsewhere.is_none());
    }
}
