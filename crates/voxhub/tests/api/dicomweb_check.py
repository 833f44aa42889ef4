"""Checks of voxhub's DICOMweb from the side of the reference tools (pydicom, Pillow,
dicomweb-client), run by tests/api/dicomweb.rs with the imaging venv's Python.

  check      compare what voxhub sent (a retrieved file, its metadata, a frame, a PNG)
             with pydicom's reading of the original file
  roundtrip  store a file with dicomweb-client's DICOMwebClient, search for it and
             retrieve it, as another tool would

Prints one line of JSON on success; fails with the reason otherwise.
"""

import argparse
import io
import json
import sys

import pydicom


def fail(message):
    print(message, file=sys.stderr)
    sys.exit(1)


def expect(condition, message):
    if not condition:
        fail(message)


def frame_bytes(dataset, number):
    """The samples of frame `number` (1-based) as stored values, little endian."""
    array = dataset.pixel_array
    frames = int(dataset.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        array = array[number - 1]
    return array.astype(array.dtype.newbyteorder("<")).tobytes()


def check(args):
    original = pydicom.dcmread(args.original)
    result = {}
    if args.retrieved:
        retrieved = pydicom.dcmread(args.retrieved)
        expect(
            str(retrieved.get("PatientName", "")) != str(original.get("PatientName", "")),
            "the retrieved file still carries the original Patient's Name",
        )
        expect(
            retrieved.SOPInstanceUID != original.SOPInstanceUID,
            "the retrieved file still carries the original SOP Instance UID",
        )
        if "PixelData" in original:
            expect(
                (retrieved.pixel_array == original.pixel_array).all(),
                "the retrieved file's pixels differ from the original's",
            )
        result["sop_instance_uid"] = retrieved.SOPInstanceUID
    if args.metadata:
        with open(args.metadata, encoding="utf-8") as f:
            documents = json.load(f)
        expect(isinstance(documents, list) and documents, "metadata is not a non-empty list")
        uris = []

        def bulk(tag, vr, uri):
            uris.append(uri)
            return b""

        parsed = pydicom.Dataset.from_json(documents[0], bulk_data_uri_handler=bulk)
        expect(parsed.Modality == original.Modality, "metadata has another Modality")
        expect(int(parsed.Rows) == int(original.Rows), "metadata has other Rows")
        expect("PixelData" in parsed, "metadata has no Pixel Data reference")
        expect(
            str(parsed.get("PatientName", "")) != str(original.get("PatientName", "")),
            "metadata still carries the original Patient's Name",
        )
        if args.retrieved:
            expect(
                parsed.SOPInstanceUID == retrieved.SOPInstanceUID,
                "metadata and file disagree on the SOP Instance UID",
            )
        result["bulk_data_uris"] = uris
    if args.frame:
        number, path = int(args.frame[0]), args.frame[1]
        with open(path, "rb") as f:
            sent = f.read()
        expected = frame_bytes(original, number)
        expect(
            len(sent) == len(expected),
            f"frame {number} has {len(sent)} bytes, pydicom reads {len(expected)}",
        )
        expect(sent == expected, f"frame {number} differs from pydicom's pixel_array")
        result["frame_bytes"] = len(sent)
    if args.png:
        from PIL import Image

        with Image.open(args.png[0]) as image:
            image.load()
            expect(
                image.size == (int(args.png[1]), int(args.png[2])),
                f"the PNG is {image.size}, expected {args.png[1]}x{args.png[2]}",
            )
            result["png_mode"] = image.mode
    print(json.dumps(result))


def roundtrip(args):
    from dicomweb_client.api import DICOMwebClient

    headers = {"Authorization": f"Bearer {args.token}"}
    scoped = DICOMwebClient(url=f"{args.url}/dicom-web/datasets/{args.dataset}", headers=headers)
    everywhere = DICOMwebClient(url=f"{args.url}/dicom-web", headers=headers)
    original = pydicom.dcmread(args.file)

    answer = scoped.store_instances(datasets=[original])
    stored = answer.ReferencedSOPSequence
    expect(len(stored) == 1, f"one instance stored, the answer lists {len(stored)}")
    sop_uid = stored[0].ReferencedSOPInstanceUID
    expect(sop_uid != original.SOPInstanceUID, "the stored instance kept its original UID")
    expect("FailedSOPSequence" not in answer, "the store answer lists failures")

    studies = everywhere.search_for_studies(search_filters={"ModalitiesInStudy": original.Modality})
    study_uids = [pydicom.Dataset.from_json(s).StudyInstanceUID for s in studies]
    instances = scoped.search_for_instances(search_filters={"SOPInstanceUID": sop_uid})
    expect(len(instances) == 1, f"searching by the stored UID finds {len(instances)} instances")
    found = pydicom.Dataset.from_json(instances[0])
    expect(found.StudyInstanceUID in study_uids, "the study is not among the studies found")
    series = scoped.search_for_series(found.StudyInstanceUID)
    expect(len(series) == 1, f"the study has {len(series)} series")

    retrieved = scoped.retrieve_instance(found.StudyInstanceUID, found.SeriesInstanceUID, sop_uid)
    expect(retrieved.SOPInstanceUID == sop_uid, "the retrieved instance has another UID")
    expect(
        str(retrieved.PatientName) != str(original.PatientName),
        "the retrieved instance carries the original Patient's Name",
    )
    expect(
        (retrieved.pixel_array == original.pixel_array).all(),
        "the retrieved pixels differ from the stored ones",
    )
    metadata = scoped.retrieve_instance_metadata(found.StudyInstanceUID, found.SeriesInstanceUID, sop_uid)
    expect(
        pydicom.Dataset.from_json(metadata).SOPInstanceUID == sop_uid,
        "metadata names another instance",
    )
    frames = list(
        scoped.retrieve_instance_frames(found.StudyInstanceUID, found.SeriesInstanceUID, sop_uid, [1])
    )
    expect(frames and frames[0] == frame_bytes(original, 1), "frame 1 differs from pydicom's pixels")
    rendered = scoped.retrieve_instance_rendered(
        found.StudyInstanceUID, found.SeriesInstanceUID, sop_uid, media_types=("image/png",)
    )
    from PIL import Image

    with Image.open(io.BytesIO(rendered)) as image:
        expect(
            image.size == (int(original.Columns), int(original.Rows)),
            f"the rendered picture is {image.size}",
        )
    whole = list(scoped.retrieve_study(found.StudyInstanceUID))
    expect(any(d.SOPInstanceUID == sop_uid for d in whole), "the study retrieval lacks the instance")
    print(json.dumps({"sop_instance_uid": sop_uid, "studies_found": len(studies)}))


def main():
    parser = argparse.ArgumentParser()
    commands = parser.add_subparsers(dest="command", required=True)
    c = commands.add_parser("check")
    c.add_argument("--original", required=True)
    c.add_argument("--retrieved")
    c.add_argument("--metadata")
    c.add_argument("--frame", nargs=2, metavar=("NUMBER", "FILE"))
    c.add_argument("--png", nargs=3, metavar=("FILE", "WIDTH", "HEIGHT"))
    r = commands.add_parser("roundtrip")
    r.add_argument("--url", required=True)
    r.add_argument("--token", required=True)
    r.add_argument("--dataset", required=True)
    r.add_argument("--file", required=True)
    args = parser.parse_args()
    {"check": check, "roundtrip": roundtrip}[args.command](args)


if __name__ == "__main__":
    main()
