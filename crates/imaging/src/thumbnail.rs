//! Thumbnails: an image windowed to display values, then shrunk by area averaging (each
//! thumbnail pixel the mean of the source area it covers, partial pixels weighted by their
//! share) to fit a square of a given side with its aspect kept, as an 8-bit PNG.

use crate::render::{self, WindowLevel};

/// The size of the thumbnail of a `columns` x `rows` image that fits `max_side`: the longer
/// side becomes `max_side`, the other keeps the aspect (at least 1 pixel); images that
/// already fit are not enlarged.
pub fn thumbnail_size(columns: u32, rows: u32, max_side: u32) -> (u32, u32) {
    let max_side = max_side.max(1);
    let longest = columns.max(rows);
    if longest <= max_side {
        return (columns.max(1), rows.max(1));
    }
    let scale = f64::from(max_side) / f64::from(longest);
    let fit = |count: u32| ((f64::from(count) * scale).round() as u32).clamp(1, max_side);
    (fit(columns), fit(rows))
}

/// For each output pixel along one axis, the input pixels it covers and their weights
/// (summing to 1).
fn coverage(count_in: usize, count_out: usize) -> Vec<Vec<(usize, f32)>> {
    let scale = count_in as f64 / count_out as f64;
    (0..count_out)
        .map(|index| {
            let (start, end) = (index as f64 * scale, (index as f64 + 1.0) * scale);
            let first = start.floor() as usize;
            let last = (end.ceil() as usize).min(count_in);
            (first..last)
                .map(|source| {
                    let overlap = end.min(source as f64 + 1.0) - start.max(source as f64);
                    (source, (overlap / scale) as f32)
                })
                .filter(|&(_, weight)| weight > 0.0)
                .collect()
        })
        .collect()
}

/// Area-averages `samples`-sample pixels from `columns` x `rows` to `out_columns` x
/// `out_rows`: columns first, then rows.
fn shrink(
    values: &[f32],
    samples: usize,
    (columns, rows): (usize, usize),
    (out_columns, out_rows): (usize, usize),
) -> Vec<f32> {
    let across = coverage(columns, out_columns);
    let mut narrow: Vec<f32> = Vec::with_capacity(out_columns * rows * samples);
    for row in values.chunks_exact(columns * samples) {
        for sources in &across {
            for sample in 0..samples {
                narrow.push(
                    sources
                        .iter()
                        .map(|&(column, weight)| row[column * samples + sample] * weight)
                        .sum(),
                );
            }
        }
    }
    let line = out_columns * samples;
    let mut out = vec![0.0; out_rows * line];
    for (target, sources) in out.chunks_exact_mut(line).zip(coverage(rows, out_rows)) {
        for (source_row, weight) in sources {
            let source = &narrow[source_row * line..(source_row + 1) * line];
            for (value, &add) in target.iter_mut().zip(source) {
                *value += add * weight;
            }
        }
    }
    out
}

