//! Tests of DICOM de-identification: synthetic data sets full of identifying values, and pydicom's real files.

use std::path::PathBuf;

use dicom_core::chrono::NaiveDate;
use dicom_core::value::DataSetSequence;
use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::meta::FileMetaTableBuilder;
use dicom_object::{FileDicomObject, InMemDicomObject};
use voxhub_imaging::deid::{DatePolicy, DeidConfig, DeidError, deidentify, deidentify_file};

const CT_IMAGE_STORAGE: &str = "1.2.840.10008.5.1.4.1.1.2";
const EXPLICIT_VR_LITTLE_ENDIAN: &str = "1.2.840.10008.1.2.1";
const STUDY_UID: &str = "1.2.826.0.1.3680043.8.498.10001";
const SERIES_UID: &str = "1.2.826.0.1.3680043.8.498.10002";
const FRAME_OF_REFERENCE_UID: &str = "1.2.826.0.1.3680043.8.498.10003";
/// Other Patient IDs (0010,1000): retired, so the dictionary constant is deprecated, but old
/// files still carry it and the profile removes it.
const OTHER_PATIENT_IDS: Tag = Tag(0x0010, 0x1000);

/// Every identifying string the synthetic data set holds, none of which may survive.
const IDENTIFYING_VALUES: &[&str] = &[
    "DOE^JOHN",
    "PID-7781234",
    "19610423",
    "OTHERID-55",
    "12 Elm Street",
    "Springfield General",
    "1 Hospital Road",
    "HOUSE^GREGORY",
    "WILSON^JAMES",
    "TECH^TOM",
    "CTSTATION42",
    "ACC998877",
    "STUDY3344",
    "20230315",
    "Doe",
    "SN-0042-XYZ",
    "REQ-1234",
    "CHASE^ROBERT",
    "Private John",
    "Dr Nick overlay",
    "Nested Doe private",
    STUDY_UID,
    SERIES_UID,
    FRAME_OF_REFERENCE_UID,
];

fn config() -> DeidConfig {
    DeidConfig {
        secret: b"installation secret for tests".to_vec(),
        ..DeidConfig::default()
    }
}

fn text(tag: Tag, vr: VR, value: &str) -> DataElement<InMemDicomObject> {
    DataElement::new(tag, vr, PrimitiveValue::from(value))
}

fn sequence(tag: Tag, items: Vec<InMemDicomObject>) -> DataElement<InMemDicomObject> {
    DataElement::new(tag, VR::SQ, DataSetSequence::from(items))
}

fn instance_uid(patient_id: &str, number: u32) -> String {
    format!("1.2.826.0.1.3680043.8.498.2{}.{number}", patient_id.len())
}

