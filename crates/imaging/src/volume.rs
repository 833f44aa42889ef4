//! Assembling the slices of one series into a volume with exact geometry: slices sorted by
//! Image Position (Patient) projected on the normal of Image Orientation (Patient), spacing
//! taken from the positions, or a typed reason why the series does not form a volume.

use crate::dicom::{self, DicomImage, Geometry, ImagingError};

/// Two orientations whose direction cosines differ by less than this are the same.
const ORIENTATION_TOLERANCE: f64 = 1e-4;
/// Slice gaps may differ from the mean gap by this much (mm) ...
const SPACING_TOLERANCE_MM: f64 = 0.01;
/// ... or by this fraction of the mean gap, whichever is larger.
const SPACING_TOLERANCE_RELATIVE: f64 = 0.01;
/// Positions closer than this along the normal are the same slice position.
const DUPLICATE_POSITION_MM: f64 = 0.01;

/// Why a set of slices is not a volume.
#[derive(Debug, thiserror::Error, PartialEq)]
#[non_exhaustive]
pub enum VolumeError {
    #[error("no slices given")]
    Empty,
    #[error("slice {index} has no {attribute}, so its place in the volume is unknown")]
    MissingGeometry {
        index: usize,
        attribute: &'static str,
    },
    #[error("slices have {orientations} different orientations")]
    MixedOrientations { orientations: usize },
    #[error("slices have different sizes: {first_rows}x{first_columns} and {rows}x{columns}")]
    DifferentDimensions {
        first_rows: u32,
        first_columns: u32,
        rows: u32,
        columns: u32,
    },
    #[error("slices have different pixel spacings: {first:?} and {other:?} mm")]
    DifferentPixelSpacing { first: [f64; 2], other: [f64; 2] },
    #[error(
        "several stacks: {duplicates} slices share a position along the normal with another slice"
    )]
    SeveralStacks { duplicates: usize },
    #[error(
        "missing slices: gap of {gap_mm:.3} mm after slice {after} where the spacing is {spacing_mm:.3} mm"
    )]
    MissingSlices {
        after: usize,
        gap_mm: f64,
        spacing_mm: f64,
    },
    #[error(
        "non-uniform spacing: gap of {gap_mm:.3} mm after slice {after} where the mean is {spacing_mm:.3} mm"
    )]
    NonUniformSpacing {
        after: usize,
        gap_mm: f64,
        spacing_mm: f64,
    },
    #[error(
        "gantry tilt or sheared stack: slices move {shear_mm:.3} mm sideways per slice; not resampled"
    )]
    GantryTilt { shear_mm: f64 },
    #[error("a multi-frame file with {frames} frames has no per-frame positions that voxhub reads")]
    MultiFrameWithoutPositions { frames: u32 },
    #[error("invalid image orientation: {reason}")]
    InvalidOrientation { reason: &'static str },
    #[error("slices are not monochrome ({photometric_interpretation}), so not a scalar volume")]
    NotMonochrome { photometric_interpretation: String },
    #[error(transparent)]
    Decode(#[from] DecodeError),
}

/// A decoding failure of one slice while assembling; boxed text so that [`VolumeError`]
/// stays comparable in tests.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("{0}")]
pub struct DecodeError(pub String);

impl From<ImagingError> for VolumeError {
    fn from(error: ImagingError) -> Self {
        VolumeError::Decode(DecodeError(error.to_string()))
    }
}

/// The geometry of a sorted stack, in DICOM patient coordinates (LPS, mm).
#[derive(Debug, Clone, PartialEq)]
pub struct StackGeometry {
    /// Indices of the input slices, first slice first (lowest projection on the normal).
    pub order: Vec<usize>,
    pub rows: u32,
    pub columns: u32,
    /// Direction of increasing column index (along a row), from Image Orientation.
    pub row_direction: [f64; 3],
    /// Direction of increasing row index (down a column).
    pub column_direction: [f64; 3],
    /// `row_direction × column_direction`.
    pub normal: [f64; 3],
    /// Spacing between columns, between rows, between slices (mm).
    pub spacing_mm: [f64; 3],
    /// Image Position (Patient) of the first slice: the centre of its first pixel.
    pub origin_mm: [f64; 3],
}

/// A scalar volume: modality values, slice by slice, each slice row by row as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Volume {
    pub geometry: StackGeometry,
    /// `voxels[(slice * rows + row) * columns + column]`.
    pub voxels: Vec<f32>,
}

impl Volume {
    pub fn slices(&self) -> usize {
        self.geometry.order.len()
    }
}

fn cross(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [
        a[1] * b[2] - a[2] * b[1],
        a[2] * b[0] - a[0] * b[2],
        a[0] * b[1] - a[1] * b[0],
    ]
}

