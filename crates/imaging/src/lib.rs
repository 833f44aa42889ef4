//! The medical imaging library of voxhub: parse and decode DICOM, de-identify it, assemble
//! series into volumes with exact geometry, render windowed slices, and convert to NIfTI.
//! It knows nothing of HTTP or SQL; everything else calls it.
//!
//! | module | owns |
//! | --- | --- |
//! | [`dicom`] | reading a DICOM file: the attributes voxhub indexes, geometry, decoded pixels |
//! | [`volume`] | assembling slices into a volume along the slice normal, or saying why not |
//! | [`nifti_export`] | writing a volume as NIfTI-1 with the affine dcm2niix writes |
//! | [`nifti_read`] | reading NIfTI-1 and NIfTI-2 (`.nii`, `.nii.gz`) into a volume, inverse to the export |
//! | [`raster`] | decoding 2D PNG and JPEG images (X-ray, endoscopy, pathology tiles) to sample values |
//! | [`sniff`] | telling DICOM, NIfTI, PNG, JPEG and zip apart by their first bytes |
//! | [`archive`] | expanding a zip upload safely: bounded sizes, unsafe paths and bombs skipped with a reason |
//! | [`render`] | windowing (the DICOM VOI LUT function), automatic windows, 8-bit PNG slices with square pixels, RGB, label overlays |
//! | [`reformat`] | axial, coronal and sagittal slices of a volume in the radiological orientation, edge labels, patient positions |
//! | [`thumbnail`] | area-averaged PNG thumbnails |
//! | [`dicom_json`] | the DICOM JSON Model (PS3.18 F.2) of a data set, for DICOMweb |
//! | [`ingest`] | preparing an uploaded DICOM file for storage: parse, de-identify, write back |
//! | [`deid`] | de-identification by the DICOM PS3.15 Basic Application Confidentiality Profile |

pub mod archive;
pub mod deid;
pub mod dicom;
pub mod dicom_json;
pub mod ingest;
pub mod nifti_export;
pub mod nifti_read;
pub mod raster;
pub mod reformat;
pub mod render;
pub mod sniff;
pub mod thumbnail;
pub mod volume;
