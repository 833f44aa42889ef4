//! Decoding 2D PNG and JPEG images (X-ray exports, endoscopy frames, pathology tiles) into
//! sample values, with the image size checked from the header before any pixel is decoded.
//! Greyscale stays one sample per pixel; colour and palettes become RGB; alpha is dropped.

use std::io::Cursor;

use zune_jpeg::zune_core::bytestream::ZCursor;
use zune_jpeg::zune_core::colorspace::ColorSpace;
use zune_jpeg::zune_core::options::DecoderOptions;

use crate::dicom::MAX_PIXEL_BYTES;

/// Largest width or height accepted.
pub const MAX_SIDE: u32 = 32768;
/// Memory the PNG decoder may use for itself (chunks, compressed metadata, row buffers);
/// the image buffer is checked separately.
const PNG_DECODER_BYTES: usize = 64 * 1024 * 1024;

/// Why an image could not be decoded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RasterError {
    #[error("{name} is neither a PNG nor a JPEG image")]
    NotRaster { name: String },
    #[error("{name}: image of {columns}x{rows} pixels is refused: {reason}")]
    TooLarge {
        name: String,
        columns: u32,
        rows: u32,
        reason: &'static str,
    },
    #[error("{name}: the {format} image could not be decoded: {reason}")]
    Decode {
        name: String,
        format: RasterFormat,
        reason: String,
    },
}

/// The encoding an image came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RasterFormat {
    Png,
    Jpeg,
}

impl std::fmt::Display for RasterFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RasterFormat::Png => "PNG",
            RasterFormat::Jpeg => "JPEG",
        })
    }
}

/// A decoded 2D image: sample values as stored (0..255 or 0..65535), row by row, samples
/// interleaved (R, G, B, R, ...) for colour.
#[derive(Debug, Clone, PartialEq)]
pub struct Raster {
    pub format: RasterFormat,
    pub columns: u32,
    pub rows: u32,
    /// 1 (greyscale) or 3 (RGB).
    pub samples_per_pixel: u8,
    /// 8 or 16.
    pub bits: u8,
    /// `values[(row * columns + column) * samples_per_pixel + sample]`.
    pub values: Vec<f32>,
}

/// Decodes a PNG or a JPEG, told apart by magic number; `name` only names it in errors.
pub fn read_bytes(name: &str, bytes: &[u8]) -> Result<Raster, RasterError> {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        read_png(name, bytes)
    } else if bytes.starts_with(&[0xFF, 0xD8]) {
        read_jpeg(name, bytes)
    } else {
        Err(RasterError::NotRaster {
            name: name.to_owned(),
        })
    }
}

/// Refuses sizes that are zero, longer than [`MAX_SIDE`], or whose decoded values (f32)
/// would exceed [`MAX_PIXEL_BYTES`].
fn check_size(name: &str, columns: u32, rows: u32, samples: u8) -> Result<(), RasterError> {
    let refuse = |reason| RasterError::TooLarge {
        name: name.to_owned(),
        columns,
        rows,
        reason,
    };
    if columns == 0 || rows == 0 {
        return Err(refuse("width and height must be at least 1"));
    }
    if columns > MAX_SIDE || rows > MAX_SIDE {
        return Err(refuse("width and height are limited to 32768 pixels"));
    }
    let bytes = u64::from(columns) * u64::from(rows) * u64::from(samples) * 4;
    if bytes > MAX_PIXEL_BYTES {
        return Err(refuse("decoded values would exceed 2 GiB"));
    }
    Ok(())
}

