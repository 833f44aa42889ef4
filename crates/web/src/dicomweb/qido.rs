//! QIDO-RS: searching the index for studies, series and instances with the standard query
//! keys (PS3.18 10.6), answered in the DICOM JSON model with the attributes PS3.18 Table
//! 10.6.3-3 to -5 require, each result carrying its Retrieve URL.
//!
//! Matching (PS3.4 C.2.2.2): UIDs exactly or as a list (`,` or `\` between them); dates and
//! times exactly or as a range (`20200101-20201231`, `-20201231`, `20200101-`); text
//! exactly, or with `*` and `?` wild cards (person names ignore case); numbers exactly. An
//! empty value matches everything and asks for the attribute. Keys voxhub does not index are
//! ignored and named in a `Warning` header, as the standard asks; a value that cannot be
//! what its key says is refused with 400 and what to send instead.

use super::{DicomwebCaller, Ids, Scope, dicom_json_response, scope};
use crate::AppState;
use crate::api::{ApiPath, ApiQuery};
use crate::auth::ClientAddr;
use crate::error::ApiError;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use serde_json::{Map, Value, json};
use std::collections::BTreeSet;
use voxhub_store::dicomweb::{
    Condition, FoundInstance, FoundSeries, FoundStudy, Key, Level, Search,
};

/// The most results one answer holds; more are reached with `offset`.
pub const MAX_RESULTS: i64 = 1000;

/// How an attribute's value is matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Matching {
    Uid,
    Date,
    Time,
    Text,
    PersonName,
    CodeString,
    Number,
    /// Returned, but not a key voxhub matches on.
    None,
}

/// An attribute voxhub answers with: keyword, tag, VR, the index key matching it.
struct Attribute {
    keyword: &'static str,
    tag: &'static str,
    vr: &'static str,
    matching: Matching,
    key: Option<Key>,
    level: Level,
}

const fn attribute(
    keyword: &'static str,
    tag: &'static str,
    vr: &'static str,
    matching: Matching,
    key: Option<Key>,
    level: Level,
) -> Attribute {
    Attribute {
        keyword,
        tag,
        vr,
        matching,
        key,
        level,
    }
}

