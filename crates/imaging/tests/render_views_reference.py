"""Reference values for the render_views tests, from pydicom and numpy.

Usage:
  render_views_reference.py fixtures OUTDIR
      Writes synthetic DICOM files that pydicom's test data lacks (palette images with
      segmented and offset palettes, planar RGB, uncompressed YBR_FULL) into OUTDIR and
      prints their names, one a line.
  render_views_reference.py colour OUTDIR FILE...
      For each file, writes OUTDIR/<index>.f32 (pixels as little-endian float32, C order,
      samples interleaved): PALETTE COLOR through pydicom's apply_color_lut, YBR through
      pydicom's RGB conversion, anything else as pydicom's pixel_array; prints one JSON
      object per file with its shape or an error.
  render_views_reference.py json FILE OURS.json [FILE OURS.json ...]
      Compares voxhub's DICOM JSON of each file with pydicom's Dataset.to_json_dict and
      prints one JSON object per file: the differences, after the documented choices where
      the two legitimately differ are normalised.
  render_views_reference.py same ORIGINAL REWRITTEN [ORIGINAL REWRITTEN ...]
      Reads each pair with pydicom and prints one JSON object per pair with the data
      elements that differ (group lengths aside) and both transfer syntaxes.
  render_views_reference.py percentiles FILE
      Prints numpy's 0.5th and 99.5th percentiles of the file's modality values.
"""

import base64
import json
import os
import sys

import numpy
import pydicom
from pydicom.data import get_palette_files
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixels import apply_color_lut, apply_modality_lut, convert_color_space
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"


def new_dataset(rows, columns):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SECONDARY_CAPTURE
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = SECONDARY_CAPTURE
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "OT"
    ds.Rows = rows
    ds.Columns = columns
    return ds


def palette_image(out_dir, name, palette_file):
    """A 16x16 gradient of 8-bit indices shown through a well-known palette."""
    palette = pydicom.dcmread(get_palette_files(palette_file)[0])
    ds = new_dataset(16, 16)
    ds.PhotometricInterpretation = "PALETTE COLOR"
    ds.SamplesPerPixel = 1
    ds.BitsAllocated = 8
    ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    for element in palette:
        if element.tag.group == 0x0028 and 0x1101 <= element.tag.element <= 0x1223:
            ds.add(element)
    ds.PixelData = numpy.arange(256, dtype="u1").reshape(16, 16).tobytes()
    ds.save_as(os.path.join(out_dir, name), enforce_file_format=True)


def offset_palette_image(out_dir, name):
    """16-bit indices with a palette whose first entry maps index 100, so that indices
    below it and beyond its end are clamped to the first and last entries."""
    ds = new_dataset(8, 40)
    ds.PhotometricInterpretation = "PALETTE COLOR"
    ds.SamplesPerPixel = 1
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    entries = 200
    for tag_base, scale in ((0x1101, 300), (0x1102, 200), (0x1103, 100)):
        ds.add_new((0x0028, tag_base), "US", [entries, 100, 16])
        table = (numpy.arange(entries, dtype="u4") * scale % 65536).astype("<u2")
        ds.add_new((0x0028, tag_base + 0x100), "OW", table.tobytes())
    indices = numpy.linspace(0, 400, 8 * 40).astype("<u2").reshape(8, 40)
    ds.PixelData = indices.tobytes()
    ds.save_as(os.path.join(out_dir, name), enforce_file_format=True)


def bundled(name):
    """A test file shipped inside pydicom (never one it would download)."""
    return os.path.join(os.path.dirname(pydicom.data.__file__), "test_files", name)


def rgb_source():
    ds = pydicom.dcmread(bundled("examples_rgb_color.dcm"))
    return ds, ds.pixel_array


def planar_rgb_image(out_dir, name, bits):
    source, rgb = rgb_source()
    ds = new_dataset(source.Rows, source.Columns)
    ds.PhotometricInterpretation = "RGB"
    ds.SamplesPerPixel = 3
    ds.PlanarConfiguration = 1
    ds.BitsAllocated = bits
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    values = rgb.astype("<u2") * 257 if bits == 16 else rgb.astype("u1")
    ds.PixelData = numpy.ascontiguousarray(values.transpose(2, 0, 1)).tobytes()
    ds.save_as(os.path.join(out_dir, name), enforce_file_format=True)


