//! De-identification of DICOM data sets by the DICOM PS3.15 Annex E Basic Application Confidentiality Profile.
//!
//! [`deidentify`] rewrites a data set in place and returns a [`DeidReport`] saying what was
//! removed, emptied or replaced, so the ingest report can tell the uploader. It is a pure
//! function of the data set and the [`DeidConfig`]: the same input and secret always give
//! byte-identical output, which is what lets files uploaded at different times still group.
//!
//! What it does, and where it goes beyond the profile (each for a reason given at the code):
//!
//! - Every attribute of [`PROFILE`] (taken from PS3.15 Table E.1-1, "Basic Prof." column) gets
//!   its action, at every nesting level, since sequence items can hold identifying data too.
//! - Instance UIDs become `2.25.` + the decimal of the first 128 bits of
//!   HMAC-SHA256(secret, original UID), so references between files still resolve.
//! - Patient ID and Patient's Name become one stable pseudonym (`anon-` + 12 hex digits).
//! - With [`DatePolicy::ShiftPerPatient`] the profile's "Retain Longitudinal Temporal
//!   Information with Modified Dates" option applies: every date of a patient moves back by the
//!   same whole number of days (1 to 365, from the secret and the patient ID) and times of day
//!   are kept, so intervals between studies survive. Patient's Birth Date is still emptied.
//! - Private attributes (odd groups) are removed unless [`DeidConfig::keep_private_tags`].
//! - Burned-in annotation is only flagged, never removed from pixels.
//! - With [`DeidConfig::clean_descriptors`] the profile's "Clean Descriptors" option applies
//!   to the descriptions that say what a study or series is ([`CLEANED_DESCRIPTORS`]): they
//!   are kept, less every word that is a name, ID or institution of the data set itself, a
//!   date, or a number of five or more digits; see [`clean_descriptor`].

use std::collections::HashSet;

use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry};
use dicom_core::header::Header;
use dicom_core::value::{DataSetSequence, Value};
use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::{StandardDataDictionary, tags};
use dicom_object::{FileDicomObject, InMemDicomObject};
use sha2::{Digest, Sha256};

type Element = dicom_object::mem::InMemElement;

/// What to do with dates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DatePolicy {
    /// Move every date of a patient back by the same secret number of whole days.
    #[default]
    ShiftPerPatient,
    /// Empty or remove every date, date-time and time.
    Remove,
}

/// How one installation de-identifies.
#[derive(Clone, Default)]
pub struct DeidConfig {
    /// The per-installation secret that keys every pseudonym, UID and date shift; without it
    /// a pseudonym could be reversed by hashing candidate patient IDs.
    pub secret: Vec<u8>,
    /// Keep private (odd group) attributes; they often hold names and IDs, so off by default.
    pub keep_private_tags: bool,
    /// Shift dates per patient (default) or remove them.
    pub date_policy: DatePolicy,
    /// Keep Study Description, Series Description and Protocol Name, cleaned of identifying
    /// words (PS3.15 "Clean Descriptors" option), instead of removing them.
    pub clean_descriptors: bool,
}

impl std::fmt::Debug for DeidConfig {
    // The secret must never reach a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeidConfig")
            .field("secret", &"<redacted>")
            .field("keep_private_tags", &self.keep_private_tags)
            .field("date_policy", &self.date_policy)
            .field("clean_descriptors", &self.clean_descriptors)
            .finish()
    }
}

/// What de-identification did to one data set. Names are dictionary keywords; an attribute
/// inside a sequence is written `Sequence/Attribute`. Each name appears once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeidReport {
    /// Attributes removed.
    pub removed: Vec<String>,
    /// Attributes whose value was replaced (pseudonyms, UIDs, shifted dates, dummies).
    pub replaced: Vec<String>,
    /// Attributes kept with a zero-length value.
    pub emptied: Vec<String>,
    /// Number of UID values replaced.
    pub uids_replaced: usize,
    /// Number of private attributes removed, private creators included.
    pub private_tags_removed: usize,
    /// The shift applied to every date, in days (negative: earlier); `None` when dates were removed.
    pub date_shift_days: Option<i32>,
    /// The pixels may show identifying text that de-identification could not remove.
    pub burned_in_annotation_suspected: bool,
}

/// Why a data set could not be de-identified.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeidError {
    /// An empty secret would make every pseudonym guessable.
    #[error("the de-identification secret is empty; configure a per-installation secret")]
    EmptySecret,
    /// A UID that must be replaced could not be read as text.
    #[error("cannot read UID attribute {tag} as text")]
    UnreadableUid {
        /// The attribute, as `(gggg,eeee)`.
        tag: String,
    },
}

/// An action code of PS3.15 Table E.1-1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    /// Replace with a non-identifying dummy of the same VR.
    Dummy,
    /// Keep with a zero-length value.
    Empty,
    /// Remove.
    Remove,
    /// Keep; sequences are still cleaned item by item.
    Keep,
    /// Replace UIDs consistently; in a sequence, the UIDs inside.
    Uid,
}

/// Choose one action for a code of Table E.1-1. Compound codes (`X/Z`, `X/Z/D`, ...) let the
/// choice depend on the attribute's type in the IOD, which this function does not know, so it
/// takes the choice that keeps the data set valid for every IOD without keeping any value:
/// zero length where allowed (valid for Type 2 and 3), a dummy where zero length is not
/// (`X/D`: the attribute may be Type 1), and for `U*` sequences the items are
/// kept with their UIDs replaced so image references still resolve.
fn resolve(code: &str) -> Action {
    match code {
        "X" => Action::Remove,
        "Z" | "X/Z" | "Z/D" | "X/Z/D" => Action::Empty,
        "D" | "X/D" => Action::Dummy,
        "U" | "X/Z/U*" => Action::Uid,
        _ => Action::Keep,
    }
}

