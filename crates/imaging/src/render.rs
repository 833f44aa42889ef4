//! Windowing by the DICOM VOI LUT function (linear, PS3.3 C.11.2.1.2.1) in floating point,
//! MONOCHROME1 inversion, window presets, automatic windows from percentiles, and 8-bit PNG
//! encoding: greyscale slices (reformatted ones with their pixels made square), RGB images,
//! and RGBA label overlays.

use std::borrow::Cow;

use crate::reformat::Slice;

/// A window over modality values (HU for CT).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WindowLevel {
    pub center: f64,
    pub width: f64,
}

/// The presets offered in the viewer, by name.
pub const PRESETS: &[(&str, WindowLevel)] = &[
    (
        "lung",
        WindowLevel {
            center: -600.0,
            width: 1500.0,
        },
    ),
    (
        "mediastinum",
        WindowLevel {
            center: 50.0,
            width: 350.0,
        },
    ),
    (
        "bone",
        WindowLevel {
            center: 400.0,
            width: 1800.0,
        },
    ),
    (
        "brain",
        WindowLevel {
            center: 40.0,
            width: 80.0,
        },
    ),
    (
        "soft tissue",
        WindowLevel {
            center: 40.0,
            width: 400.0,
        },
    ),
];

/// Looks a preset up by name.
pub fn preset(name: &str) -> Option<WindowLevel> {
    PRESETS.iter().find(|(n, _)| *n == name).map(|(_, w)| *w)
}

/// Why a slice could not be rendered.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RenderError {
    #[error("window width {width} is below 1, which the VOI LUT function does not allow")]
    InvalidWidth { width: f64 },
    #[error("{values} values given for a {columns}x{rows} slice")]
    WrongLength {
        values: usize,
        columns: u32,
        rows: u32,
    },
    #[error("png encoding failed: {0}")]
    Png(String),
}

/// The linear VOI LUT function of PS3.3 C.11.2.1.2.1 onto 0..=255, in floating point:
/// below `c - 0.5 - (w - 1) / 2` is 0, above `c - 0.5 + (w - 1) / 2` is 255, linear between.
pub fn window_value(value: f64, window: WindowLevel) -> f64 {
    let (c, w) = (window.center, window.width);
    let (y_min, y_max) = (0.0, 255.0);
    if value <= c - 0.5 - (w - 1.0) / 2.0 {
        y_min
    } else if value > c - 0.5 + (w - 1.0) / 2.0 {
        y_max
    } else {
        ((value - (c - 0.5)) / (w - 1.0) + 0.5) * (y_max - y_min) + y_min
    }
}

/// Windows modality values to 8 bits, inverting for MONOCHROME1 (where low values are
/// white) so that the picture looks as the modality intended.
pub fn window_to_8bit(
    values: &[f32],
    window: WindowLevel,
    monochrome1: bool,
) -> Result<Vec<u8>, RenderError> {
    if window.width.is_nan() || window.width < 1.0 {
        return Err(RenderError::InvalidWidth {
            width: window.width,
        });
    }
    Ok(values
        .iter()
        .map(|&v| {
            let y = window_value(f64::from(v), window).round().clamp(0.0, 255.0) as u8;
            if monochrome1 { 255 - y } else { y }
        })
        .collect())
}

/// Encodes an 8-bit greyscale slice (row by row) as PNG.
pub fn encode_png(pixels: &[u8], columns: u32, rows: u32) -> Result<Vec<u8>, RenderError> {
    if pixels.len() != columns as usize * rows as usize {
        return Err(RenderError::WrongLength {
            values: pixels.len(),
            columns,
            rows,
        });
    }
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, columns, rows);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder
        .write_header()
        .map_err(|e| RenderError::Png(e.to_string()))?;
    writer
        .write_image_data(pixels)
        .map_err(|e| RenderError::Png(e.to_string()))?;
    writer
        .finish()
        .map_err(|e| RenderError::Png(e.to_string()))?;
    Ok(out)
}

