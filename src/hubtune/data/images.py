"""Decoding image files and resizing pixel arrays to S x S RGB uint8.

Every image becomes 3-channel RGB uint8 (grayscale, alpha, palette, 16-bit and
CMYK inputs are converted), then its short side is resized to ``S`` and the
centre ``S x S`` crop is kept (antialiased downscaling). Large JPEGs are
decoded at a reduced scale (``draft``) so that a huge photo never exists at
full size in memory.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, JpegImagePlugin, UnidentifiedImageError

IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".jfif", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm"}
)
"""File extensions (lower case) treated as images; other files are ignored."""

_GRAY_MODES = {"1", "L", "LA", "La", "I", "F"}
_ALPHA_MODES = {"RGBA", "RGBa", "LA", "La", "PA"}

_count_lock = threading.Lock()
_decode_count = 0


def decode_count() -> int:
    """How many image files this process has decoded so far (for cache checks)."""
    return _decode_count


def _count_decode() -> None:
    global _decode_count
    with _count_lock:
        _decode_count += 1


class ImageDecodeError(Exception):
    """An image file could not be decoded; the message is the skip reason."""


@dataclass(frozen=True)
class DecodedImage:
    """One decoded, resized image and what it looked like on disk."""

    pixels: np.ndarray  # uint8 [S, S, 3]
    width: int  # original width in pixels
    height: int  # original height in pixels
    channels: int  # colour channels of the original: 1 (grayscale) or 3


def is_image_file(path: str | Path) -> bool:
    """Whether ``path`` has an image extension (case-insensitive)."""
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def resized_shape(width: int, height: int, size: int) -> tuple[int, int]:
    """(width, height) after scaling the short side to ``size``, keeping the aspect ratio."""
    short = min(width, height)
    return max(size, round(width * size / short)), max(size, round(height * size / short))


def _open_unchecked_jpeg(path: Path) -> Image.Image | None:
    """Open a JPEG bypassing PIL's decompression-bomb check (it will be drafted)."""
    with open(path, "rb") as fh:
        if fh.read(3) != b"\xff\xd8\xff":
            return None
    return JpegImagePlugin.JpegImageFile(str(path))