const ATTRIBUTES: &[Attribute] = &[
    attribute(
        "PatientName",
        "00100010",
        "PN",
        Matching::PersonName,
        Some(Key::PatientName),
        Level::Study,
    ),
    attribute(
        "PatientID",
        "00100020",
        "LO",
        Matching::Text,
        Some(Key::PatientId),
        Level::Study,
    ),
    attribute(
        "PatientBirthDate",
        "00100030",
        "DA",
        Matching::Date,
        Some(Key::PatientBirthDate),
        Level::Study,
    ),
    attribute(
        "PatientSex",
        "00100040",
        "CS",
        Matching::CodeString,
        Some(Key::PatientSex),
        Level::Study,
    ),
    attribute(
        "StudyInstanceUID",
        "0020000D",
        "UI",
        Matching::Uid,
        Some(Key::StudyInstanceUid),
        Level::Study,
    ),
    attribute(
        "StudyDate",
        "00080020",
        "DA",
        Matching::Date,
        Some(Key::StudyDate),
        Level::Study,
    ),
    attribute(
        "StudyTime",
        "00080030",
        "TM",
        Matching::Time,
        Some(Key::StudyTime),
        Level::Study,
    ),
    attribute(
        "AccessionNumber",
        "00080050",
        "SH",
        Matching::Text,
        Some(Key::AccessionNumber),
        Level::Study,
    ),
    attribute(
        "StudyDescription",
        "00081030",
        "LO",
        Matching::Text,
        Some(Key::StudyDescription),
        Level::Study,
    ),
    attribute(
        "ReferringPhysicianName",
        "00080090",
        "PN",
        Matching::PersonName,
        Some(Key::ReferringPhysicianName),
        Level::Study,
    ),
    attribute(
        "ModalitiesInStudy",
        "00080061",
        "CS",
        Matching::CodeString,
        Some(Key::ModalitiesInStudy),
        Level::Study,
    ),
    attribute(
        "StudyID",
        "00200010",
        "SH",
        Matching::None,
        None,
        Level::Study,
    ),
    attribute(
        "NumberOfStudyRelatedSeries",
        "00201206",
        "IS",
        Matching::None,
        None,
        Level::Study,
    ),
    attribute(
        "NumberOfStudyRelatedInstances",
        "00201208",
        "IS",
        Matching::None,
        None,
        Level::Study,
    ),
    attribute(
        "SeriesInstanceUID",
        "0020000E",
        "UI",
        Matching::Uid,
        Some(Key::SeriesInstanceUid),
        Level::Series,
    ),
    attribute(
        "Modality",
        "00080060",
        "CS",
        Matching::CodeString,
        Some(Key::Modality),
        Level::Series,
    ),
    attribute(
        "SeriesNumber",
        "00200011",
        "IS",
        Matching::Number,
        Some(Key::SeriesNumber),
        Level::Series,
    ),
    attribute(
        "SeriesDescription",
        "0008103E",
        "LO",
        Matching::Text,
        Some(Key::SeriesDescription),
        Level::Series,
    ),
    attribute(
        "BodyPartExamined",
        "00180015",
        "CS",
        Matching::CodeString,
        Some(Key::BodyPartExamined),
        Level::Series,
    ),
    attribute(
        "SeriesDate",
        "00080021",
        "DA",
        Matching::Date,
        Some(Key::SeriesDate),
        Level::Series,
    ),
    attribute(
        "SeriesTime",
        "00080031",
        "TM",
        Matching::Time,
        Some(Key::SeriesTime),
        Level::Series,
    ),
    attribute(
        "NumberOfSeriesRelatedInstances",
        "00201209",
        "IS",
        Matching::None,
        None,
        Level::Series,
    ),
    attribute(
        "SOPInstanceUID",
        "00080018",
        "UI",
        Matching::Uid,
        Some(Key::SopInstanceUid),
        Level::Instance,
    ),
    attribute(
        "SOPClassUID",
        "00080016",
        "UI",
        Matching::Uid,
        Some(Key::SopClassUid),
        Level::Instance,
    ),
    attribute(
        "InstanceNumber",
        "00200013",
        "IS",
        Matching::Number,
        Some(Key::InstanceNumber),
        Level::Instance,
    ),
    attribute(
        "Rows",
        "00280010",
        "US",
        Matching::None,
        None,
        Level::Instance,
    ),
    attribute(
        "Columns",
        "00280011",
        "US",
        Matching::None,
        None,
        Level::Instance,
    ),
    attribute(
        "NumberOfFrames",
        "00280008",
        "IS",
        Matching::None,
        None,
        Level::Instance,
    ),
    attribute(
        "AvailableTransferSyntaxUID",
        "00083002",
        "UI",
        Matching::None,
        None,
        Level::Instance,
    ),
    attribute(
        "InstanceAvailability",
        "00080056",
        "CS",
        Matching::None,
        None,
        Level::Study,
    ),
    attribute(
        "RetrieveURL",
        "00081190",
        "UR",
        Matching::None,
        None,
        Level::Study,
    ),
];

/// Attributes every result of a level carries (PS3.18 Tables 10.6.3-3 to -5, and the
/// descriptions viewers show).
const STUDY_DEFAULT: &[&str] = &[
    "00080020", "00080030", "00080050", "00080056", "00080061", "00080090", "00081030", "00081190",
    "00100010", "00100020", "00100030", "00100040", "0020000D", "00200010", "00201206", "00201208",
];
const SERIES_DEFAULT: &[&str] = &[
    "00080056", "00080060", "0008103E", "00081190", "0020000D", "0020000E", "00200011", "00201209",
];
const INSTANCE_DEFAULT: &[&str] = &[
    "00080016", "00080018", "00080056", "00081190", "00083002", "0020000D", "0020000E", "00200013",
    "00280008", "00280010", "00280011",
];