/// A CT data set holding identifying values at the top level, inside standard sequences and in
/// private attributes.
fn identifying_data_set(
    patient_id: &str,
    patient_name: &str,
    instance_number: u32,
) -> InMemDicomObject {
    let referenced_image = InMemDicomObject::from_element_iter([
        text(tags::REFERENCED_SOP_CLASS_UID, VR::UI, CT_IMAGE_STORAGE),
        text(
            tags::REFERENCED_SOP_INSTANCE_UID,
            VR::UI,
            &instance_uid(patient_id, 999),
        ),
        text(tags::PERSON_NAME, VR::PN, "CHASE^ROBERT"),
        text(Tag(0x0019, 0x0010), VR::LO, "ACME 1.0"),
        text(Tag(0x0019, 0x1001), VR::LO, "Nested Doe private"),
    ]);
    let request = InMemDicomObject::from_element_iter([
        text(tags::REQUESTED_PROCEDURE_ID, VR::SH, "REQ-1234"),
        text(tags::SCHEDULED_PROCEDURE_STEP_ID, VR::SH, "REQ-1234"),
    ]);
    // Not in the profile's table: kept, but its date-time is a date of the patient.
    let radiopharmaceutical = InMemDicomObject::from_element_iter([
        text(
            tags::RADIOPHARMACEUTICAL_START_DATE_TIME,
            VR::DT,
            "20230315093000",
        ),
        text(tags::RADIOPHARMACEUTICAL, VR::LO, "Fluorodeoxyglucose"),
    ]);
    let private_item = InMemDicomObject::from_element_iter([
        text(tags::PATIENT_NAME, VR::PN, patient_name),
        text(tags::STUDY_DATE, VR::DA, "20230315"),
    ]);
    InMemDicomObject::from_element_iter([
        text(tags::SOP_CLASS_UID, VR::UI, CT_IMAGE_STORAGE),
        text(
            tags::SOP_INSTANCE_UID,
            VR::UI,
            &instance_uid(patient_id, instance_number),
        ),
        text(tags::STUDY_DATE, VR::DA, "20230315"),
        text(tags::SERIES_DATE, VR::DA, "20230315"),
        text(tags::ACQUISITION_DATE, VR::DA, "20230315"),
        text(tags::CONTENT_DATE, VR::DA, "20230315"),
        text(tags::ACQUISITION_DATE_TIME, VR::DT, "20230315101530.25"),
        text(tags::STUDY_TIME, VR::TM, "101500"),
        text(tags::ACCESSION_NUMBER, VR::SH, "ACC998877"),
        text(tags::MODALITY, VR::CS, "CT"),
        text(tags::MANUFACTURER, VR::LO, "GE MEDICAL SYSTEMS"),
        text(tags::INSTITUTION_NAME, VR::LO, "Springfield General"),
        text(tags::INSTITUTION_ADDRESS, VR::ST, "1 Hospital Road"),
        text(tags::REFERRING_PHYSICIAN_NAME, VR::PN, "HOUSE^GREGORY"),
        text(tags::STATION_NAME, VR::SH, "CTSTATION42"),
        text(tags::STUDY_DESCRIPTION, VR::LO, "CT head for John Doe"),
        text(tags::SERIES_DESCRIPTION, VR::LO, "Doe follow-up"),
        text(tags::PERFORMING_PHYSICIAN_NAME, VR::PN, "WILSON^JAMES"),
        text(tags::OPERATORS_NAME, VR::PN, "TECH^TOM"),
        sequence(tags::REFERENCED_IMAGE_SEQUENCE, vec![referenced_image]),
        text(tags::PATIENT_NAME, VR::PN, patient_name),
        text(tags::PATIENT_ID, VR::LO, patient_id),
        text(tags::PATIENT_BIRTH_DATE, VR::DA, "19610423"),
        text(tags::PATIENT_SEX, VR::CS, "M"),
        text(OTHER_PATIENT_IDS, VR::LO, "OTHERID-55"),
        text(tags::PATIENT_AGE, VR::AS, "061Y"),
        text(tags::PATIENT_ADDRESS, VR::LO, "12 Elm Street Springfield"),
        text(tags::DEVICE_SERIAL_NUMBER, VR::LO, "SN-0042-XYZ"),
        text(tags::PROTOCOL_NAME, VR::LO, "Doe protocol"),
        text(tags::STUDY_INSTANCE_UID, VR::UI, STUDY_UID),
        text(tags::SERIES_INSTANCE_UID, VR::UI, SERIES_UID),
        text(tags::STUDY_ID, VR::SH, "STUDY3344"),
        text(tags::FRAME_OF_REFERENCE_UID, VR::UI, FRAME_OF_REFERENCE_UID),
        text(tags::SLICE_THICKNESS, VR::DS, "1.25"),
        sequence(tags::REQUEST_ATTRIBUTES_SEQUENCE, vec![request]),
        sequence(
            tags::RADIOPHARMACEUTICAL_INFORMATION_SEQUENCE,
            vec![radiopharmaceutical],
        ),
        text(Tag(0x0009, 0x0010), VR::LO, "ACME 1.0"),
        text(Tag(0x0009, 0x1001), VR::LO, "Private John"),
        sequence(Tag(0x0009, 0x1002), vec![private_item]),
        text(Tag(0x6000, 0x4000), VR::LT, "Dr Nick overlay"),
        DataElement::new(
            Tag(0x6000, 0x3000),
            VR::OW,
            PrimitiveValue::from(vec![0u8; 8]),
        ),
    ])
}

