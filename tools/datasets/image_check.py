"""Can the pipeline read an image file, as-is or re-encoded?

MindSpore's ``vision.Decode`` (OpenCV underneath) turns JPEG, PNG and BMP of every colour mode
into 8-bit RGB exactly as Pillow does (greyscale, CMYK, RGBA/LA, palette, 1-bit; 16-bit PNG
keeps its top 8 bits), so those files are fed as they are. It refuses other formats (GIF, WebP,
...), and on a bad file it stops the run mid-epoch, dumping the file into the working folder, or
crashes the process (a JPEG with a corrupt header). So every file is checked with Pillow first;
other formats are served re-encoded as RGB JPEG. A PNG whose chunks are intact but whose image data
is short passes Pillow (it fills the rest) and fails in MindSpore ("Not enough image data"), so the
PNG check also inflates the image data and compares its length with what the header promises.
"""
import io
import math
import os
import struct
import warnings
import zlib

import numpy as np
from PIL import Image, UnidentifiedImageError

MAX_PIXELS = 300_000_000
Image.MAX_IMAGE_PIXELS = MAX_PIXELS  # Pillow's own limit (89 MP) would refuse large photos
TOO_LARGE = f"larger than {MAX_PIXELS // 10**6} megapixels"
DECODED_AS_IS = ("JPEG", "MPO", "PNG", "BMP")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")  # of files found by name


def check_image(path):
    """``(ok, reason, needs_conversion)`` of one file; ``reason`` says why it is unreadable."""
    if not os.path.exists(path):
        if os.path.islink(path):
            return False, f"broken symbolic link (target {os.readlink(path)} not found)", False
        return False, "file not found", False
    if os.path.getsize(path) == 0:
        return False, "empty file (0 bytes)", False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow's warnings (EXIF, large images) are not errors
            image_format = _check(path)
    except Image.DecompressionBombError:
        return False, TOO_LARGE, False
    except UnidentifiedImageError:
        return False, "not an image", False
    except (OSError, SyntaxError, ValueError, EOFError, zlib.error, struct.error) as err:
        return False, f"corrupt or truncated image ({err})", False
    return True, "", image_format not in DECODED_AS_IS


def _check(path):
    """The file's format; raises what Pillow raises on a bad file."""
    with Image.open(path) as image:
        if image.width * image.height > MAX_PIXELS:
            raise Image.DecompressionBombError(TOO_LARGE)
        if image.format == "PNG":
            image.verify()  # every chunk's checksum
            _check_png_data(path)
        else:
            image.draft(image.mode, (1, 1))  # JPEG at 1/8 scale: still reads every byte, several times faster
            image.load()
        return image.format


_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # colour type -> samples per pixel
_ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]


def _check_png_data(path):
    """Raise ``ValueError`` when the inflated image data of a PNG is shorter than its header needs."""
    with open(path, "rb") as f:
        data = f.read()
    pos, inflate, size, header = 8, zlib.decompressobj(), 0, None
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body[:13])
        elif kind == b"IDAT":
            size += len(inflate.decompress(body))
        elif kind == b"IEND":
            break
        pos += 12 + length
    width, height, depth, colour, _, _, interlace = header
    needed = _png_raw_size(width, height, depth * _PNG_CHANNELS.get(colour, 1), interlace)
    if size < needed:
        raise ValueError(f"image data short: {size} of {needed} bytes")


def _png_raw_size(width, height, bits_per_pixel, interlace):
    """Bytes of filtered scanlines (one filter byte per row) of a PNG image, Adam7 passes included."""
    passes = _ADAM7 if interlace else [(0, 0, 1, 1)]
    total = 0
    for x0, y0, dx, dy in passes:
        w, h = math.ceil(max(width - x0, 0) / dx), math.ceil(max(height - y0, 0) / dy)
        if w and h:
            total += h * (1 + math.ceil(w * bits_per_pixel / 8))
    return total


def to_rgb_jpeg_bytes(path, quality=95):
    """The image as an 8-bit RGB JPEG (1-D ``uint8`` array), for formats MindSpore cannot decode."""
    with Image.open(path) as image:
        if image.mode == "I" or image.mode.startswith("I;16"):  # 16-bit grey: top 8 bits, as OpenCV
            image = Image.fromarray((np.asarray(image) >> 8).clip(0, 255).astype(np.uint8))
        rgb = image.convert("RGB")
    buffer = io.BytesIO()
    rgb.save(buffer, "JPEG", quality=quality, subsampling=0)  # 4:4:4: colours kept at full resolution
    return np.frombuffer(buffer.getvalue(), dtype=np.uint8)