fn find_attribute(name: &str) -> Option<&'static Attribute> {
    let upper = name.to_ascii_uppercase();
    ATTRIBUTES
        .iter()
        .find(|a| a.keyword.eq_ignore_ascii_case(name) || a.tag == upper)
}

fn invalid(keyword: &str, message: String) -> ApiError {
    ApiError::bad_request("invalid_query", format!("{keyword}: {message}"))
}

fn valid_uid(uid: &str) -> bool {
    !uid.is_empty()
        && uid.len() <= 64
        && uid.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && !uid.starts_with('.')
        && !uid.ends_with('.')
        && !uid.contains("..")
}

/// Checks a UID taken from the address of a request.
pub fn path_uid(what: &str, uid: &str) -> Result<String, ApiError> {
    if valid_uid(uid) {
        Ok(uid.to_string())
    } else {
        Err(ApiError::bad_request(
            "invalid_uid",
            format!(
                "the {what} in the address is not a DICOM UID (digits and dots, at most 64 characters, such as 1.2.840.113619.2.55.3)"
            ),
        ))
    }
}

fn list(value: &str) -> Vec<String> {
    value
        .split([',', '\\'])
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect()
}

fn date_or_time(keyword: &str, value: &str, matching: Matching) -> Result<Condition, ApiError> {
    let valid = |text: &str| match matching {
        Matching::Date => text.len() == 8 && text.bytes().all(|b| b.is_ascii_digit()),
        _ => {
            let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
            matches!(whole.len(), 2 | 4 | 6)
                && whole.bytes().all(|b| b.is_ascii_digit())
                && fraction.len() <= 6
                && fraction.bytes().all(|b| b.is_ascii_digit())
        }
    };
    let example = match matching {
        Matching::Date => {
            "a date YYYYMMDD or a range such as 20200101-20201231, -20201231 or 20200101-"
        }
        _ => "a time HHMMSS or a range such as 080000-120000",
    };
    let bad = || invalid(keyword, format!("'{value}' is not {example}"));
    match value.split_once('-') {
        None if valid(value) => Ok(Condition::Equals(value.to_string())),
        None => Err(bad()),
        Some((from, to)) => {
            let from = (!from.is_empty()).then(|| from.to_string());
            let to = (!to.is_empty()).then(|| to.to_string());
            if from.is_none() && to.is_none()
                || from.as_deref().is_some_and(|f| !valid(f))
                || to.as_deref().is_some_and(|t| !valid(t))
            {
                return Err(bad());
            }
            Ok(Condition::Range { from, to })
        }
    }
}