fn as_file(data_set: InMemDicomObject) -> FileDicomObject<InMemDicomObject> {
    let sop_instance_uid = data_set
        .get(tags::SOP_INSTANCE_UID)
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let meta = FileMetaTableBuilder::new()
        .media_storage_sop_class_uid(CT_IMAGE_STORAGE)
        .media_storage_sop_instance_uid(sop_instance_uid)
        .transfer_syntax(EXPLICIT_VR_LITTLE_ENDIAN)
        .source_application_entity_title("SPRINGFIELD_CT")
        .build()
        .unwrap();
    data_set.with_exact_meta(meta)
}

fn written_bytes(file: &FileDicomObject<InMemDicomObject>) -> Vec<u8> {
    let mut bytes = Vec::new();
    file.write_all(&mut bytes).unwrap();
    bytes
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle.as_bytes())
}

fn string(obj: &InMemDicomObject, tag: Tag) -> Option<String> {
    obj.get(tag).map(|e| {
        e.to_str()
            .map(|s| s.trim_end_matches(['\0', ' ']).to_string())
            .unwrap_or_default()
    })
}

fn items(obj: &InMemDicomObject, tag: Tag) -> &[InMemDicomObject] {
    obj.get(tag).and_then(|e| e.items()).unwrap_or(&[])
}

fn deidentified(patient_id: &str, patient_name: &str, instance_number: u32) -> InMemDicomObject {
    let mut obj = identifying_data_set(patient_id, patient_name, instance_number);
    deidentify(&mut obj, &config()).unwrap();
    obj
}

#[test]
fn every_listed_attribute_is_handled_by_its_profile_action() {
    let mut obj = identifying_data_set("PID-7781234", "DOE^JOHN", 1);
    let report = deidentify(&mut obj, &config()).unwrap();

    for removed in [
        OTHER_PATIENT_IDS,
        tags::PATIENT_ADDRESS,
        tags::PATIENT_AGE,
        tags::INSTITUTION_ADDRESS,
        tags::PERFORMING_PHYSICIAN_NAME,
        tags::STUDY_DESCRIPTION,
        tags::SERIES_DESCRIPTION,
        tags::REQUEST_ATTRIBUTES_SEQUENCE,
        Tag(0x6000, 0x3000),
        Tag(0x6000, 0x4000),
    ] {
        assert!(obj.get(removed).is_none(), "{removed} should be removed");
    }
    for emptied in [
        tags::PATIENT_BIRTH_DATE,
        tags::PATIENT_SEX,
        tags::REFERRING_PHYSICIAN_NAME,
        tags::ACCESSION_NUMBER,
        tags::STUDY_ID,
        tags::INSTITUTION_NAME,
        tags::STATION_NAME,
        tags::OPERATORS_NAME,
        tags::DEVICE_SERIAL_NUMBER,
    ] {
        assert_eq!(
            string(&obj, emptied).as_deref(),
            Some(""),
            "{emptied} should be empty"
        );
    }
    let pseudonym = string(&obj, tags::PATIENT_ID).unwrap();
    assert!(
        pseudonym.starts_with("anon-") && pseudonym.len() == 17,
        "{pseudonym}"
    );
    assert_eq!(string(&obj, tags::PATIENT_NAME).unwrap(), pseudonym);
    assert_eq!(
        string(&obj, tags::PROTOCOL_NAME).as_deref(),
        Some("ANONYMIZED")
    );
    for uid in [
        tags::STUDY_INSTANCE_UID,
        tags::SERIES_INSTANCE_UID,
        tags::SOP_INSTANCE_UID,
        tags::FRAME_OF_REFERENCE_UID,
    ] {
        let new_uid = string(&obj, uid).unwrap();
        assert!(
            new_uid.starts_with("2.25.") && new_uid.len() <= 64,
            "{uid}: {new_uid}"
        );
    }
    // What identifies no one stays: the kind of object and how it was made.
    assert_eq!(
        string(&obj, tags::SOP_CLASS_UID).as_deref(),
        Some(CT_IMAGE_STORAGE)
    );
    assert_eq!(string(&obj, tags::MODALITY).as_deref(), Some("CT"));
    assert_eq!(
        string(&obj, tags::MANUFACTURER).as_deref(),
        Some("GE MEDICAL SYSTEMS")
    );
    assert_eq!(string(&obj, tags::SLICE_THICKNESS).as_deref(), Some("1.25"));
    assert_eq!(string(&obj, tags::STUDY_TIME).as_deref(), Some("101500"));

    // Inside a kept sequence: the person name gets its dummy, the reference its new UID.
    let reference = &items(&obj, tags::REFERENCED_IMAGE_SEQUENCE)[0];
    assert_eq!(
        string(reference, tags::PERSON_NAME).as_deref(),
        Some("Anonymized")
    );
    assert!(
        string(reference, tags::REFERENCED_SOP_INSTANCE_UID)
            .unwrap()
            .starts_with("2.25.")
    );
    assert_eq!(
        string(reference, tags::REFERENCED_SOP_CLASS_UID).as_deref(),
        Some(CT_IMAGE_STORAGE)
    );

    assert_eq!(
        string(&obj, tags::PATIENT_IDENTITY_REMOVED).as_deref(),
        Some("YES")
    );
    assert!(
        string(&obj, tags::DEIDENTIFICATION_METHOD)
            .unwrap()
            .contains("PS3.15")
    );
    assert_eq!(
        items(&obj, tags::DEIDENTIFICATION_METHOD_CODE_SEQUENCE).len(),
        2
    );
    assert_eq!(
        string(&obj, tags::LONGITUDINAL_TEMPORAL_INFORMATION_MODIFIED).as_deref(),
        Some("MODIFIED")
    );

    for name in [
        "OtherPatientIDs",
        "PatientAddress",
        "RequestAttributesSequence",
        "StudyDescription",
    ] {
        assert!(
            report.removed.contains(&name.to_string()),
            "removed lacks {name}: {report:?}"
        );
    }
    for name in [
        "PatientBirthDate",
        "PatientSex",
        "AccessionNumber",
        "StationName",
    ] {
        assert!(
            report.emptied.contains(&name.to_string()),
            "emptied lacks {name}: {report:?}"
        );
    }
    for name in [
        "PatientID",
        "PatientName",
        "StudyDate",
        "ReferencedImageSequence/ReferencedSOPInstanceUID",
    ] {
        assert!(
            report.replaced.contains(&name.to_string()),
            "replaced lacks {name}: {report:?}"
        );
    }
    assert_eq!(report.uids_replaced, 5);
    assert_eq!(report.private_tags_removed, 5);
    assert!(!report.burned_in_annotation_suspected);
}

