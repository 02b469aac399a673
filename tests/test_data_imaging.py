"""DICOM, NIfTI and raster reading (``fedmllm.data.imaging``) on generated files."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from fedmllm.data.collate import load_image
from fedmllm.data.imaging import ImageError, ImageRef, read_image


def _dicom(
    path: Path,
    raw: np.ndarray,
    photometric: str = "MONOCHROME2",
    slope: float | None = None,
    intercept: float | None = None,
    window: tuple[float, float] | None = None,
) -> Path:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality = "CT"
    ds.set_pixel_data(raw, photometric_interpretation=photometric, bits_stored=16)
    if slope is not None:
        ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    ds.save_as(path, enforce_file_format=True)
    return path


# Stored values and the 8-bit grey the DICOM linear window gives, worked out by hand.
# CT: HU = raw * 1 - 1024; window c=40, w=400: below c-0.5-(w-1)/2 = -160 -> 0, above
# c-0.5+(w-1)/2 = 239 -> 255, else round(((HU - 39.5) / 399 + 0.5) * 255).
RAW_CT = np.array([[0, 864, 865], [1024, 1064, 1263], [1264, 3000, 1100]], dtype=np.uint16)
# E.g. raw 865 -> -159 HU -> ((-159 - 39.5) / 399 + 0.5) * 255 = 0.64 -> 1; raw 1100 -> 76 HU
# -> 150.8 -> 151; raw 1024 -> 0 HU -> 102.3 -> 102.
EXPECTED_CT = np.array([[0, 0, 1], [102, 128, 255], [255, 255, 151]], dtype=np.uint8)


def test_dicom_rescale_then_file_window(tmp_path: Path) -> None:
    # Prepare
    path = _dicom(tmp_path / "ct.dcm", RAW_CT, slope=1.0, intercept=-1024.0, window=(40, 400))
    # Execute
    img = read_image(path)
    # Assert
    assert img.shape == (3, 3, 3) and img.dtype == np.uint8
    assert (img[..., 0] == img[..., 2]).all()
    assert np.array_equal(img[..., 0], EXPECTED_CT)


def test_dicom_without_rescale_and_with_slope(tmp_path: Path) -> None:
    # Prepare: no rescale, window c=100.5 w=201: x <= 0 -> 0, x > 200 -> 255, else
    # ((x - 100) / 200 + 0.5) * 255, e.g. 50 -> 63.75 -> 64, 150 -> 191.25 -> 191.
    raw = np.array([[0, 100, 200], [210, 50, 150]], dtype=np.uint16)
    plain = _dicom(tmp_path / "a.dcm", raw, window=(100.5, 201))
    # slope 2, intercept -100: values 2*raw - 100 = [-100, 100, 300], [320, 0, 200]
    sloped = _dicom(tmp_path / "b.dcm", raw, slope=2.0, intercept=-100.0, window=(100.5, 201))
    # Execute
    a, b = read_image(plain)[..., 0], read_image(sloped)[..., 0]
    # Assert
    assert a.tolist() == [[0, 128, 255], [255, 64, 191]]
    assert b.tolist() == [[0, 128, 255], [255, 0, 255]]


def test_monochrome1_is_inverted_and_configured_window_wins(tmp_path: Path) -> None:
    # Prepare
    m1 = _dicom(
        tmp_path / "m1.dcm", RAW_CT, "MONOCHROME1", slope=1.0, intercept=-1024.0, window=(40, 400)
    )
    m2 = _dicom(
        tmp_path / "m2.dcm", RAW_CT, "MONOCHROME2", slope=1.0, intercept=-1024.0, window=(40, 400)
    )
    # Execute
    inverted = read_image(m1)[..., 0]
    normal = read_image(m2)[..., 0]
    lung = read_image(ImageRef(str(m2), window=(-600.0, 1500.0)))[..., 0]
    # Assert
    assert np.array_equal(inverted, 255 - normal)
    # Lung window c=-600 w=1500: HU -1024 -> ((-1024 + 600.5) / 1499 + .5) * 255 = 55.45 -> 55
    hu = RAW_CT.astype(float) - 1024
    by_hand = np.clip(np.rint(((hu - (-600 - 0.5)) / 1499 + 0.5) * 255), 0, 255)
    assert np.array_equal(lung, by_hand.astype(np.uint8))
    assert lung[0, 0] == 55 and lung[2, 1] == 255


def test_dicom_without_window_uses_min_max(tmp_path: Path) -> None:
    raw = np.array([[10, 20], [30, 60]], dtype=np.uint16)
    img = read_image(_dicom(tmp_path / "n.dcm", raw))[..., 0]
    assert img.tolist() == [[0, 51], [102, 255]]  # (x - 10) / 50 * 255


def test_multiframe_dicom_gives_the_configured_frame(tmp_path: Path) -> None:
    # Prepare: frame f is filled with 10 * f.
    frames = np.stack([np.full((4, 4), 10 * f, dtype=np.uint16) for f in range(5)])
    frames[:, 0, 0] = 0  # a 0..255 window needs no help; keep a reference pixel anyway
    path = _dicom(tmp_path / "mf.dcm", frames, window=(128, 256))
    # Execute / Assert: window [0, 255] is the identity on these values.
    assert read_image(path)[1, 1, 0] == 20  # middle of five frames is frame 2
    assert read_image(ImageRef(str(path), index=4))[1, 1, 0] == 40
    with pytest.raises(ImageError, match="frame 7 is out of range; the file has 5"):
        read_image(ImageRef(str(path), index=7))


def test_truncated_dicom_and_png_name_the_file(tmp_path: Path) -> None:
    # Prepare
    dcm = _dicom(tmp_path / "cut.dcm", RAW_CT, slope=1.0, intercept=-1024.0, window=(40, 400))
    dcm.write_bytes(dcm.read_bytes()[:-6])
    png = tmp_path / "cut.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32, 3), np.uint8)).save(png)
    png.write_bytes(png.read_bytes()[: png.stat().st_size // 2])
    # Execute / Assert
    for path in (dcm, png):
        with pytest.raises(ImageError, match="truncated") as info:
            load_image(str(path))  # the collate entry point
        assert str(path) in str(info.value)
    with pytest.raises(ImageError, match="not found"):
        read_image(tmp_path / "missing.jpg")


def _nifti(path: Path, volume: np.ndarray, affine: np.ndarray) -> Path:
    nib.save(nib.Nifti1Image(volume.astype(np.float32), affine), str(path))
    return path


def test_nifti_axial_slice_in_radiological_view(tmp_path: Path) -> None:
    # Prepare: RAS+ volume 6 (R) x 4 (A) x 5 (S); a bright voxel at the patient's far right,
    # most anterior, in slice z=3, and a dim one far left, most posterior, in the middle slice.
    vol = np.zeros((6, 4, 5))
    vol[5, 3, 3] = 100.0
    vol[0, 0, 2] = 50.0
    ras = _nifti(tmp_path / "ras.nii.gz", vol, np.eye(4))
    # The same anatomy stored left-to-right flipped (LAS): canonical reorientation undoes it.
    las_affine = np.diag([-1.0, 1.0, 1.0, 1.0])
    las_affine[0, 3] = 5.0
    las = _nifti(tmp_path / "las.nii", vol[::-1], las_affine)
    # Execute
    z3 = read_image(ImageRef(str(ras), index=3, window=(50.5, 101.0)))[..., 0]
    mid = read_image(ImageRef(str(ras), window=(25.5, 51.0)))[..., 0]
    z3_las = read_image(ImageRef(str(las), index=3, window=(50.5, 101.0)))[..., 0]
    # Assert: rows = anterior..posterior (4), columns = patient right..left (6).
    assert z3.shape == (4, 6)
    assert z3[0, 0] == 255 and z3.sum() == 255  # right + anterior = top-left
    assert mid[3, 5] == 255 and mid.sum() == 255  # left + posterior = bottom-right
    assert np.array_equal(z3, z3_las)
    with pytest.raises(ImageError, match="axial slice 9 is out of range"):
        read_image(ImageRef(str(ras), index=9))


def test_truncated_nifti_names_the_file(tmp_path: Path) -> None:
    path = _nifti(tmp_path / "v.nii", np.ones((8, 8, 8)), np.eye(4))
    path.write_bytes(path.read_bytes()[:400])
    with pytest.raises(ImageError, match="truncated or unreadable NIfTI") as info:
        read_image(path)
    assert str(path) in str(info.value)
