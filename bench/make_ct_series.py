#!/usr/bin/env python3
"""Synthetic but realistic CT series for `voxhub bench imaging` (pydicom + numpy).

    make_ct_series.py OUT [--slices 300] [--patients 1] [--studies 1] [--rows 512] [--seed 0]

Writes PATIENTS x STUDIES axial CT series (one series per study) of SLICES slices each,
as OUT/pPP/stSS/IMG_NNNN.dcm: CT Image Storage, explicit VR little endian, uncompressed,
ROWS x ROWS signed 16-bit pixels (BitsStored 16, PixelRepresentation 1) with
RescaleSlope 1 / RescaleIntercept -1024 (stored value = HU + 1024), 0.7 mm pixels,
1.0 mm slices 1.0 mm apart, head first supine, ImagePositionPatient /
ImageOrientationPatient / PixelSpacing / SliceThickness / SliceLocation set as a scanner
does. Each file carries what de-identification must remove or replace: patient name, ID,
birth date, sex, age, accession number, institution, physicians, operator, station,
device serial number, dates and times, and one private block.

The image is a chest phantom whose outline changes along z: outside the reconstruction
circle -3024 HU (padding, as scanners store it), air -1000, a body of subcutaneous fat
-100 around soft tissue 40 (noise sd 12), two lungs -850 (upper two thirds), a vertebra
(cortical bone 700 around cancellous bone 250), a sternum and ribs 700, and a liver 60
in the lower third; so lung, mediastinum and bone windows each show something.

Everything, UIDs included, is a function of the arguments: the same arguments give the
same bytes. Does nothing when OUT already holds what these arguments produce (recorded
in OUT/.complete.json).
"""
import argparse
import datetime
import json
import os
import sys

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, PYDICOM_IMPLEMENTATION_UID, generate_uid

FIRST_NAMES = ["ANNA", "BRUNO", "CARLA", "DAVID", "EMMA", "FELIX", "GRETA", "HUGO", "IDA", "JONAS", "KLARA", "LUKAS"]
LAST_NAMES = ["MUELLER", "SCHMIDT", "ROSSI", "MARTIN", "NOVAK", "JANSSEN", "GARCIA", "NIELSEN", "KOWALSKI", "DUBOIS"]
PHYSICIANS = ["HOUSE^GREGORY^^DR", "GREY^MEREDITH^^DR", "KILDARE^JAMES^^DR", "QUINN^MICHAELA^^DR"]


def uid(*parts):
    """A UID derived from the arguments only (deterministic)."""
    return generate_uid(entropy_srcs=["voxhub-bench-ct"] + [str(p) for p in parts])


def ellipse(xx, yy, cx, cy, a, b):
    return ((xx - cx) / a) ** 2 + ((yy - cy) / b) ** 2 <= 1.0


def phantom(rows, z, nz, rng, xx, yy):
    """One slice in HU (float32), z = 0 at the top of the series."""
    t = z / max(nz - 1, 1)
    r = rows / 2.0
    hu = np.full((rows, rows), -1000.0, dtype=np.float32)
    body_a = r * (0.74 + 0.06 * np.sin(np.pi * t))
    body_b = r * (0.52 + 0.05 * np.sin(np.pi * t))
    body = ellipse(xx, yy, 0.0, 0.04 * r, body_a, body_b)
    hu[body] = -100.0
    inner = ellipse(xx, yy, 0.0, 0.04 * r, body_a - 0.06 * r, body_b - 0.06 * r)
    hu[inner] = 40.0
    if t < 0.67:
        lung_a = r * (0.20 + 0.08 * np.sin(np.pi * t / 0.67))
        lung_b = r * (0.30 + 0.06 * np.sin(np.pi * t / 0.67))
        for cx in (-0.33 * r, 0.33 * r):
            hu[ellipse(xx, yy, cx, -0.02 * r, lung_a, lung_b)] = -850.0
    else:
        hu[ellipse(xx, yy, -0.22 * r, -0.05 * r, 0.30 * r, 0.24 * r)] = 60.0
    hu[ellipse(xx, yy, 0.0, -0.40 * r, 0.05 * r, 0.03 * r)] = 700.0
    for k in range(5):
        angle = np.pi * (0.15 + 0.175 * k)
        for side in (-1.0, 1.0):
            cx = side * np.cos(angle) * (body_a - 0.10 * r)
            cy = 0.04 * r + np.sin(angle) * (body_b - 0.10 * r) * (-1.0 if k < 2 else 1.0)
            hu[ellipse(xx, yy, cx, cy, 0.025 * r, 0.02 * r)] = 700.0
    hu[ellipse(xx, yy, 0.0, 0.36 * r, 0.09 * r, 0.08 * r)] = 700.0
    hu[ellipse(xx, yy, 0.0, 0.36 * r, 0.065 * r, 0.055 * r)] = 250.0
    noise = rng.standard_normal((rows, rows), dtype=np.float32) * 12.0
    hu += noise * body
    hu[(xx ** 2 + yy ** 2) > r * r] = -3024.0
    return np.clip(np.rint(hu) + 1024.0, -32768, 32767).astype("<i2")


