"""Load the character photo and make it a clean 8-bit RGB image the model can take.

Whatever people upload -- phone JPEGs with an EXIF rotation, PNG cut-outs with transparency,
CMYK print files, 16-bit scans, greyscale, float TIFFs -- comes out of :func:`load_image` as an
upright ``PIL.Image`` in mode ``"RGB"``, or as a :class:`SteadyDancerInputError` that says what
to do.

Transparency is composited over **white**. The photo goes straight into the VAE and stays the
first frame of the video, so the background it gets is the background of the whole animation.
White is what cut-out photos are made for (product/studio shots on white), and white or plain
light studio backgrounds are common in human-animation training data (e.g. fashion datasets); a
flat mid-grey is closer to the VAE's zero but looks like no real photo. The official code simply
drops the alpha channel (``PIL.Image.convert("RGB")``), which shows whatever colour happens to lie
under the transparent pixels -- often black, sometimes garbage.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .constants import DEFAULT_MAX_AREA, SIZE_MULTIPLE, size_for_area
from .errors import SteadyDancerInputError

#: Background under transparent pixels (see module docstring).
ALPHA_BACKGROUND = (255, 255, 255)

ImageSource = str | os.PathLike | Image.Image | np.ndarray


def load_image(
    src: ImageSource,
    *,
    min_side: int = 64,
    max_aspect: float = 4.0,
    background: tuple[int, int, int] = ALPHA_BACKGROUND,
) -> Image.Image:
    """An upright 8-bit RGB copy of ``src`` (a path, a PIL image or an array).

    Handles EXIF orientation, transparency (composited over ``background``), palette, CMYK,
    16-bit and 32-bit integer, float, 1-bit and greyscale images. Arrays may be (H, W),
    (H, W, 1|3|4) of uint8, uint16 (full 16-bit range), bool, or float (0..1).

    Raises :class:`SteadyDancerInputError` if the file is missing or not an image, if its
    shorter side is below ``min_side`` pixels, or if it is more than ``max_aspect`` times as
    long as it is wide (or the reverse).
    """
    name = ""
    if isinstance(src, np.ndarray):
        img = _from_array(src)
    elif isinstance(src, Image.Image):
        img = src
        img = _first_frame(img)
        img = ImageOps.exif_transpose(img)
    else:
        path = Path(src)
        name = path.name
        img = _open(path)

    img = _to_rgb(img, background)
    _validate_size(img, name, min_side, max_aspect)
    return img


def fit_to_area(img: Image.Image, max_area: int = DEFAULT_MAX_AREA,
                multiple: int = SIZE_MULTIPLE) -> Image.Image:
    """Resize ``img`` to :func:`steadydancer.constants.size_for_area` of its aspect ratio.

    Like the official preprocessing this stretches to the exact size (the two sides are floored
    to a multiple of ``multiple`` independently, so the aspect ratio may change by < 1 multiple).
    The official code uses OpenCV's bicubic (``cv2.INTER_CUBIC``); so does this function whenever
    the image shrinks by at most 2x or grows. Shrinking more than 2x (a 12-megapixel phone photo to
    656x896) uses ``cv2.INTER_AREA`` instead: bicubic without a low-pass filter aliases there
    (moire on fabric, jagged edges), and the photo becomes the video's first frame.
    """
    import cv2

    width, height = size_for_area(img.width, img.height, max_area, multiple)
    if (width, height) == img.size:
        return img.copy()
    shrink = min(width / img.width, height / img.height)
    interpolation = cv2.INTER_AREA if shrink < 0.5 else cv2.INTER_CUBIC
    array = cv2.resize(np.asarray(img.convert("RGB")), (width, height), interpolation=interpolation)
    return Image.fromarray(array, "RGB")


# ----------------------------------------------------------------------------------------------


def _unreadable(name: str, why: str) -> SteadyDancerInputError:
    return SteadyDancerInputError(
        f"Could not read image {name}: {why}. Upload the photo as a JPEG or PNG file."
    )


def _open(path: Path) -> Image.Image:
    if not path.is_file():
        raise SteadyDancerInputError(f"Image file not found: {path}. Upload the photo again.")
    if path.stat().st_size == 0:
        raise _unreadable(path.name, "the file is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as opened:
                img = _first_frame(opened)
                if _is_16bit_color_png(img):
                    img = _read_16bit_color_png(path, img)
                img.load()  # decode now: truncated files fail here, not later
                img = ImageOps.exif_transpose(img)
                if img is opened:
                    img = img.copy()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise SteadyDancerInputError(
            f"Image {path.name} is too large to open safely ({exc}). Resize it to at most "
            "4000 px on the long side and upload it again."
        ) from exc
    except UnidentifiedImageError as exc:
        raise _unreadable(path.name, "it is not an image file, or the format is not supported") from exc
    except (OSError, SyntaxError, ValueError) as exc:  # truncated / corrupt data
        raise _unreadable(path.name, f"the file is damaged or incomplete ({exc})") from exc
    return img


def _is_16bit_color_png(img: Image.Image) -> bool:
    """48/64-bit PNGs: Pillow would keep only the high byte of each sample."""
    tile = getattr(img, "tile", None) or []
    rawmode = tile[0].args if tile and hasattr(tile[0], "args") else (tile[0][3] if tile else None)
    return img.format == "PNG" and img.mode in ("RGB", "RGBA") and isinstance(rawmode, str) \
        and rawmode.endswith(";16B")


def _read_16bit_color_png(path: Path, img: Image.Image) -> Image.Image:
    """Decode a 48/64-bit PNG at full depth and scale it to 8 bits (x / 257, rounded)."""
    import cv2

    data = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if data is None or data.dtype != np.uint16 or data.ndim != 3:
        return img  # let Pillow decode it (high byte only)
    data = data[..., [2, 1, 0, 3]] if data.shape[2] == 4 else data[..., ::-1]
    out = Image.fromarray(np.ascontiguousarray(_scale_16bit(data)), "RGBA" if data.shape[2] == 4 else "RGB")
    out.info.update(img.info)
    exif = img.getexif()
    if exif:
        out.info["exif"] = exif.tobytes()
    return out


def _first_frame(img: Image.Image) -> Image.Image:
    """Animated GIF/PNG/WebP and multi-page TIFF: the first frame."""
    if getattr(img, "n_frames", 1) > 1:
        img.seek(0)
    return img


def _from_array(array: np.ndarray) -> Image.Image:
    a = np.asarray(array)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)):
        raise SteadyDancerInputError(
            f"An image array must be (H, W), (H, W, 3) or (H, W, 4); got shape {a.shape}."
        )
    if a.dtype == np.bool_:
        a = a.astype(np.uint8) * 255
    elif a.dtype == np.uint16:
        a = _scale_16bit(a)
    elif np.issubdtype(a.dtype, np.floating):
        a = _scale_float(a)
    elif a.dtype != np.uint8:
        if np.issubdtype(a.dtype, np.integer) and a.size and a.min() >= 0 and a.max() <= 255:
            a = a.astype(np.uint8)
        elif np.issubdtype(a.dtype, np.integer) and a.size and a.min() >= 0 and a.max() <= 65535:
            a = _scale_16bit(a)
        else:
            raise SteadyDancerInputError(f"Unsupported image array type {a.dtype}.")
    mode = {2: "L", 3: "RGB", 4: "RGBA"}[a.shape[2] if a.ndim == 3 else 2]
    return Image.fromarray(np.ascontiguousarray(a), mode)


def _scale_16bit(a: np.ndarray) -> np.ndarray:
    """0..65535 -> 0..255 by scaling (x / 257, rounded), so white stays white."""
    return np.round(a.astype(np.float64) / 257.0).clip(0, 255).astype(np.uint8)


def _scale_float(a: np.ndarray) -> np.ndarray:
    """Floats: 0..1 when the values fit, else taken as 0..255; NaN -> 0."""
    a = np.nan_to_num(a.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    if a.size and a.max() <= 1.0:
        a = a * 255.0
    return np.round(a).clip(0, 255).astype(np.uint8)


def _to_rgb(img: Image.Image, background: tuple[int, int, int]) -> Image.Image:
    mode = img.mode
    if mode == "RGB" and "transparency" not in img.info:
        return _icc_to_srgb(img)
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        a = np.asarray(img)
        if mode != "I" or (a.size and a.max() > 255):
            a = _scale_16bit(np.clip(a, 0, 65535))
        else:
            a = np.clip(a, 0, 255).astype(np.uint8)
        return Image.fromarray(a, "L").convert("RGB")
    if mode == "F":
        return Image.fromarray(_scale_float(np.asarray(img)), "L").convert("RGB")
    if mode == "CMYK":
        return _icc_to_srgb(img) if img.info.get("icc_profile") else img.convert("RGB")
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info
    if has_alpha:
        rgba = img.convert("RGBA")
        if np.asarray(rgba)[..., 3].min() == 255:  # alpha channel present but fully opaque
            return _icc_to_srgb(rgba.convert("RGB"), img.info.get("icc_profile"))
        base = Image.new("RGBA", rgba.size, tuple(background) + (255,))
        base.alpha_composite(rgba)
        return _icc_to_srgb(base.convert("RGB"), img.info.get("icc_profile"))
    # "1", "L", "P" (opaque), "YCbCr", "LAB", "HSV": Pillow converts these exactly.
    return img.convert("RGB")


def _icc_to_srgb(img: Image.Image, icc: bytes | None = None) -> Image.Image:
    """Convert pixels tagged with an embedded ICC profile (Display P3 phone photos, CMYK print
    files) to sRGB, which is what the model was trained on. Untagged images are taken as sRGB."""
    icc = icc if icc is not None else img.info.get("icc_profile")
    if not icc:
        return img if img.mode == "RGB" else img.convert("RGB")
    try:
        from PIL import ImageCms

        src_profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        if img.mode == "RGB" and "srgb" in (ImageCms.getProfileDescription(src_profile) or "").lower():
            return img
        out = ImageCms.profileToProfile(img, src_profile, ImageCms.createProfile("sRGB"),
                                        outputMode="RGB")
        return out if out is not None else img.convert("RGB")
    except Exception:  # broken or unsupported profile (or no littlecms): keep the raw values
        return img if img.mode == "RGB" else img.convert("RGB")


def _validate_size(img: Image.Image, name: str, min_side: int, max_aspect: float) -> None:
    w, h = img.size
    subject = f"Image {name}" if name else "The image"
    if min(w, h) < min_side:
        raise SteadyDancerInputError(
            f"{subject} is too small ({w}x{h}); each side must be at least {min_side} px. "
            "Use a larger photo (ideally 512 px or more on the short side)."
        )
    aspect = max(w / h, h / w)
    if aspect > max_aspect:
        raise SteadyDancerInputError(
            f"{subject} is {w}x{h}, a {aspect:.1f}:1 strip; at most {max_aspect:g}:1 works. "
            "Crop it around the person (portrait 9:16 or 3:4 works best)."
        )