/// Windows a slice of modality values and encodes it as PNG.
pub fn render_png(
    values: &[f32],
    columns: u32,
    rows: u32,
    window: WindowLevel,
    monochrome1: bool,
) -> Result<Vec<u8>, RenderError> {
    encode_png(&window_to_8bit(values, window, monochrome1)?, columns, rows)
}

/// The largest side of a rendered slice: correcting the aspect of very thick slices never
/// makes a picture larger than this (or than the slice already is).
pub const MAX_DISPLAY_SIDE: u32 = 8192;

/// The size in pixels at which a slice of `columns` x `rows` with `pixel_spacing_mm`
/// (between columns, between rows) is shown with square pixels: the axis with the coarser
/// spacing is stretched (never shrunk), so no sample is lost. Unusable spacings (zero,
/// negative, not finite) are taken as square.
pub fn display_size(columns: u32, rows: u32, pixel_spacing_mm: [f64; 2]) -> (u32, u32) {
    let [across, down] = pixel_spacing_mm;
    if !(across.is_finite() && down.is_finite() && across > 0.0 && down > 0.0) {
        return (columns, rows);
    }
    let stretch = |count: u32, ratio: f64| -> u32 {
        let wanted = (f64::from(count) * ratio).round();
        wanted.clamp(f64::from(count), f64::from(MAX_DISPLAY_SIDE.max(count))) as u32
    };
    if down > across {
        (columns, stretch(rows, down / across))
    } else {
        (stretch(columns, across / down), rows)
    }
}

/// Where output pixel `index` of `count_out` samples the `count_in` input pixels: the two
/// neighbours and the weight of the second. Pixel centres keep their places, so both ends
/// of the picture stay where they were.
fn sample_points(count_in: usize, count_out: usize) -> Vec<(usize, usize, f32)> {
    let scale = count_in as f64 / count_out as f64;
    let last = count_in.saturating_sub(1);
    (0..count_out)
        .map(|index| {
            let position = ((index as f64 + 0.5) * scale - 0.5).clamp(0.0, last as f64);
            let below = position.floor() as usize;
            (
                below,
                (below + 1).min(last),
                (position - below as f64) as f32,
            )
        })
        .collect()
}

/// Resizes one-sample values with linear interpolation, or with the nearest value (for
/// labels, which must not be blended), rows first and then columns.
fn resample(
    values: &[f32],
    (columns, rows): (usize, usize),
    (out_columns, out_rows): (usize, usize),
    nearest: bool,
) -> Vec<f32> {
    let blend = |a: f32, b: f32, weight: f32| {
        if nearest {
            if weight < 0.5 { a } else { b }
        } else {
            a + (b - a) * weight
        }
    };
    let vertical: Cow<[f32]> = if out_rows == rows {
        Cow::Borrowed(values)
    } else {
        let mut out = Vec::with_capacity(out_rows * columns);
        for (above, below, weight) in sample_points(rows, out_rows) {
            let (a, b) = (
                &values[above * columns..(above + 1) * columns],
                &values[below * columns..(below + 1) * columns],
            );
            out.extend(a.iter().zip(b).map(|(&a, &b)| blend(a, b, weight)));
        }
        Cow::Owned(out)
    };
    if out_columns == columns {
        return vertical.into_owned();
    }
    let points = sample_points(columns, out_columns);
    let mut out = Vec::with_capacity(out_rows * out_columns);
    for row in vertical.chunks_exact(columns) {
        out.extend(
            points
                .iter()
                .map(|&(left, right, weight)| blend(row[left], row[right], weight)),
        );
    }
    out
}

/// `values` as exactly `count` samples: missing ones are NaN (shown black or transparent),
/// extra ones dropped, so that a wrong length never panics.
fn exactly(values: &[f32], count: usize) -> Cow<'_, [f32]> {
    if values.len() == count {
        Cow::Borrowed(values)
    } else {
        let mut padded = values[..values.len().min(count)].to_vec();
        padded.resize(count, f32::NAN);
        Cow::Owned(padded)
    }
}