/// Attributes of PS3.15 Table E.1-1 with the code of its "Basic Prof." column, restricted to
/// those found in image objects; attributes not listed are kept, except that
/// dates and person names anywhere are treated by [`clean_element`] (see there for why).
/// Group 50xx (curves) and 60xx (overlays) are matched by group in [`clean_element`].
#[rustfmt::skip]
const PROFILE: &[(u16, u16, &str)] = &[
    (0x0008, 0x0014, "U"),     // Instance Creator UID
    (0x0008, 0x0018, "U"),     // SOP Instance UID
    (0x0008, 0x0020, "Z"),     // Study Date
    (0x0008, 0x0021, "X/D"),   // Series Date
    (0x0008, 0x0022, "X/Z"),   // Acquisition Date
    (0x0008, 0x0023, "Z/D"),   // Content Date
    (0x0008, 0x0024, "X"),     // Overlay Date
    (0x0008, 0x0025, "X"),     // Curve Date
    (0x0008, 0x002A, "X/D"),   // Acquisition DateTime
    (0x0008, 0x0030, "Z"),     // Study Time
    (0x0008, 0x0031, "X/D"),   // Series Time
    (0x0008, 0x0032, "X/Z"),   // Acquisition Time
    (0x0008, 0x0033, "Z/D"),   // Content Time
    (0x0008, 0x0034, "X"),     // Overlay Time
    (0x0008, 0x0035, "X"),     // Curve Time
    (0x0008, 0x0050, "Z"),     // Accession Number
    (0x0008, 0x0058, "U"),     // Failed SOP Instance UID List
    (0x0008, 0x0080, "X/Z/D"), // Institution Name
    (0x0008, 0x0081, "X"),     // Institution Address
    (0x0008, 0x0082, "X/Z/D"), // Institution Code Sequence
    (0x0008, 0x0090, "Z"),     // Referring Physician's Name
    (0x0008, 0x0092, "X"),     // Referring Physician's Address
    (0x0008, 0x0094, "X"),     // Referring Physician's Telephone Numbers
    (0x0008, 0x0096, "X"),     // Referring Physician Identification Sequence
    (0x0008, 0x010D, "U"),     // Context Group Extension Creator UID
    (0x0008, 0x0201, "X"),     // Timezone Offset From UTC
    (0x0008, 0x1010, "X/Z/D"), // Station Name
    (0x0008, 0x1030, "X"),     // Study Description
    (0x0008, 0x103E, "X"),     // Series Description
    (0x0008, 0x1040, "X"),     // Institutional Department Name
    (0x0008, 0x1041, "X"),     // Institutional Department Type Code Sequence
    (0x0008, 0x1048, "X"),     // Physician(s) of Record
    (0x0008, 0x1049, "X"),     // Physician(s) of Record Identification Sequence
    (0x0008, 0x1050, "X"),     // Performing Physician's Name
    (0x0008, 0x1052, "X"),     // Performing Physician Identification Sequence
    (0x0008, 0x1060, "X"),     // Name of Physician(s) Reading Study
    (0x0008, 0x1062, "X"),     // Physician(s) Reading Study Identification Sequence
    (0x0008, 0x1070, "X/Z/D"), // Operators' Name
    (0x0008, 0x1072, "X/D"),   // Operators' Identification Sequence
    (0x0008, 0x1080, "X"),     // Admitting Diagnoses Description
    (0x0008, 0x1084, "X"),     // Admitting Diagnoses Code Sequence
    (0x0008, 0x1110, "X/Z"),   // Referenced Study Sequence
    (0x0008, 0x1111, "X/Z/D"), // Referenced Performed Procedure Step Sequence
    (0x0008, 0x1120, "X"),     // Referenced Patient Sequence
    (0x0008, 0x1140, "X/Z/U*"),// Referenced Image Sequence
    (0x0008, 0x1155, "U"),     // Referenced SOP Instance UID
    (0x0008, 0x1195, "U"),     // Transaction UID
    (0x0008, 0x2111, "X"),     // Derivation Description
    (0x0008, 0x2112, "X/Z/U*"),// Source Image Sequence
    (0x0008, 0x3010, "U"),     // Irradiation Event UID
    (0x0008, 0x4000, "X"),     // Identifying Comments
    (0x0010, 0x0010, "Z"),     // Patient's Name (replaced by the pseudonym, see clean_element)
    (0x0010, 0x0020, "Z"),     // Patient ID (replaced by the pseudonym, see clean_element)
    (0x0010, 0x0021, "X"),     // Issuer of Patient ID
    (0x0010, 0x0030, "Z"),     // Patient's Birth Date
    (0x0010, 0x0032, "X"),     // Patient's Birth Time
    (0x0010, 0x0033, "X"),     // Patient's Birth Date in Alternative Calendar
    (0x0010, 0x0034, "X"),     // Patient's Death Date in Alternative Calendar
    (0x0010, 0x0040, "Z"),     // Patient's Sex
    (0x0010, 0x0050, "X"),     // Patient's Insurance Plan Code Sequence
    (0x0010, 0x0101, "X"),     // Patient's Primary Language Code Sequence
    (0x0010, 0x0102, "X"),     // Patient's Primary Language Modifier Code Sequence
    (0x0010, 0x1000, "X"),     // Other Patient IDs
    (0x0010, 0x1001, "X"),     // Other Patient Names
    (0x0010, 0x1002, "X"),     // Other Patient IDs Sequence
    (0x0010, 0x1005, "X"),     // Patient's Birth Name
    (0x0010, 0x1010, "X"),     // Patient's Age
    (0x0010, 0x1020, "X"),     // Patient's Size
    (0x0010, 0x1030, "X"),     // Patient's Weight
    (0x0010, 0x1040, "X"),     // Patient's Address
    (0x0010, 0x1050, "X"),     // Insurance Plan Identification
    (0x0010, 0x1060, "X"),     // Patient's Mother's Birth Name
    (0x0010, 0x1080, "X"),     // Military Rank
    (0x0010, 0x1081, "X"),     // Branch of Service
    (0x0010, 0x1090, "X"),     // Medical Record Locator
    (0x0010, 0x2000, "X"),     // Medical Alerts
    (0x0010, 0x2110, "X"),     // Allergies
    (0x0010, 0x2150, "X"),     // Country of Residence
    (0x0010, 0x2152, "X"),     // Region of Residence
    (0x0010, 0x2154, "X"),     // Patient's Telephone Numbers
    (0x0010, 0x2160, "X"),     // Ethnic Group
    (0x0010, 0x2180, "X"),     // Occupation
    (0x0010, 0x21A0, "X"),     // Smoking Status
    (0x0010, 0x21B0, "X"),     // Additional Patient History
    (0x0010, 0x21C0, "X"),     // Pregnancy Status
    (0x0010, 0x21D0, "X"),     // Last Menstrual Date
    (0x0010, 0x21F0, "X"),     // Patient's Religious Preference
    (0x0010, 0x2203, "X/Z"),   // Patient's Sex Neutered
    (0x0010, 0x2297, "X"),     // Responsible Person
    (0x0010, 0x2299, "X"),     // Responsible Organization
    (0x0010, 0x4000, "X"),     // Patient Comments
    (0x0018, 0x0010, "Z/D"),   // Contrast/Bolus Agent
    (0x0018, 0x1000, "X/Z/D"), // Device Serial Number
    (0x0018, 0x1002, "U"),     // Device UID
    (0x0018, 0x1004, "X"),     // Plate ID
    (0x0018, 0x1005, "X"),     // Generator ID
    (0x0018, 0x1007, "X"),     // Cassette ID
    (0x0018, 0x1008, "X"),     // Gantry ID
    (0x0018, 0x1030, "X/D"),   // Protocol Name
    (0x0018, 0x1400, "X/D"),   // Acquisition Device Processing Description
    (0x0018, 0x4000, "X"),     // Acquisition Comments
    (0x0018, 0x700A, "X/D"),   // Detector ID
    (0x0018, 0x9424, "X"),     // Acquisition Protocol Description
    (0x0018, 0xA003, "X"),     // Contribution Description
    (0x0020, 0x000D, "U"),     // Study Instance UID
    (0x0020, 0x000E, "U"),     // Series Instance UID
    (0x0020, 0x0010, "Z"),     // Study ID
    (0x0020, 0x0052, "U"),     // Frame of Reference UID
    (0x0020, 0x0200, "U"),     // Synchronization Frame of Reference UID
    (0x0020, 0x3401, "X"),     // Modifying Device ID
    (0x0020, 0x3404, "X"),     // Modifying Device Manufacturer
    (0x0020, 0x3406, "X"),     // Modified Image Description
    (0x0020, 0x4000, "X"),     // Image Comments
    (0x0020, 0x9158, "X"),     // Frame Comments
    (0x0020, 0x9161, "U"),     // Concatenation UID
    (0x0020, 0x9164, "U"),     // Dimension Organization UID
    (0x0028, 0x1199, "U"),     // Palette Color Lookup Table UID
    (0x0028, 0x1214, "U"),     // Large Palette Color Lookup Table UID
    (0x0028, 0x4000, "X"),     // Image Presentation Comments
    (0x0032, 0x0012, "X"),     // Study ID Issuer
    (0x0032, 0x1020, "X"),     // Scheduled Study Location
    (0x0032, 0x1021, "X"),     // Scheduled Study Location AE Title
    (0x0032, 0x1030, "X"),     // Reason for Study
    (0x0032, 0x1032, "X"),     // Requesting Physician
    (0x0032, 0x1033, "X"),     // Requesting Service
    (0x0032, 0x1060, "X/Z"),   // Requested Procedure Description
    (0x0032, 0x1070, "X"),     // Requested Contrast Agent
    (0x0032, 0x4000, "X"),     // Study Comments
    (0x0038, 0x0004, "X"),     // Referenced Patient Alias Sequence
    (0x0038, 0x0010, "X"),     // Admission ID
    (0x0038, 0x0011, "X"),     // Issuer of Admission ID
    (0x0038, 0x001E, "X"),     // Scheduled Patient Institution Residence
    (0x0038, 0x0020, "X"),     // Admitting Date
    (0x0038, 0x0021, "X"),     // Admitting Time
    (0x0038, 0x0040, "X"),     // Discharge Diagnosis Description
    (0x0038, 0x0050, "X"),     // Special Needs
    (0x0038, 0x0060, "X"),     // Service Episode ID
    (0x0038, 0x0061, "X"),     // Issuer of Service Episode ID
    (0x0038, 0x0062, "X"),     // Service Episode Description
    (0x0038, 0x0300, "X"),     // Current Patient Location
    (0x0038, 0x0400, "X"),     // Patient's Institution Residence
    (0x0038, 0x0500, "X"),     // Patient State
    (0x0038, 0x4000, "X"),     // Visit Comments
    (0x0040, 0x0001, "X"),     // Scheduled Station AE Title
    (0x0040, 0x0002, "X"),     // Scheduled Procedure Step Start Date
    (0x0040, 0x0003, "X"),     // Scheduled Procedure Step Start Time
    (0x0040, 0x0004, "X"),     // Scheduled Procedure Step End Date
    (0x0040, 0x0005, "X"),     // Scheduled Procedure Step End Time
    (0x0040, 0x0006, "X"),     // Scheduled Performing Physician's Name
    (0x0040, 0x0007, "X"),     // Scheduled Procedure Step Description
    (0x0040, 0x000B, "X"),     // Scheduled Performing Physician Identification Sequence
    (0x0040, 0x0010, "X"),     // Scheduled Station Name
    (0x0040, 0x0011, "X"),     // Scheduled Procedure Step Location
    (0x0040, 0x0012, "X"),     // Pre-Medication
    (0x0040, 0x0241, "X"),     // Performed Station AE Title
    (0x0040, 0x0242, "X"),     // Performed Station Name
    (0x0040, 0x0243, "X"),     // Performed Location
    (0x0040, 0x0244, "X"),     // Performed Procedure Step Start Date
    (0x0040, 0x0245, "X"),     // Performed Procedure Step Start Time
    (0x0040, 0x0250, "X"),     // Performed Procedure Step End Date
    (0x0040, 0x0251, "X"),     // Performed Procedure Step End Time
    (0x0040, 0x0253, "X"),     // Performed Procedure Step ID
    (0x0040, 0x0254, "X"),     // Performed Procedure Step Description
    (0x0040, 0x0275, "X"),     // Request Attributes Sequence
    (0x0040, 0x0280, "X"),     // Comments on the Performed Procedure Step
    (0x0040, 0x0555, "X"),     // Acquisition Context Sequence
    (0x0040, 0x1001, "X"),     // Requested Procedure ID
    (0x0040, 0x1004, "X"),     // Patient Transport Arrangements
    (0x0040, 0x1005, "X"),     // Requested Procedure Location
    (0x0040, 0x1010, "X"),     // Names of Intended Recipients of Results
    (0x0040, 0x1011, "X"),     // Intended Recipients of Results Identification Sequence
    (0x0040, 0x1101, "D"),     // Person Identification Code Sequence
    (0x0040, 0x1102, "X"),     // Person's Address
    (0x0040, 0x1103, "X"),     // Person's Telephone Numbers
    (0x0040, 0x1400, "X"),     // Requested Procedure Comments
    (0x0040, 0x2001, "X"),     // Reason for the Imaging Service Request
    (0x0040, 0x2008, "X"),     // Order Entered By
    (0x0040, 0x2009, "X"),     // Order Enterer's Location
    (0x0040, 0x2010, "X"),     // Order Callback Phone Number
    (0x0040, 0x2016, "Z"),     // Placer Order Number / Imaging Service Request
    (0x0040, 0x2017, "Z"),     // Filler Order Number / Imaging Service Request
    (0x0040, 0x2400, "X"),     // Imaging Service Request Comments
    (0x0040, 0x3001, "X"),     // Confidentiality Constraint on Patient Data Description
    (0x0040, 0x4023, "U"),     // Referenced General Purpose Scheduled Procedure Step Transaction UID
    (0x0040, 0x4025, "X"),     // Scheduled Station Name Code Sequence
    (0x0040, 0x4027, "X"),     // Scheduled Station Geographic Location Code Sequence
    (0x0040, 0x4028, "X"),     // Performed Station Name Code Sequence
    (0x0040, 0x4030, "X"),     // Performed Station Geographic Location Code Sequence
    (0x0040, 0x4034, "X"),     // Scheduled Human Performers Sequence
    (0x0040, 0x4035, "X"),     // Actual Human Performers Sequence
    (0x0040, 0x4036, "X"),     // Human Performer's Organization
    (0x0040, 0x4037, "X"),     // Human Performer's Name
    (0x0040, 0xA027, "X"),     // Verifying Organization
    (0x0040, 0xA073, "D"),     // Verifying Observer Sequence
    (0x0040, 0xA075, "D"),     // Verifying Observer Name
    (0x0040, 0xA078, "X"),     // Author Observer Sequence
    (0x0040, 0xA07A, "X"),     // Participant Sequence
    (0x0040, 0xA07C, "X"),     // Custodial Organization Sequence
    (0x0040, 0xA088, "Z"),     // Verifying Observer Identification Code Sequence
    (0x0040, 0xA123, "D"),     // Person Name
    (0x0040, 0xA124, "U"),     // UID
    (0x0040, 0xA730, "X"),     // Content Sequence
    (0x0040, 0xDB0C, "U"),     // Template Extension Organization UID
    (0x0040, 0xDB0D, "U"),     // Template Extension Creator UID
    (0x0070, 0x0001, "D"),     // Graphic Annotation Sequence
    (0x0070, 0x0084, "Z"),     // Content Creator's Name
    (0x0070, 0x0086, "X"),     // Content Creator's Identification Code Sequence
    (0x0070, 0x031A, "U"),     // Fiducial UID
    (0x0088, 0x0140, "U"),     // Storage Media File-set UID
    (0x0088, 0x0200, "X"),     // Icon Image Sequence
    (0x0088, 0x0904, "X"),     // Topic Title
    (0x0088, 0x0906, "X"),     // Topic Subject
    (0x0088, 0x0910, "X"),     // Topic Author
    (0x0088, 0x0912, "X"),     // Topic Keywords
    (0x0400, 0x0100, "X"),     // Digital Signature UID
    (0x0400, 0x0402, "X"),     // Referenced Digital Signature Sequence
    (0x0400, 0x0403, "X"),     // Referenced SOP Instance MAC Sequence
    (0x0400, 0x0404, "X"),     // MAC
    (0x0400, 0x0550, "X"),     // Modified Attributes Sequence
    (0x0400, 0x0561, "X"),     // Original Attributes Sequence
    (0x2030, 0x0020, "X"),     // Text String
    (0x3006, 0x0024, "U"),     // Referenced Frame of Reference UID
    (0x3006, 0x00C2, "U"),     // Related Frame of Reference UID
    (0x300A, 0x0013, "U"),     // Dose Reference UID
    (0x300E, 0x0008, "X/Z"),   // Reviewer Name
    (0x4000, 0x0010, "X"),     // Arbitrary
    (0x4000, 0x4000, "X"),     // Text Comments
    (0x4008, 0x0042, "X"),     // Results ID Issuer
    (0x4008, 0x0102, "X"),     // Interpretation Recorder
    (0x4008, 0x010A, "X"),     // Interpretation Transcriber
    (0x4008, 0x010B, "X"),     // Interpretation Text
    (0x4008, 0x010C, "X"),     // Interpretation Author
    (0x4008, 0x0111, "X"),     // Interpretation Approver Sequence
    (0x4008, 0x0114, "X"),     // Physician Approving Interpretation
    (0x4008, 0x0115, "X"),     // Interpretation Diagnosis Description
    (0x4008, 0x0118, "X"),     // Results Distribution List Sequence
    (0x4008, 0x0119, "X"),     // Distribution Name
    (0x4008, 0x011A, "X"),     // Distribution Address
    (0x4008, 0x0202, "X"),     // Interpretation ID Issuer
    (0x4008, 0x0300, "X"),     // Impressions
    (0x4008, 0x4000, "X"),     // Results Comments
    (0xFFFA, 0xFFFA, "X"),     // Digital Signatures Sequence
    (0xFFFC, 0xFFFC, "X"),     // Data Set Trailing Padding
];