fn condition(attribute: &Attribute, value: &str) -> Result<Condition, ApiError> {
    let keyword = attribute.keyword;
    if value.len() > 1024 {
        return Err(invalid(
            keyword,
            "the value is longer than 1024 characters".into(),
        ));
    }
    let wildcard = value.contains(['*', '?']);
    match attribute.matching {
        Matching::Uid => {
            let uids = list(value);
            if let Some(bad) = uids.iter().find(|u| !valid_uid(u)) {
                return Err(invalid(
                    keyword,
                    format!(
                        "'{bad}' is not a UID; give UIDs (digits and dots) separated by commas, without wild cards"
                    ),
                ));
            }
            Ok(match uids.len() {
                1 => Condition::Equals(uids[0].clone()),
                _ => Condition::AnyOf(uids),
            })
        }
        Matching::Date | Matching::Time => date_or_time(keyword, value, attribute.matching),
        Matching::Number => value
            .trim()
            .parse::<i64>()
            .map(Condition::Number)
            .map_err(|_| invalid(keyword, format!("'{value}' is not a whole number"))),
        Matching::CodeString => {
            let values: Vec<String> = list(value)
                .into_iter()
                .map(|v| v.to_ascii_uppercase())
                .collect();
            if let Some(bad) = values.iter().find(|v| {
                v.len() > 16
                    || !v.bytes().all(|b| {
                        b.is_ascii_alphanumeric()
                            || b == b'_'
                            || b == b' '
                            || b == b'*'
                            || b == b'?'
                    })
            }) {
                return Err(invalid(
                    keyword,
                    format!(
                        "'{bad}' is not a code string (capital letters, digits, space and _, at most 16 characters, such as CT or MR)"
                    ),
                ));
            }
            Ok(match values.len() {
                1 if wildcard => Condition::Wildcard(values[0].clone()),
                1 => Condition::Equals(values[0].clone()),
                _ => Condition::AnyOf(values),
            })
        }
        Matching::PersonName if wildcard => Ok(Condition::Wildcard(value.to_string())),
        Matching::PersonName => Ok(Condition::EqualsIgnoringCase(value.to_string())),
        Matching::Text if wildcard => Ok(Condition::Wildcard(value.to_string())),
        Matching::Text => Ok(Condition::Equals(value.to_string())),
        Matching::None => Err(invalid(
            keyword,
            "voxhub does not search on this attribute".into(),
        )),
    }
}

/// A parsed QIDO-RS query.
#[derive(Debug)]
pub struct Query {
    pub conditions: Vec<(Key, Condition)>,
    /// Tags of the attributes to return beyond the level's defaults; `None`: all of them.
    pub include: Option<BTreeSet<&'static str>>,
    pub limit: i64,
    pub offset: i64,
    /// Warnings for the `Warning` header: ignored keys and parameters.
    pub warnings: Vec<String>,
}

/// Reads the query parameters of a search at `level`.
pub fn parse(level: Level, pairs: &[(String, String)]) -> Result<Query, ApiError> {
    let mut query = Query {
        conditions: Vec::new(),
        include: Some(BTreeSet::new()),
        limit: MAX_RESULTS,
        offset: 0,
        warnings: Vec::new(),
    };
    let mut ignored = Vec::new();
    let mut unknown_fields = Vec::new();
    for (name, value) in pairs {
        let value = value.trim();
        match name.as_str() {
            "limit" | "offset" => {
                let number = value.parse::<u32>().map_err(|_| {
                    invalid(
                        name,
                        format!("'{value}' is not a whole number of zero or more"),
                    )
                })?;
                if name == "limit" {
                    query.limit = if number == 0 {
                        MAX_RESULTS
                    } else {
                        i64::from(number)
                    };
                } else {
                    query.offset = i64::from(number);
                }
            }
            "fuzzymatching" => {
                if value.eq_ignore_ascii_case("true") {
                    query
                        .warnings
                        .push("fuzzymatching is not supported; values were matched exactly".into());
                } else if !value.eq_ignore_ascii_case("false") {
                    return Err(invalid(
                        name,
                        format!("'{value}' is neither true nor false"),
                    ));
                }
            }
            "includefield" => {
                for field in value.split(',').map(str::trim).filter(|f| !f.is_empty()) {
                    if field.eq_ignore_ascii_case("all") {
                        query.include = None;
                    } else if let Some(attribute) = find_attribute(field) {
                        if let Some(include) = &mut query.include {
                            include.insert(attribute.tag);
                        }
                    } else {
                        unknown_fields.push(field.to_string());
                    }
                }
            }
            _ => match find_attribute(name) {
                Some(attribute) if attribute.key.is_some() => {
                    if let Some(include) = &mut query.include {
                        include.insert(attribute.tag);
                    }
                    if attribute.level > level {
                        ignored.push(format!("{} (not a key of this level)", attribute.keyword));
                    } else if !value.is_empty() {
                        let key = attribute.key.expect("checked above");
                        query.conditions.push((key, condition(attribute, value)?));
                    }
                }
                Some(attribute) => {
                    if let Some(include) = &mut query.include {
                        include.insert(attribute.tag);
                    }
                    if !value.is_empty() {
                        ignored.push(format!(
                            "{} (returned, but not searched on)",
                            attribute.keyword
                        ));
                    }
                }
                None => ignored.push(name.clone()),
            },
        }
    }
    if !ignored.is_empty() {
        query.warnings.push(format!(
            "these query keys are not supported and were ignored: {}",
            ignored.join(", ")
        ));
    }
    if !unknown_fields.is_empty() {
        query.warnings.push(format!(
            "these includefield values are not attributes voxhub returns: {}",
            unknown_fields.join(", ")
        ));
    }
    Ok(query)
}