def ybr_full_image(out_dir, name):
    source, rgb = rgb_source()
    ds = new_dataset(source.Rows, source.Columns)
    ds.PhotometricInterpretation = "YBR_FULL"
    ds.SamplesPerPixel = 3
    ds.PlanarConfiguration = 0
    ds.BitsAllocated = 8
    ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    # A gradient through every colour as well, so that rounding at all levels is compared.
    gradient = numpy.stack(
        numpy.meshgrid(numpy.arange(256), numpy.arange(256), indexing="ij"), axis=-1
    )
    extra = numpy.concatenate(
        [gradient, ((gradient[..., :1] * 7 + gradient[..., 1:] * 3) % 256)], axis=-1
    ).astype("u1")
    ds.Rows = 256 + source.Rows
    ds.Columns = 256
    ybr = convert_color_space(rgb[:, :256], "RGB", "YBR_FULL")
    padded = numpy.zeros((source.Rows, 256, 3), dtype="u1")
    padded[:, : ybr.shape[1]] = ybr
    ds.PixelData = numpy.concatenate([extra, padded]).tobytes()
    ds.save_as(os.path.join(out_dir, name), enforce_file_format=True)


def fixtures(out_dir):
    names = []
    for name, palette in (
        ("palette_spring_segmented.dcm", "spring.dcm"),
        ("palette_summer_segmented.dcm", "summer.dcm"),
        ("palette_fall_segmented.dcm", "fall.dcm"),
        ("palette_winter_segmented.dcm", "winter.dcm"),
        ("palette_hotiron.dcm", "hotiron.dcm"),
        ("palette_pet.dcm", "pet.dcm"),
    ):
        palette_image(out_dir, name, palette)
        names.append(name)
    offset_palette_image(out_dir, "palette_offset_16bit.dcm")
    names.append("palette_offset_16bit.dcm")
    planar_rgb_image(out_dir, "rgb_planar_8bit.dcm", 8)
    planar_rgb_image(out_dir, "rgb_planar_16bit.dcm", 16)
    names += ["rgb_planar_8bit.dcm", "rgb_planar_16bit.dcm"]
    ybr_full_image(out_dir, "ybr_full_uncompressed.dcm")
    names.append("ybr_full_uncompressed.dcm")
    for name in names:
        print(name)


def colour(out_dir, files):
    for index, path in enumerate(files):
        report = {"file": path}
        try:
            ds = pydicom.dcmread(path, force=True)
            values = ds.pixel_array
            if ds.PhotometricInterpretation == "PALETTE COLOR":
                values = apply_color_lut(values, ds)
            elif str(ds.PhotometricInterpretation).startswith("MONOCHROME"):
                values = apply_modality_lut(values, ds)
            values = numpy.ascontiguousarray(values, dtype="<f4")
            values.tofile(os.path.join(out_dir, f"{index}.f32"))
            report["shape"] = list(values.shape)
        except Exception as error:  # the test decides what a failure means
            report["error"] = f"{type(error).__name__}: {error}"
        print(json.dumps(report), flush=True)


def normalise(value, vr):
    """pydicom's JSON where the DICOM JSON Model leaves a choice, written voxhub's way."""
    if vr == "PN":
        names = []
        for name in value:
            if isinstance(name, dict):
                name = {k: v for k, v in name.items() if v}
                names.append(name or None)
            else:
                names.append(name or None)
        return names
    return [None if v == "" else v for v in value]


def normalise_dataset(data):
    out = {}
    for key, element in data.items():
        if key.endswith("0000"):
            continue  # group lengths describe an encoding, voxhub leaves them out
        element = dict(element)
        vr = element["vr"]
        if vr == "SQ":
            items = [normalise_dataset(item) for item in element.get("Value", [])]
            element.pop("Value", None)
            if items:
                element["Value"] = items
        elif "Value" in element:
            values = normalise(element["Value"], vr)
            if all(v is None for v in values):
                del element["Value"]
            else:
                element["Value"] = values
        out[key] = element
    return out


