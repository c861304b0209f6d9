"""Reading dataset files with errors that name the file, and writing files atomically.

Every reader raises :class:`DataError` naming the path and what to do, instead of a bare PIL/numpy
traceback, so one corrupt file in a long epoch stops the run loudly rather than shifting labels.
Writers go through a temporary file in the destination folder and ``os.replace``, so an interrupted export
never leaves a half-written file behind.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import scipy.io
import torch
from PIL import Image
from torch import Tensor

from taskbalance.atomic import atomic_target
from taskbalance.data.base import DataError

__all__ = [
    "image_size",
    "read_mat",
    "read_npy",
    "read_png_array",
    "read_rgb",
    "require_dir",
    "require_file",
    "save_image",
    "save_mat",
    "save_npy",
    "save_text",
]

_FIX = "re-download or re-extract it; `taskbalance data check ROOT --dataset NAME` lists every bad file"


def require_dir(path: Path, what: str) -> Path:
    """``path`` if it is a directory, else a :class:`DataError` saying what was expected there."""
    if not path.is_dir():
        raise DataError(f"{what} not found: {path} does not exist or is not a folder")
    return path


def require_file(path: Path, what: str) -> Path:
    """``path`` if it is a file, else a :class:`DataError` saying what was expected there."""
    if not path.is_file():
        raise DataError(f"{what} not found: {path} is missing")
    return path


def _open(path: Path) -> Image.Image:
    try:
        image = Image.open(path)
        image.load()
    except FileNotFoundError:
        raise DataError(f"missing file {path}; {_FIX}") from None
    except (OSError, ValueError, SyntaxError) as error:
        raise DataError(f"cannot decode image {path} ({error}); the file is corrupt or truncated: {_FIX}") from None
    return image


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) of an image, read from its header only."""
    try:
        with Image.open(path) as image:
            return image.size
    except FileNotFoundError:
        raise DataError(f"missing file {path}; {_FIX}") from None
    except (OSError, ValueError, SyntaxError) as error:
        raise DataError(f"cannot decode image {path} ({error}); the file is corrupt or truncated: {_FIX}") from None


def read_rgb(path: Path) -> Tensor:
    """A colour image as float RGB in [0, 1], 3×H×W."""
    array = np.asarray(_open(path).convert("RGB"))
    return torch.from_numpy(array.copy()).permute(2, 0, 1).to(torch.float32).div_(255.0)


def read_png_array(path: Path) -> np.ndarray:
    """A label or 16-bit image as stored (palette indices for P-mode PNGs), H×W or H×W×C."""
    image = _open(path)
    if image.mode not in ("L", "P", "I", "I;16", "RGB", "1"):
        raise DataError(f"{path} has image mode {image.mode!r}; expected an 8/16-bit label map or RGB: {_FIX}")
    return np.asarray(image)


def read_npy(path: Path) -> np.ndarray:
    """A ``.npy`` array (never pickled objects)."""
    try:
        return np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise DataError(f"missing file {path}; {_FIX}") from None
    except (OSError, ValueError, EOFError) as error:
        raise DataError(f"cannot read array {path} ({error}); the file is corrupt or truncated: {_FIX}") from None


def read_mat(path: Path, key: str) -> Any:
    """Variable ``key`` of a MATLAB ``.mat`` file."""
    try:
        content = scipy.io.loadmat(str(path), variable_names=[key])
    except FileNotFoundError:
        raise DataError(f"missing file {path}; {_FIX}") from None
    except (OSError, ValueError, TypeError, NotImplementedError) as error:
        raise DataError(f"cannot read MATLAB file {path} ({error}); the file is corrupt: {_FIX}") from None
    if key not in content:
        raise DataError(f"{path} has no variable {key!r}; is this the right file? {_FIX}")
    return content[key]


def save_image(array: np.ndarray, path: Path, **options: Any) -> None:
    """Save a uint8/uint16 array as an image; the format follows the suffix (``quality`` for JPEG)."""
    image = Image.fromarray(array)
    fmt = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}[path.suffix.lower()]
    with atomic_target(path) as tmp:
        image.save(tmp, format=fmt, **options)


def save_npy(array: np.ndarray, path: Path) -> None:
    """Save an array as ``.npy``."""

    with atomic_target(path) as tmp, open(tmp, "wb") as handle:
        np.save(handle, array, allow_pickle=False)


def save_mat(content: dict[str, Any], path: Path) -> None:
    """Save variables as a MATLAB ``.mat`` file."""
    with atomic_target(path) as tmp:
        scipy.io.savemat(str(tmp), content, do_compression=True)


def save_text(text: str, path: Path) -> None:
    """Save a text file."""
    with atomic_target(path) as tmp:
        tmp.write_text(text)