def make_dataset(p, s, z, a, frame, study, series, pname, pid, birth, sex, when):
    sop = uid(a.seed, a.rows, a.slices, p, s, z, "sop")
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = sop
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = sop
    date = when.strftime("%Y%m%d")
    ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = date
    ds.StudyTime = when.strftime("%H%M%S")
    ds.SeriesTime = ds.AcquisitionTime = ds.ContentTime = (when + datetime.timedelta(minutes=3)).strftime("%H%M%S.%f")
    ds.AccessionNumber = "A%08d" % (a.seed * 100000 + p * 100 + s)
    ds.Modality = "CT"
    ds.Manufacturer = "SYNTHETIC"
    ds.ManufacturerModelName = "PHANTOM 512"
    ds.DeviceSerialNumber = "SN%06d" % (4242 + a.seed)
    ds.SoftwareVersions = "make_ct_series.py"
    ds.StationName = "CT-ROOM-%d" % (1 + p % 3)
    ds.InstitutionName = "Saint Synthetic Hospital"
    ds.InstitutionAddress = "1 Phantom Street, Voxel City"
    ds.ReferringPhysicianName = PHYSICIANS[p % len(PHYSICIANS)]
    ds.PerformingPhysicianName = PHYSICIANS[(p + 1) % len(PHYSICIANS)]
    ds.OperatorsName = "TECH^PAT"
    ds.StudyDescription = "CT CHEST WITHOUT CONTRAST"
    ds.SeriesDescription = "AXIAL 1.0 mm B30f"
    ds.ProtocolName = "CHEST ROUTINE"
    ds.PatientName = pname
    ds.PatientID = pid
    ds.OtherPatientIDs = "INS-%06d" % (p * 7 + 11)
    ds.PatientBirthDate = birth.strftime("%Y%m%d")
    ds.PatientSex = sex
    ds.PatientAge = "%03dY" % ((when.date() - birth).days // 365)
    ds.PatientWeight = "%d" % (60 + p % 30)
    ds.BodyPartExamined = "CHEST"
    ds.ScanOptions = "HELICAL MODE"
    ds.SliceThickness = "1.0"
    ds.KVP = "120"
    ds.DataCollectionDiameter = "500.0"
    ds.ReconstructionDiameter = "%.1f" % (a.rows * 0.7)
    ds.ConvolutionKernel = "B30f"
    ds.PatientPosition = "HFS"
    ds.StudyInstanceUID = study
    ds.SeriesInstanceUID = series
    ds.StudyID = "%d" % (1000 + p * 10 + s)
    ds.SeriesNumber = 2
    ds.AcquisitionNumber = 1
    ds.InstanceNumber = z + 1
    half = a.rows * 0.7 / 2.0
    ds.ImagePositionPatient = [-half + 0.35, -half + 0.35, round(-100.0 - z * 1.0, 2)]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.FrameOfReferenceUID = frame
    ds.PositionReferenceIndicator = ""
    ds.SliceLocation = round(-100.0 - z * 1.0, 2)
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = ds.Columns = a.rows
    ds.PixelSpacing = [0.7, 0.7]
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    ds.WindowCenter = ["40", "-600"]
    ds.WindowWidth = ["400", "1500"]
    ds.WindowCenterWidthExplanation = ["SOFT TISSUE", "LUNG"]
    ds.RescaleIntercept = "-1024"
    ds.RescaleSlope = "1"
    ds.RescaleType = "HU"
    block = ds.private_block(0x0029, "SYNTHETIC PRIVATE", create=True)
    block.add_new(0x01, "LO", "%s born %s" % (pname, ds.PatientBirthDate))
    block.add_new(0x02, "DS", "%d" % z)
    return ds


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out")
    ap.add_argument("--slices", type=int, default=300, help="slices per series (default 300)")
    ap.add_argument("--patients", type=int, default=1, help="patients (default 1)")
    ap.add_argument("--studies", type=int, default=1, help="studies per patient, one series each (default 1)")
    ap.add_argument("--rows", type=int, default=512, help="rows = columns (default 512)")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    if not (1 <= a.slices <= 5000 and 1 <= a.patients <= 1000 and 1 <= a.studies <= 100 and 16 <= a.rows <= 2048):
        sys.exit("make_ct_series.py: --slices 1..5000, --patients 1..1000, --studies 1..100, --rows 16..2048")
    wanted = {"slices": a.slices, "patients": a.patients, "studies": a.studies, "rows": a.rows, "seed": a.seed,
              "pydicom": pydicom.__version__, "version": 1}
    marker = os.path.join(a.out, ".complete.json")
    try:
        with open(marker) as f:
            if json.load(f) == wanted:
                print("exists: %s (%d files)" % (a.out, a.patients * a.studies * a.slices))
                return
    except (OSError, ValueError):
        pass
    os.makedirs(a.out, exist_ok=True)
    if os.path.exists(marker):
        os.remove(marker)
    r = a.rows
    yy, xx = np.mgrid[0:r, 0:r].astype(np.float32) - (r - 1) / 2.0
    total = 0
    size = 0
    for p in range(a.patients):
        prng = np.random.default_rng([a.seed, p])
        pname = "%s^%s" % (LAST_NAMES[int(prng.integers(len(LAST_NAMES)))], FIRST_NAMES[int(prng.integers(len(FIRST_NAMES)))])
        pid = "MRN%07d" % (a.seed * 10000 + p + 1)
        birth = datetime.date(1940, 1, 1) + datetime.timedelta(days=int(prng.integers(0, 60 * 365)))
        sex = "MF"[int(prng.integers(2))]
        for s in range(a.studies):
            when = datetime.datetime(2023, 1, 2, 8, 0, 0) + datetime.timedelta(days=int(prng.integers(0, 700)), minutes=int(prng.integers(0, 600)))
            study = uid(a.seed, a.rows, a.slices, p, s, "study")
            series = uid(a.seed, a.rows, a.slices, p, s, "series")
            frame = uid(a.seed, a.rows, a.slices, p, s, "frame")
            folder = os.path.join(a.out, "p%02d" % p, "st%02d" % s)
            os.makedirs(folder, exist_ok=True)
            rng = np.random.default_rng([a.seed, p, s, 1])
            for z in range(a.slices):
                ds = make_dataset(p, s, z, a, frame, study, series, pname, pid, birth, sex, when)
                ds.PixelData = phantom(r, z, a.slices, rng, xx, yy).tobytes()
                path = os.path.join(folder, "IMG_%04d.dcm" % (z + 1))
                ds.save_as(path, enforce_file_format=True)
                size += os.path.getsize(path)
                total += 1
    with open(marker, "w") as f:
        json.dump(wanted, f)
    print("wrote %d files (%.1f MB) to %s" % (total, size / 1e6, a.out))


if __name__ == "__main__":
    main()