fn dot(a: [f64; 3], b: [f64; 3]) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

fn norm(a: [f64; 3]) -> f64 {
    dot(a, a).sqrt()
}

fn sub(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [a[0] - b[0], a[1] - b[1], a[2] - b[2]]
}

fn same_orientation(a: &[f64; 6], b: &[f64; 6]) -> bool {
    a.iter()
        .zip(b)
        .all(|(x, y)| (x - y).abs() < ORIENTATION_TOLERANCE)
}

/// Sorts slices along their normal and checks that they form one regular stack, from
/// geometry alone (nothing decoded).
pub fn plan(slices: &[&Geometry]) -> Result<StackGeometry, VolumeError> {
    let first = *slices.first().ok_or(VolumeError::Empty)?;
    let mut orientations: Vec<[f64; 6]> = Vec::new();
    let mut positions = Vec::with_capacity(slices.len());
    for (index, slice) in slices.iter().enumerate() {
        let missing = |attribute| VolumeError::MissingGeometry { index, attribute };
        let orientation = slice
            .image_orientation
            .ok_or_else(|| missing("Image Orientation (Patient)"))?;
        positions.push(
            slice
                .image_position_mm
                .ok_or_else(|| missing("Image Position (Patient)"))?,
        );
        slice
            .pixel_spacing_mm
            .ok_or_else(|| missing("Pixel Spacing"))?;
        if !orientations
            .iter()
            .any(|o| same_orientation(o, &orientation))
        {
            orientations.push(orientation);
        }
        if slice.number_of_frames > 1 {
            return Err(VolumeError::MultiFrameWithoutPositions {
                frames: slice.number_of_frames,
            });
        }
    }
    if orientations.len() > 1 {
        return Err(VolumeError::MixedOrientations {
            orientations: orientations.len(),
        });
    }
    let pixel_spacing = first.pixel_spacing_mm.expect("checked above");
    for slice in slices {
        if (slice.rows, slice.columns) != (first.rows, first.columns) {
            return Err(VolumeError::DifferentDimensions {
                first_rows: first.rows,
                first_columns: first.columns,
                rows: slice.rows,
                columns: slice.columns,
            });
        }
        let other = slice.pixel_spacing_mm.expect("checked above");
        if (0..2).any(|i| (other[i] - pixel_spacing[i]).abs() > 1e-4) {
            return Err(VolumeError::DifferentPixelSpacing {
                first: pixel_spacing,
                other,
            });
        }
    }
    let orientation = orientations[0];
    let row_direction = [orientation[0], orientation[1], orientation[2]];
    let column_direction = [orientation[3], orientation[4], orientation[5]];
    let (row_length, column_length) = (norm(row_direction), norm(column_direction));
    if (row_length - 1.0).abs() > 1e-2 || (column_length - 1.0).abs() > 1e-2 {
        return Err(VolumeError::InvalidOrientation {
            reason: "direction cosines are not unit vectors",
        });
    }
    if dot(row_direction, column_direction).abs() > 1e-2 {
        return Err(VolumeError::InvalidOrientation {
            reason: "row and column directions are not perpendicular",
        });
    }
    let normal = cross(row_direction, column_direction);
    let mut order: Vec<usize> = (0..slices.len()).collect();
    let projection = |index: usize| dot(positions[index], normal);
    order.sort_by(|&a, &b| projection(a).total_cmp(&projection(b)));
    let gaps: Vec<f64> = order
        .windows(2)
        .map(|pair| projection(pair[1]) - projection(pair[0]))
        .collect();
    let duplicates = gaps.iter().filter(|&&g| g < DUPLICATE_POSITION_MM).count();
    if duplicates > 0 {
        return Err(VolumeError::SeveralStacks { duplicates });
    }
    let slice_spacing = if gaps.is_empty() {
        // One slice has no neighbour to measure from; its thickness is the best estimate.
        first.slice_thickness_mm.filter(|t| *t > 0.0).unwrap_or(1.0)
    } else {
        let smallest = gaps.iter().copied().fold(f64::INFINITY, f64::min);
        let tolerance =
            |spacing: f64| SPACING_TOLERANCE_MM.max(SPACING_TOLERANCE_RELATIVE * spacing);
        for (after, &gap) in gaps.iter().enumerate() {
            if (gap - smallest).abs() > tolerance(smallest) {
                let multiple = gap / smallest;
                let error = if (multiple - multiple.round()).abs() * smallest <= tolerance(smallest)
                {
                    VolumeError::MissingSlices {
                        after,
                        gap_mm: gap,
                        spacing_mm: smallest,
                    }
                } else {
                    VolumeError::NonUniformSpacing {
                        after,
                        gap_mm: gap,
                        spacing_mm: gaps.iter().sum::<f64>() / gaps.len() as f64,
                    }
                };
                return Err(error);
            }
        }
        (projection(order[order.len() - 1]) - projection(order[0])) / gaps.len() as f64
    };
    // Slices must lie on the normal through the first: a sideways step means gantry tilt
    // (or a sheared stack), which needs resampling that voxhub does not do silently.
    for pair in order.windows(2) {
        let step = sub(positions[pair[1]], positions[pair[0]]);
        let along = dot(step, normal);
        let sideways = norm(sub(step, normal.map(|n| n * along)));
        if sideways > SPACING_TOLERANCE_MM.max(1e-3 * along.abs()) {
            return Err(VolumeError::GantryTilt { shear_mm: sideways });
        }
    }
    Ok(StackGeometry {
        rows: first.rows,
        columns: first.columns,
        row_direction,
        column_direction,
        normal,
        // Pixel Spacing is (between rows, between columns): the column spacing goes along a row.
        spacing_mm: [pixel_spacing[1], pixel_spacing[0], slice_spacing],
        origin_mm: positions[order[0]],
        order,
    })
}