#[test]
fn the_same_input_twice_gives_byte_identical_output() {
    let mut first = as_file(identifying_data_set("PID-7781234", "DOE^JOHN", 1));
    let mut second = as_file(identifying_data_set("PID-7781234", "DOE^JOHN", 1));
    let first_report = deidentify_file(&mut first, &config()).unwrap();
    let second_report = deidentify_file(&mut second, &config()).unwrap();
    assert_eq!(written_bytes(&first), written_bytes(&second));
    assert_eq!(first_report, second_report);
}

#[test]
fn files_of_one_series_share_a_new_series_uid_and_keep_distinct_instance_uids() {
    let first = deidentified("PID-7781234", "DOE^JOHN", 1);
    let second = deidentified("PID-7781234", "DOE^JOHN", 2);
    for shared in [
        tags::STUDY_INSTANCE_UID,
        tags::SERIES_INSTANCE_UID,
        tags::FRAME_OF_REFERENCE_UID,
    ] {
        assert_eq!(string(&first, shared), string(&second, shared));
    }
    assert_ne!(
        string(&first, tags::SERIES_INSTANCE_UID).as_deref(),
        Some(SERIES_UID)
    );
    assert_ne!(
        string(&first, tags::SOP_INSTANCE_UID),
        string(&second, tags::SOP_INSTANCE_UID)
    );
}

#[test]
fn a_reference_to_an_instance_gets_the_uid_that_instance_gets() {
    let referenced = deidentified("PID-7781234", "DOE^JOHN", 999);
    let referencing = deidentified("PID-7781234", "DOE^JOHN", 1);
    let reference = &items(&referencing, tags::REFERENCED_IMAGE_SEQUENCE)[0];
    assert_eq!(
        string(reference, tags::REFERENCED_SOP_INSTANCE_UID),
        string(&referenced, tags::SOP_INSTANCE_UID)
    );
}

