"""Reading image files into ``HxWx3`` uint8 arrays: PNG/JPEG, DICOM and NIfTI.

- **DICOM** (``.dcm``, pydicom): stored values -> modality LUT (Rescale Slope/Intercept or a
  Modality LUT Sequence) -> VOI windowing to 8 bit, with a configured window (centre, width)
  if given, else the file's first Window Center/Width, else its VOI LUT Sequence, else the
  image's own min..max. The window follows the linear function of DICOM PS3.3 C.11.2.1.2.1.
  ``MONOCHROME1`` (low values bright) is inverted so that bright always means dense; colour
  images (RGB, YBR) are converted to RGB and not windowed. Multi-frame files give one frame.
- **NIfTI** (``.nii``, ``.nii.gz``, nibabel): the volume is reoriented to RAS+ and an axial
  slice is shown in the radiological convention (patient right on the image left, anterior
  at the top), windowed like DICOM (or between the slice's 0.5th and 99.5th percentiles).
- Anything else goes through PIL.

Every failure is an :class:`ImageError` naming the file and what is wrong with it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

DICOM_SUFFIXES = (".dcm", ".dicom")
NIFTI_SUFFIXES = (".nii", ".nii.gz")


class ImageError(ValueError):
    """An image file is missing, truncated or cannot be decoded."""


@dataclass(frozen=True)
class ImageRef(os.PathLike):
    """A file image plus how to turn it into one 2-D picture.

    ``os.PathLike``, so code that only needs the file (``Path(ref)``, ``open(ref)``) works.

    Attributes:
        path: The file.
        index: Frame of a multi-frame DICOM or axial slice of a NIfTI volume: an integer, or
            ``"middle"``.
        window: ``(centre, width)`` overriding the file's VOI window; ``None`` uses the file's.
    """

    path: str
    index: int | str = "middle"
    window: tuple[float, float] | None = None

    def __fspath__(self) -> str:
        return str(self.path)


def is_dicom(path: str | os.PathLike) -> bool:
    """Whether ``path`` names a DICOM file (by suffix)."""
    return str(os.fspath(path)).lower().endswith(DICOM_SUFFIXES)


def is_nifti(path: str | os.PathLike) -> bool:
    """Whether ``path`` names a NIfTI file (by suffix)."""
    return str(os.fspath(path)).lower().endswith(NIFTI_SUFFIXES)


def window_to_uint8(values: np.ndarray, center: float, width: float) -> np.ndarray:
    """DICOM linear VOI windowing (PS3.3 C.11.2.1.2.1) to 0..255.

    ``y = ((x - (c - 0.5)) / (w - 1) + 0.5) * 255`` inside the window; values at or below
    ``c - 0.5 - (w - 1) / 2`` give 0, values above ``c - 0.5 + (w - 1) / 2`` give 255.
    """
    if width < 1:
        raise ValueError(f"window width must be >= 1, got {width}")
    x = np.asarray(values, dtype=np.float64)
    low, high = center - 0.5 - (width - 1) / 2, center - 0.5 + (width - 1) / 2
    y = ((x - (center - 0.5)) / (width - 1) + 0.5) * 255.0 if width > 1 else np.zeros_like(x)
    y = np.where(x <= low, 0.0, np.where(x > high, 255.0, y))
    return np.clip(np.rint(y), 0, 255).astype(np.uint8)


def minmax_to_uint8(values: np.ndarray, low: float | None = None, high: float | None = None):
    """Linear scaling of ``[low, high]`` (default: the array's min and max) to 0..255."""
    x = np.asarray(values, dtype=np.float64)
    low = float(x.min()) if low is None else low
    high = float(x.max()) if high is None else high
    if high <= low:
        return np.zeros(x.shape, dtype=np.uint8)
    return np.clip(np.rint((x - low) / (high - low) * 255.0), 0, 255).astype(np.uint8)


def _to_rgb(gray: np.ndarray) -> np.ndarray:
    return np.repeat(gray[..., None], 3, axis=2) if gray.ndim == 2 else gray


def _pick(count: int, index: int | str, path: str, what: str) -> int:
    if index == "middle":
        return count // 2
    try:
        i = int(index)
    except (TypeError, ValueError):
        raise ImageError(f"{path}: {what} index {index!r} is not an integer or 'middle'") from None
    if not 0 <= i < count:
        raise ImageError(f"{path}: {what} {i} is out of range; the file has {count}")
    return i


def read_dicom(
    path: str | os.PathLike, window: tuple[float, float] | None = None, frame: int | str = "middle"
) -> np.ndarray:
    """An ``HxWx3`` uint8 image from a DICOM file (see the module docstring)."""
    import pydicom
    from pydicom.pixels import apply_modality_lut, apply_voi_lut, convert_color_space

    name = os.fspath(path)
    try:
        ds = pydicom.dcmread(name)
        arr = ds.pixel_array
    except Exception as err:  # pydicom raises many types for damaged files
        raise ImageError(
            f"{name}: truncated or unreadable DICOM ({type(err).__name__}: {err})"
        ) from err
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    colour = photometric not in ("MONOCHROME1", "MONOCHROME2")
    if frames > 1:
        arr = arr[_pick(frames, frame, name, "frame")]
    if colour:
        if photometric.startswith("YBR"):
            arr = convert_color_space(arr, photometric, "RGB")
        if arr.ndim != 3 or arr.shape[2] != 3:
            raise ImageError(f"{name}: {photometric} pixel data has shape {arr.shape}")
        return minmax_to_uint8(arr, 0, 2 ** int(ds.get("BitsStored", 8)) - 1)
    values = apply_modality_lut(arr, ds).astype(np.float64)
    if window is not None:
        out = window_to_uint8(values, float(window[0]), float(window[1]))
    elif "WindowCenter" in ds and "WindowWidth" in ds:
        out = window_to_uint8(values, _first(ds.WindowCenter), _first(ds.WindowWidth))
    elif "VOILUTSequence" in ds:
        out = minmax_to_uint8(apply_voi_lut(values, ds))
    else:
        out = minmax_to_uint8(values)
    if photometric == "MONOCHROME1":
        out = 255 - out
    return _to_rgb(out)


def _first(value: object) -> float:
    """The first of a possibly multi-valued DICOM element (e.g. two window presets)."""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return float(list(value)[0])  # type: ignore[arg-type]
    return float(value)  # type: ignore[arg-type]


def load_nifti_volume(path: str | os.PathLike) -> np.ndarray:
    """A NIfTI volume as float64, reoriented to RAS+ (axes: right, anterior, superior)."""
    import nibabel as nib

    name = os.fspath(path)
    try:
        img = nib.as_closest_canonical(nib.load(name))
        data = np.asarray(img.get_fdata(dtype=np.float64))
    except Exception as err:  # nibabel raises several types for damaged files
        raise ImageError(
            f"{name}: truncated or unreadable NIfTI ({type(err).__name__}: {err})"
        ) from err
    if data.ndim == 4:
        data = data[..., 0]
    if data.ndim != 3:
        raise ImageError(f"{name}: expected a 3-D volume, got shape {data.shape}")
    return data


def axial_view(volume: np.ndarray, z: int) -> np.ndarray:
    """Axial slice ``z`` of a RAS+ volume in the radiological display convention.

    Rows run anterior -> posterior, columns patient right -> left.
    """
    return volume[::-1, ::-1, z].T


def read_nifti(
    path: str | os.PathLike, window: tuple[float, float] | None = None, index: int | str = "middle"
) -> np.ndarray:
    """An ``HxWx3`` uint8 image of one axial slice of a NIfTI volume."""
    volume = load_nifti_volume(path)
    z = _pick(volume.shape[2], index, os.fspath(path), "axial slice")
    plane = axial_view(volume, z)
    if window is not None:
        return _to_rgb(window_to_uint8(plane, float(window[0]), float(window[1])))
    low, high = np.percentile(plane, [0.5, 99.5])
    return _to_rgb(minmax_to_uint8(plane, float(low), float(high)))


def read_raster(path: str | os.PathLike) -> np.ndarray:
    """An ``HxWx3`` uint8 image from a PNG, JPEG or any other PIL-readable file."""
    name = os.fspath(path)
    try:
        with Image.open(name) as img:
            img.load()  # decode now: a truncated file fails here, not later in a batch
            return np.asarray(img.convert("RGB"))
    except FileNotFoundError:
        raise ImageError(f"{name}: image file not found") from None
    except (OSError, ValueError, SyntaxError) as err:
        raise ImageError(f"{name}: truncated or unreadable image ({err})") from None


def read_image(image: str | os.PathLike) -> np.ndarray:
    """Decode any supported image file (an :class:`ImageRef` carries frame/slice and window).

    Raises:
        ImageError: Naming the file when it is missing, truncated or cannot be decoded.
    """
    ref = image if isinstance(image, ImageRef) else ImageRef(os.fspath(image))
    if not Path(ref.path).exists():
        raise ImageError(f"{ref.path}: image file not found")
    if is_dicom(ref.path):
        return read_dicom(ref.path, ref.window, ref.index)
    if is_nifti(ref.path):
        return read_nifti(ref.path, ref.window, ref.index)
    return read_raster(ref.path)
