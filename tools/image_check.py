"""Can the pipeline read an image file, as-is or re-encoded?

MindSpore's ``vision.Decode`` (OpenCV underneath) turns JPEG, PNG and BMP of every colour mode
into 8-bit RGB exactly as Pillow does (greyscale, CMYK, RGBA/LA, palette, 1-bit; 16-bit PNG
keeps its top 8 bits), so those files are fed as they are. It refuses other formats (GIF, WebP,
...), and on a bad file it stops the run mid-epoch, dumping the file into the working folder, or
crashes the process (a JPEG with a corrupt header). So every file is checked with Pillow first;
other formats are served re-encoded as RGB JPEG.
"""
import io
import os
import warnings

import numpy as np
from PIL import Image, UnidentifiedImageError

MAX_PIXELS = 300_000_000
Image.MAX_IMAGE_PIXELS = MAX_PIXELS  # Pillow's own limit (89 MP) would refuse large photos
TOO_LARGE = f"larger than {MAX_PIXELS // 10**6} megapixels"
DECODED_AS_IS = ("JPEG", "MPO", "PNG", "BMP")


def check_image(path):
    """``(ok, reason, needs_conversion)`` of one file; ``reason`` says why it is unreadable."""
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
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        return False, f"corrupt or truncated image ({err})", False
    return True, "", image_format not in DECODED_AS_IS


def _check(path):
    """The file's format; raises what Pillow raises on a bad file."""
    with Image.open(path) as image:
        if image.width * image.height > MAX_PIXELS:
            raise Image.DecompressionBombError(TOO_LARGE)
        if image.format == "PNG":
            image.verify()  # every chunk's checksum: catches corruption without decompressing
        else:
            image.draft(image.mode, (1, 1))  # JPEG at 1/8 scale: still reads every byte, several times faster
            image.load()
        return image.format


def to_rgb_jpeg_bytes(path, quality=95):
    """The image as an 8-bit RGB JPEG (1-D ``uint8`` array), for formats MindSpore cannot decode."""
    with Image.open(path) as image:
        if image.mode == "I" or image.mode.startswith("I;16"):  # 16-bit grey: top 8 bits, as OpenCV
            image = Image.fromarray((np.asarray(image) >> 8).clip(0, 255).astype(np.uint8))
        rgb = image.convert("RGB")
    buffer = io.BytesIO()
    rgb.save(buffer, "JPEG", quality=quality, subsampling=0)  # 4:4:4: colours kept at full resolution
    return np.frombuffer(buffer.getvalue(), dtype=np.uint8)