#[test]
fn two_patients_get_different_pseudonyms_and_one_patient_always_the_same() {
    let john = deidentified("PID-7781234", "DOE^JOHN", 1);
    let john_again = deidentified("PID-7781234", "DOE^JOHN", 2);
    let jane = deidentified("PID-5550000", "ROE^JANE", 1);
    assert_eq!(
        string(&john, tags::PATIENT_ID),
        string(&john_again, tags::PATIENT_ID)
    );
    assert_ne!(
        string(&john, tags::PATIENT_ID),
        string(&jane, tags::PATIENT_ID)
    );
    assert_ne!(
        string(&john, tags::PATIENT_NAME),
        string(&jane, tags::PATIENT_NAME)
    );
}

#[test]
fn a_different_secret_gives_different_uids_and_pseudonyms() {
    let mut other = identifying_data_set("PID-7781234", "DOE^JOHN", 1);
    let other_config = DeidConfig {
        secret: b"another installation".to_vec(),
        ..DeidConfig::default()
    };
    deidentify(&mut other, &other_config).unwrap();
    let ours = deidentified("PID-7781234", "DOE^JOHN", 1);
    assert_ne!(
        string(&ours, tags::PATIENT_ID),
        string(&other, tags::PATIENT_ID)
    );
    assert_ne!(
        string(&ours, tags::SERIES_INSTANCE_UID),
        string(&other, tags::SERIES_INSTANCE_UID)
    );
}

#[test]
fn every_date_of_a_patient_moves_by_the_same_whole_days_and_still_parses() {
    let original = NaiveDate::from_ymd_opt(2023, 3, 15).unwrap();
    let mut shifts = Vec::new();
    for patient_id in ["PID-7781234", "PID-5550000", "X"] {
        let mut obj = identifying_data_set(patient_id, "DOE^JOHN", 1);
        let report = deidentify(&mut obj, &config()).unwrap();
        let shift_days = report.date_shift_days.unwrap();
        assert!((-365..=-1).contains(&shift_days), "{shift_days}");
        let expected = original + dicom_core::chrono::Duration::days(i64::from(shift_days));
        let expected_text = expected.format("%Y%m%d").to_string();

        for date in [
            tags::STUDY_DATE,
            tags::SERIES_DATE,
            tags::ACQUISITION_DATE,
            tags::CONTENT_DATE,
        ] {
            let element = obj.get(date).unwrap();
            assert!(element.to_date().is_ok(), "{date} does not parse");
            assert_eq!(string(&obj, date).unwrap(), expected_text, "{date}");
        }
        let date_time = obj.get(tags::ACQUISITION_DATE_TIME).unwrap();
        assert!(date_time.to_datetime().is_ok());
        assert_eq!(
            string(&obj, tags::ACQUISITION_DATE_TIME).unwrap(),
            format!("{expected_text}101530.25")
        );
        let radiopharmaceutical = &items(&obj, tags::RADIOPHARMACEUTICAL_INFORMATION_SEQUENCE)[0];
        assert_eq!(
            string(
                radiopharmaceutical,
                tags::RADIOPHARMACEUTICAL_START_DATE_TIME
            )
            .unwrap(),
            format!("{expected_text}093000")
        );
        shifts.push(shift_days);
    }
    // The shift depends on the patient, so it cannot be undone by one known offset.
    shifts.dedup();
    assert!(shifts.len() > 1, "{shifts:?}");
}

#[test]
fn removing_dates_empties_them_and_reports_no_shift() {
    let mut obj = identifying_data_set("PID-7781234", "DOE^JOHN", 1);
    let remove_dates = DeidConfig {
        date_policy: DatePolicy::Remove,
        ..config()
    };
    let report = deidentify(&mut obj, &remove_dates).unwrap();
    assert_eq!(report.date_shift_days, None);
    for date in [
        tags::STUDY_DATE,
        tags::ACQUISITION_DATE,
        tags::CONTENT_DATE,
        tags::STUDY_TIME,
    ] {
        assert_eq!(string(&obj, date).as_deref(), Some(""), "{date}");
    }
    let radiopharmaceutical = &items(&obj, tags::RADIOPHARMACEUTICAL_INFORMATION_SEQUENCE)[0];
    assert_eq!(
        string(
            radiopharmaceutical,
            tags::RADIOPHARMACEUTICAL_START_DATE_TIME
        )
        .as_deref(),
        Some("")
    );
    assert_eq!(
        string(&obj, tags::LONGITUDINAL_TEMPORAL_INFORMATION_MODIFIED).as_deref(),
        Some("REMOVED")
    );
    assert_eq!(
        items(&obj, tags::DEIDENTIFICATION_METHOD_CODE_SEQUENCE).len(),
        1
    );
}

