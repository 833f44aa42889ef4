//! `multipart/related` (RFC 2387) both ways: reading a STOW-RS request body part by part as
//! it arrives, each part streamed into its own spool file, and writing the parts of a
//! WADO-RS answer. Parts are never held whole in memory on the way in.

use crate::error::ApiError;
use axum::http::StatusCode;
use bytes::Bytes;
use std::path::PathBuf;
use tokio::io::AsyncWriteExt;

/// The parameters of a `multipart/related` content type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelatedType {
    pub boundary: String,
    /// The `type` parameter: the media type of the root (here: of every) part.
    pub part_type: Option<String>,
}

/// Splits `value` at `;` outside double quotes, trimmed.
fn split_params(value: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    for c in value.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                current.push(c);
            }
            ';' if !quoted => parts.push(std::mem::take(&mut current)),
            _ => current.push(c),
        }
    }
    parts.push(current);
    parts.into_iter().map(|p| p.trim().to_string()).collect()
}

/// A media type and its parameters (names lower-cased, values unquoted).
pub fn media_type(value: &str) -> (String, Vec<(String, String)>) {
    let mut parts = split_params(value).into_iter();
    let essence = parts.next().unwrap_or_default().to_ascii_lowercase();
    let params = parts
        .filter_map(|p| {
            let (name, value) = p.split_once('=')?;
            Some((
                name.trim().to_ascii_lowercase(),
                value.trim().trim_matches('"').to_string(),
            ))
        })
        .collect();
    (essence, params)
}

/// Reads the `Content-Type` of a STOW-RS request: it must be `multipart/related` with a
/// boundary.
pub fn related_type(content_type: Option<&str>) -> Result<RelatedType, ApiError> {
    let unsupported = |message: String| {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            message,
        )
    };
    let Some(content_type) = content_type else {
        return Err(unsupported(
            "send the DICOM files as 'Content-Type: multipart/related; type=\"application/dicom\"; boundary=…', one file per part".into(),
        ));
    };
    let (essence, params) = media_type(content_type);
    if essence != "multipart/related" {
        return Err(unsupported(format!(
            "STOW-RS takes multipart/related with one DICOM file per part, not {essence}"
        )));
    }
    let param = |name: &str| {
        params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    let boundary = param("boundary").filter(|b| !b.is_empty() && b.len() <= 200).ok_or_else(|| {
        ApiError::bad_request(
            "malformed_multipart",
            "the multipart/related content type has no boundary parameter; add boundary=… naming the line between parts",
        )
    })?;
    Ok(RelatedType {
        boundary,
        part_type: param("type").map(|t| t.to_ascii_lowercase()),
    })
}

/// One part of a request, spooled to disk.
#[derive(Debug)]
pub struct SpooledPart {
    /// The part's own `Content-Type` (lower case, without parameters), if it has one.
    pub content_type: Option<String>,
    pub path: PathBuf,
    pub size: u64,
}

fn malformed(message: &str) -> ApiError {
    ApiError::bad_request(
        "malformed_multipart",
        format!("the multipart/related body could not be read: {message}"),
    )
}

/// Position of `needle` in `haystack` at or after `from`.
fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if needle.is_empty() || haystack.len() < needle.len() {
        return None;
    }
    let last = haystack.len() - needle.len();
    let mut at = from;
    while at <= last {
        let offset = haystack[at..=last].iter().position(|&b| b == needle[0])?;
        at += offset;
        if &haystack[at..at + needle.len()] == needle {
            return Some(at);
        }
        at += 1;
    }
    None
}

enum State {
    /// Before the first boundary line.
    Preamble,
    /// Just after a boundary: `--` (the end) or a line break, then the part's headers.
    AfterBoundary,
    Headers,
    Body {
        file: tokio::fs::File,
        part: SpooledPart,
    },
    Done,
}

