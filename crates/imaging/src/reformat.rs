//! Reformatting a volume into the viewer's axial, coronal and sagittal planes, in voxel
//! index space (no oblique resampling), oriented by the radiological display convention,
//! with the patient direction of each image edge and the patient position of each pixel.
//!
//! Each plane is made of the three voxel axes of the volume (columns, rows, slices): the one
//! whose direction is closest to each patient axis is chosen, and walked forwards or
//! backwards so that the picture reads as radiologists expect:
//!
//! | plane | viewed from | image left → right | image top → bottom | index grows towards |
//! | --- | --- | --- | --- | --- |
//! | axial | the feet | patient right → left | anterior → posterior | superior |
//! | coronal | the front | patient right → left | superior → inferior | posterior |
//! | sagittal | the patient's left | anterior → posterior | superior → inferior | patient left |
//!
//! For an oblique series the picture is the nearest such plane of voxels; the edge labels
//! then name every patient direction an edge points to by more than about 15°.

use std::fmt;

use crate::volume::{StackGeometry, Volume};

/// The three planes the viewer shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Plane {
    Axial,
    Coronal,
    Sagittal,
}

impl Plane {
    pub const ALL: [Plane; 3] = [Plane::Axial, Plane::Coronal, Plane::Sagittal];

    /// The lower-case name used in URLs and the viewer.
    pub fn name(self) -> &'static str {
        match self {
            Plane::Axial => "axial",
            Plane::Coronal => "coronal",
            Plane::Sagittal => "sagittal",
        }
    }

    /// Parses [`Plane::name`].
    pub fn from_name(name: &str) -> Option<Plane> {
        Plane::ALL.into_iter().find(|plane| plane.name() == name)
    }

    /// The screen axes as (patient axis, sign): across (left to right), down (top to
    /// bottom) and through (the slice index). Patient axes are LPS: 0 = x towards the
    /// patient's left, 1 = y towards posterior, 2 = z towards superior.
    fn screen_axes(self) -> [(usize, f64); 3] {
        match self {
            Plane::Axial => [(0, 1.0), (1, 1.0), (2, 1.0)],
            Plane::Coronal => [(0, 1.0), (2, -1.0), (1, 1.0)],
            Plane::Sagittal => [(1, 1.0), (2, -1.0), (0, 1.0)],
        }
    }
}

impl fmt::Display for Plane {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The patient directions the four edges of a slice point to, as letters: L, R (left,
/// right), A, P (anterior, posterior), S, I (superior, inferior); several letters, the
/// strongest first, for an oblique edge ("LA").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeLabels {
    pub left: String,
    pub right: String,
    pub top: String,
    pub bottom: String,
}

/// One reformatted slice: modality values row by row, top row first.
#[derive(Debug, Clone, PartialEq)]
pub struct Slice {
    pub columns: u32,
    pub rows: u32,
    /// `values[row * columns + column]`.
    pub values: Vec<f32>,
    /// Distance between neighbouring columns, then between neighbouring rows (mm).
    pub pixel_spacing_mm: [f64; 2],
    pub labels: EdgeLabels,
}

/// Why a slice could not be taken.
#[derive(Debug, thiserror::Error, PartialEq)]
#[non_exhaustive]
pub enum ReformatError {
    #[error("{plane} slice {index} does not exist: the volume has {len} {plane} slices")]
    IndexOutOfRange {
        plane: Plane,
        index: usize,
        len: usize,
    },
    #[error("the volume holds {voxels} voxels where its geometry says {expected}")]
    InconsistentVolume { voxels: usize, expected: usize },
}

/// How one screen axis walks the volume: along which voxel axis (0 = columns, 1 = rows,
/// 2 = slices) and whether forwards (screen coordinate 0 is voxel index 0).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Walk {
    axis: usize,
    forward: bool,
}

/// The walks of the screen axes of one plane: across, down and through.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Layout {
    across: Walk,
    down: Walk,
    through: Walk,
}

fn directions(geometry: &StackGeometry) -> [[f64; 3]; 3] {
    [
        geometry.row_direction,
        geometry.column_direction,
        geometry.normal,
    ]
}