#[test]
fn no_original_identifying_value_appears_in_the_written_file() {
    let original = as_file(identifying_data_set("PID-7781234", "DOE^JOHN", 1));
    let original_bytes = written_bytes(&original);
    // The search must be able to find what it looks for, or an empty result means nothing.
    for value in IDENTIFYING_VALUES {
        assert!(contains(&original_bytes, value), "fixture lacks {value}");
    }
    let sop_instance_uid = instance_uid("PID-7781234", 1);
    assert!(contains(&original_bytes, &sop_instance_uid));

    let mut file = original;
    deidentify_file(&mut file, &config()).unwrap();
    let bytes = written_bytes(&file);
    for value in IDENTIFYING_VALUES
        .iter()
        .chain([&sop_instance_uid.as_str(), &"SPRINGFIELD_CT"])
    {
        assert!(
            !contains(&bytes, value),
            "{value} survived de-identification"
        );
    }
}

#[test]
fn the_file_meta_instance_uid_follows_the_data_set() {
    let mut file = as_file(identifying_data_set("PID-7781234", "DOE^JOHN", 1));
    let report = deidentify_file(&mut file, &config()).unwrap();
    assert_eq!(
        Some(
            file.meta()
                .media_storage_sop_instance_uid()
                .trim_end_matches('\0')
                .to_string()
        ),
        string(&file, tags::SOP_INSTANCE_UID)
    );
    assert_eq!(
        file.meta().transfer_syntax().trim_end_matches('\0'),
        EXPLICIT_VR_LITTLE_ENDIAN
    );
    assert_eq!(
        file.meta()
            .media_storage_sop_class_uid()
            .trim_end_matches('\0'),
        CT_IMAGE_STORAGE
    );
    assert_eq!(file.meta().source_application_entity_title(), None);
    assert!(
        report
            .replaced
            .contains(&"MediaStorageSOPInstanceUID".to_string())
    );
}

#[test]
fn private_tags_are_removed_by_default_also_inside_sequences() {
    let obj = deidentified("PID-7781234", "DOE^JOHN", 1);
    assert!(
        obj.tags().all(|tag| tag.group() % 2 == 0),
        "private tag left at top level"
    );
    let reference = &items(&obj, tags::REFERENCED_IMAGE_SEQUENCE)[0];
    assert!(
        reference.tags().all(|tag| tag.group() % 2 == 0),
        "private tag left in an item"
    );
}

#[test]
fn keeping_private_tags_keeps_them_and_still_cleans_their_sequences() {
    let mut obj = identifying_data_set("PID-7781234", "DOE^JOHN", 1);
    let keep_private = DeidConfig {
        keep_private_tags: true,
        ..config()
    };
    let report = deidentify(&mut obj, &keep_private).unwrap();
    assert_eq!(report.private_tags_removed, 0);
    assert_eq!(
        string(&obj, Tag(0x0009, 0x0010)).as_deref(),
        Some("ACME 1.0")
    );
    assert_eq!(
        string(&obj, Tag(0x0009, 0x1001)).as_deref(),
        Some("Private John")
    );
    let reference = &items(&obj, tags::REFERENCED_IMAGE_SEQUENCE)[0];
    assert_eq!(
        string(reference, Tag(0x0019, 0x1001)).as_deref(),
        Some("Nested Doe private")
    );
    let private_item = &items(&obj, Tag(0x0009, 0x1002))[0];
    assert_eq!(
        string(private_item, tags::PATIENT_NAME),
        string(&obj, tags::PATIENT_NAME)
    );
    assert_ne!(
        string(private_item, tags::STUDY_DATE).as_deref(),
        Some("20230315")
    );
}