def open_image_reduced(path: str | Path, size: int) -> tuple[Image.Image, tuple[int, int]]:
    """Open ``path`` lazily and, for JPEGs, set up decoding at the smallest scale
    whose short side is still at least ``size``.

    Returns the (not yet loaded) image and its original ``(width, height)``.
    Raises :class:`ImageDecodeError` with the skip reason when the file is not a
    readable image or is too large to decode safely.
    """
    path = Path(path)
    try:
        try:
            img = Image.open(path)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            # Above PIL's pixel limit: only a JPEG can be decoded at reduced scale.
            img = _open_unchecked_jpeg(path)
            if img is None:
                raise ImageDecodeError(f"too large to decode safely ({exc})") from None
    except PermissionError:
        raise ImageDecodeError("permission denied") from None
    except UnidentifiedImageError:
        raise ImageDecodeError("not a readable image (unknown or corrupt format)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageDecodeError(f"cannot open image: {exc}") from None
    original = img.size
    if original[0] < 1 or original[1] < 1:
        raise ImageDecodeError(f"empty image ({original[0]}x{original[1]})")
    if img.format == "JPEG":
        img.draft(img.mode if img.mode in ("L", "RGB") else "RGB", (size, size))
    limit = Image.MAX_IMAGE_PIXELS
    if limit is not None and img.size[0] * img.size[1] > 2 * limit:
        img.close()
        raise ImageDecodeError(
            f"too large to decode safely ({original[0]}x{original[1]} pixels; "
            f"limit {2 * limit} pixels, PIL.Image.MAX_IMAGE_PIXELS)"
        )
    return img, original


def resize_center_crop(rgb: Image.Image, size: int) -> np.ndarray:
    """An RGB image with its short side resized to ``size`` (bilinear) and centre-cropped
    to ``size x size``, as a writable ``[size, size, 3]`` uint8 array."""
    w, h = rgb.size
    new_w, new_h = resized_shape(w, h, size)
    if (new_w, new_h) != (w, h):
        rgb = rgb.resize((new_w, new_h), Image.Resampling.BILINEAR, reducing_gap=2.0)
    left, top = (new_w - size) // 2, (new_h - size) // 2
    if (new_w, new_h) != (size, size):
        rgb = rgb.crop((left, top, left + size, top + size))
    return np.array(rgb, dtype=np.uint8)


def pil_to_pixels(image: Image.Image, size: int) -> np.ndarray:
    """A decoded PIL image as ``[size, size, 3]`` uint8, the way image files are prepared:
    EXIF orientation, RGB (alpha composited on white), short side to ``size``, centre crop."""
    img = ImageOps.exif_transpose(image) or image
    return resize_center_crop(_to_rgb(img), size)


def _to_rgb(img: Image.Image) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB (alpha composited on white)."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode.startswith("I;16") or mode in ("I", "F"):
        arr = np.asarray(img).astype(np.float32)
        if mode == "F":
            top = 1.0 if arr.size and float(np.nanmax(arr)) <= 1.0 else 255.0
            arr = np.nan_to_num(arr) * (255.0 / top)
        elif mode.startswith("I;16") or (arr.size and float(arr.max()) > 255.0):
            arr = arr / 257.0  # 16-bit range 0..65535 -> 0..255
        gray = np.clip(np.rint(arr), 0, 255).astype(np.uint8)
        return Image.fromarray(gray).convert("RGB")
    if mode == "P" and "transparency" in img.info:
        img, mode = img.convert("RGBA"), "RGBA"
    if mode in _ALPHA_MODES:
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def _original_channels(mode: str) -> int:
    return 1 if mode in _GRAY_MODES or mode.startswith("I;16") else 3


def decode_image(path: str | Path, size: int) -> DecodedImage:
    """Decode one image file to an ``[S, S, 3]`` uint8 RGB array (S = ``size``).

    Raises :class:`ImageDecodeError` (message = skip reason) for files that
    cannot be used: not an image, truncated/corrupt, unreadable, too large.
    """
    _count_decode()
    img, (width, height) = open_image_reduced(path, size)
    try:
        channels = _original_channels(img.mode)
        img.load()
        pixels = pil_to_pixels(img, size)  # EXIF orientation, RGB, resize, centre crop
    except ImageDecodeError:
        raise
    except PermissionError:
        raise ImageDecodeError("permission denied") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageDecodeError(f"corrupt or truncated image: {exc}") from None
    except Image.DecompressionBombError as exc:
        raise ImageDecodeError(f"too large to decode safely ({exc})") from None
    finally:
        img.close()
    if pixels.shape != (size, size, 3):  # pragma: no cover - defensive
        raise ImageDecodeError(f"decoded to unexpected shape {pixels.shape}")
    return DecodedImage(pixels=pixels, width=width, height=height, channels=channels)


def resize_array_batch(images: np.ndarray, size: int, chunk: int = 2048) -> torch.Tensor:
    """Resize a batch of uint8 images to ``[N, 3, S, S]`` RGB uint8.

    ``images`` is ``[N, H, W]`` (grayscale) or ``[N, H, W, C]`` with C in
    {1, 3, 4} (4: alpha is dropped). Short side to ``size`` (bilinear,
    antialiased), then centre crop; grayscale is repeated to three channels.
    """
    if images.dtype != np.uint8:
        raise ValueError(f"expected uint8 images, got {images.dtype}")
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or images.shape[-1] not in (1, 3, 4):
        raise ValueError(f"expected images [N, H, W] or [N, H, W, C], got {images.shape}")
    images = images[..., :3]
    n, h, w, c = images.shape
    new_w, new_h = resized_shape(w, h, size)
    left, top = (new_w - size) // 2, (new_h - size) // 2
    out = torch.empty((n, 3, size, size), dtype=torch.uint8)
    for start in range(0, n, chunk):
        block = torch.from_numpy(np.ascontiguousarray(images[start : start + chunk]))
        block = block.permute(0, 3, 1, 2)
        if (new_h, new_w) != (h, w):
            block = F.interpolate(
                block.float(), size=(new_h, new_w), mode="bilinear", antialias=True, align_corners=False
            )
            block = block.round_().clamp_(0, 255).to(torch.uint8)
        block = block[:, :, top : top + size, left : left + size]
        out[start : start + block.shape[0]] = block.expand(-1, 3, -1, -1) if c == 1 else block
    return out
