"""Reads a NIfTI file with nibabel for the imaging tests' NIfTI reader checks.

Usage: nifti_reference.py IMAGE VOXELS_OUT.  Prints one JSON object (the header's version,
shape, data type, qform/sform codes and nibabel's affine) and writes the first 3D volume's
scaled values to VOXELS_OUT as little-endian float64 in NIfTI order (i fastest).
"""

import json
import sys

import nibabel
import numpy


def main():
    path, voxels_out = sys.argv[1:3]
    with open(path, "rb") as handle:
        start = handle.read(4)
    if start[:2] == b"\x1f\x8b":
        import gzip

        with gzip.open(path, "rb") as handle:
            start = handle.read(4)
    size = int.from_bytes(start, "little")
    if size not in (348, 540):
        size = int.from_bytes(start, "big")
    # Explicit classes so that CIFTI files are read as the plain NIfTI-2 they are.
    image_class = nibabel.Nifti2Image if size == 540 else nibabel.Nifti1Image
    image = image_class.from_filename(path)
    header = image.header
    shape = list(header.get_data_shape())
    data = numpy.asanyarray(image.dataobj, dtype=numpy.float64)
    spatial = (shape + [1, 1, 1])[:3]
    first = data.reshape(spatial + [-1], order="F")[..., 0]
    first.reshape(-1, order="F").astype("<f8").tofile(voxels_out)
    print(
        json.dumps(
            {
                "version": 2 if size == 540 else 1,
                "shape": shape,
                "dtype": str(header.get_data_dtype()),
                "qform_code": int(header["qform_code"]),
                "sform_code": int(header["sform_code"]),
                "affine": image.affine[:3].tolist(),
            }
        )
    )


if __name__ == "__main__":
    main()