/// A window the VOI LUT function accepts: a width below 1 (or not a number) is taken as 1.
pub(crate) fn usable(window: WindowLevel) -> WindowLevel {
    WindowLevel {
        center: if window.center.is_finite() {
            window.center
        } else {
            0.0
        },
        width: if window.width >= 1.0 {
            window.width
        } else {
            1.0
        },
    }
}

/// One value through the VOI LUT onto 0..=255 (inverted for MONOCHROME1), unrounded.
pub(crate) fn display_value(value: f32, window: WindowLevel, monochrome1: bool) -> f32 {
    let y = window_value(f64::from(value), window) as f32;
    if monochrome1 { 255.0 - y } else { y }
}

pub(crate) fn to_byte(value: f32) -> u8 {
    // NaN casts to 0: missing values are black.
    value.round().clamp(0.0, 255.0) as u8
}

/// Encodes 8-bit samples whose length and size have been checked; an empty picture
/// becomes one transparent (or black) pixel, as PNG has no empty images.
pub(crate) fn encode_checked(
    pixels: &[u8],
    columns: u32,
    rows: u32,
    colour: png::ColorType,
) -> Vec<u8> {
    let channels = colour.samples();
    let (pixels, columns, rows) = if columns == 0 || rows == 0 {
        (Cow::Owned(vec![0; channels]), 1, 1)
    } else {
        (Cow::Borrowed(pixels), columns, rows)
    };
    debug_assert_eq!(pixels.len(), columns as usize * rows as usize * channels);
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, columns, rows);
    encoder.set_color(colour);
    encoder.set_depth(png::BitDepth::Eight);
    // Writing a buffer of the declared size into memory cannot fail.
    let mut writer = encoder
        .write_header()
        .expect("png header of a non-empty image");
    writer
        .write_image_data(&pixels)
        .expect("png data of the declared size");
    writer.finish().expect("png written to memory");
    out
}

/// Windows a reformatted slice and encodes it as greyscale PNG at [`display_size`]: when
/// columns and rows are spaced differently (a coronal slice of a CT with 2.5 mm slices and
/// 0.7 mm pixels) the coarser axis is resampled linearly, in floating point before
/// windowing, so that displayed pixels are square. A window width below 1 is taken as 1.
pub fn render_slice_png(slice: &Slice, window: WindowLevel, monochrome1: bool) -> Vec<u8> {
    let (columns, rows) = (slice.columns as usize, slice.rows as usize);
    let values = exactly(&slice.values, columns * rows);
    let (out_columns, out_rows) = display_size(slice.columns, slice.rows, slice.pixel_spacing_mm);
    let resampled = resample(
        &values,
        (columns, rows),
        (out_columns as usize, out_rows as usize),
        false,
    );
    let window = usable(window);
    let pixels: Vec<u8> = resampled
        .iter()
        .map(|&v| to_byte(display_value(v, window, monochrome1)))
        .collect();
    encode_checked(&pixels, out_columns, out_rows, png::ColorType::Grayscale)
}

/// Colour samples (R, G, B interleaved) to 8 bits. Without a window the samples are shown
/// as they are, scaled from 16 bits when any exceeds 255 (16-bit RGB, 16-bit palettes);
/// with one, each sample goes through the VOI LUT function.
pub fn rgb_to_8bit(values: &[f32], window: Option<WindowLevel>) -> Vec<u8> {
    match window {
        Some(window) => {
            let window = usable(window);
            values
                .iter()
                .map(|&v| to_byte(display_value(v, window, false)))
                .collect()
        }
        None => {
            let sixteen_bit = values.iter().any(|&v| v > 255.0);
            let scale = if sixteen_bit { 255.0 / 65535.0 } else { 1.0 };
            values.iter().map(|&v| to_byte(v * scale)).collect()
        }
    }
}