def differences(ours, theirs, path="", counts=None):
    """What differs between two normalised JSON data sets; `counts` tallies the attributes
    compared and those skipped because voxhub says UN where pydicom knows a VR."""
    counts = counts if counts is not None else {"compared": 0, "unknown_vr": 0}
    found = []
    for key in sorted(set(ours) | set(theirs)):
        where = f"{path}/{key}"
        if key not in ours:
            found.append(f"{where}: missing from voxhub ({theirs[key]})")
            continue
        if key not in theirs:
            found.append(f"{where}: only in voxhub ({ours[key]})")
            continue
        a, b = ours[key], theirs[key]
        counts["compared"] += 1
        if a["vr"] != b["vr"]:
            if a["vr"] == "UN":
                # pydicom replaces UN by the VR its dictionaries know; voxhub keeps what
                # the file says.
                counts["unknown_vr"] += 1
                continue
            found.append(f"{where}: vr {a['vr']} vs {b['vr']}")
            continue
        if a["vr"] == "SQ":
            for index, (x, y) in enumerate(zip(a.get("Value", []), b.get("Value", []))):
                found += differences(x, y, f"{where}[{index}]", counts)
            if len(a.get("Value", [])) != len(b.get("Value", [])):
                found.append(f"{where}: item counts differ")
            continue
        if "InlineBinary" in a or "InlineBinary" in b:
            x = base64.b64decode(a.get("InlineBinary", ""))
            y = base64.b64decode(b.get("InlineBinary", ""))
            # pydicom keeps odd-length values as read; dicom-rs pads them to even length.
            if x != y and not (len(x) == len(y) + 1 and x[:-1] == y):
                found.append(f"{where}: binary values differ ({len(x)} vs {len(y)} bytes)")
            continue
        if a.get("Value") != b.get("Value"):
            found.append(f"{where}: {a.get('Value')} vs {b.get('Value')}")
    return found


def compare_json(pairs):
    for path, ours_path in pairs:
        ds = pydicom.dcmread(path, force=True)
        theirs = normalise_dataset(ds.to_json_dict())
        with open(ours_path, encoding="utf-8") as f:
            ours = json.load(f)
        counts = {"compared": 0, "unknown_vr": 0}
        found = differences(ours, theirs, counts=counts)
        print(json.dumps({"file": path, "differences": found, **counts}), flush=True)


def dataset_differences(a, b, where=""):
    """Elements of `a` and `b` that differ, group lengths aside; a binary value may have
    gained one padding byte (odd lengths are invalid and written padded)."""
    differing = []
    for element in a:
        if element.tag.element == 0:
            continue
        name = f"{where}{element.tag}"
        other = b.get(element.tag)
        if other is None:
            differing.append(f"{name} missing")
        elif element.VR == "SQ":
            if len(element.value) != len(other.value):
                differing.append(f"{name} has {len(other.value)} items, not {len(element.value)}")
            for index, (x, y) in enumerate(zip(element.value, other.value)):
                differing += dataset_differences(x, y, f"{name}[{index}]")
        elif element.tag == 0x7FE00010 or element.VR in ("OB", "OW", "UN"):
            x, y = bytes(element.value or b""), bytes(other.value or b"")
            if x != y and not (len(y) == len(x) + 1 and y[:-1] == x):
                differing.append(f"{name} binary {len(x)} vs {len(y)} bytes")
        elif element.value != other.value:
            differing.append(f"{name} {element.value!r} vs {other.value!r}")
    for element in b:
        if element.tag.element != 0 and element.tag not in a:
            differing.append(f"{where}{element.tag} added")
    return differing


def same(pairs):
    for original, rewritten in pairs:
        a = pydicom.dcmread(original, force=True)
        b = pydicom.dcmread(rewritten)
        syntax = lambda d: str(getattr(d, "file_meta", {}).get("TransferSyntaxUID", ""))
        print(
            json.dumps(
                {
                    "file": original,
                    "differences": dataset_differences(a, b),
                    "transfer_syntaxes": [syntax(a), syntax(b)],
                }
            ),
            flush=True,
        )


def percentiles(path):
    ds = pydicom.dcmread(path, force=True)
    values = apply_modality_lut(ds.pixel_array, ds).astype("f4").ravel()
    low, high = numpy.percentile(values.astype("f8"), [0.5, 99.5])
    print(json.dumps({"low": float(low), "high": float(high)}))


def pairs(args):
    return list(zip(args[0::2], args[1::2]))


def main():
    command, args = sys.argv[1], sys.argv[2:]
    if command == "fixtures":
        fixtures(args[0])
    elif command == "colour":
        colour(args[0], args[1:])
    elif command == "json":
        compare_json(pairs(args))
    elif command == "same":
        same(pairs(args))
    elif command == "percentiles":
        percentiles(args[0])
    else:
        sys.exit(f"unknown command {command}")


if __name__ == "__main__":
    main()
