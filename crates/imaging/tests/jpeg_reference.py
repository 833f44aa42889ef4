"""Writes JPEG test images with Pillow (libjpeg) and Pillow's decoding of them.

Usage: jpeg_reference.py FOLDER.  Writes NAME.jpg and NAME.jpg.raw (the decoded samples,
8-bit, interleaved) into FOLDER for each image, and prints a JSON list of
{name, width, height, samples}.
"""

import json
import os
import sys

from PIL import Image


def gradient(mode, width, height):
    image = Image.new(mode, (width, height))
    pixels = image.load()
    for y in range(height):
        for x in range(width):
            r = (x * 255) // (width - 1)
            g = (y * 255) // (height - 1)
            b = ((x * y) * 7) % 256
            pixels[x, y] = (r + g) // 2 if mode == "L" else (r, g, b)
    return image


def main():
    folder = sys.argv[1]
    cases = [
        ("grey.jpg", "L", {"quality": 90}),
        ("colour_420.jpg", "RGB", {"quality": 90, "subsampling": 2}),
        ("colour_444.jpg", "RGB", {"quality": 95, "subsampling": 0}),
        ("progressive.jpg", "RGB", {"quality": 85, "progressive": True}),
        ("grey_progressive.jpg", "L", {"quality": 80, "progressive": True}),
    ]
    report = []
    for name, mode, options in cases:
        path = os.path.join(folder, name)
        # Odd sizes exercise partial blocks at the edges.
        gradient(mode, 67, 45).save(path, "JPEG", **options)
        decoded = Image.open(path)
        decoded = decoded.convert(mode)
        with open(path + ".raw", "wb") as handle:
            handle.write(decoded.tobytes())
        report.append(
            {
                "name": name,
                "width": decoded.width,
                "height": decoded.height,
                "samples": 1 if mode == "L" else 3,
            }
        )
    print(json.dumps(report))


if __name__ == "__main__":
    main()