/// Reads a `multipart/related` body from `chunks` into files under `dir`, refusing bodies
/// over `max_bytes` in all (413) and bodies that are not well formed (400).
pub async fn spool_parts<S, E>(
    mut chunks: S,
    boundary: &str,
    dir: &std::path::Path,
    max_bytes: u64,
) -> Result<Vec<SpooledPart>, ApiError>
where
    S: tokio_stream::Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    use tokio_stream::StreamExt;
    let dash_boundary = format!("--{boundary}").into_bytes();
    let delimiter = format!("\r\n--{boundary}").into_bytes();
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "upload_too_large",
            format!(
                "the request is larger than the {} MiB allowed at once; store the files in several requests",
                max_bytes / (1024 * 1024)
            ),
        )
    };
    let mut parts = Vec::new();
    let mut buffer: Vec<u8> = Vec::new();
    let mut state = State::Preamble;
    let mut total: u64 = 0;
    let mut ended = false;
    loop {
        // Consume as much of the buffer as the state allows; read more when stuck.
        let progressed = match &mut state {
            State::Preamble => {
                // The first boundary may open the body or follow a preamble line.
                let at = if buffer.starts_with(&dash_boundary) {
                    Some(0)
                } else {
                    find(&buffer, &delimiter, 0).map(|at| at + 2)
                };
                match at {
                    Some(at) => {
                        buffer.drain(..at + dash_boundary.len());
                        state = State::AfterBoundary;
                        true
                    }
                    None => {
                        if buffer.len() > 64 * 1024 {
                            return Err(malformed(&format!(
                                "no boundary line '--{boundary}' was found at the start of the body"
                            )));
                        }
                        false
                    }
                }
            }
            State::AfterBoundary => {
                if buffer.starts_with(b"--") {
                    state = State::Done;
                    true
                } else {
                    let padding = buffer
                        .iter()
                        .take_while(|&&b| b == b' ' || b == b'\t')
                        .count();
                    if buffer.len() >= padding + 2 {
                        if &buffer[padding..padding + 2] != b"\r\n" {
                            return Err(malformed(
                                "a boundary line is followed by something other than a line break",
                            ));
                        }
                        buffer.drain(..padding + 2);
                        state = State::Headers;
                        true
                    } else {
                        false
                    }
                }
            }
            State::Headers => {
                let end = if buffer.starts_with(b"\r\n") {
                    Some((0, 2))
                } else {
                    find(&buffer, b"\r\n\r\n", 0).map(|at| (at, 4))
                };
                match end {
                    Some((at, skip)) => {
                        let text = String::from_utf8_lossy(&buffer[..at]).into_owned();
                        buffer.drain(..at + skip);
                        let mut content_type = None;
                        for line in text.split("\r\n") {
                            if let Some((name, value)) = line.split_once(':')
                                && name.trim().eq_ignore_ascii_case("content-type")
                            {
                                content_type = Some(media_type(value.trim()).0);
                            }
                        }
                        let path = dir.join(format!("part-{}", parts.len() + 1));
                        let file = tokio::fs::File::create(&path)
                            .await
                            .map_err(ApiError::internal)?;
                        state = State::Body {
                            file,
                            part: SpooledPart {
                                content_type,
                                path,
                                size: 0,
                            },
                        };
                        true
                    }
                    None => {
                        if buffer.len() > 16 * 1024 {
                            return Err(malformed("the headers of a part are longer than 16 KiB"));
                        }
                        false
                    }
                }
            }
            State::Body { file, part } => {
                let (write_up_to, finished) = match find(&buffer, &delimiter, 0) {
                    Some(at) => (at, true),
                    None => (buffer.len().saturating_sub(delimiter.len() - 1), false),
                };
                if write_up_to > 0 {
                    total += write_up_to as u64;
                    if total > max_bytes {
                        return Err(too_large());
                    }
                    file.write_all(&buffer[..write_up_to])
                        .await
                        .map_err(ApiError::internal)?;
                    part.size += write_up_to as u64;
                }
                if finished {
                    buffer.drain(..write_up_to + delimiter.len());
                    file.flush().await.map_err(ApiError::internal)?;
                    let State::Body { part, .. } =
                        std::mem::replace(&mut state, State::AfterBoundary)
                    else {
                        unreachable!("in the body state")
                    };
                    parts.push(part);
                    true
                } else {
                    buffer.drain(..write_up_to);
                    false
                }
            }
            State::Done => break,
        };
        if progressed {
            continue;
        }
        if ended {
            return Err(malformed(match state {
                State::Preamble => "it does not contain the boundary named in the content type",
                _ => "it ends before the closing boundary line",
            }));
        }
        match chunks.next().await {
            Some(Ok(chunk)) => {
                // Headers and boundaries count too, so a flood of tiny parts is bounded.
                if total + buffer.len() as u64 > max_bytes + 64 * 1024 {
                    return Err(too_large());
                }
                buffer.extend_from_slice(&chunk);
            }
            Some(Err(error)) => {
                return Err(malformed(&format!("the request was interrupted ({error})")));
            }
            None => ended = true,
        }
    }
    Ok(parts)
}

/// Builds a `multipart/related` answer part by part.
pub struct Writer {
    pub boundary: String,
}

impl Default for Writer {
    fn default() -> Self {
        Self::new()
    }
}

impl Writer {
    pub fn new() -> Self {
        Self {
            boundary: format!(
                "voxhub-{:016x}{:016x}",
                rand::random::<u64>(),
                rand::random::<u64>()
            ),
        }
    }

    /// The `Content-Type` of the whole answer.
    pub fn content_type(&self, part_type: &str) -> String {
        format!(
            "multipart/related; type=\"{part_type}\"; boundary={}",
            self.boundary
        )
    }

    /// What goes before a part's bytes.
    pub fn part_head(&self, content_type: &str, location: Option<&str>) -> Bytes {
        let mut head = format!("--{}\r\nContent-Type: {content_type}\r\n", self.boundary);
        if let Some(location) = location {
            head.push_str(&format!("Content-Location: {location}\r\n"));
        }
        head.push_str("\r\n");
        Bytes::from(head)
    }

