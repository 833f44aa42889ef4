//! Windowing by the DICOM VOI LUT function (linear, PS3.3 C.11.2.1.2.1) in floating point,
//! MONOCHROME1 inversion, window presets, and 8-bit greyscale PNG encoding.

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
}