#[test]
fn burned_in_annotation_is_flagged_when_declared_or_likely() {
    let suspected = |modality: &str, burned_in: Option<&str>| {
        let mut obj = InMemDicomObject::from_element_iter([
            text(tags::PATIENT_ID, VR::LO, "P1"),
            text(tags::MODALITY, VR::CS, modality),
        ]);
        if let Some(value) = burned_in {
            obj.put(text(tags::BURNED_IN_ANNOTATION, VR::CS, value));
        }
        deidentify(&mut obj, &config())
            .unwrap()
            .burned_in_annotation_suspected
    };
    assert!(suspected("CT", Some("YES")));
    assert!(suspected("US", None));
    assert!(suspected("SC", None));
    assert!(suspected("OT", None));
    assert!(suspected("XA", None));
    assert!(!suspected("US", Some("NO")));
    assert!(!suspected("CT", None));
    assert!(!suspected("MR", None));
}

#[test]
fn an_empty_secret_is_refused() {
    let mut obj = identifying_data_set("PID-7781234", "DOE^JOHN", 1);
    let result = deidentify(&mut obj, &DeidConfig::default());
    assert!(matches!(result, Err(DeidError::EmptySecret)));
    assert_eq!(
        string(&obj, tags::PATIENT_ID).as_deref(),
        Some("PID-7781234")
    );
}

#[test]
fn the_secret_never_appears_in_debug_output() {
    let printed = format!("{:?}", config());
    assert!(!printed.contains("installation secret"), "{printed}");
}

/// pydicom's bundled test files, installed by `.ci/run` into the imaging virtual environment.
fn pydicom_test_files() -> Option<PathBuf> {
    let lib = PathBuf::from("/opt/voxhub/imaging-venv/lib");
    let found = std::fs::read_dir(&lib).ok().and_then(|entries| {
        entries
            .filter_map(Result::ok)
            .map(|entry| entry.path().join("site-packages/pydicom/data/test_files"))
            .find(|path| path.join("CT_small.dcm").is_file())
    });
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "pydicom test files missing under {}; .ci/run installs them",
            lib.display()
        );
        eprintln!(
            "SKIPPED: pydicom test files not found under {}; run .ci/run to install them",
            lib.display()
        );
    }
    found
}

#[test]
fn pydicom_ct_and_mr_files_lose_patient_identity_when_written_and_read_back() {
    let Some(test_files) = pydicom_test_files() else {
        return;
    };
    let output = tempfile::tempdir().unwrap();
    for name in ["CT_small.dcm", "MR_small.dcm"] {
        let mut file = dicom_object::open_file(test_files.join(name)).unwrap();
        // The profile keeps Manufacturer, and MR_small's institution is named after its maker, so
        // a value found inside the manufacturer's name cannot show a leak.
        let manufacturer = string(&file, tags::MANUFACTURER).unwrap_or_default();
        let identifying: Vec<String> = [
            tags::PATIENT_NAME,
            tags::PATIENT_ID,
            tags::PATIENT_BIRTH_DATE,
            tags::INSTITUTION_NAME,
            tags::REFERRING_PHYSICIAN_NAME,
            tags::STATION_NAME,
            tags::OPERATORS_NAME,
        ]
        .into_iter()
        .filter_map(|tag| string(&file, tag))
        .filter(|value| value.len() >= 3 && !manufacturer.contains(value.as_str()))
        .collect();
        assert!(
            identifying.len() >= 2,
            "{name}: expected a patient name and ID, got {identifying:?}"
        );
        let series_uid = string(&file, tags::SERIES_INSTANCE_UID).unwrap();
        let rows = file.get(tags::ROWS).unwrap().to_int::<u16>().unwrap();
        let pixel_bytes = file
            .get(tags::PIXEL_DATA)
            .unwrap()
            .to_bytes()
            .unwrap()
            .into_owned();

        let report = deidentify_file(&mut file, &config()).unwrap();
        assert!(report.uids_replaced >= 4, "{name}: {report:?}");
        let path = output.path().join(name);
        file.write_to_file(&path).unwrap();

        let bytes = std::fs::read(&path).unwrap();
        for value in identifying.iter().chain([&series_uid]) {
            assert!(!contains(&bytes, value), "{name}: {value} survived");
        }
        let read_back = dicom_object::open_file(&path).unwrap();
        assert_eq!(
            string(&read_back, tags::PATIENT_IDENTITY_REMOVED).as_deref(),
            Some("YES")
        );
        assert!(
            string(&read_back, tags::PATIENT_ID)
                .unwrap()
                .starts_with("anon-")
        );
        assert!(
            string(&read_back, tags::SERIES_INSTANCE_UID)
                .unwrap()
                .starts_with("2.25.")
        );
        assert_eq!(
            read_back.get(tags::ROWS).unwrap().to_int::<u16>().unwrap(),
            rows
        );
        // The image itself is untouched.
        assert_eq!(
            read_back
                .get(tags::PIXEL_DATA)
                .unwrap()
                .to_bytes()
                .unwrap()
                .as_ref(),
            &pixel_bytes[..]
        );
    }
}