/// Encodes an RGB image (samples interleaved, row by row) as an 8-bit RGB PNG, windowed
/// only when a window is given (see [`rgb_to_8bit`]).
pub fn render_rgb_png(
    values: &[f32],
    columns: u32,
    rows: u32,
    window: Option<WindowLevel>,
) -> Result<Vec<u8>, RenderError> {
    if values.len() != columns as usize * rows as usize * 3 {
        return Err(RenderError::WrongLength {
            values: values.len(),
            columns,
            rows,
        });
    }
    Ok(encode_checked(
        &rgb_to_8bit(values, window),
        columns,
        rows,
        png::ColorType::Rgb,
    ))
}

/// A window for an image that has none (MR, NIfTI): from the 0.5th to the 99.5th
/// percentile of its finite values (linear interpolation between ranks), so that a few
/// extreme voxels do not flatten the picture. The lower percentile maps to black and the
/// upper to white; a constant image is shown mid-grey, and one with no finite value gets
/// the 8-bit range.
pub fn auto_window(values: &[f32]) -> WindowLevel {
    let mut finite: Vec<f32> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if finite.is_empty() {
        return WindowLevel {
            center: 128.0,
            width: 256.0,
        };
    }
    let low = percentile(&mut finite, 0.005);
    let high = percentile(&mut finite, 0.995);
    if high - low < 1e-9 {
        // Width 2 centred half a unit above the value puts it exactly at mid-grey.
        return WindowLevel {
            center: low + 0.5,
            width: 2.0,
        };
    }
    // The VOI LUT edges c - 0.5 - (w - 1) / 2 = low and c - 0.5 + (w - 1) / 2 = high; the
    // width stays above 1 however small the range (probability maps in fractions).
    WindowLevel {
        center: (low + high) / 2.0 + 0.5,
        width: high - low + 1.0,
    }
}

/// The `fraction` quantile of `values` (reordered in place), interpolated between the
/// neighbouring ranks as numpy's default `percentile` does.
fn percentile(values: &mut [f32], fraction: f64) -> f64 {
    let position = fraction * (values.len() - 1) as f64;
    let below = position.floor() as usize;
    let weight = position - below as f64;
    let (_, &mut low, above) = values.select_nth_unstable_by(below, f32::total_cmp);
    let low = f64::from(low);
    if weight == 0.0 || above.is_empty() {
        return low;
    }
    let high = f64::from(above.iter().copied().fold(f32::INFINITY, f32::min));
    low + (high - low) * weight
}

/// The colours of labels 1, 2, 3, ... (repeating after the last), chosen to stay apart
/// from each other and from grey anatomy.
pub const LABEL_COLOURS: [[u8; 3]; 12] = [
    [230, 40, 40],
    [40, 190, 70],
    [30, 110, 230],
    [250, 220, 30],
    [240, 120, 20],
    [150, 40, 190],
    [40, 220, 230],
    [230, 50, 210],
    [170, 240, 60],
    [250, 170, 190],
    [0, 130, 130],
    [160, 100, 40],
];

/// The RGBA colour of one label value: 0 (and anything below 1 once rounded, or NaN) is
/// transparent; label `n` is `LABEL_COLOURS[(n - 1) % 12]`, fully opaque.
pub fn label_colour(label: f32) -> [u8; 4] {
    let rounded = label.round();
    if rounded.is_nan() || rounded < 1.0 {
        return [0; 4];
    }
    let index = ((rounded as u64 - 1) % LABEL_COLOURS.len() as u64) as usize;
    let [r, g, b] = LABEL_COLOURS[index];
    [r, g, b, 255]
}