/// Decodes a PNG: the first (or only) frame, palettes expanded, bit depths below 8 scaled to
/// 8 bits, 16-bit samples kept.
pub fn read_png(name: &str, bytes: &[u8]) -> Result<Raster, RasterError> {
    let decode_error = |error: png::DecodingError| RasterError::Decode {
        name: name.to_owned(),
        format: RasterFormat::Png,
        reason: error.to_string(),
    };
    let mut decoder = png::Decoder::new_with_limits(
        Cursor::new(bytes),
        png::Limits {
            bytes: PNG_DECODER_BYTES,
        },
    );
    decoder.set_transformations(png::Transformations::EXPAND);
    // The size is checked from the header chunk alone, before the decoder reads further.
    let (columns, rows) = decoder.read_header_info().map_err(decode_error)?.size();
    check_size(name, columns, rows, 1)?;
    let mut reader = decoder.read_info().map_err(decode_error)?;
    let (columns, rows) = reader.info().size();
    let (color, depth) = reader.output_color_type();
    let (stored_samples, samples): (usize, usize) = match color {
        png::ColorType::Grayscale => (1, 1),
        png::ColorType::GrayscaleAlpha => (2, 1),
        png::ColorType::Rgb => (3, 3),
        png::ColorType::Rgba => (4, 3),
        // EXPAND turns palettes into RGB; anything else is not an image this reads.
        png::ColorType::Indexed => {
            return Err(RasterError::Decode {
                name: name.to_owned(),
                format: RasterFormat::Png,
                reason: "palette was not expanded".into(),
            });
        }
    };
    check_size(name, columns, rows, stored_samples as u8)?;
    let bits: u8 = if depth == png::BitDepth::Sixteen {
        16
    } else {
        8
    };
    let buffer_size = reader
        .output_buffer_size()
        .ok_or_else(|| RasterError::TooLarge {
            name: name.to_owned(),
            columns,
            rows,
            reason: "the decoded image does not fit in memory",
        })?;
    let mut buffer = vec![0u8; buffer_size];
    let frame = reader.next_frame(&mut buffer).map_err(decode_error)?;
    let stored = &buffer[..frame.buffer_size()];
    let bytes_per_sample = usize::from(bits / 8);
    let pixel_bytes = stored_samples * bytes_per_sample;
    let pixels = columns as usize * rows as usize;
    let mut values = Vec::with_capacity(pixels * samples);
    // Rows are packed without padding once expanded to 8 or 16 bits.
    for pixel in stored.chunks_exact(pixel_bytes).take(pixels) {
        for sample in pixel.chunks_exact(bytes_per_sample).take(samples) {
            values.push(if bits == 16 {
                f32::from(u16::from_be_bytes([sample[0], sample[1]]))
            } else {
                f32::from(sample[0])
            });
        }
    }
    if values.len() != pixels * samples {
        return Err(RasterError::Decode {
            name: name.to_owned(),
            format: RasterFormat::Png,
            reason: format!(
                "decoded {} samples where {columns}x{rows} pixels need {}",
                values.len(),
                pixels * samples
            ),
        });
    }
    Ok(Raster {
        format: RasterFormat::Png,
        columns,
        rows,
        samples_per_pixel: samples as u8,
        bits,
        values,
    })
}

/// Decodes a baseline or progressive 8-bit JPEG: greyscale stays greyscale, every other
/// colour space (YCbCr, CMYK, YCCK) becomes RGB.
pub fn read_jpeg(name: &str, bytes: &[u8]) -> Result<Raster, RasterError> {
    let decode_error = |error: zune_jpeg::errors::DecodeErrors| RasterError::Decode {
        name: name.to_owned(),
        format: RasterFormat::Jpeg,
        reason: error.to_string(),
    };
    let limits = DecoderOptions::default()
        .set_max_width(MAX_SIDE as usize)
        .set_max_height(MAX_SIDE as usize);
    let mut probe = zune_jpeg::JpegDecoder::new_with_options(ZCursor::new(bytes), limits);
    probe.decode_headers().map_err(decode_error)?;
    let (columns, rows) = probe
        .dimensions()
        .map(|(w, h)| (w as u32, h as u32))
        .unwrap_or((0, 0));
    let greyscale = probe.input_colorspace() == Some(ColorSpace::Luma);
    let samples: u8 = if greyscale { 1 } else { 3 };
    check_size(name, columns, rows, samples)?;
    let output = if greyscale {
        ColorSpace::Luma
    } else {
        ColorSpace::RGB
    };
    let mut decoder = zune_jpeg::JpegDecoder::new_with_options(
        ZCursor::new(bytes),
        limits.jpeg_set_out_colorspace(output),
    );
    let decoded = decoder.decode().map_err(decode_error)?;
    let expected = columns as usize * rows as usize * usize::from(samples);
    if decoded.len() != expected {
        return Err(RasterError::Decode {
            name: name.to_owned(),
            format: RasterFormat::Jpeg,
            reason: format!(
                "decoded {} samples where {columns}x{rows} pixels need {expected}",
                decoded.len()
            ),
        });
    }
    Ok(Raster {
        format: RasterFormat::Jpeg,
        columns,
        rows,
        samples_per_pixel: samples,
        bits: 8,
        values: decoded.into_iter().map(f32::from).collect(),
    })
}
