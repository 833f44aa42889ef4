"""Writes synthetic DICOM series for voxhub's tests, with pydicom and numpy.

usage: imaging_fixtures.py OUT_DIR [--slices N] [--size N] [--orientation axial|coronal|oblique]
                           [--missing K] [--patient NAME] [--patient-id ID] [--seed S]

Each slice is CT, int16 with RescaleSlope 1 / RescaleIntercept -1024, so that the
modality value of voxel (slice k, row r, column c) is  k * 10 + r - c  (HU), which tests
check exactly. Files are named in reverse order of position, and instance numbers are
shuffled, so that only the geometry tells the order.
"""

import argparse
import datetime
import os
import random

import numpy as np
import pydicom
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"


def value(k, r, c):
    return k * 10 + r - c


def main():
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--slices", type=int, default=12)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--orientation", default="axial")
    p.add_argument("--missing", type=int, default=-1)
    p.add_argument("--patient", default="DOE^JANE")
    p.add_argument("--patient-id", default="MRN-0042")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--series-description", default="Axial 2.5mm")
    a = p.parse_args()
    rng = random.Random(a.seed)
    os.makedirs(a.out, exist_ok=True)
    study, series = generate_uid(), generate_uid()
    if a.orientation == "axial":
        row, col = (1.0, 0.0, 0.0), (0.0, 1.0, 0.0)
    elif a.orientation == "coronal":
        row, col = (1.0, 0.0, 0.0), (0.0, 0.0, -1.0)
    else:
        s = 0.5 ** 0.5
        row, col = (s, s, 0.0), (0.0, 0.0, -1.0)
    normal = np.cross(row, col)
    numbers = list(range(1, a.slices + 1))
    rng.shuffle(numbers)
    for k in range(a.slices):
        if k == a.missing:
            continue
        pos = np.array([-100.0, -120.0, 50.0]) + normal * (k * 2.5)
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CT_IMAGE_STORAGE
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID = CT_IMAGE_STORAGE
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.PatientName, ds.PatientID = a.patient, a.patient_id
        ds.PatientBirthDate = "19700101"
        ds.PatientSex = "F"
        ds.InstitutionName = "St Example Hospital"
        ds.StudyDate = ds.SeriesDate = "20240315"
        ds.StudyTime = "101500"
        ds.StudyDescription = "CT chest synthetic"
        ds.SeriesDescription = a.series_description
        ds.AccessionNumber = "ACC123"
        ds.Modality = "CT"
        ds.BodyPartExamined = "CHEST"
        ds.SeriesNumber = 3
        ds.InstanceNumber = numbers[k]
        ds.ImagePositionPatient = [f"{v:.4f}" for v in pos]
        ds.ImageOrientationPatient = [f"{v:.6f}" for v in row + col]
        ds.PixelSpacing = ["0.8", "0.7"]
        ds.SliceThickness = "2.5"
        ds.Rows = ds.Columns = a.size
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
        ds.PixelRepresentation = 1
        ds.RescaleSlope, ds.RescaleIntercept = "1", "-1024"
        ds.WindowCenter, ds.WindowWidth = "40", "400"
        r, c = np.mgrid[0 : a.size, 0 : a.size]
        hu = value(k, r, c)
        ds.PixelData = (hu + 1024).astype("<i2").tobytes()
        ds.save_as(os.path.join(a.out, f"slice{a.slices - k:04d}.dcm"), enforce_file_format=True)


if __name__ == "__main__":
    main()
