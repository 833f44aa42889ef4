"""Compares two NIfTI files with nibabel for the imaging tests.

Usage: nifti_compare.py OURS REFERENCE.  Prints one JSON object: both shapes, the largest
difference between the sforms and between the qforms (mm), and the largest difference
between the scaled voxel values.
"""

import json
import sys

import nibabel
import numpy


def main():
    ours, reference = (nibabel.load(path) for path in sys.argv[1:3])
    report = {
        "shape_ours": list(ours.shape),
        "shape_reference": list(reference.shape),
        "sform_difference": float(
            numpy.abs(ours.get_sform() - reference.get_sform()).max()
        ),
        "qform_difference": float(
            numpy.abs(ours.get_qform() - reference.get_qform()).max()
        ),
        "sform_ours": ours.get_sform().tolist(),
        "sform_reference": reference.get_sform().tolist(),
    }
    if ours.shape == reference.shape:
        report["voxel_difference"] = float(
            numpy.abs(ours.get_fdata() - reference.get_fdata()).max()
        )
    print(json.dumps(report))


if __name__ == "__main__":
    main()