/// Attributes the "Retain Longitudinal Temporal Information with Modified Dates" option
/// (PS3.15 E.3.6, Table E.1-1 column "Rtn. Long. Modif. Dates Opt.", code C) keeps in modified
/// form: under [`DatePolicy::ShiftPerPatient`] their dates are shifted and their times kept;
/// under [`DatePolicy::Remove`] they are emptied, or removed where the basic code is X.
#[rustfmt::skip]
const LONGITUDINAL: &[(u16, u16)] = &[
    (0x0008, 0x0012), (0x0008, 0x0013), (0x0008, 0x0020), (0x0008, 0x0021), (0x0008, 0x0022),
    (0x0008, 0x0023), (0x0008, 0x002A), (0x0008, 0x0030), (0x0008, 0x0031), (0x0008, 0x0032),
    (0x0008, 0x0033),
];

/// Modalities whose images are often screen captures or carry text in the pixels.
const BURNED_IN_RISK_MODALITIES: &[&str] = &["US", "SC", "OT", "XA", "XC", "ES", "GM", "DOC"];

/// Modalities and SOP classes of Secondary Capture: the pixels are a picture of a screen.
const SECONDARY_CAPTURE_SOP_CLASS_PREFIX: &str = "1.2.840.10008.5.1.4.1.1.7";