/// Renders a label (mask, segmentation) slice as an RGBA PNG to lay over the image: the
/// same [`display_size`] as [`render_slice_png`] for the same spacing, resampled by nearest
/// neighbour so that labels never blend; label 0 transparent, every other integer label its
/// fixed colour with alpha 255 (the viewer applies the overlay's opacity).
pub fn render_label_png(
    labels: &[f32],
    columns: u32,
    rows: u32,
    pixel_spacing_mm: [f64; 2],
) -> Vec<u8> {
    let values = exactly(labels, columns as usize * rows as usize);
    let (out_columns, out_rows) = display_size(columns, rows, pixel_spacing_mm);
    let resampled = resample(
        &values,
        (columns as usize, rows as usize),
        (out_columns as usize, out_rows as usize),
        true,
    );
    let pixels: Vec<u8> = resampled.iter().flat_map(|&v| label_colour(v)).collect();
    encode_checked(&pixels, out_columns, out_rows, png::ColorType::Rgba)
}

#[cfg(test)]
mod tests {
    use super::*;

    // The standard's example: center 2048, width 4096 maps 0..4095 onto the whole range.
    const STANDARD: WindowLevel = WindowLevel {
        center: 2048.0,
        width: 4096.0,
    };

    #[test]
    fn values_at_and_below_the_lower_edge_are_black() {
        // Lower edge: c - 0.5 - (w - 1) / 2 = 2047.5 - 2047.5 = 0.
        assert_eq!(window_value(0.0, STANDARD), 0.0);
        assert_eq!(window_value(-1000.0, STANDARD), 0.0);
        assert!(window_value(0.001, STANDARD) > 0.0);
    }

    #[test]
    fn values_above_the_upper_edge_are_white_and_the_edge_itself_is_not_clipped() {
        // Upper edge: c - 0.5 + (w - 1) / 2 = 4095.
        assert_eq!(window_value(4095.0, STANDARD), 255.0);
        assert_eq!(window_value(4095.001, STANDARD), 255.0);
        assert_eq!(window_value(100_000.0, STANDARD), 255.0);
    }

    #[test]
    fn the_center_maps_to_just_above_mid_grey() {
        // ((c - (c - 0.5)) / (w - 1) + 0.5) * 255 = (0.5 / 4095 + 0.5) * 255.
        let expected = (0.5 / 4095.0 + 0.5) * 255.0;
        assert!((window_value(2048.0, STANDARD) - expected).abs() < 1e-12);
    }

    #[test]
    fn width_one_is_a_threshold_at_center_minus_half() {
        let window = WindowLevel {
            center: 100.0,
            width: 1.0,
        };
        assert_eq!(window_value(99.5, window), 0.0);
        assert_eq!(window_value(99.5001, window), 255.0);
    }

    #[test]
    fn monochrome1_is_inverted_and_width_below_one_is_refused() {
        let window = preset("brain").unwrap();
        let pixels = window_to_8bit(&[-100.0, 40.0, 500.0], window, true).unwrap();
        assert_eq!(pixels[0], 255);
        assert_eq!(pixels[2], 0);
        assert!(
            window_to_8bit(
                &[0.0],
                WindowLevel {
                    center: 0.0,
                    width: 0.5
                },
                false
            )
            .is_err()
        );
    }

    #[test]
    fn presets_have_the_agreed_values() {
        assert_eq!(
            preset("lung"),
            Some(WindowLevel {
                center: -600.0,
                width: 1500.0
            })
        );
        assert_eq!(
            preset("mediastinum"),
            Some(WindowLevel {
                center: 50.0,
                width: 350.0
            })
        );
        assert_eq!(
            preset("bone"),
            Some(WindowLevel {
                center: 400.0,
                width: 1800.0
            })
        );
        assert_eq!(
            preset("brain"),
            Some(WindowLevel {
                center: 40.0,
                width: 80.0
            })
        );
        assert_eq!(
            preset("soft tissue"),
            Some(WindowLevel {
                center: 40.0,
                width: 400.0
            })
        );
        assert_eq!(preset("unknown"), None);
    }