/// One attribute in the model: `{"vr": …, "Value": […]}`, or only the VR when empty.
fn element(vr: &str, values: Vec<Value>) -> Value {
    let values: Vec<Value> = values
        .into_iter()
        .filter(|v| !(v.is_null() || v.as_str() == Some("")))
        .collect();
    if values.is_empty() {
        json!({ "vr": vr })
    } else {
        json!({ "vr": vr, "Value": values })
    }
}

fn text(value: &str) -> Vec<Value> {
    vec![Value::String(value.to_string())]
}

fn person_name(value: &str) -> Vec<Value> {
    let alphabetic = value.split('=').next().unwrap_or_default();
    if alphabetic.is_empty() {
        Vec::new()
    } else {
        vec![json!({ "Alphabetic": alphabetic })]
    }
}

fn number(value: Option<i64>) -> Vec<Value> {
    value.map(|v| vec![json!(v)]).unwrap_or_default()
}

/// The attributes of one result, before choosing which to return.
struct Attributes {
    values: Vec<(&'static str, Vec<Value>)>,
}

impl Attributes {
    fn new() -> Self {
        Self { values: Vec::new() }
    }

    fn set(&mut self, tag: &'static str, values: Vec<Value>) {
        self.values.push((tag, values));
    }

    fn patient_and_study(&mut self, row: &StudyColumns<'_>) {
        self.set("00100010", person_name(row.patient_name));
        self.set("00100020", text(row.patient_id));
        self.set("00100030", text(row.patient_birth_date));
        self.set("00100040", text(row.patient_sex));
        self.set("0020000D", text(row.study_uid));
        self.set("00080020", text(row.study_date));
        self.set("00080030", text(row.study_time));
        self.set("00080050", text(row.accession_number));
        self.set("00081030", text(row.study_description));
        self.set("00080090", person_name(row.referring_physician));
        self.set("00200010", Vec::new());
        self.set("00080056", text("ONLINE"));
    }

    /// The model object with the attributes of `level` and above that are asked for.
    fn to_json(&self, defaults: &[&str], include: &Option<BTreeSet<&'static str>>) -> Value {
        let mut object = Map::new();
        for (tag, values) in &self.values {
            let wanted = match include {
                None => true,
                Some(extra) => defaults.contains(tag) || extra.contains(tag),
            };
            if !wanted {
                continue;
            }
            let vr = ATTRIBUTES
                .iter()
                .find(|a| a.tag == *tag)
                .map_or("UN", |a| a.vr);
            object.insert((*tag).to_string(), element(vr, values.clone()));
        }
        Value::Object(object)
    }
}

struct StudyColumns<'a> {
    study_uid: &'a str,
    patient_id: &'a str,
    patient_name: &'a str,
    patient_sex: &'a str,
    patient_birth_date: &'a str,
    study_date: &'a str,
    study_time: &'a str,
    study_description: &'a str,
    accession_number: &'a str,
    referring_physician: &'a str,
}