/// The value of De-identification Method (0012,0063); LO allows 64 characters.
const METHOD_SHIFTED: &str = "PS3.15 E.1 Basic Profile; Retain Longitudinal Modified Dates";
const METHOD_REMOVED: &str = "PS3.15 E.1 Basic Profile";
/// Its second value when descriptors are cleaned rather than removed.
const METHOD_CLEAN_DESCRIPTORS: &str = "Clean Descriptors Option";

/// The descriptions kept (cleaned) under the Clean Descriptors option: those that say what a
/// study or series is, which people browsing a dataset need. Every other free-text
/// attribute keeps its Basic Profile action.
const CLEANED_DESCRIPTORS: [Tag; 3] = [
    tags::STUDY_DESCRIPTION,
    tags::SERIES_DESCRIPTION,
    tags::PROTOCOL_NAME,
];

/// Attributes whose words identify the patient, the people around them or the place, and
/// so are taken out of a cleaned descriptor wherever they appear in it. Person names are
/// taken from every PN attribute besides these.
const IDENTIFYING_WORD_SOURCES: [Tag; 9] = [
    tags::PATIENT_ID,
    // Other Patient IDs: retired, but still written by some systems.
    Tag(0x0010, 0x1000),
    tags::ACCESSION_NUMBER,
    tags::STUDY_ID,
    tags::INSTITUTION_NAME,
    tags::INSTITUTION_ADDRESS,
    tags::INSTITUTIONAL_DEPARTMENT_NAME,
    tags::STATION_NAME,
    tags::DEVICE_SERIAL_NUMBER,
];

/// De-identify a data set in place. The data set alone: for a file, use [`deidentify_file`],
/// which also replaces the UID in the file meta group.
pub fn deidentify(
    obj: &mut InMemDicomObject,
    config: &DeidConfig,
) -> Result<DeidReport, DeidError> {
    if config.secret.is_empty() {
        return Err(DeidError::EmptySecret);
    }
    let patient_key = patient_key(obj);
    let date_shift_days = match config.date_policy {
        DatePolicy::ShiftPerPatient => Some(date_shift_days(&config.secret, &patient_key)),
        DatePolicy::Remove => None,
    };
    let mut context = Context {
        config,
        pseudonym: pseudonym(&config.secret, &patient_key),
        date_shift_days,
        report: ReportBuilder::default(),
        identifying_words: if config.clean_descriptors {
            identifying_words(obj)
        } else {
            HashSet::new()
        },
    };
    // Decided before cleaning, since cleaning may remove what the decision reads.
    let burned_in_annotation_suspected = burned_in_annotation_suspected(obj);

    let original = std::mem::replace(obj, InMemDicomObject::new_empty());
    *obj = clean_data_set(original, &mut context, "")?;
    mark_as_deidentified(obj, config);

    let mut report = context.report.finish();
    report.date_shift_days = date_shift_days;
    report.burned_in_annotation_suspected = burned_in_annotation_suspected;
    Ok(report)
}

