//! Telling the kinds of uploaded file apart by their first bytes (magic numbers), with the
//! file name only as a fallback: DICOM, NIfTI (also gzip-compressed), PNG, JPEG and zip.

use std::io::Read;

/// How many leading bytes [`kind`] looks at: enough for a NIfTI-2 header and DICOM's
/// preamble. Fewer work for the formats whose magic comes first.
pub const SNIFF_BYTES: usize = 544;

/// What a file is, as far as its first bytes tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Dicom,
    /// NIfTI-1 or NIfTI-2, plain or gzip-compressed.
    Nifti,
    Png,
    Jpeg,
    Zip,
    Unknown,
}

/// The kind of a file from its first bytes (at least [`SNIFF_BYTES`] of them where the file
/// is that long); the name is used only when no magic number matches.
pub fn kind(name: &str, first_bytes: &[u8]) -> FileKind {
    let bytes = first_bytes;
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        return FileKind::Png;
    }
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        return FileKind::Jpeg;
    }
    if [b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08"]
        .iter()
        .any(|magic| bytes.starts_with(*magic))
    {
        return FileKind::Zip;
    }
    if bytes.get(128..132) == Some(b"DICM") || bytes.starts_with(b"DICM") {
        return FileKind::Dicom;
    }
    if is_nifti_header(bytes) {
        return FileKind::Nifti;
    }
    if bytes.starts_with(&[0x1f, 0x8b]) && gzip_holds_nifti(bytes) {
        return FileKind::Nifti;
    }
    if looks_like_dicom_without_preamble(bytes) {
        return FileKind::Dicom;
    }
    from_name(name, bytes)
}

fn from_name(name: &str, bytes: &[u8]) -> FileKind {
    let lower = name.to_ascii_lowercase();
    let gzip = bytes.starts_with(&[0x1f, 0x8b]);
    if lower.ends_with(".nii.gz") && (gzip || bytes.is_empty()) {
        return FileKind::Nifti;
    }
    if lower.ends_with(".nii") && !gzip {
        return FileKind::Nifti;
    }
    // Names say nothing about gzip content other than NIfTI.
    if gzip {
        return FileKind::Unknown;
    }
    let extension = lower.rsplit_once('.').map_or("", |(_, e)| e);
    match extension {
        "dcm" | "dicom" | "ima" => FileKind::Dicom,
        "png" => FileKind::Png,
        "jpg" | "jpeg" => FileKind::Jpeg,
        "zip" => FileKind::Zip,
        _ => FileKind::Unknown,
    }
}

/// `sizeof_hdr` 348 with magic `n+1`/`ni1`, or 540 with `n+2`/`ni2`, in either byte order.
fn is_nifti_header(bytes: &[u8]) -> bool {
    let Some(first) = bytes.get(..4) else {
        return false;
    };
    let first = [first[0], first[1], first[2], first[3]];
    let sizes = [i32::from_le_bytes(first), i32::from_be_bytes(first)];
    if sizes.contains(&348) {
        return matches!(bytes.get(344..348), Some(b"n+1\0" | b"ni1\0"));
    }
    if sizes.contains(&540) {
        return matches!(bytes.get(4..8), Some(b"n+2\0" | b"ni2\0"));
    }
    false
}

/// Inflates what there is of the stream (at most a header's worth) and looks for a NIfTI
/// header; a stream cut short by the caller's prefix is fine, a damaged one is not NIfTI.
fn gzip_holds_nifti(bytes: &[u8]) -> bool {
    let mut head = Vec::with_capacity(SNIFF_BYTES);
    let mut decoder = flate2::read::GzDecoder::new(bytes).take(SNIFF_BYTES as u64);
    // A prefix ends mid-stream, which the decoder reports as an error after yielding what
    // it could; what it yielded is still worth checking.
    let mut buffer = [0u8; 256];
    loop {
        match decoder.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&buffer[..n]),
        }
    }
    is_nifti_header(&head)
}

/// The value representations of PS3.5, to recognise explicit VR encoding.
const VALUE_REPRESENTATIONS: [&[u8; 2]; 34] = [
    b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FD", b"FL", b"IS", b"LO", b"LT", b"OB",
    b"OD", b"OF", b"OL", b"OV", b"OW", b"PN", b"SH", b"SL", b"SQ", b"SS", b"ST", b"SV", b"TM",
    b"UC", b"UI", b"UL", b"UN", b"UR", b"US", b"UT", b"UV",
];