    /// What goes after a part's bytes.
    pub fn part_tail(&self) -> Bytes {
        Bytes::from_static(b"\r\n")
    }

    /// The closing boundary line.
    pub fn end(&self) -> Bytes {
        Bytes::from(format!("--{}--\r\n", self.boundary))
    }

    /// A whole answer held in memory (frames, rendered pictures, bulk data).
    pub fn whole(&self, parts: &[(String, Vec<u8>)]) -> Vec<u8> {
        let mut body = Vec::new();
        for (content_type, bytes) in parts {
            body.extend_from_slice(&self.part_head(content_type, None));
            body.extend_from_slice(bytes);
            body.extend_from_slice(&self.part_tail());
        }
        body.extend_from_slice(&self.end());
        body
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn parse(
        body: &[u8],
        chunk: usize,
        max: u64,
    ) -> Result<Vec<(Option<String>, Vec<u8>)>, ApiError> {
        let dir = tempfile::tempdir().unwrap();
        let chunks: Vec<Result<Bytes, std::io::Error>> = body
            .chunks(chunk.max(1))
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        let parts = spool_parts(tokio_stream::iter(chunks), "XyZ", dir.path(), max).await?;
        Ok(parts
            .into_iter()
            .map(|p| {
                let bytes = std::fs::read(&p.path).unwrap();
                assert_eq!(bytes.len() as u64, p.size);
                (p.content_type, bytes)
            })
            .collect())
    }

    fn body() -> Vec<u8> {
        let mut body = b"preamble\r\n--XyZ\r\nContent-Type: application/dicom\r\n\r\n".to_vec();
        body.extend_from_slice(b"first\r\n--Xy not a boundary\r\n");
        body.extend_from_slice(
            b"\r\n--XyZ  \r\ncontent-type: Application/DICOM; transfer-syntax=1.2\r\n\r\n",
        );
        body.extend_from_slice(&[0u8, 13, 10, 45, 45, 255]);
        body.extend_from_slice(b"\r\n--XyZ\r\n\r\nno headers\r\n--XyZ--\r\nepilogue");
        body
    }

    #[tokio::test]
    async fn parts_come_out_whole_however_the_body_is_cut() {
        let expected = vec![
            (
                Some("application/dicom".to_string()),
                b"first\r\n--Xy not a boundary\r\n".to_vec(),
            ),
            (
                Some("application/dicom".to_string()),
                vec![0u8, 13, 10, 45, 45, 255],
            ),
            (None, b"no headers".to_vec()),
        ];
        for chunk in [1, 2, 3, 5, 7, 13, 64, 4096] {
            assert_eq!(
                parse(&body(), chunk, 1 << 20).await.unwrap(),
                expected,
                "chunk {chunk}"
            );
        }
    }

    #[tokio::test]
    async fn a_body_without_its_boundary_or_its_end_is_refused() {
        let error = parse(b"--Other\r\n\r\nx\r\n--Other--", 4, 1 << 20)
            .await
            .unwrap_err();
        assert_eq!(
            (error.status, error.code),
            (StatusCode::BAD_REQUEST, "malformed_multipart")
        );
        let error = parse(b"--XyZ\r\n\r\nunfinished", 4, 1 << 20)
            .await
            .unwrap_err();
        assert!(error.message.contains("ends before"), "{}", error.message);
        let error = parse(b"--XyZjunk\r\n\r\nx\r\n--XyZ--", 4, 1 << 20)
            .await
            .unwrap_err();
        assert_eq!(error.status, StatusCode::BAD_REQUEST);
    }

    #[tokio::test]
    async fn a_body_over_the_limit_is_refused_with_413() {
        let mut body = b"--XyZ\r\n\r\n".to_vec();
        body.extend(std::iter::repeat_n(b'a', 10_000));
        body.extend_from_slice(b"\r\n--XyZ--");
        let error = parse(&body, 512, 5_000).await.unwrap_err();
        assert_eq!(error.status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(parse(&body, 512, 10_000).await.unwrap()[0].1.len(), 10_000);
    }

    #[test]
    fn content_types_are_read_with_quoted_parameters() {
        let related = related_type(Some(
            "Multipart/Related; type=\"application/dicom\"; boundary=\"a;b=c\"",
        ))
        .unwrap();
        assert_eq!(
            related,
            RelatedType {
                boundary: "a;b=c".into(),
                part_type: Some("application/dicom".into())
            }
        );
        assert_eq!(
            related_type(Some("application/dicom")).unwrap_err().status,
            StatusCode::UNSUPPORTED_MEDIA_TYPE
        );
        assert_eq!(
            related_type(Some("multipart/related; type=application/dicom"))
                .unwrap_err()
                .status,
            StatusCode::BAD_REQUEST
        );
    }
}