#[test]
fn clean_descriptors_keeps_what_a_series_is_without_the_identifying_words() {
    let clean = DeidConfig {
        clean_descriptors: true,
        ..config()
    };
    let mut file = as_file(identifying_data_set("PID-7781234", "DOE^JOHN", 1));
    let series_description = text(
        tags::SERIES_DESCRIPTION,
        VR::LO,
        "Doe AX T1 1.5mm Springfield 20230315 ACC998877",
    );
    file.put(series_description);
    let report = deidentify_file(&mut file, &clean).unwrap();
    assert_eq!(
        string(&file, tags::STUDY_DESCRIPTION).as_deref(),
        Some("CT head for")
    );
    assert_eq!(
        string(&file, tags::SERIES_DESCRIPTION).as_deref(),
        Some("AX T1 1.5mm")
    );
    assert_eq!(
        string(&file, tags::PROTOCOL_NAME).as_deref(),
        Some("protocol")
    );
    assert!(report.replaced.contains(&"SeriesDescription".to_string()));
    // Every other free text still follows the Basic Profile, and no identifying value
    // survives anywhere in the file.
    assert_eq!(
        string(&file, tags::INSTITUTION_NAME).unwrap_or_default(),
        ""
    );
    let bytes = written_bytes(&file);
    for value in IDENTIFYING_VALUES {
        assert!(
            !contains(&bytes, value),
            "{value} survived de-identification"
        );
    }
    // The option is recorded, in the method and its codes.
    let method = file.get(tags::DEIDENTIFICATION_METHOD).unwrap();
    assert_eq!(
        method
            .value()
            .to_multi_str()
            .unwrap()
            .last()
            .map(|s| s.as_str()),
        Some("Clean Descriptors Option")
    );
    let codes: Vec<String> = items(&file, tags::DEIDENTIFICATION_METHOD_CODE_SEQUENCE)
        .iter()
        .filter_map(|item| string(item, tags::CODE_VALUE))
        .collect();
    assert_eq!(codes, ["113100", "113105", "113107"]);

    // A descriptor with nothing but identifying words is removed, not kept empty.
    let mut file = as_file(identifying_data_set("PID-7781234", "DOE^JOHN", 1));
    file.put(text(
        tags::SERIES_DESCRIPTION,
        VR::LO,
        "John Doe 15.03.2023",
    ));
    deidentify_file(&mut file, &clean).unwrap();
    assert_eq!(string(&file, tags::SERIES_DESCRIPTION), None);
    // A descriptor stored as UN (bytes, not text) cannot be cleaned word by word: removed.
    let mut file = as_file(identifying_data_set("PID-7781234", "DOE^JOHN", 1));
    file.put(DataElement::new(
        tags::SERIES_DESCRIPTION,
        VR::UN,
        PrimitiveValue::from(b"Doe AX".to_vec()),
    ));
    deidentify_file(&mut file, &clean).unwrap();
    assert_eq!(string(&file, tags::SERIES_DESCRIPTION), None);
    // Without the option they are removed as the Basic Profile says.
    let obj = deidentified("PID-7781234", "DOE^JOHN", 1);
    assert_eq!(string(&obj, tags::SERIES_DESCRIPTION), None);
    assert_eq!(string(&obj, tags::STUDY_DESCRIPTION), None);
}