fn lengths(geometry: &StackGeometry) -> [usize; 3] {
    [
        geometry.columns as usize,
        geometry.rows as usize,
        geometry.order.len(),
    ]
}

/// Which voxel axis stands for each patient axis: the assignment of the three voxel axes to
/// the three patient axes whose directions agree best (largest sum of |cosines|). Choosing
/// a whole permutation, rather than the best axis for each patient axis alone, keeps the
/// three planes distinct for directions near 45°.
fn voxel_axis_of_patient_axis(geometry: &StackGeometry) -> [usize; 3] {
    const PERMUTATIONS: [[usize; 3]; 6] = [
        [0, 1, 2],
        [0, 2, 1],
        [1, 0, 2],
        [1, 2, 0],
        [2, 0, 1],
        [2, 1, 0],
    ];
    let directions = directions(geometry);
    let score = |permutation: &[usize; 3]| -> f64 {
        (0..3)
            .map(|patient| directions[permutation[patient]][patient].abs())
            .sum()
    };
    let mut best = PERMUTATIONS[0];
    for permutation in &PERMUTATIONS[1..] {
        // Strictly better only: ties keep the earlier (identity-like) assignment.
        if score(permutation) > score(&best) + 1e-12 {
            best = *permutation;
        }
    }
    best
}

fn layout(geometry: &StackGeometry, plane: Plane) -> Layout {
    let axis_of = voxel_axis_of_patient_axis(geometry);
    let directions = directions(geometry);
    let walk = |(patient, sign): (usize, f64)| {
        let axis = axis_of[patient];
        Walk {
            axis,
            forward: directions[axis][patient] * sign >= 0.0,
        }
    };
    let [across, down, through] = plane.screen_axes();
    Layout {
        across: walk(across),
        down: walk(down),
        through: walk(through),
    }
}

/// Voxel index along `walk` of screen coordinate `position`.
fn voxel_index(walk: Walk, position: usize, lengths: &[usize; 3]) -> usize {
    if walk.forward {
        position
    } else {
        lengths[walk.axis] - 1 - position
    }
}

fn check_volume(volume: &Volume) -> Result<(), ReformatError> {
    let expected = lengths(&volume.geometry).iter().product::<usize>();
    if volume.voxels.len() != expected {
        return Err(ReformatError::InconsistentVolume {
            voxels: volume.voxels.len(),
            expected,
        });
    }
    Ok(())
}

/// How many slices the volume has in `plane`.
pub fn plane_len(volume: &Volume, plane: Plane) -> usize {
    let geometry = &volume.geometry;
    lengths(geometry)[layout(geometry, plane).through.axis]
}

/// The columns and rows of every slice of `plane`.
pub fn plane_size(volume: &Volume, plane: Plane) -> (u32, u32) {
    let geometry = &volume.geometry;
    let layout = layout(geometry, plane);
    let lengths = lengths(geometry);
    (
        lengths[layout.across.axis] as u32,
        lengths[layout.down.axis] as u32,
    )
}

/// The letters of a patient direction: components of at least this size are named.
const LABEL_COMPONENT: f64 = 0.25;

fn direction_letters(direction: [f64; 3]) -> String {
    const LETTERS: [(char, char); 3] = [('L', 'R'), ('P', 'A'), ('S', 'I')];
    let mut axes = [0, 1, 2];
    axes.sort_by(|&a, &b| direction[b].abs().total_cmp(&direction[a].abs()));
    let mut letters = String::new();
    for (rank, &axis) in axes.iter().enumerate() {
        let component = direction[axis];
        if rank > 0 && component.abs() < LABEL_COMPONENT {
            break;
        }
        let (positive, negative) = LETTERS[axis];
        letters.push(if component >= 0.0 { positive } else { negative });
    }
    letters
}

