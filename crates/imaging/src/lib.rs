//! The medical imaging library of voxhub: parse and decode DICOM, de-identify it, assemble
//! series into volumes with exact geometry, render windowed slices, and convert to NIfTI.
//! It knows nothing of HTTP or SQL; everything else calls it.
//!
//! | module | owns |
//! | --- | --- |
//! | [`dicom`] | reading a DICOM file: the attributes voxhub indexes, geometry, decoded pixels |
//! | [`volume`] | assembling slices into a volume along the slice normal, or saying why not |
//! | [`nifti_export`] | writing a volume as NIfTI-1 with the affine dcm2niix writes |
//! | [`render`] | windowing (the DICOM VOI LUT function) and 8-bit PNG slices |
//! | [`deid`] | de-identification by the DICOM PS3.15 Basic Application Confidentiality Profile |

pub mod deid;
pub mod dicom;
pub mod nifti_export;
pub mod render;
pub mod volume;