/// De-identify a file object: the data set as [`deidentify`] does, and the file meta group,
/// whose Media Storage SOP Instance UID gets the same replacement as SOP Instance UID and whose
/// application entity titles (which name the sending site) are dropped.
pub fn deidentify_file(
    obj: &mut FileDicomObject<InMemDicomObject>,
    config: &DeidConfig,
) -> Result<DeidReport, DeidError> {
    let mut report = deidentify(obj, config)?;
    let original_uid = obj.meta().media_storage_sop_instance_uid().to_string();
    let new_uid = match obj.get(tags::SOP_INSTANCE_UID).map(|e| e.to_str()) {
        Some(Ok(uid)) => uid.trim_end_matches(['\0', ' ']).to_string(),
        _ => pseudonymous_uid(&config.secret, &original_uid),
    };
    obj.update_meta(|meta| {
        meta.media_storage_sop_instance_uid = new_uid;
        meta.source_application_entity_title = None;
        meta.sending_application_entity_title = None;
        meta.receiving_application_entity_title = None;
        meta.private_information_creator_uid = None;
        meta.private_information = None;
    });
    report.uids_replaced += 1;
    report
        .replaced
        .push("MediaStorageSOPInstanceUID".to_string());
    Ok(report)
}

struct Context<'a> {
    config: &'a DeidConfig,
    pseudonym: String,
    date_shift_days: Option<i32>,
    report: ReportBuilder,
    /// With the Clean Descriptors option: the data set's own identifying words, lower case.
    identifying_words: HashSet<String>,
}

#[derive(Default)]
struct ReportBuilder {
    removed: Vec<String>,
    replaced: Vec<String>,
    emptied: Vec<String>,
    seen: HashSet<(u8, String)>,
    uids_replaced: usize,
    private_tags_removed: usize,
}

impl ReportBuilder {
    // Each name once: a sequence of 300 items must not give 300 identical lines.
    fn note(&mut self, kind: u8, name: String) {
        if self.seen.insert((kind, name.clone())) {
            match kind {
                0 => self.removed.push(name),
                1 => self.replaced.push(name),
                _ => self.emptied.push(name),
            }
        }
    }
    fn removed(&mut self, name: String) {
        self.note(0, name);
    }
    fn replaced(&mut self, name: String) {
        self.note(1, name);
    }
    fn emptied(&mut self, name: String) {
        self.note(2, name);
    }
    fn finish(self) -> DeidReport {
        DeidReport {
            removed: self.removed,
            replaced: self.replaced,
            emptied: self.emptied,
            uids_replaced: self.uids_replaced,
            private_tags_removed: self.private_tags_removed,
            date_shift_days: None,
            burned_in_annotation_suspected: false,
        }
    }
}

fn clean_data_set(
    data_set: InMemDicomObject,
    context: &mut Context<'_>,
    path: &str,
) -> Result<InMemDicomObject, DeidError> {
    let mut kept = Vec::new();
    for element in data_set {
        if let Some(element) = clean_element(element, context, path)? {
            kept.push(element);
        }
    }
    Ok(InMemDicomObject::from_element_iter(kept))
}

fn clean_element(
    element: Element,
    context: &mut Context<'_>,
    path: &str,
) -> Result<Option<Element>, DeidError> {
    let tag = element.tag();
    let vr = element.vr();
    let name = format!("{path}{}", tag_name(tag));

    if tag.group() % 2 == 1 {
        if !context.config.keep_private_tags {
            context.report.private_tags_removed += 1;
            return Ok(None);
        }
        return Ok(Some(clean_sequence_items(element, context, &name)?));
    }
    // Group lengths would be wrong after cleaning; writers recompute them where needed.
    if tag.element() == 0 {
        return Ok(None);
    }
    // Curves (50xx) are X as a whole. Of overlays (60xx) the profile removes data and
    // comments; the whole group goes, since overlay attributes without their data are
    // inconsistent and labels and descriptions are free text too.
    if (tag.group() & 0xFF00) == 0x5000 || (tag.group() & 0xFF00) == 0x6000 {
        context.report.removed(name);
        return Ok(None);
    }

    if tag == tags::PATIENT_ID || tag == tags::PATIENT_NAME {
        let value = if tag == tags::PATIENT_ID {
            let original = element
                .to_str()
                .map(|s| s.trim().to_string())
                .unwrap_or_default();
            if original.is_empty() {
                context.pseudonym.clone()
            } else {
                pseudonym(&context.config.secret, &original)
            }
        } else {
            context.pseudonym.clone()
        };
        context.report.replaced(name);
        return Ok(Some(DataElement::new(tag, vr, PrimitiveValue::from(value))));
    }

    // Only a descriptor that is text can be cleaned word by word: one stored as UN (bytes)
    // reads as numbers that would spell the original, so it is removed as the profile says.
    if context.config.clean_descriptors
        && path.is_empty()
        && CLEANED_DESCRIPTORS.contains(&tag)
        && matches!(vr, VR::LO | VR::SH | VR::LT | VR::ST | VR::UT)
    {
        let original = element.to_str().map(|s| s.into_owned()).unwrap_or_default();
        let cleaned = clean_descriptor(&original, &context.identifying_words);
        if cleaned.is_empty() {
            context.report.removed(name);
            return Ok(None);
        }
        if cleaned != original.trim_matches(['\0', ' ']) {
            context.report.replaced(name);
        }
        return Ok(Some(DataElement::new(
            tag,
            vr,
            PrimitiveValue::from(cleaned),
        )));
    }

    let basic_code = PROFILE
        .iter()
        .find(|(group, elem, _)| Tag(*group, *elem) == tag)
        .map(|(_, _, code)| *code);
    let longitudinal = LONGITUDINAL
        .iter()
        .any(|(group, elem)| Tag(*group, *elem) == tag);

    if longitudinal || (basic_code.is_none() && matches!(vr, VR::DA | VR::DT | VR::TM)) {
        return Ok(clean_temporal(element, basic_code, context, name));
    }

    match basic_code.map(resolve) {
        Some(Action::Remove) => {
            context.report.removed(name);
            Ok(None)
        }
        Some(Action::Empty) => {
            context.report.emptied(name);
            Ok(Some(empty_like(tag, vr)))
        }
        Some(Action::Dummy) => {
            // A dummy code sequence could still be mistaken for a real person's code; an
            // empty sequence is the one dummy that holds nothing.
            if vr == VR::SQ {
                context.report.emptied(name);
                return Ok(Some(empty_like(tag, vr)));
            }
            context.report.replaced(name);
            Ok(Some(dummy(tag, vr)))
        }
        Some(Action::Uid) if vr == VR::UI => Ok(Some(replace_uids(element, context, name)?)),
        // Person names are identifying wherever they occur, including attributes newer than
        // this table and names inside sequences the table keeps.
        None if vr == VR::PN => {
            context.report.emptied(name);
            Ok(Some(empty_like(tag, vr)))
        }
        _ => Ok(Some(clean_sequence_items(element, context, &name)?)),
    }
}