fn edge_labels(geometry: &StackGeometry, layout: &Layout) -> EdgeLabels {
    let directions = directions(geometry);
    let screen_direction = |walk: Walk| {
        let sign = if walk.forward { 1.0 } else { -1.0 };
        directions[walk.axis].map(|c| c * sign)
    };
    let right = screen_direction(layout.across);
    let bottom = screen_direction(layout.down);
    EdgeLabels {
        left: direction_letters(right.map(|c| -c)),
        right: direction_letters(right),
        top: direction_letters(bottom.map(|c| -c)),
        bottom: direction_letters(bottom),
    }
}

/// The edge labels of every slice of `plane`.
pub fn labels(volume: &Volume, plane: Plane) -> EdgeLabels {
    edge_labels(&volume.geometry, &layout(&volume.geometry, plane))
}

/// Slice `index` of `plane` (0 ≤ index < [`plane_len`]), oriented as the module describes.
pub fn slice(volume: &Volume, plane: Plane, index: usize) -> Result<Slice, ReformatError> {
    check_volume(volume)?;
    let geometry = &volume.geometry;
    let layout = layout(geometry, plane);
    let lengths = lengths(geometry);
    let len = lengths[layout.through.axis];
    if index >= len {
        return Err(ReformatError::IndexOutOfRange { plane, index, len });
    }
    let strides = [1, lengths[0], lengths[0] * lengths[1]];
    let (width, height) = (lengths[layout.across.axis], lengths[layout.down.axis]);
    // The offset of screen pixel (0, 0), then signed steps per screen column and row.
    let start = voxel_index(layout.through, index, &lengths) * strides[layout.through.axis]
        + voxel_index(layout.across, 0, &lengths) * strides[layout.across.axis]
        + voxel_index(layout.down, 0, &lengths) * strides[layout.down.axis];
    let signed = |walk: Walk| {
        let stride = strides[walk.axis] as isize;
        if walk.forward { stride } else { -stride }
    };
    let (step_across, step_down) = (signed(layout.across), signed(layout.down));
    let voxels = &volume.voxels;
    let mut values = Vec::with_capacity(width * height);
    for row in 0..height {
        let row_start = start.wrapping_add_signed(step_down * row as isize);
        match step_across {
            1 => values.extend_from_slice(&voxels[row_start..row_start + width]),
            -1 => values.extend(voxels[row_start + 1 - width..=row_start].iter().rev()),
            step => values.extend(
                (0..width)
                    .map(|column| voxels[row_start.wrapping_add_signed(step * column as isize)]),
            ),
        }
    }
    Ok(Slice {
        columns: width as u32,
        rows: height as u32,
        values,
        pixel_spacing_mm: [
            geometry.spacing_mm[layout.across.axis],
            geometry.spacing_mm[layout.down.axis],
        ],
        labels: edge_labels(geometry, &layout),
    })
}

/// Which stored slice (an index into the stack, first slice first) slice `index` of `plane`
/// shows, when the plane is the stack's own so that every pixel comes from that one slice;
/// `None` when the plane cuts across the stored slices, or `index` is out of range.
pub fn stack_slice(geometry: &StackGeometry, plane: Plane, index: usize) -> Option<usize> {
    let layout = layout(geometry, plane);
    let lengths = lengths(geometry);
    (layout.through.axis == 2 && index < lengths[2])
        .then(|| voxel_index(layout.through, index, &lengths))
}

/// The slice of `plane` that shows stored slice `values` (its modality values, row by row
/// as stored) of a stack with `geometry`: the same as [`slice`] of the whole volume at the
/// index [`stack_slice`] maps to that stored slice, without the other slices in memory.
/// `plane` must be the stack's own (see [`stack_slice`]).
pub fn slice_of_stack_slice(
    geometry: &StackGeometry,
    plane: Plane,
    values: Vec<f32>,
) -> Result<Slice, ReformatError> {
    // A one-slice stack of the same directions and spacing: the walks across and down,
    // which depend on directions only, are those of the whole stack.
    let one = Volume {
        geometry: StackGeometry {
            order: vec![0],
            ..geometry.clone()
        },
        voxels: values,
    };
    debug_assert_eq!(layout(&one.geometry, plane), layout(geometry, plane));
    slice(&one, plane, 0)
}