/// A PNG thumbnail that fits `max_side` (see [`thumbnail_size`]) of modality values
/// (`samples` 1) or colour samples (`samples` 3, interleaved). Every sample is windowed
/// first, in floating point by the VOI LUT function (`monochrome1` inverts greyscale;
/// colour is never inverted), then averaged, so the thumbnail looks like the image shrunk.
/// Greyscale gives a greyscale PNG, colour an RGB PNG; other sample counts are shown by
/// their first sample. Missing values are black and a width below 1 is taken as 1.
pub fn thumbnail_png(
    values: &[f32],
    columns: u32,
    rows: u32,
    samples: u16,
    window: WindowLevel,
    monochrome1: bool,
    max_side: u32,
) -> Vec<u8> {
    let stride = usize::from(samples.max(1));
    let samples = if samples == 3 { 3 } else { 1 };
    let (width, height) = (columns as usize, rows as usize);
    let window = render::usable(window);
    let invert = monochrome1 && samples == 1;
    let mut display = Vec::with_capacity(width * height * samples);
    for pixel in 0..width * height {
        for sample in 0..samples {
            let value = values.get(pixel * stride + sample).copied();
            display.push(match value {
                Some(v) if !v.is_nan() => render::display_value(v, window, invert),
                _ => 0.0,
            });
        }
    }
    let (out_columns, out_rows) = thumbnail_size(columns, rows, max_side);
    let shrunk = if width == 0 || height == 0 {
        Vec::new()
    } else {
        shrink(
            &display,
            samples,
            (width, height),
            (out_columns as usize, out_rows as usize),
        )
    };
    let pixels: Vec<u8> = shrunk.iter().map(|&v| render::to_byte(v)).collect();
    let colour = if samples == 3 {
        png::ColorType::Rgb
    } else {
        png::ColorType::Grayscale
    };
    if pixels.is_empty() {
        return render::encode_checked(&[], 0, 0, colour);
    }
    render::encode_checked(&pixels, out_columns, out_rows, colour)
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDENTITY: WindowLevel = WindowLevel {
        center: 128.0,
        width: 256.0,
    };

    fn decode(png_bytes: &[u8]) -> (u32, u32, png::ColorType, Vec<u8>) {
        let decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
        let mut reader = decoder.read_info().unwrap();
        let mut buffer = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buffer).unwrap();
        buffer.truncate(info.buffer_size());
        (info.width, info.height, info.color_type, buffer)
    }

    #[test]
    fn sizes_keep_the_aspect_and_never_enlarge() {
        assert_eq!(thumbnail_size(512, 512, 128), (128, 128));
        assert_eq!(thumbnail_size(512, 256, 128), (128, 64));
        assert_eq!(thumbnail_size(300, 1000, 128), (38, 128));
        assert_eq!(thumbnail_size(64, 32, 128), (64, 32));
        assert_eq!(thumbnail_size(10_000, 1, 128), (128, 1));
        assert_eq!(thumbnail_size(5, 5, 0), (1, 1));
    }

    #[test]
    fn the_identity_window_keeps_8_bit_values() {
        for v in [0.0f32, 1.0, 127.0, 128.0, 254.0, 255.0] {
            assert_eq!(render::display_value(v, IDENTITY, false), v);
        }
    }

    #[test]
    fn area_averaging_gives_the_mean_of_each_block() {
        // 4x2 pixels to 2x1: each output pixel is the mean of a 2x2 block.
        let values = [0.0, 100.0, 200.0, 200.0, 100.0, 200.0, 0.0, 40.0];
        let (w, h, colour, pixels) = decode(&thumbnail_png(&values, 4, 2, 1, IDENTITY, false, 2));
        assert_eq!((w, h, colour), (2, 1, png::ColorType::Grayscale));
        assert_eq!(pixels, vec![100, 110]);
    }

    #[test]
    fn fractional_coverage_weights_partial_pixels() {
        // 3 pixels to 2: the middle one is split half and half.
        let values = [0.0, 90.0, 180.0];
        let (_, _, _, pixels) = decode(&thumbnail_png(&values, 3, 1, 1, IDENTITY, false, 2));
        // (0 * 1 + 90 * 0.5) / 1.5 = 30 and (90 * 0.5 + 180) / 1.5 = 150.
        assert_eq!(pixels, vec![30, 150]);
    }

    #[test]
    fn colour_thumbnails_are_rgb_and_average_each_channel() {
        let values = [
            255.0, 0.0, 0.0, 0.0, 255.0, 0.0, //
            0.0, 0.0, 255.0, 255.0, 255.0, 255.0,
        ];
        let (w, h, colour, pixels) = decode(&thumbnail_png(&values, 2, 2, 3, IDENTITY, true, 1));
        assert_eq!((w, h, colour), (1, 1, png::ColorType::Rgb));
        // Monochrome1 never inverts colour: (255 + 0 + 0 + 255) / 4 per channel.
        assert_eq!(pixels, vec![128, 128, 128]);
    }

    #[test]
    fn windowing_happens_before_averaging_and_monochrome1_inverts() {
        // Air is black and bone white in a brain window, so their thumbnail pixel is
        // mid-grey; averaging the values first (-440 HU) would have made it black.
        let window = render::preset("brain").unwrap();
        let values = [-1000.0, 120.0];
        let (_, _, _, pixels) = decode(&thumbnail_png(&values, 2, 1, 1, window, false, 1));
        assert_eq!(pixels, vec![128]);
        let values = [-1000.0, -1000.0];
        let (_, _, _, pixels) = decode(&thumbnail_png(&values, 2, 1, 1, window, true, 1));
        assert_eq!(pixels, vec![255]);
    }

    #[test]
    fn a_large_image_shrinks_to_fit_and_short_input_does_not_panic() {
        let values: Vec<f32> = (0..512 * 300).map(|i| (i % 256) as f32).collect();
        let (w, h, _, _) = decode(&thumbnail_png(&values, 512, 300, 1, IDENTITY, false, 128));
        assert_eq!((w, h), (128, 75));
        let (w, h, _, pixels) =
            decode(&thumbnail_png(&values[..10], 4, 4, 1, IDENTITY, false, 128));
        assert_eq!((w, h), (4, 4));
        assert_eq!(pixels[15], 0);
        let (w, h, _, _) = decode(&thumbnail_png(&[], 0, 0, 1, IDENTITY, false, 128));
        assert_eq!((w, h), (1, 1));
    }
}