    #[test]
    fn rendered_png_decodes_to_the_windowed_pixels() {
        let values: Vec<f32> = (0..12).map(|v| v as f32 * 100.0 - 600.0).collect();
        let window = preset("soft tissue").unwrap();
        let bytes = render_png(&values, 4, 3, window, false).unwrap();
        let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
        let mut reader = decoder.read_info().unwrap();
        let mut buffer = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buffer).unwrap();
        assert_eq!((info.width, info.height), (4, 3));
        assert_eq!(
            &buffer[..info.buffer_size()],
            window_to_8bit(&values, window, false).unwrap().as_slice()
        );
        assert!(encode_png(&[0; 5], 4, 3).is_err());
    }
    fn decode(bytes: &[u8]) -> (u32, u32, png::ColorType, Vec<u8>) {
        let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
        let mut reader = decoder.read_info().unwrap();
        let mut buffer = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buffer).unwrap();
        buffer.truncate(info.buffer_size());
        (info.width, info.height, info.color_type, buffer)
    }

    fn slice(values: Vec<f32>, columns: u32, rows: u32, spacing: [f64; 2]) -> Slice {
        Slice {
            columns,
            rows,
            values,
            pixel_spacing_mm: spacing,
            labels: crate::reformat::EdgeLabels {
                left: "R".into(),
                right: "L".into(),
                top: "S".into(),
                bottom: "I".into(),
            },
        }
    }

    /// Maps 0..=255 onto itself.
    const IDENTITY: WindowLevel = WindowLevel {
        center: 128.0,
        width: 256.0,
    };

    #[test]
    fn display_size_stretches_the_coarser_axis_only() {
        assert_eq!(display_size(512, 300, [0.7, 2.5]), (512, 1071));
        assert_eq!(display_size(300, 512, [2.5, 0.7]), (1071, 512));
        assert_eq!(display_size(512, 512, [0.7, 0.7]), (512, 512));
        assert_eq!(display_size(10, 10, [0.0, 1.0]), (10, 10));
        assert_eq!(display_size(10, 10, [f64::NAN, 1.0]), (10, 10));
        assert_eq!(display_size(10, 2000, [0.1, 100.0]), (10, MAX_DISPLAY_SIDE));
    }

    #[test]
    fn stretched_rows_interpolate_linearly_between_pixel_centres() {
        // Two rows 3 mm apart (centres at 1.5 and 4.5 mm) shown with 1 mm pixels: six rows
        // centred at 0.5, 1.5, ... 5.5 mm; beyond the outer centres the edge rows repeat,
        // between them values blend in proportion to distance.
        let slice = slice(vec![0.0, 0.0, 240.0, 240.0], 2, 2, [1.0, 3.0]);
        let (width, height, colour, pixels) = decode(&render_slice_png(&slice, IDENTITY, false));
        assert_eq!((width, height, colour), (2, 6, png::ColorType::Grayscale));
        let column: Vec<u8> = pixels.chunks_exact(2).map(|row| row[0]).collect();
        assert_eq!(column, vec![0, 0, 80, 160, 240, 240]);
    }

    #[test]
    fn stretched_columns_interpolate_too() {
        // Centres at 1 and 3 mm, shown at 0.5, 1.5, 2.5 and 3.5 mm.
        let slice = slice(vec![0.0, 200.0], 2, 1, [2.0, 1.0]);
        let (width, height, _, pixels) = decode(&render_slice_png(&slice, IDENTITY, false));
        assert_eq!((width, height), (4, 1));
        assert_eq!(pixels, vec![0, 50, 150, 200]);
    }

    #[test]
    fn a_slice_with_too_few_values_renders_the_missing_ones_black() {
        let slice = slice(vec![255.0; 3], 2, 2, [1.0, 1.0]);
        let (_, _, _, pixels) = decode(&render_slice_png(&slice, IDENTITY, false));
        assert_eq!(pixels, vec![255, 255, 255, 0]);
        let bad_window = WindowLevel {
            center: 0.0,
            width: 0.0,
        };
        let (_, _, _, pixels) = decode(&render_slice_png(&slice, bad_window, false));
        assert_eq!(pixels, vec![255, 255, 255, 0]);
    }

    #[test]
    fn auto_window_maps_the_percentiles_to_black_and_white() {
        let values: Vec<f32> = (0..=1000).map(|v| v as f32).collect();
        let window = auto_window(&values);
        // numpy: percentile(0..=1000, [0.5, 99.5]) = 5 and 995.
        assert_eq!(window_value(5.0, window), 0.0);
        assert_eq!(window_value(995.0, window), 255.0);
        assert!(window_value(5.5, window) > 0.0);
        assert!(window_value(994.5, window) < 255.0);
        // Outliers do not move it.
        let mut with_outliers = values.clone();
        with_outliers.extend([1e9, -1e9, f32::NAN, f32::INFINITY]);
        let shifted = auto_window(&with_outliers);
        assert!((shifted.center - window.center).abs() < 10.0);
        assert!((shifted.width - window.width).abs() < 20.0);
    }

    #[test]
    fn auto_window_of_constant_fractional_and_empty_images() {
        let constant = auto_window(&[7.0; 20]);
        assert_eq!(window_value(7.0, constant), 127.5);
        let fractions: Vec<f32> = (0..=100).map(|v| v as f32 / 1000.0).collect();
        let window = auto_window(&fractions);
        assert!(window.width >= 1.0);
        assert_eq!(window_value(0.0, window), 0.0);
        assert!(window_value(0.05, window) > 120.0 && window_value(0.05, window) < 135.0);
        assert_eq!(window_value(0.1, window), 255.0);
        assert_eq!(
            auto_window(&[f32::NAN]),
            WindowLevel {
                center: 128.0,
                width: 256.0
            }
        );
    }

    #[test]
    fn rgb_is_shown_as_is_or_scaled_from_16_bits_unless_a_window_is_asked_for() {
        assert_eq!(rgb_to_8bit(&[0.0, 127.0, 255.0], None), vec![0, 127, 255]);
        assert_eq!(
            rgb_to_8bit(&[0.0, 32896.0, 65535.0], None),
            vec![0, 128, 255]
        );
        let window = WindowLevel {
            center: 50.0,
            width: 100.0,
        };
        assert_eq!(rgb_to_8bit(&[0.0, 200.0], Some(window)), vec![0, 255]);
        let png = render_rgb_png(&[255.0, 0.0, 0.0, 0.0, 0.0, 255.0], 2, 1, None).unwrap();
        let (width, height, colour, pixels) = decode(&png);
        assert_eq!((width, height, colour), (2, 1, png::ColorType::Rgb));
        assert_eq!(pixels, vec![255, 0, 0, 0, 0, 255]);
        assert!(render_rgb_png(&[0.0; 5], 2, 1, None).is_err());
    }

    #[test]
    fn labels_get_fixed_colours_and_zero_is_transparent() {
        assert_eq!(label_colour(0.0), [0, 0, 0, 0]);
        assert_eq!(label_colour(-3.0), [0, 0, 0, 0]);
        assert_eq!(label_colour(f32::NAN), [0, 0, 0, 0]);
        let [r, g, b] = LABEL_COLOURS[0];
        assert_eq!(label_colour(1.0), [r, g, b, 255]);
        assert_eq!(label_colour(0.9), [r, g, b, 255]);
        assert_eq!(label_colour(13.0), [r, g, b, 255]);
        let distinct: std::collections::BTreeSet<[u8; 3]> = LABEL_COLOURS.into_iter().collect();
        assert_eq!(distinct.len(), LABEL_COLOURS.len());
        // Nearest-neighbour stretching never invents a label between two others.
        let png = render_label_png(&[1.0, 3.0], 1, 2, [1.0, 4.0]);
        let (width, height, colour, pixels) = decode(&png);
        assert_eq!((width, height, colour), (1, 8, png::ColorType::Rgba));
        let [r3, g3, b3] = LABEL_COLOURS[2];
        for (row, rgba) in pixels.chunks_exact(4).enumerate() {
            let expected = if row < 4 {
                [r, g, b, 255]
            } else {
                [r3, g3, b3, 255]
            };
            assert_eq!(rgba, expected, "row {row}");
        }
    }
}