/// Assembles the images of one series into a volume of modality values.
pub fn assemble(images: &[DicomImage]) -> Result<Volume, VolumeError> {
    let mut geometries = Vec::with_capacity(images.len());
    for (index, image) in images.iter().enumerate() {
        geometries.push(
            image
                .geometry
                .as_ref()
                .ok_or(VolumeError::MissingGeometry {
                    index,
                    attribute: "Rows and Columns",
                })?,
        );
    }
    let geometry = plan(&geometries)?;
    let slice_len = geometry.rows as usize * geometry.columns as usize;
    let mut voxels = Vec::with_capacity(slice_len * images.len());
    for &index in &geometry.order {
        let frames = dicom::pixels(&images[index])?;
        if frames.samples_per_pixel != 1 {
            return Err(VolumeError::NotMonochrome {
                photometric_interpretation: frames.photometric_interpretation,
            });
        }
        voxels.extend_from_slice(&frames.frames[0]);
    }
    Ok(Volume { geometry, voxels })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slice(orientation: [f64; 6], position: [f64; 3]) -> Geometry {
        Geometry {
            rows: 4,
            columns: 3,
            number_of_frames: 1,
            pixel_spacing_mm: Some([0.5, 0.7]),
            image_position_mm: Some(position),
            image_orientation: Some(orientation),
            slice_thickness_mm: Some(5.0),
        }
    }

    const AXIAL: [f64; 6] = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0];
    const CORONAL: [f64; 6] = [1.0, 0.0, 0.0, 0.0, 0.0, -1.0];
    const SAGITTAL: [f64; 6] = [0.0, 1.0, 0.0, 0.0, 0.0, -1.0];

    fn stack(orientation: [f64; 6], origin: [f64; 3], step: [f64; 3], n: usize) -> Vec<Geometry> {
        (0..n)
            .map(|k| {
                let k = k as f64;
                slice(
                    orientation,
                    [
                        origin[0] + k * step[0],
                        origin[1] + k * step[1],
                        origin[2] + k * step[2],
                    ],
                )
            })
            .collect()
    }

    fn plan_of(slices: &[Geometry]) -> Result<StackGeometry, VolumeError> {
        plan(&slices.iter().collect::<Vec<_>>())
    }

    #[test]
    fn axial_slices_in_reverse_order_are_sorted_along_the_normal() {
        let mut slices = stack(AXIAL, [-10.0, -20.0, 30.0], [0.0, 0.0, 2.5], 5);
        slices.reverse();
        let plan = plan_of(&slices).unwrap();
        assert_eq!(plan.order, vec![4, 3, 2, 1, 0]);
        assert_eq!(plan.normal, [0.0, 0.0, 1.0]);
        assert_eq!(plan.spacing_mm, [0.7, 0.5, 2.5]);
        assert_eq!(plan.origin_mm, [-10.0, -20.0, 30.0]);
    }

    #[test]
    fn spacing_comes_from_positions_not_slice_thickness() {
        let slices = stack(AXIAL, [0.0; 3], [0.0, 0.0, 1.25], 4);
        assert!((plan_of(&slices).unwrap().spacing_mm[2] - 1.25).abs() < 1e-12);
    }

    #[test]
    fn coronal_and_sagittal_stacks_sort_along_their_own_normals() {
        // Coronal normal is (1,0,0)x(0,0,-1) = (0,1,0); sagittal is (0,1,0)x(0,0,-1) = (-1,0,0).
        let coronal = stack(CORONAL, [0.0, 50.0, 0.0], [0.0, -3.0, 0.0], 4);
        let plan = plan_of(&coronal).unwrap();
        assert_eq!(plan.normal, [0.0, 1.0, 0.0]);
        assert_eq!(plan.order, vec![3, 2, 1, 0]);
        assert_eq!(plan.spacing_mm[2], 3.0);
        let sagittal = stack(SAGITTAL, [10.0, 0.0, 0.0], [2.0, 0.0, 0.0], 4);
        let plan = plan_of(&sagittal).unwrap();
        assert_eq!(plan.normal, [-1.0, 0.0, 0.0]);
        assert_eq!(plan.order, vec![3, 2, 1, 0]);
    }

    #[test]
    fn oblique_stack_is_sorted_and_spaced_along_its_normal() {
        let (c, s) = (30f64.to_radians().cos(), 30f64.to_radians().sin());
        let orientation = [1.0, 0.0, 0.0, 0.0, c, s];
        let normal = cross([1.0, 0.0, 0.0], [0.0, c, s]);
        let step = normal.map(|n| n * 1.5);
        let mut slices = stack(orientation, [5.0, 6.0, 7.0], step, 6);
        slices.swap(0, 3);
        let plan = plan_of(&slices).unwrap();
        assert!((plan.spacing_mm[2] - 1.5).abs() < 1e-9);
        assert_eq!(plan.order, vec![3, 1, 2, 0, 4, 5]);
    }

    #[test]
    fn a_missing_slice_is_refused() {
        let mut slices = stack(AXIAL, [0.0; 3], [0.0, 0.0, 2.0], 6);
        slices.remove(3);
        assert!(matches!(
            plan_of(&slices),
            Err(VolumeError::MissingSlices { after: 2, .. })
        ));
    }

    #[test]
    fn non_uniform_spacing_is_refused_but_tiny_jitter_is_not() {
        let mut slices = stack(AXIAL, [0.0; 3], [0.0, 0.0, 2.0], 5);
        slices[4].image_position_mm = Some([0.0, 0.0, 8.9]);
        assert!(matches!(
            plan_of(&slices),
            Err(VolumeError::NonUniformSpacing { after: 3, .. })
        ));
        slices[4].image_position_mm = Some([0.0, 0.0, 8.005]);
        assert!(plan_of(&slices).is_ok());
    }

    #[test]
    fn mixed_orientations_are_refused() {
        let mut slices = stack(AXIAL, [0.0; 3], [0.0, 0.0, 2.0], 3);
        slices.push(slice(CORONAL, [0.0, 0.0, 6.0]));
        assert_eq!(
            plan_of(&slices),
            Err(VolumeError::MixedOrientations { orientations: 2 })
        );
    }

    #[test]
    fn two_stacks_at_the_same_positions_are_refused() {
        let mut slices = stack(AXIAL, [0.0; 3], [0.0, 0.0, 2.0], 3);
        slices.extend(stack(AXIAL, [0.0; 3], [0.0, 0.0, 2.0], 3));
        assert_eq!(
            plan_of(&slices),
            Err(VolumeError::SeveralStacks { duplicates: 3 })
        );
    }

    #[test]
    fn different_sizes_are_refused() {
        let mut slices = stack(AXIAL, [0.0; 3], [0.0, 0.0, 2.0], 3);
        slices[1].rows = 5;
        assert!(matches!(
            plan_of(&slices),
            Err(VolumeError::DifferentDimensions { rows: 5, .. })
        ));
    }

    #[test]
    fn gantry_tilt_is_refused_not_resampled() {
        // Axial slices whose positions move along y as z increases: a 15° tilted gantry.
        let tilt = 15f64.to_radians().tan() * 2.0;
        let slices = stack(AXIAL, [0.0; 3], [0.0, tilt, 2.0], 4);
        assert!(matches!(
            plan_of(&slices),
            Err(VolumeError::GantryTilt { .. })
        ));
    }

    #[test]
    fn multi_frame_without_per_frame_positions_is_refused() {
        let mut single = slice(AXIAL, [0.0; 3]);
        single.number_of_frames = 10;
        assert_eq!(
            plan_of(&[single]),
            Err(VolumeError::MultiFrameWithoutPositions { frames: 10 })
        );
    }

    #[test]
    fn a_single_slice_uses_its_thickness_as_spacing() {
        let plan = plan_of(&[slice(AXIAL, [1.0, 2.0, 3.0])]).unwrap();
        assert_eq!(plan.spacing_mm[2], 5.0);
    }

    #[test]
    fn slices_without_position_are_refused_naming_the_attribute() {
        let mut slices = stack(AXIAL, [0.0; 3], [0.0, 0.0, 2.0], 3);
        slices[2].image_position_mm = None;
        assert_eq!(
            plan_of(&slices),
            Err(VolumeError::MissingGeometry {
                index: 2,
                attribute: "Image Position (Patient)"
            })
        );
    }
}