/// A data set with neither preamble nor `DICM` (old ACR-NEMA style files): the first element
/// must be in the file meta group (0002) or the identifying group (0008), with either a
/// known VR or, in implicit VR, a short even length.
fn looks_like_dicom_without_preamble(bytes: &[u8]) -> bool {
    if bytes.len() < 8 {
        return false;
    }
    let plausible = |group: u16, element: u16, vr: [u8; 2], length: u32| {
        if !matches!(group, 0x0002 | 0x0008) || element > 0x1000 {
            return false;
        }
        VALUE_REPRESENTATIONS.contains(&&vr) || (length.is_multiple_of(2) && length < 0x1_0000)
    };
    let vr = [bytes[4], bytes[5]];
    let little = plausible(
        u16::from_le_bytes([bytes[0], bytes[1]]),
        u16::from_le_bytes([bytes[2], bytes[3]]),
        vr,
        u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]),
    );
    let big = plausible(
        u16::from_be_bytes([bytes[0], bytes[1]]),
        u16::from_be_bytes([bytes[2], bytes[3]]),
        vr,
        u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]),
    );
    little || big
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magic_numbers_win_over_names() {
        assert_eq!(kind("scan.dcm", b"\x89PNG\r\n\x1a\nrest"), FileKind::Png);
        assert_eq!(kind("photo.png", &[0xFF, 0xD8, 0xFF, 0xE0]), FileKind::Jpeg);
        assert_eq!(kind("upload.bin", b"PK\x03\x04...."), FileKind::Zip);
        assert_eq!(kind("empty.bin", b"PK\x05\x06"), FileKind::Zip);
        let mut dicom = vec![0u8; 140];
        dicom[128..132].copy_from_slice(b"DICM");
        assert_eq!(kind("x.png", &dicom), FileKind::Dicom);
    }

    #[test]
    fn dicom_without_preamble_is_recognised_in_both_encodings() {
        // (0008,0005) CS, explicit VR little endian.
        assert_eq!(
            kind("IM0001", b"\x08\x00\x05\x00CS\x0a\x00ISO_IR 100"),
            FileKind::Dicom
        );
        // (0008,0016) implicit VR: a 26-byte UID.
        assert_eq!(
            kind("IM0002", b"\x08\x00\x16\x00\x1a\x00\x00\x001.2.840"),
            FileKind::Dicom
        );
        assert_eq!(kind("notes.txt", b"Hello, world"), FileKind::Unknown);
    }

    #[test]
    fn nifti_headers_are_recognised_in_both_byte_orders() {
        let mut header = vec![0u8; 348];
        header[..4].copy_from_slice(&348i32.to_be_bytes());
        header[344..348].copy_from_slice(b"n+1\0");
        assert_eq!(kind("a", &header), FileKind::Nifti);
        let mut two = vec![0u8; 540];
        two[..4].copy_from_slice(&540i32.to_le_bytes());
        two[4..12].copy_from_slice(b"n+2\0\r\n\x1a\n");
        assert_eq!(kind("b", &two), FileKind::Nifti);
        // Analyze 7.5: the size without the magic.
        header[344..348].copy_from_slice(b"\0\0\0\0");
        assert_eq!(kind("old.img", &header), FileKind::Unknown);
    }

    #[test]
    fn gzip_is_nifti_by_content_or_by_name() {
        use std::io::Write;
        let mut header = vec![0u8; 352];
        header[..4].copy_from_slice(&348i32.to_le_bytes());
        header[344..348].copy_from_slice(b"n+1\0");
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(&header).unwrap();
        let compressed = encoder.finish().unwrap();
        assert_eq!(kind("upload", &compressed), FileKind::Nifti);
        // Only a prefix of a stream: still recognised.
        assert_eq!(
            kind("upload", &compressed[..compressed.len() - 8]),
            FileKind::Nifti
        );
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(b"plain text").unwrap();
        let text = encoder.finish().unwrap();
        assert_eq!(kind("notes.txt.gz", &text), FileKind::Unknown);
        assert_eq!(kind("brain.NII.GZ", &text), FileKind::Nifti);
    }
}