/// Dates, date-times and times: shifted, kept or removed by the date policy.
fn clean_temporal(
    element: Element,
    basic_code: Option<&str>,
    context: &mut Context<'_>,
    name: String,
) -> Option<Element> {
    let tag = element.tag();
    let vr = element.vr();
    let Some(shift_days) = context.date_shift_days else {
        if basic_code.map(resolve) == Some(Action::Remove) {
            context.report.removed(name);
            return None;
        }
        context.report.emptied(name);
        return Some(empty_like(tag, vr));
    };
    let shift: fn(&str, i32) -> Option<String> = match vr {
        VR::DA => shift_date,
        VR::DT => shift_date_time,
        // Whole-day shifts keep the time of day meaningful and harmless.
        _ => return Some(element),
    };
    let values = element
        .to_multi_str()
        .map(|v| v.into_owned())
        .unwrap_or_default();
    let shifted: Option<Vec<String>> = values
        .iter()
        .map(|v| v.trim_matches(['\0', ' ']))
        .filter(|v| !v.is_empty())
        .map(|v| shift(v, shift_days))
        .collect();
    match shifted {
        Some(shifted) if !shifted.is_empty() => {
            context.report.replaced(name);
            Some(DataElement::new(
                tag,
                vr,
                PrimitiveValue::Strs(shifted.into()),
            ))
        }
        Some(_) => Some(element),
        // A partial date such as a bare year cannot be shifted by days without leaking it.
        None => {
            context.report.emptied(name);
            Some(empty_like(tag, vr))
        }
    }
}

fn replace_uids(
    element: Element,
    context: &mut Context<'_>,
    name: String,
) -> Result<Element, DeidError> {
    let tag = element.tag();
    let values = element
        .to_multi_str()
        .map_err(|_| DeidError::UnreadableUid {
            tag: format!("{tag}"),
        })?
        .into_owned();
    let replaced: Vec<String> = values
        .iter()
        .map(|uid| uid.trim_end_matches(['\0', ' ']))
        .filter(|uid| !uid.is_empty())
        .map(|uid| pseudonymous_uid(&context.config.secret, uid))
        .collect();
    if replaced.is_empty() {
        return Ok(element);
    }
    context.report.uids_replaced += replaced.len();
    context.report.replaced(name);
    Ok(DataElement::new(
        tag,
        VR::UI,
        PrimitiveValue::Strs(replaced.into()),
    ))
}

/// Clean every item of a sequence; other elements pass through unchanged.
fn clean_sequence_items(
    element: Element,
    context: &mut Context<'_>,
    name: &str,
) -> Result<Element, DeidError> {
    if element.vr() != VR::SQ {
        return Ok(element);
    }
    let (header, value) = element.into_parts();
    let Value::Sequence(sequence) = value else {
        return Ok(DataElement::new(header.tag, header.vr, value));
    };
    let item_path = format!("{name}/");
    let mut items = Vec::new();
    for item in sequence.into_items() {
        items.push(clean_data_set(item, context, &item_path)?);
    }
    Ok(DataElement::new(
        header.tag,
        VR::SQ,
        DataSetSequence::from(items),
    ))
}

fn empty_like(tag: Tag, vr: VR) -> Element {
    if vr == VR::SQ {
        DataElement::new(tag, vr, DataSetSequence::<InMemDicomObject>::empty())
    } else {
        DataElement::new(tag, vr, PrimitiveValue::Empty)
    }
}

/// A value that is valid for the VR and says nothing about anyone.
fn dummy(tag: Tag, vr: VR) -> Element {
    let text = match vr {
        VR::PN => "Anonymized",
        VR::LO | VR::SH | VR::LT | VR::ST | VR::UT | VR::UC | VR::CS => "ANONYMIZED",
        VR::DA => "19000101",
        VR::DT => "19000101000000",
        VR::TM => "000000",
        VR::IS | VR::DS => "0",
        VR::AS => "000D",
        _ => return empty_like(tag, vr),
    };
    DataElement::new(tag, vr, PrimitiveValue::from(text))
}

/// The patient identity that keys the pseudonym and the date shift: Patient ID, or the name
/// when a file has no ID, so files without an ID still group by patient.
fn patient_key(obj: &InMemDicomObject) -> String {
    [tags::PATIENT_ID, tags::PATIENT_NAME]
        .iter()
        .filter_map(|tag| obj.get(*tag))
        .filter_map(|e| e.to_str().ok())
        .map(|s| s.trim_matches(['\0', ' ']).to_string())
        .find(|s| !s.is_empty())
        .unwrap_or_default()
}

fn burned_in_annotation_suspected(obj: &InMemDicomObject) -> bool {
    let text = |tag| {
        obj.get(tag)
            .and_then(|e| e.to_str().ok())
            .map(|s| s.trim_matches(['\0', ' ']).to_uppercase())
    };
    match text(tags::BURNED_IN_ANNOTATION).as_deref() {
        Some("YES") => true,
        Some("NO") => false,
        // Absent or unreadable: only the kind of image says how likely text is.
        _ => {
            let risky_modality = text(tags::MODALITY)
                .is_some_and(|m| BURNED_IN_RISK_MODALITIES.contains(&m.as_str()));
            let secondary_capture = text(tags::SOP_CLASS_UID)
                .is_some_and(|uid| uid.starts_with(SECONDARY_CAPTURE_SOP_CLASS_PREFIX));
            risky_modality || secondary_capture
        }
    }
}

/// Record what was done, as PS3.15 E.1.1 asks, so a receiver knows the data set is cleaned.
fn mark_as_deidentified(obj: &mut InMemDicomObject, config: &DeidConfig) {
    let date_policy = config.date_policy;
    let (method, temporal) = match date_policy {
        DatePolicy::ShiftPerPatient => (METHOD_SHIFTED, "MODIFIED"),
        DatePolicy::Remove => (METHOD_REMOVED, "REMOVED"),
    };
    obj.put(DataElement::new(
        tags::PATIENT_IDENTITY_REMOVED,
        VR::CS,
        PrimitiveValue::from("YES"),
    ));
    let methods = if config.clean_descriptors {
        PrimitiveValue::Strs([method.to_string(), METHOD_CLEAN_DESCRIPTORS.to_string()].into())
    } else {
        PrimitiveValue::from(method)
    };
    obj.put(DataElement::new(
        tags::DEIDENTIFICATION_METHOD,
        VR::LO,
        methods,
    ));
    // Codes of CID 7050 "De-identification Method".
    let mut codes = vec![method_code(
        "113100",
        "Basic Application Confidentiality Profile",
    )];
    if config.clean_descriptors {
        codes.push(method_code("113105", "Clean Descriptors Option"));
    }
    if date_policy == DatePolicy::ShiftPerPatient {
        codes.push(method_code(
            "113107",
            "Retain Longitudinal Temporal Information Modified Dates Option",
        ));
    }
    obj.put(DataElement::new(
        tags::DEIDENTIFICATION_METHOD_CODE_SEQUENCE,
        VR::SQ,
        DataSetSequence::from(codes),
    ));
    obj.put(DataElement::new(
        tags::LONGITUDINAL_TEMPORAL_INFORMATION_MODIFIED,
        VR::CS,
        PrimitiveValue::from(temporal),
    ));
}

