"""Decode any image to RGB uint8 with Pillow, plus the crops the loader applies on the host."""

from __future__ import annotations

import io
import logging
import os

import numpy as np
from PIL import Image, ImageOps

from colorjax import color
from colorjax.errors import ImageDecodeError

ImageInput = bytes | bytearray | memoryview | str | os.PathLike | Image.Image | np.ndarray

# Random-resized-crop defaults (Inception / torchvision convention, with a larger
# minimum area so crops keep enough context for colour).
DEFAULT_SCALE: tuple[float, float] = (0.35, 1.0)
DEFAULT_RATIO: tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0)
_RESAMPLE = Image.Resampling.BILINEAR
_ORIENTATION = 0x0112  # EXIF tag id
# EXIF orientation -> the transpose that undoes it (the table of ImageOps.exif_transpose).
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_WARNED_NO_SIMPLEJPEG = False
logger = logging.getLogger(__name__)


def _describe(data: object) -> str:
    """Name an input for error messages without dumping its bytes."""
    if isinstance(data, (str, os.PathLike)):
        return os.fspath(data)
    if isinstance(data, (bytes, bytearray, memoryview)):
        return f"<{len(data)} bytes>"
    return f"<{type(data).__name__}>"


def _scale_to_uint8(arr: np.ndarray) -> np.ndarray:
    """Map integer or float samples to uint8 by scaling their value range (never clipping)."""
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * 255
    if np.issubdtype(arr.dtype, np.floating):
        finite = np.nan_to_num(arr.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
        hi = float(finite.max(initial=0.0))
        lo = float(finite.min(initial=0.0))
        # Floats in [0, 1] are the usual convention; [0, 255] floats come from 8-bit code.
        if lo >= 0.0 and hi <= 1.0:
            return np.round(finite * 255.0).astype(np.uint8)
        if lo >= 0.0 and hi <= 255.0:
            return np.round(finite).astype(np.uint8)
        return np.round((finite - lo) * (255.0 / max(hi - lo, 1e-12))).astype(np.uint8)
    if np.issubdtype(arr.dtype, np.integer):
        lo, hi = int(arr.min(initial=0)), int(arr.max(initial=0))
        if lo >= 0 and hi <= 255 and arr.dtype.itemsize > 2:
            # 32-bit 'I' images holding 8-bit data (e.g. converted from L) keep their values.
            return arr.astype(np.uint8)
        if lo >= 0 and hi <= 65535:
            # 16-bit samples: 65535 / 257 = 255 exactly, so the full range maps onto 8 bits.
            return np.round(arr.astype(np.float32) / 257.0).astype(np.uint8)
        span = max(hi - lo, 1)
        return np.round((arr.astype(np.float64) - lo) * (255.0 / span)).astype(np.uint8)
    raise ImageDecodeError(f"unsupported array dtype {arr.dtype}; pass uint8, uint16 or float")


def _array_to_rgb(arr: np.ndarray, name: str) -> np.ndarray:
    """Turn an (H,W), (H,W,1), (H,W,3) or (H,W,4) array into contiguous RGB uint8."""
    arr = np.asarray(arr)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim == 2:
        arr = np.repeat(_scale_to_uint8(arr)[..., None], 3, axis=-1)
    elif arr.ndim == 3 and arr.shape[-1] in (3, 4):
        rgb = _scale_to_uint8(arr)
        if rgb.shape[-1] == 4:
            # Composite over white: pixels under full transparency carry arbitrary colour.
            alpha = rgb[..., 3:4].astype(np.float32) / 255.0
            rgb = np.round(rgb[..., :3] * alpha + 255.0 * (1.0 - alpha)).astype(np.uint8)
        arr = rgb
    else:
        raise ImageDecodeError(
            f"{name}: array of shape {arr.shape} is not an image; "
            "pass (H, W), (H, W, 1), (H, W, 3) or (H, W, 4)"
        )
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ImageDecodeError(f"{name}: image has zero size {arr.shape}")
    return np.ascontiguousarray(arr)


def _pil_to_rgb(img: Image.Image) -> Image.Image:
    """Convert a loaded Pillow image of any mode to an RGB image."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in ("L", "1", "CMYK", "YCbCr"):
        return img.convert("RGB")
    if mode == "P" and "transparency" not in img.info:
        return img.convert("RGB")
    if mode in ("RGBA", "LA", "PA", "P", "La", "RGBa"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode.startswith("I") or mode == "F":
        # 16-bit and 32-bit modes: Pillow's convert clips to 0..255; scale instead.
        return Image.fromarray(_array_to_rgb(np.asarray(img), "image"))
    return img.convert("RGB")


def _draft_scale(size: tuple[int, int], min_side: int | None) -> int:
    """JPEG DCT scale (1, 2, 4 or 8) keeping the shorter side >= min_side, as Pillow's draft."""
    if min_side is None or min(size) <= 2 * min_side:
        return 1
    ratio = min_side / min(size)
    request = (max(1, int(size[0] * ratio)), max(1, int(size[1] * ratio)))
    scale = min(size[0] // request[0], size[1] // request[1])
    return next(d for d in (8, 4, 2, 1) if scale >= d)


def _strict_jpeg(raw: bytes, img: Image.Image, min_side: int | None, name: str) -> Image.Image:
    """Decode a JPEG with libjpeg-turbo's strict mode: corrupt entropy data is an error.

    Pillow's JPEG decoder swallows libjpeg's "Corrupt JPEG data" warnings, so bytes overwritten
    in the middle of a file decode to garbage without complaint. simplejpeg (strict=True) raises
    on them instead; at the same DCT scale it gives Pillow's pixels exactly.
    """
    try:
        import simplejpeg
    except ImportError:  # an environment installed before simplejpeg became a dependency
        global _WARNED_NO_SIMPLEJPEG
        if not _WARNED_NO_SIMPLEJPEG:
            _WARNED_NO_SIMPLEJPEG = True
            logger.warning(
                "simplejpeg is not installed: corrupt JPEG data goes undetected; "
                "pip install simplejpeg"
            )
        return _pillow_load(img, min_side, name)
    scale = _draft_scale(img.size, min_side)
    width, height = -(-img.size[0] // scale), -(-img.size[1] // scale)
    # Pillow reports YCbCr JPEGs as RGB; CMYK (often Adobe-inverted) is left to Pillow.
    colorspace = "RGB" if img.mode in ("RGB", "L") else "CMYK"
    try:
        arr = simplejpeg.decode_jpeg(
            raw,
            colorspace=colorspace,
            min_factor=scale,
            min_width=width,
            min_height=height,
            strict=True,
        )
    except ValueError as err:
        raise ImageDecodeError(
            f"{name}: not a readable image (corrupt JPEG data: {err}); remove or replace the file"
        ) from err
    if colorspace == "CMYK":
        return _pillow_load(img, min_side, name)  # validated above; Pillow handles inversion
    out = Image.fromarray(arr)
    orientation = img.getexif().get(_ORIENTATION, 1)
    if orientation in _TRANSPOSE:
        out = out.transpose(_TRANSPOSE[orientation])
    return out


def _pillow_load(img: Image.Image, min_side: int | None, name: str) -> Image.Image:
    """Draft (JPEG), load, EXIF-transpose and convert to RGB with Pillow."""
    if img.format == "JPEG" and _draft_scale(img.size, min_side) > 1:
        # Draft mode decodes JPEG at 1/2, 1/4 or 1/8 scale: far cheaper than full size.
        ratio = min_side / min(img.size)
        img.draft(None, (max(1, int(img.size[0] * ratio)), max(1, int(img.size[1] * ratio))))
    # Pillow opens lazily, so truncation shows up only here (with Pillow's default
    # ImageFile.LOAD_TRUNCATED_IMAGES = False it raises OSError).
    img.load()
    if img.size[0] == 0 or img.size[1] == 0:
        raise ImageDecodeError(f"{name}: image has zero size")
    # exif_transpose copies even unrotated images; only call it when there is a tag.
    if img.getexif().get(_ORIENTATION, 1) != 1:
        img = ImageOps.exif_transpose(img) or img
    return _pil_to_rgb(img)


def _to_srgb(rgb: Image.Image, info: dict, name: str) -> Image.Image:
    """An RGB image tagged with an ICC profile other than sRGB, converted to sRGB.

    Photos from cameras and editors are often Adobe RGB or Display P3; read as if they were
    sRGB their colours are wrong and, worse here, their L differs from what a viewer shows
    (by up to 3.8). The output is written untagged, i.e. sRGB.
    """
    icc = info.get("icc_profile")
    if not icc or rgb.mode != "RGB":
        return rgb
    from PIL import ImageCms

    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        if "srgb" in ImageCms.getProfileDescription(profile).lower():
            return rgb  # already sRGB: a conversion would only add rounding
        srgb = ImageCms.createProfile("sRGB")
        return ImageCms.profileToProfile(rgb, profile, srgb, outputMode="RGB")
    except (OSError, ImageCms.PyCMSError) as err:
        logger.warning("%s: its ICC profile is unreadable (%s); treating it as sRGB", name, err)
        return rgb


def _open_pil(data: ImageInput, min_side: int | None) -> Image.Image:
    """Open, draft, load, EXIF-transpose and convert to RGB; raises ImageDecodeError."""
    name = _describe(data)
    if isinstance(data, (bytes, bytearray, memoryview)) and len(data) == 0:
        raise ImageDecodeError(f"{name}: empty buffer; the file holds no image data")
    if isinstance(data, (str, os.PathLike)):
        if not os.path.exists(data):
            raise ImageDecodeError(f"{name}: file not found; check the path")
        if not os.path.isfile(data):
            # Reading a FIFO or a device would block forever or never end.
            raise ImageDecodeError(
                f"{name}: not a regular file (a folder, FIFO or device); pass image files"
            )
    try:
        if isinstance(data, Image.Image):
            return _to_srgb(_pillow_load(data, min_side, name), data.info, name)
        if isinstance(data, (str, os.PathLike)):
            with open(data, "rb") as fh:
                raw = fh.read()
        else:
            raw = bytes(data)
        img = Image.open(io.BytesIO(raw))
        frames = getattr(img, "n_frames", 1)
        if frames > 1:
            logger.warning(
                "%s has %d frames (an animated GIF or a multi-page file); only the first is used",
                name,
                frames,
            )
        if img.format == "JPEG":
            return _to_srgb(_strict_jpeg(raw, img, min_side, name), img.info, name)
        return _to_srgb(_pillow_load(img, min_side, name), img.info, name)
    except ImageDecodeError:
        raise
    except Exception as err:
        # Pillow plugins raise many exception types on hostile input; all mean "bad file".
        raise ImageDecodeError(
            f"{name}: not a readable image ({type(err).__name__}: {err}); "
            "remove or replace the file"
        ) from err


def decode_pil(data: ImageInput, *, min_side: int | None = None) -> Image.Image:
    """Decode any supported input to an RGB Pillow image (JPEG drafted down to >= min_side)."""
    if isinstance(data, np.ndarray):
        return Image.fromarray(_array_to_rgb(data, _describe(data)))
    return _open_pil(data, min_side)


def decode_image(data: ImageInput, *, min_side: int | None = None) -> np.ndarray:
    """Decode bytes, a path, a Pillow image or an array to RGB uint8 (H, W, 3)."""
    if isinstance(data, np.ndarray):
        return _array_to_rgb(data, _describe(data))
    return np.asarray(_open_pil(data, min_side), dtype=np.uint8)


def _as_pil(rgb: np.ndarray | Image.Image) -> Image.Image:
    """Wrap an RGB uint8 array as a Pillow image (no copy of Pillow inputs)."""
    if isinstance(rgb, Image.Image):
        return rgb if rgb.mode == "RGB" else _pil_to_rgb(rgb)
    return Image.fromarray(_array_to_rgb(rgb, "array"))


def preprocess_eval(rgb_u8: np.ndarray | Image.Image, size: int) -> np.ndarray:
    """Resize the shorter side to size and centre-crop to (size, size, 3) uint8."""
    img = _as_pil(rgb_u8)
    width, height = img.size
    side = min(width, height)
    # Cropping the centred square in source coordinates and resizing it in one call is the
    # same as resize-shorter-side-then-centre-crop, with one resampling instead of two.
    left, top = (width - side) / 2.0, (height - side) / 2.0
    box = (left, top, left + side, top + side)
    return np.asarray(img.resize((size, size), _RESAMPLE, box=box), dtype=np.uint8)


def random_resized_crop_box(
    width: int,
    height: int,
    rng: np.random.Generator,
    scale: tuple[float, float] = DEFAULT_SCALE,
    ratio: tuple[float, float] = DEFAULT_RATIO,
) -> tuple[float, float, float, float]:
    """Sample a crop box (left, top, right, bottom) with random area fraction and aspect."""
    area = width * height
    log_ratio = (np.log(ratio[0]), np.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(scale[0], scale[1])
        aspect = float(np.exp(rng.uniform(log_ratio[0], log_ratio[1])))
        crop_w = np.sqrt(target * aspect)
        crop_h = np.sqrt(target / aspect)
        if crop_w <= width and crop_h <= height:
            left = rng.uniform(0.0, width - crop_w)
            top = rng.uniform(0.0, height - crop_h)
            return (left, top, left + crop_w, top + crop_h)
    # Fallback (extreme aspect ratios): the largest centred crop within the ratio range.
    in_ratio = width / height
    if in_ratio < ratio[0]:
        crop_w, crop_h = float(width), width / ratio[0]
    elif in_ratio > ratio[1]:
        crop_w, crop_h = height * ratio[1], float(height)
    else:
        crop_w, crop_h = float(width), float(height)
    left, top = (width - crop_w) / 2.0, (height - crop_h) / 2.0
    return (left, top, left + crop_w, top + crop_h)


def preprocess_train(
    rgb_u8: np.ndarray | Image.Image,
    size: int,
    rng: np.random.Generator,
    scale: tuple[float, float] = DEFAULT_SCALE,
    ratio: tuple[float, float] = DEFAULT_RATIO,
) -> np.ndarray:
    """Random resized crop to (size, size) plus a random horizontal flip; uint8 out."""
    img = _as_pil(rgb_u8)
    box = random_resized_crop_box(img.size[0], img.size[1], rng, scale, ratio)
    out = np.asarray(img.resize((size, size), _RESAMPLE, box=box), dtype=np.uint8)
    if rng.random() < 0.5:
        out = out[:, ::-1]
    return np.ascontiguousarray(out)


def thumbnail_max_chroma(rgb_u8: np.ndarray | Image.Image, thumb: int = 32) -> float:
    """`color.max_chroma` of a small nearest-neighbour thumbnail (host-side, for the loader).

    An estimate of the photo's largest chroma from at most thumb x thumb of its pixels: the
    loader's cheap near-gray test. `color.max_chroma` is the exact one, over every pixel.
    """
    img = _as_pil(rgb_u8)
    # Nearest-neighbour reduce keeps original pixel colours (no blending toward gray).
    small = img.resize((min(thumb, img.size[0]), min(thumb, img.size[1])), Image.Resampling.NEAREST)
    lab = color.rgb_to_lab_np(np.asarray(small, dtype=np.float64) / 255.0)
    return float(color.max_chroma(lab[..., 1:]))