/// The voxel shown at column `x`, row `y` of slice `index` of `plane`, the same value as
/// `slice(volume, plane, index)?.values[y * columns + x]`; `None` outside the volume.
pub fn value_at(volume: &Volume, plane: Plane, index: usize, x: usize, y: usize) -> Option<f32> {
    let geometry = &volume.geometry;
    let layout = layout(geometry, plane);
    let lengths = lengths(geometry);
    let mut voxel = [0usize; 3];
    for (walk, position) in [
        (layout.across, x),
        (layout.down, y),
        (layout.through, index),
    ] {
        if position >= lengths[walk.axis] {
            return None;
        }
        voxel[walk.axis] = voxel_index(walk, position, &lengths);
    }
    volume
        .voxels
        .get((voxel[2] * lengths[1] + voxel[1]) * lengths[0] + voxel[0])
        .copied()
}

/// The patient position (LPS, mm) of the centre of pixel (`x`, `y`) of slice `index` of
/// `plane`; fractional pixel coordinates give positions between voxel centres.
pub fn point_mm(volume: &Volume, plane: Plane, index: usize, x: f64, y: f64) -> [f64; 3] {
    let geometry = &volume.geometry;
    let layout = layout(geometry, plane);
    let lengths = lengths(geometry);
    let directions = directions(geometry);
    let mut point = geometry.origin_mm;
    for (walk, position) in [
        (layout.across, x),
        (layout.down, y),
        (layout.through, index as f64),
    ] {
        let voxel = if walk.forward {
            position
        } else {
            (lengths[walk.axis] as f64 - 1.0) - position
        };
        let step = voxel * geometry.spacing_mm[walk.axis];
        for (coordinate, direction) in point.iter_mut().zip(directions[walk.axis]) {
            *coordinate += step * direction;
        }
    }
    point
}