/// Person names that may be stored without their VR (as UN) and so are found by tag too.
const PERSON_NAME_TAGS: [Tag; 9] = [
    tags::PATIENT_NAME,
    tags::REFERRING_PHYSICIAN_NAME,
    tags::PERFORMING_PHYSICIAN_NAME,
    tags::OPERATORS_NAME,
    tags::NAME_OF_PHYSICIANS_READING_STUDY,
    tags::REQUESTING_PHYSICIAN,
    tags::PATIENT_BIRTH_NAME,
    tags::PATIENT_MOTHER_BIRTH_NAME,
    tags::OTHER_PATIENT_NAMES,
];

/// The words (lower case, letters and digits only; at least two characters, or three
/// digits) of every person name and of [`IDENTIFYING_WORD_SOURCES`], at any depth of the
/// data set, read before anything is cleaned.
fn identifying_words(obj: &InMemDicomObject) -> HashSet<String> {
    let mut words = HashSet::new();
    collect_identifying_words(obj, &mut words);
    words
}

fn collect_identifying_words(obj: &InMemDicomObject, words: &mut HashSet<String>) {
    for element in obj.iter() {
        if let Some(items) = element.items() {
            for item in items {
                collect_identifying_words(item, words);
            }
            continue;
        }
        let tag = element.tag();
        if element.vr() != VR::PN
            && !IDENTIFYING_WORD_SOURCES.contains(&tag)
            && !PERSON_NAME_TAGS.contains(&tag)
        {
            continue;
        }
        // A value stored as UN is bytes: read them as the text they are.
        let text = if element.vr() == VR::UN {
            match element.value().to_bytes() {
                Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
                Err(_) => continue,
            }
        } else {
            match element.to_str() {
                Ok(text) => text.into_owned(),
                Err(_) => continue,
            }
        };
        // Single characters and short numbers (initials, house numbers) would take out
        // "T1" or "1.5 mm" while identifying nobody.
        words.extend(
            text.split(|c: char| !c.is_alphanumeric())
                .filter(|word| {
                    let digits = word.chars().all(|c| c.is_ascii_digit());
                    word.chars().count() >= if digits { 3 } else { 2 }
                })
                .map(str::to_lowercase),
        );
    }
}

/// Month names and their usual abbreviations (English, German, French), which make a
/// word with digits a date ("03-Feb-2021") and are dropped alone ("3 Feb 2021").
const MONTHS: &[&str] = &[
    "jan",
    "january",
    "januar",
    "janvier",
    "feb",
    "february",
    "februar",
    "fevrier",
    "février",
    "mar",
    "march",
    "mär",
    "märz",
    "maerz",
    "mars",
    "apr",
    "april",
    "avril",
    "may",
    "mai",
    "jun",
    "june",
    "juni",
    "juin",
    "jul",
    "july",
    "juli",
    "juillet",
    "aug",
    "august",
    "aout",
    "août",
    "sep",
    "sept",
    "september",
    "septembre",
    "oct",
    "october",
    "okt",
    "oktober",
    "octobre",
    "nov",
    "november",
    "novembre",
    "dec",
    "december",
    "dez",
    "dezember",
    "decembre",
    "décembre",
];

/// A descriptor with every identifying word taken out: a word (text between spaces) goes
/// when any of its letter-and-digit parts is one of `identifying` (the data set's names,
/// IDs and institution), has five or more digits (IDs, record numbers, compact dates) or
/// is a month name, or when the word holds an identifying word of four or more characters
/// (or two, not in ASCII: "胸部CT山田"), or a date or time written with separators
/// (`03.02.2021`, `2021-02-03`, `14:30`). What is left is joined by single spaces; it may
/// be empty.
pub fn clean_descriptor(text: &str, identifying: &HashSet<String>) -> String {
    let long_words: Vec<&String> = identifying
        .iter()
        .filter(|word| word.chars().count() >= 4 || (!word.is_ascii() && word.chars().count() >= 2))
        .collect();
    let is_identifying = |word: &str| {
        let lower = word.to_lowercase();
        holds_date_or_time(word)
            || long_words
                .iter()
                .any(|known| lower.contains(known.as_str()))
            || lower
                .split(|c: char| !c.is_alphanumeric())
                .filter(|part| !part.is_empty())
                .any(|part| {
                    part.chars().filter(char::is_ascii_digit).count() >= 5
                        || identifying.contains(part)
                        || MONTHS.contains(&part)
                        || MONTHS.iter().any(|month| {
                            part.len() > month.len()
                                && part.starts_with(month)
                                && part[month.len()..].bytes().all(|b| b.is_ascii_digit())
                        })
                })
    };
    text.trim_matches(['\0', ' '])
        .split_whitespace()
        .filter(|word| !is_identifying(word))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Whether `word` holds a date (day, month and year, or year, month and day, joined by one
/// of `.`, `-`, `/`) or a time of day (`hh:mm`, `hh:mm:ss`). `1.5`, `3-4` or `T1/T2` are
/// neither.
fn holds_date_or_time(word: &str) -> bool {
    word.split(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | '-' | '/' | ':')))
        .any(|run| {
            let run = run.trim_matches(|c: char| !c.is_ascii_digit());
            let Some(separator) = run.chars().find(|c| !c.is_ascii_digit()) else {
                return false;
            };
            let groups: Vec<usize> = run.split(separator).map(str::len).collect();
            if groups.contains(&0)
                || run
                    .split(separator)
                    .any(|g| !g.bytes().all(|b| b.is_ascii_digit()))
            {
                return false;
            }
            matches!(
                (separator, groups.as_slice()),
                (':', [1..=2, 2] | [1..=2, 2, 2])
                    | ('.' | '-' | '/', [1..=2, 1..=2, 2 | 4] | [4, 1..=2, 1..=2])
            )
        })
}

fn method_code(value: &str, meaning: &str) -> InMemDicomObject {
    InMemDicomObject::from_element_iter([
        DataElement::new(tags::CODE_VALUE, VR::SH, PrimitiveValue::from(value)),
        DataElement::new(
            tags::CODING_SCHEME_DESIGNATOR,
            VR::SH,
            PrimitiveValue::from("DCM"),
        ),
        DataElement::new(tags::CODE_MEANING, VR::LO, PrimitiveValue::from(meaning)),
    ])
}

fn tag_name(tag: Tag) -> String {
    match StandardDataDictionary.by_tag(tag) {
        Some(entry) => entry.alias().to_string(),
        None => format!("({:04X},{:04X})", tag.group(), tag.element()),
    }
}

