"""Reference decoder for the imaging tests: pydicom's pixels after the Modality LUT.

Usage: pydicom_reference.py OUTDIR FILE...  For each file, writes OUTDIR/<index>.f32 (the
modality values as little-endian float32, C order, samples interleaved) and prints one JSON
object per file on stdout: its shape and photometric interpretation, or why pydicom could
not decode it. The Rust test compares every value, not a summary.
"""

import json
import os
import sys

import numpy
import pydicom
from pydicom.pixels import apply_modality_lut


def main():
    out_dir = sys.argv[1]
    for index, path in enumerate(sys.argv[2:]):
        report = {"file": path}
        try:
            dataset = pydicom.dcmread(path, force=True)
            values = apply_modality_lut(dataset.pixel_array, dataset)
            values = numpy.ascontiguousarray(values, dtype="<f4")
            values.tofile(os.path.join(out_dir, f"{index}.f32"))
            report["shape"] = list(values.shape)
            report["photometric"] = str(dataset.get("PhotometricInterpretation", ""))
        except Exception as error:  # the test decides what a failure means
            report["error"] = f"{type(error).__name__}: {error}"
        print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