fn study_json(scope: &Scope, row: &FoundStudy, include: &Option<BTreeSet<&'static str>>) -> Value {
    let mut result = Attributes::new();
    result.patient_and_study(&StudyColumns {
        study_uid: &row.study_uid,
        patient_id: &row.patient_id,
        patient_name: &row.patient_name,
        patient_sex: &row.patient_sex,
        patient_birth_date: &row.patient_birth_date,
        study_date: &row.study_date,
        study_time: &row.study_time,
        study_description: &row.study_description,
        accession_number: &row.accession_number,
        referring_physician: &row.referring_physician,
    });
    let mut modalities: Vec<&str> = row
        .modalities
        .split(',')
        .filter(|m| !m.is_empty())
        .collect();
    modalities.sort_unstable();
    result.set(
        "00080061",
        modalities.into_iter().map(|m| json!(m)).collect(),
    );
    result.set("00201206", number(Some(row.series)));
    result.set("00201208", number(Some(row.instances)));
    result.set("00081190", text(&scope.study_url(&row.study_uid)));
    result.to_json(STUDY_DEFAULT, include)
}

fn series_json(
    scope: &Scope,
    row: &FoundSeries,
    include: &Option<BTreeSet<&'static str>>,
    with_study: bool,
) -> Value {
    let mut result = Attributes::new();
    result.patient_and_study(&StudyColumns {
        study_uid: &row.study_uid,
        patient_id: &row.patient_id,
        patient_name: &row.patient_name,
        patient_sex: &row.patient_sex,
        patient_birth_date: &row.patient_birth_date,
        study_date: &row.study_date,
        study_time: &row.study_time,
        study_description: &row.study_description,
        accession_number: &row.accession_number,
        referring_physician: &row.referring_physician,
    });
    result.set("0020000E", text(&row.series_uid));
    result.set("00080060", text(&row.modality));
    result.set("00200011", number(row.series_number));
    result.set("0008103E", text(&row.series_description));
    result.set("00180015", text(&row.body_part));
    result.set("00080021", text(&row.series_date));
    result.set("00080031", text(&row.series_time));
    result.set("00201209", number(Some(row.instances)));
    result.set(
        "00081190",
        text(&scope.series_url(&row.study_uid, &row.series_uid)),
    );
    let mut defaults: Vec<&str> = SERIES_DEFAULT.to_vec();
    if with_study {
        defaults.extend(
            STUDY_DEFAULT
                .iter()
                .filter(|t| !matches!(**t, "00081190" | "00201206" | "00201208" | "00080061")),
        );
    }
    result.to_json(&defaults, include)
}

fn instance_json(
    scope: &Scope,
    row: &FoundInstance,
    include: &Option<BTreeSet<&'static str>>,
    with_series: bool,
    with_study: bool,
) -> Value {
    let mut result = Attributes::new();
    result.patient_and_study(&StudyColumns {
        study_uid: &row.study_uid,
        patient_id: &row.patient_id,
        patient_name: &row.patient_name,
        patient_sex: &row.patient_sex,
        patient_birth_date: &row.patient_birth_date,
        study_date: &row.study_date,
        study_time: &row.study_time,
        study_description: &row.study_description,
        accession_number: &row.accession_number,
        referring_physician: &row.referring_physician,
    });
    result.set("0020000E", text(&row.series_uid));
    result.set("00080060", text(&row.modality));
    result.set("00200011", number(row.series_number));
    result.set("0008103E", text(&row.series_description));
    result.set("00080016", text(&row.sop_class_uid));
    result.set("00080018", text(&row.sop_uid));
    result.set("00200013", number(row.instance_number));
    result.set("00280010", number(row.rows));
    result.set("00280011", number(row.columns));
    result.set(
        "00280008",
        if row.rows.is_some() {
            number(Some(row.frames))
        } else {
            Vec::new()
        },
    );
    result.set("00083002", text(&row.transfer_syntax));
    result.set(
        "00081190",
        text(&scope.instance_url(&row.study_uid, &row.series_uid, &row.sop_uid)),
    );
    let mut defaults: Vec<&str> = INSTANCE_DEFAULT.to_vec();
    if with_series {
        defaults.extend(["00080060", "00200011", "0008103E"]);
    }
    if with_study {
        defaults.extend(
            STUDY_DEFAULT
                .iter()
                .filter(|t| !matches!(**t, "00081190" | "00201206" | "00201208" | "00080061")),
        );
    }
    result.to_json(&defaults, include)
}