/// Where a patient position (LPS, mm) lies in `plane`: `[x, y, index]` in fractional pixel
/// and slice coordinates, the inverse of [`point_mm`] (so the viewer can move the other
/// planes to a point clicked in one). Values outside `0..size` lie outside the volume.
pub fn locate(volume: &Volume, plane: Plane, point: [f64; 3]) -> [f64; 3] {
    let geometry = &volume.geometry;
    let layout = layout(geometry, plane);
    let lengths = lengths(geometry);
    let directions = directions(geometry);
    let offset: [f64; 3] = std::array::from_fn(|a| point[a] - geometry.origin_mm[a]);
    [layout.across, layout.down, layout.through].map(|walk| {
        let along: f64 = (0..3).map(|a| offset[a] * directions[walk.axis][a]).sum();
        let voxel = along / geometry.spacing_mm[walk.axis];
        if walk.forward {
            voxel
        } else {
            (lengths[walk.axis] as f64 - 1.0) - voxel
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cross(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
        [
            a[1] * b[2] - a[2] * b[1],
            a[2] * b[0] - a[0] * b[2],
            a[0] * b[1] - a[1] * b[0],
        ]
    }

    /// A volume whose voxel (column i, row j, slice k) holds `i + 100 j + 10000 k`, so that
    /// every shown value says which voxel it came from.
    fn volume(
        row_direction: [f64; 3],
        column_direction: [f64; 3],
        size: [usize; 3],
        spacing_mm: [f64; 3],
    ) -> Volume {
        let [columns, rows, slices] = size;
        let voxels = (0..slices)
            .flat_map(|k| {
                (0..rows)
                    .flat_map(move |j| (0..columns).map(move |i| (i + 100 * j + 10_000 * k) as f32))
            })
            .collect();
        Volume {
            geometry: StackGeometry {
                order: (0..slices).collect(),
                rows: rows as u32,
                columns: columns as u32,
                row_direction,
                column_direction,
                normal: cross(row_direction, column_direction),
                spacing_mm,
                origin_mm: [-30.0, 12.5, 100.0],
            },
            voxels,
        }
    }

    fn voxel_of(value: f32) -> [usize; 3] {
        let value = value as usize;
        [value % 100, value / 100 % 100, value / 10_000]
    }

    fn voxel_position(volume: &Volume, voxel: [usize; 3]) -> [f64; 3] {
        let g = &volume.geometry;
        let directions = directions(g);
        std::array::from_fn(|a| {
            g.origin_mm[a]
                + (0..3)
                    .map(|axis| voxel[axis] as f64 * g.spacing_mm[axis] * directions[axis][a])
                    .sum::<f64>()
        })
    }

    const AXIAL: ([f64; 3], [f64; 3]) = ([1.0, 0.0, 0.0], [0.0, 1.0, 0.0]);
    const CORONAL: ([f64; 3], [f64; 3]) = ([1.0, 0.0, 0.0], [0.0, 0.0, -1.0]);
    const SAGITTAL: ([f64; 3], [f64; 3]) = ([0.0, 1.0, 0.0], [0.0, 0.0, -1.0]);

    fn labels_of(slice: &Slice) -> [&str; 4] {
        [
            slice.labels.left.as_str(),
            slice.labels.right.as_str(),
            slice.labels.top.as_str(),
            slice.labels.bottom.as_str(),
        ]
    }

    #[test]
    fn axial_plane_of_an_axial_series_is_the_stored_images_unchanged() {
        let volume = volume(AXIAL.0, AXIAL.1, [4, 3, 5], [0.7, 0.8, 2.5]);
        assert_eq!(plane_len(&volume, Plane::Axial), 5);
        for k in 0..5 {
            let slice = slice(&volume, Plane::Axial, k).unwrap();
            assert_eq!((slice.columns, slice.rows), (4, 3));
            assert_eq!(slice.values, volume.voxels[k * 12..(k + 1) * 12]);
            assert_eq!(slice.pixel_spacing_mm, [0.7, 0.8]);
            assert_eq!(labels_of(&slice), ["R", "L", "A", "P"]);
        }
    }

    #[test]
    fn coronal_plane_of_an_axial_series_has_superior_at_the_top_and_right_on_the_left() {
        let volume = volume(AXIAL.0, AXIAL.1, [4, 3, 5], [0.7, 0.8, 2.5]);
        assert_eq!(plane_len(&volume, Plane::Coronal), 3);
        // Coronal index 0 is the most anterior row (j = 0); the top image row is the most
        // superior slice (k = 4); the left column is patient right (i = 0).
        let slice = slice(&volume, Plane::Coronal, 0).unwrap();
        assert_eq!((slice.columns, slice.rows), (4, 5));
        assert_eq!(voxel_of(slice.values[0]), [0, 0, 4]);
        assert_eq!(voxel_of(slice.values[3]), [3, 0, 4]);
        assert_eq!(voxel_of(slice.values[4 * 4]), [0, 0, 0]);
        assert_eq!(slice.pixel_spacing_mm, [0.7, 2.5]);
        assert_eq!(labels_of(&slice), ["R", "L", "S", "I"]);
    }

    #[test]
    fn sagittal_plane_of_an_axial_series_has_anterior_on_the_left() {
        let volume = volume(AXIAL.0, AXIAL.1, [4, 3, 5], [0.7, 0.8, 2.5]);
        assert_eq!(plane_len(&volume, Plane::Sagittal), 4);
        // Sagittal index 0 is the most right column (i = 0); image left is anterior (j = 0).
        let slice = slice(&volume, Plane::Sagittal, 2).unwrap();
        assert_eq!((slice.columns, slice.rows), (3, 5));
        assert_eq!(voxel_of(slice.values[0]), [2, 0, 4]);
        assert_eq!(voxel_of(slice.values[2]), [2, 2, 4]);
        assert_eq!(voxel_of(slice.values[3 * 4 + 1]), [2, 1, 0]);
        assert_eq!(slice.pixel_spacing_mm, [0.8, 2.5]);
        assert_eq!(labels_of(&slice), ["A", "P", "S", "I"]);
    }

    #[test]
    fn coronal_series_shows_its_own_images_in_the_coronal_plane() {
        // Rows go down towards the feet; the normal (1,0,0)x(0,0,-1) = (0,1,0) goes back.
        let volume = volume(CORONAL.0, CORONAL.1, [4, 3, 5], [0.7, 0.8, 2.5]);
        for k in 0..5 {
            let slice = slice(&volume, Plane::Coronal, k).unwrap();
            assert_eq!(slice.values, volume.voxels[k * 12..(k + 1) * 12]);
            assert_eq!(labels_of(&slice), ["R", "L", "S", "I"]);
        }
        // Its axial plane: index 0 is the most inferior image row (j = 2), anterior on top.
        let axial = slice(&volume, Plane::Axial, 0).unwrap();
        assert_eq!((axial.columns, axial.rows), (4, 5));
        assert_eq!(voxel_of(axial.values[0]), [0, 2, 0]);
        assert_eq!(voxel_of(axial.values[4 * 4 + 3]), [3, 2, 4]);
        assert_eq!(axial.pixel_spacing_mm, [0.7, 2.5]);
        assert_eq!(labels_of(&axial), ["R", "L", "A", "P"]);
    }

    #[test]
    fn sagittal_series_shows_its_own_images_in_the_sagittal_plane_in_reverse_slice_order() {
        // Normal (0,1,0)x(0,0,-1) = (-1,0,0): stored slices go from the patient's left to
        // right, while sagittal indices go from right to left.
        let volume = volume(SAGITTAL.0, SAGITTAL.1, [4, 3, 5], [0.7, 0.8, 2.5]);
        assert_eq!(plane_len(&volume, Plane::Sagittal), 5);
        for index in 0..5 {
            let k = 4 - index;
            let slice = slice(&volume, Plane::Sagittal, index).unwrap();
            assert_eq!(slice.values, volume.voxels[k * 12..(k + 1) * 12]);
            assert_eq!(labels_of(&slice), ["A", "P", "S", "I"]);
        }
        let coronal = slice(&volume, Plane::Coronal, 1).unwrap();
        assert_eq!((coronal.columns, coronal.rows), (5, 3));
        // Image left is patient right: the last stored slice.
        assert_eq!(voxel_of(coronal.values[0]), [1, 0, 4]);
        assert_eq!(voxel_of(coronal.values[4]), [1, 0, 0]);
        assert_eq!(labels_of(&coronal), ["R", "L", "S", "I"]);
    }

    #[test]
    fn feet_first_prone_axial_series_is_flipped_to_the_radiological_view() {
        // Rows run towards the patient's right and columns towards anterior.
        let volume = volume([-1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [4, 3, 2], [1.0; 3]);
        let slice = slice(&volume, Plane::Axial, 0).unwrap();
        assert_eq!(labels_of(&slice), ["R", "L", "A", "P"]);
        // Top left is the most right and anterior voxel: the last column of the last row.
        assert_eq!(voxel_of(slice.values[0]), [3, 2, 0]);
        assert_eq!(voxel_of(slice.values[11]), [0, 0, 0]);
        // Normal (-1,0,0)x(0,-1,0) = (0,0,1): axial index follows the stored slices.
        assert_eq!(
            voxel_of(slice_value(&volume, Plane::Axial, 1, 0, 0)),
            [3, 2, 1]
        );
    }

    fn slice_value(volume: &Volume, plane: Plane, index: usize, x: usize, y: usize) -> f32 {
        value_at(volume, plane, index, x, y).unwrap()
    }

    #[test]
    fn a_marked_voxel_appears_where_the_patient_position_says_in_every_plane() {
        // The voxel nearest to the patient's right, anterior, superior corner must be at
        // the top left of the coronal slice 0 and of the sagittal slice 0, and the top left
        // of the last axial slice.
        for (row, column) in [AXIAL, CORONAL, SAGITTAL] {
            let mut volume = volume(row, column, [4, 3, 5], [1.0, 1.5, 2.0]);
            let corner = (0..volume.voxels.len())
                .min_by(|&a, &b| {
                    let score = |index: usize| {
                        let p = voxel_position(&volume, voxel_of(volume.voxels[index]));
                        p[0] + p[1] - p[2]
                    };
                    score(a).total_cmp(&score(b))
                })
                .unwrap();
            volume.voxels[corner] = -1.0;
            let last_axial = plane_len(&volume, Plane::Axial) - 1;
            assert_eq!(slice_value(&volume, Plane::Coronal, 0, 0, 0), -1.0);
            assert_eq!(slice_value(&volume, Plane::Sagittal, 0, 0, 0), -1.0);
            assert_eq!(slice_value(&volume, Plane::Axial, last_axial, 0, 0), -1.0);
            assert_eq!(slice(&volume, Plane::Coronal, 0).unwrap().values[0], -1.0);
        }
    }

    /// Checks the display convention for any orientation: every step right, down and
    /// through moves the patient position the way the module table says (by its dominant
    /// component), and every shown value is the voxel at `point_mm`.
    fn check_conventions(volume: &Volume) {
        for plane in Plane::ALL {
            let [across, down, through] = plane.screen_axes();
            let (columns, rows) = plane_size(volume, plane);
            for index in 0..plane_len(volume, plane) {
                let slice = slice(volume, plane, index).unwrap();
                assert_eq!((slice.columns, slice.rows), (columns, rows));
                for y in 0..rows as usize {
                    for x in 0..columns as usize {
                        let value = slice.values[y * columns as usize + x];
                        assert_eq!(value_at(volume, plane, index, x, y), Some(value));
                        let point = point_mm(volume, plane, index, x as f64, y as f64);
                        let expected = voxel_position(volume, voxel_of(value));
                        for a in 0..3 {
                            assert!((point[a] - expected[a]).abs() < 1e-9, "{plane}");
                        }
                        let back = locate(volume, plane, point);
                        assert!((back[0] - x as f64).abs() < 1e-9);
                        assert!((back[1] - y as f64).abs() < 1e-9);
                        assert!((back[2] - index as f64).abs() < 1e-9);
                    }
                }
                let origin = point_mm(volume, plane, index, 0.0, 0.0);
                let moved = |delta: [f64; 3]| {
                    let p = point_mm(volume, plane, index, delta[0], delta[1]);
                    let q = point_mm(volume, plane, index + 1, delta[0], delta[1]);
                    (p, q)
                };
                let (right, _) = moved([1.0, 0.0, 0.0]);
                let (below, _) = moved([0.0, 1.0, 0.0]);
                let (_, next) = moved([0.0, 0.0, 0.0]);
                let (axis, sign) = across;
                assert!((right[axis] - origin[axis]) * sign > 0.0, "{plane} across");
                let (axis, sign) = down;
                assert!((below[axis] - origin[axis]) * sign > 0.0, "{plane} down");
                let (axis, sign) = through;
                assert!((next[axis] - origin[axis]) * sign > 0.0, "{plane} through");
            }
            assert_eq!(
                slice(volume, plane, plane_len(volume, plane)),
                Err(ReformatError::IndexOutOfRange {
                    plane,
                    index: plane_len(volume, plane),
                    len: plane_len(volume, plane)
                })
            );
            assert_eq!(value_at(volume, plane, 0, columns as usize, 0), None);
            assert_eq!(value_at(volume, plane, 0, 0, rows as usize), None);
        }
        // The three planes use three different voxel axes as their index.
        let mut through: Vec<usize> = Plane::ALL
            .iter()
            .map(|&plane| layout(&volume.geometry, plane).through.axis)
            .collect();
        through.sort();
        assert_eq!(through, vec![0, 1, 2]);
    }

    fn rotation(axis: [f64; 3], degrees: f64) -> impl Fn([f64; 3]) -> [f64; 3] {
        let length = (axis[0] * axis[0] + axis[1] * axis[1] + axis[2] * axis[2]).sqrt();
        let u = axis.map(|c| c / length);
        let (s, c) = degrees.to_radians().sin_cos();
        move |v: [f64; 3]| {
            let dot = u[0] * v[0] + u[1] * v[1] + u[2] * v[2];
            let cross = cross(u, v);
            std::array::from_fn(|a| v[a] * c + cross[a] * s + u[a] * dot * (1.0 - c))
        }
    }

    /// Every slice of a plane that is the stack's own, made from its one stored slice, equals
    /// the slice of the whole volume; other planes have no stored slice.
    fn check_stack_slices(volume: &Volume) {
        let geometry = &volume.geometry;
        let per_slice = (geometry.rows * geometry.columns) as usize;
        let mut own_planes = 0;
        for plane in Plane::ALL {
            let len = plane_len(volume, plane);
            for index in 0..len {
                let Some(k) = stack_slice(geometry, plane, index) else {
                    continue;
                };
                let stored = volume.voxels[k * per_slice..(k + 1) * per_slice].to_vec();
                assert_eq!(
                    slice_of_stack_slice(geometry, plane, stored).unwrap(),
                    slice(volume, plane, index).unwrap(),
                    "{plane} {index}"
                );
            }
            if stack_slice(geometry, plane, 0).is_some() {
                own_planes += 1;
                assert_eq!(len, volume.slices());
                assert_eq!(stack_slice(geometry, plane, len), None);
            }
        }
        assert_eq!(own_planes, 1, "exactly one plane is the stack's own");
    }

    #[test]
    fn display_conventions_hold_for_standard_flipped_and_oblique_orientations() {
        let flips = [[1.0, 1.0], [-1.0, 1.0], [1.0, -1.0], [-1.0, -1.0]];
        let axes = [
            [0.0, 0.0, 1.0],
            [1.0, 0.0, 0.0],
            [1.0, 1.0, 0.3],
            [0.2, -1.0, 0.5],
        ];
        let mut checked = 0;
        for (row, column) in [AXIAL, CORONAL, SAGITTAL] {
            for flip in flips {
                for axis in axes {
                    for degrees in [0.0, 10.0, 30.0, -35.0] {
                        let rotate = rotation(axis, degrees);
                        let row = rotate(row.map(|c| c * flip[0]));
                        let column = rotate(column.map(|c| c * flip[1]));
                        let volume = volume(row, column, [4, 3, 5], [0.6, 0.9, 2.0]);
                        check_conventions(&volume);
                        check_stack_slices(&volume);
                        checked += 1;
                    }
                }
            }
        }
        assert_eq!(checked, 192);
    }

    #[test]
    fn oblique_edges_are_labelled_with_every_strong_direction() {
        // Axial images rotated 30° about the feet-head axis: rows run towards the left and
        // posterior, so the right edge is "LP" and the left edge "RA"; columns run towards
        // posterior and right, so the bottom edge is "PR".
        let rotate = rotation([0.0, 0.0, 1.0], 30.0);
        let rotated = volume(rotate(AXIAL.0), rotate(AXIAL.1), [4, 3, 5], [1.0; 3]);
        assert_eq!(
            labels_of(&slice_of(&rotated, Plane::Axial)),
            ["RA", "LP", "AL", "PR"]
        );
        // A 10° tilt is below the labelling threshold.
        let rotate = rotation([0.0, 0.0, 1.0], 10.0);
        let tilted = volume(rotate(AXIAL.0), rotate(AXIAL.1), [4, 3, 5], [1.0; 3]);
        assert_eq!(
            labels_of(&slice_of(&tilted, Plane::Axial)),
            ["R", "L", "A", "P"]
        );
        assert_eq!(direction_letters([0.3, -0.5, 0.81]), "SAL");
    }

    fn slice_of(volume: &Volume, plane: Plane) -> Slice {
        slice(volume, plane, 0).unwrap()
    }

    #[test]
    fn plane_names_round_trip() {
        for plane in Plane::ALL {
            assert_eq!(Plane::from_name(plane.name()), Some(plane));
        }
        assert_eq!(Plane::from_name("oblique"), None);
    }

    #[test]
    fn a_volume_whose_voxels_do_not_match_its_geometry_is_an_error_not_a_panic() {
        let mut volume = volume(AXIAL.0, AXIAL.1, [4, 3, 5], [1.0; 3]);
        volume.voxels.pop();
        assert_eq!(
            slice(&volume, Plane::Coronal, 0),
            Err(ReformatError::InconsistentVolume {
                voxels: 59,
                expected: 60
            })
        );
    }
}