/// HMAC-SHA256 (RFC 2104) written out, since the crate depends on sha2 but not on hmac.
fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    const BLOCK_SIZE: usize = 64;
    let mut key_block = [0u8; BLOCK_SIZE];
    if key.len() > BLOCK_SIZE {
        key_block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        key_block[..key.len()].copy_from_slice(key);
    }
    let inner_pad: Vec<u8> = key_block.iter().map(|b| b ^ 0x36).collect();
    let outer_pad: Vec<u8> = key_block.iter().map(|b| b ^ 0x5c).collect();
    let inner = Sha256::new()
        .chain_update(&inner_pad)
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(&outer_pad)
        .chain_update(inner)
        .finalize()
        .into()
}

/// `2.25.` and the first 128 bits of HMAC-SHA256(secret, UID) as a decimal: at most 44
/// characters, well inside the 64 a UID may have, and unique with overwhelming probability.
fn pseudonymous_uid(secret: &[u8], uid: &str) -> String {
    let mac = hmac_sha256(secret, uid.as_bytes());
    let mut first_128_bits = [0u8; 16];
    first_128_bits.copy_from_slice(&mac[..16]);
    format!("2.25.{}", u128::from_be_bytes(first_128_bits))
}

// The purpose prefixes keep a pseudonym from equalling the HMAC used elsewhere.
fn pseudonym(secret: &[u8], patient_key: &str) -> String {
    let mac = hmac_sha256(secret, format!("patient:{patient_key}").as_bytes());
    format!("anon-{}", hex::encode(&mac[..6]))
}

fn date_shift_days(secret: &[u8], patient_key: &str) -> i32 {
    let mac = hmac_sha256(secret, format!("date-shift:{patient_key}").as_bytes());
    let number = u32::from_be_bytes([mac[0], mac[1], mac[2], mac[3]]);
    -1 - (number % 365) as i32
}

/// Shift a DA value `YYYYMMDD` by whole days; `None` when it is not a full valid date.
fn shift_date(value: &str, days: i32) -> Option<String> {
    if value.len() != 8 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let year: i64 = value[0..4].parse().ok()?;
    let month: u32 = value[4..6].parse().ok()?;
    let day: u32 = value[6..8].parse().ok()?;
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    let (year, month, day) = civil_from_days(days_from_civil(year, month, day) + i64::from(days));
    if !(0..=9999).contains(&year) {
        return None;
    }
    Some(format!("{year:04}{month:02}{day:02}"))
}

/// Shift the date part of a DT value `YYYYMMDD[HHMMSS[.F]][&ZZXX]`, keeping the rest.
fn shift_date_time(value: &str, days: i32) -> Option<String> {
    let date = value.get(0..8)?;
    let shifted = shift_date(date, days)?;
    Some(format!("{shifted}{}", &value[8..]))
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

// Days since 1970-01-01 in the proleptic Gregorian calendar (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month = i64::from(month);
    let day_of_year =
        (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let days = days + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_index + 2) / 5 + 1) as u32;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231_test_case_2() {
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn hmac_hashes_keys_longer_than_a_block() {
        // RFC 4231 test case 6: a 131-byte key.
        let mac = hmac_sha256(
            &[0xaa; 131],
            b"Test Using Larger Than Block-Size Key - Hash Key First",
        );
        assert_eq!(
            hex::encode(mac),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn date_shift_crosses_month_year_and_leap_day() {
        assert_eq!(shift_date("20240301", -1).as_deref(), Some("20240229"));
        assert_eq!(shift_date("20230101", -1).as_deref(), Some("20221231"));
        assert_eq!(shift_date("20000101", -365).as_deref(), Some("19990101"));
        assert_eq!(
            shift_date_time("20240301120000.5+0100", -1).as_deref(),
            Some("20240229120000.5+0100")
        );
    }

    #[test]
    fn partial_or_invalid_dates_are_not_shifted() {
        assert_eq!(shift_date("2024", -3), None);
        assert_eq!(shift_date("20240230", -3), None);
        assert_eq!(shift_date_time("2024", -3), None);
    }

    #[test]
    fn civil_day_conversion_round_trips_over_four_centuries() {
        for days in -200_000..200_000 {
            let (year, month, day) = civil_from_days(days);
            assert_eq!(days_from_civil(year, month, day), days);
        }
        assert_eq!(days_from_civil(1970, 1, 1), 0);
    }

    #[test]
    fn date_shift_is_between_one_and_365_days_back() {
        for patient in 0..2000 {
            let shift = date_shift_days(b"secret", &patient.to_string());
            assert!((-365..=-1).contains(&shift), "{shift}");
        }
    }

    #[test]
    fn every_profile_code_is_one_the_resolver_knows() {
        for (group, element, code) in PROFILE {
            assert!(
                ["X", "Z", "D", "U", "X/Z", "Z/D", "X/D", "X/Z/D", "X/Z/U*"].contains(code),
                "({group:04X},{element:04X}) has code {code}"
            );
        }
    }

    #[test]
    fn descriptors_lose_names_ids_dates_and_long_numbers_and_keep_the_rest() {
        let words: HashSet<String> = ["doe", "jane", "mrn4411", "klinikum"]
            .into_iter()
            .map(String::from)
            .collect();
        let clean = |text: &str| clean_descriptor(text, &words);
        assert_eq!(clean("CT THORAX 1.5 mm B31f"), "CT THORAX 1.5 mm B31f");
        assert_eq!(clean("T1 AX POST 3-4 T1/T2 "), "T1 AX POST 3-4 T1/T2");
        assert_eq!(clean("Doe^Jane chest"), "chest");
        assert_eq!(clean("CHEST (JANE)"), "CHEST");
        assert_eq!(clean("MRN4411 head"), "head");
        assert_eq!(clean("Klinikum-Nord abdomen"), "abdomen");
        assert_eq!(clean("abdomen 20210203 12345"), "abdomen");
        assert_eq!(
            clean("abdomen 03.02.2021 2021-02-03 3/2/21 14:30"),
            "abdomen"
        );
        assert_eq!(clean("abdomen (03.02.21)"), "abdomen");
        assert_eq!(clean("Jane Doe"), "");
        assert_eq!(clean("  "), "");
        // Dates with month names, names stuck to other text, and long IDs inside words.
        assert_eq!(clean("abdomen 03-Feb-2021"), "abdomen");
        assert_eq!(clean("abdomen 3 Feb 2021"), "abdomen 3 2021");
        assert_eq!(clean("abdomen 3.März"), "abdomen");
        assert_eq!(clean("abdomen feb21"), "abdomen");
        assert_eq!(clean("CT-Klinikumnord head"), "head");
        assert_eq!(clean("IDMRN4411 head"), "head");
        // Marching or "Mayo" are words, not months; "Doe" stuck to text is too short to
        // tell from other words.
        assert_eq!(clean("Mayo protocol"), "Mayo protocol");
        assert_eq!(clean("Marching XDoe"), "Marching XDoe");
        let cjk: HashSet<String> = ["山田", "太郎"].into_iter().map(String::from).collect();
        assert_eq!(clean_descriptor("胸部CT山田 造影", &cjk), "造影");
    }
}