/// What a search is for: its level and the UIDs its address names.
struct Target<'a> {
    level: Level,
    study: Option<&'a str>,
    series: Option<&'a str>,
}

async fn search(
    state: AppState,
    caller: DicomwebCaller,
    source: String,
    headers: HeaderMap,
    ids: Ids,
    pairs: Vec<(String, String)>,
    level: Level,
) -> std::result::Result<Response, ApiError> {
    let ctx = caller.0.context(&source);
    let scope = scope(&state, &ctx, ids.dataset, &headers).await?;
    super::accept_json(&headers)?;
    let target = Target {
        level,
        study: ids.study.as_deref(),
        series: ids.series.as_deref(),
    };
    let mut query = parse(target.level, &pairs)?;
    if let Some(study) = target.study {
        let study = path_uid("Study Instance UID", study)?;
        query
            .conditions
            .push((Key::StudyInstanceUid, Condition::Equals(study)));
    }
    if let Some(series) = target.series {
        let series = path_uid("Series Instance UID", series)?;
        query
            .conditions
            .push((Key::SeriesInstanceUid, Condition::Equals(series)));
    }
    let search = Search {
        datasets: scope.datasets.clone(),
        conditions: query.conditions.clone(),
        // One more than asked tells whether there are more.
        limit: query.limit.min(MAX_RESULTS) + 1,
        offset: query.offset,
    };
    let wanted = query.limit.min(MAX_RESULTS) as usize;
    let (mut results, kind): (Vec<Value>, &str) = match target.level {
        Level::Study => (
            state
                .store
                .search_studies(&search)
                .await?
                .iter()
                .map(|row| study_json(&scope, row, &query.include))
                .collect(),
            "studies",
        ),
        Level::Series => (
            state
                .store
                .search_series(&search)
                .await?
                .iter()
                .map(|row| series_json(&scope, row, &query.include, target.study.is_none()))
                .collect(),
            "series",
        ),
        Level::Instance => (
            state
                .store
                .search_instances(&search)
                .await?
                .iter()
                .map(|row| {
                    instance_json(
                        &scope,
                        row,
                        &query.include,
                        target.series.is_none(),
                        target.study.is_none(),
                    )
                })
                .collect(),
            "instances",
        ),
    };
    if results.len() > wanted {
        results.truncate(wanted);
        query.warnings.push(format!(
            "there are more than {wanted} matches; ask again with offset={} for the next ones",
            query.offset + wanted as i64
        ));
    }
    if query.limit > MAX_RESULTS {
        query.warnings.push(format!(
            "at most {MAX_RESULTS} results are returned at once; use offset for the rest"
        ));
    }
    let detail: String = pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
        .chars()
        .take(500)
        .collect();
    scope
        .audit_search(
            &state,
            &ctx,
            kind,
            format!("QIDO-RS search for {kind} {detail}"),
        )
        .await?;
    let mut response = dicom_json_response(StatusCode::OK, Value::Array(results));
    for warning in &query.warnings {
        let value = format!("299 voxhub \"{}\"", warning.replace('"', "'"));
        if let Ok(value) = header::HeaderValue::from_str(&value) {
            response.headers_mut().append(header::WARNING, value);
        }
    }
    Ok(response)
}

macro_rules! search_handler {
    ($name:ident, $level:expr) => {
        pub async fn $name(
            State(state): State<AppState>,
            ClientAddr(source): ClientAddr,
            caller: DicomwebCaller,
            headers: HeaderMap,
            ApiPath(ids): ApiPath<Ids>,
            ApiQuery(pairs): ApiQuery<Vec<(String, String)>>,
        ) -> std::result::Result<Response, ApiError> {
            search(state, caller, source, headers, ids, pairs, $level).await
        }
    };
}

search_handler!(studies, Level::Study);
search_handler!(series, Level::Series);
search_handler!(instances, Level::Instance);

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(raw: &[(&str, &str)]) -> Vec<(String, String)> {
        raw.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn standard_keys_become_conditions() {
        let query = parse(
            Level::Study,
            &pairs(&[
                ("PatientName", "doe*"),
                ("00100020", "ABC"),
                ("StudyInstanceUID", "1.2.3,1.2.4"),
                ("StudyDate", "20200101-20201231"),
                ("ModalitiesInStudy", "ct"),
                ("AccessionNumber", ""),
                ("limit", "5"),
                ("offset", "10"),
                ("fuzzymatching", "false"),
                ("includefield", "StudyDescription,00081030"),
            ]),
        )
        .unwrap();
        assert_eq!(
            query.conditions,
            vec![
                (Key::PatientName, Condition::Wildcard("doe*".into())),
                (Key::PatientId, Condition::Equals("ABC".into())),
                (
                    Key::StudyInstanceUid,
                    Condition::AnyOf(vec!["1.2.3".into(), "1.2.4".into()])
                ),
                (
                    Key::StudyDate,
                    Condition::Range {
                        from: Some("20200101".into()),
                        to: Some("20201231".into())
                    }
                ),
                (Key::ModalitiesInStudy, Condition::Equals("CT".into())),
            ]
        );
        assert_eq!((query.limit, query.offset), (5, 10));
        assert!(query.include.unwrap().contains("00080050"));
        assert!(query.warnings.is_empty(), "{:?}", query.warnings);
    }

    #[test]
    fn bad_values_are_refused_with_what_to_send() {
        for (key, value, says) in [
            ("StudyDate", "2020-01-01", "YYYYMMDD"),
            ("StudyDate", "-", "YYYYMMDD"),
            ("StudyInstanceUID", "1.2.*", "not a UID"),
            ("SeriesNumber", "three", "whole number"),
            ("limit", "-1", "whole number"),
            ("Modality", "C;T", "code string"),
            ("fuzzymatching", "maybe", "true nor false"),
            ("StudyTime", "25:00", "HHMMSS"),
        ] {
            let error = parse(Level::Instance, &pairs(&[(key, value)])).unwrap_err();
            assert_eq!(error.status, StatusCode::BAD_REQUEST);
            assert!(
                error.message.contains(says),
                "{key}={value}: {}",
                error.message
            );
            assert!(error.message.starts_with(key), "{}", error.message);
        }
    }

    #[test]
    fn unknown_keys_and_keys_of_lower_levels_are_ignored_with_a_warning() {
        let query = parse(
            Level::Study,
            &pairs(&[
                ("SOPInstanceUID", "1.2"),
                ("PatientWeight", "70"),
                ("includefield", "all"),
            ]),
        )
        .unwrap();
        assert!(query.conditions.is_empty());
        assert!(query.include.is_none());
        assert_eq!(query.warnings.len(), 1);
        assert!(query.warnings[0].contains("SOPInstanceUID"));
        assert!(query.warnings[0].contains("PatientWeight"));
    }

    #[test]
    fn empty_values_are_left_out_of_the_model() {
        assert_eq!(element("PN", person_name("")), json!({"vr": "PN"}));
        assert_eq!(
            element("PN", person_name("Doe^Jane=X")),
            json!({"vr": "PN", "Value": [{"Alphabetic": "Doe^Jane"}]})
        );
        assert_eq!(
            element("IS", number(Some(3))),
            json!({"vr": "IS", "Value": [3]})
        );
        assert_eq!(element("DA", text("")), json!({"vr": "DA"}));
    }
}
