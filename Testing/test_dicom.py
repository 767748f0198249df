"""DICOM CT series input (RadGPTLogic.io.dicom).

Real-data checks use ../shared/data/real/totalsegmentator/dicom_upper_abdomen (skipped
when absent): a 20-slice JPEG 2000 lossless series and TotalSegmentator's `total`
label map for it.  Expected numbers come from that folder's README; positions are
recomputed here from the files' own ImagePositionPatient / ImageOrientationPatient /
PixelSpacing tags (LPS; RAS = LPS with x and y negated), independently of the module.

Synthetic series are written with SimpleITK (GDCM) so that oblique geometry,
non-square pixels, gaps, gantry tilt, several series and rescaling can be checked
against known truth.  Everything that needs SimpleITK is skipped without it.
"""

from __future__ import annotations

import hashlib
import shutil
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from RadGPTLogic.case import Case
from RadGPTLogic.errors import InputError
from RadGPTLogic.geometry import from_canonical, grid_deviation_mm, source_affine
from RadGPTLogic.io.assemble import case_with_dicom_ct
from RadGPTLogic.io.casefolder import load_case, write_case_folder
from RadGPTLogic.io.dicom import (
    INSTALL_HINT,
    is_dicom_folder,
    list_dicom_series,
    read_dicom_series,
    read_dicom_series_info,
)
from RadGPTLogic.io.labelmaps import case_from_labelmap
from RadGPTLogic.io.nifti import read_nifti

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])

# README figures for example_seg_dicom.nii.gz on the DICOM grid: label -> (name, ml, mean HU).
README_FIGURES = {
    5: ("liver", 699.0, 89.0),
    1: ("spleen", 249.0, 80.0),
    52: ("aorta", 22.0, 177.0),
    64: ("portal_vein_and_splenic_vein", 5.8, 130.0),
}


def _sitk():
    return pytest.importorskip("SimpleITK")


def real(*parts) -> Path:
    p = REAL.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"real data not available: {p}")
    return p


@pytest.fixture(scope="module")
def series_dir() -> Path:
    _sitk()
    return real("totalsegmentator", "dicom_upper_abdomen", "ct_dicom")


@pytest.fixture(scope="module")
def seg_path() -> Path:
    return real("totalsegmentator", "dicom_upper_abdomen", "example_seg_dicom.nii.gz")


@pytest.fixture(scope="module")
def real_read(series_dir):
    return read_dicom_series_info(series_dir)


def _tags(path: Path) -> dict:
    """All header tags of one file, read with SimpleITK (no project code)."""
    sitk = _sitk()
    r = sitk.ImageFileReader()
    r.SetFileName(str(path))
    r.ReadImageInformation()
    return {k: r.GetMetaData(k).strip() for k in r.GetMetaDataKeys()}


def _floats(s: str) -> np.ndarray:
    return np.array([float(x) for x in s.split("\\")])


def _volume_ml(case: Case, name: str) -> float:
    return case.crop(name).count * case.voxel_volume_mm3 / 1000.0


def _mean_hu(case: Case, name: str) -> float:
    crop = case.crop(name)
    return float(case.hu(crop.slices)[crop.mask].mean())




# =============================================================== real series

def test_real_series_shape_spacing_hu(real_read, series_dir):
    vol, info = real_read
    assert vol.shape == (512, 512, 20)
    assert vol.source_shape == (512, 512, 20)
    assert np.allclose(np.linalg.norm(vol.affine[:3, :3], axis=0), [0.9765625, 0.9765625, 2.0])
    # HU: the README's range; stored 12-bit values with intercept -1024 come out as int16 HU.
    assert vol.array.dtype == np.int16
    assert (int(vol.array.min()), int(vol.array.max())) == (-1024, 1839)
    assert (vol.slope, vol.inter) == (1.0, 0.0)
    # Canonical frame: axes run towards R, A, S.
    assert np.all(np.diag(vol.affine[:3, :3]) > 0)
    assert vol.path == series_dir
    assert info.chosen_because == "the only series" and info.warnings == [] and info.other_series == []
    assert info.modality == "CT" and len(info.files) == 20 and info.skipped_files == 0
    assert info.pixel_spacing_mm == (0.9765625, 0.9765625) and info.slice_spacing_mm == pytest.approx(2.0)
    assert not info.resampled
    assert is_dicom_folder(series_dir)


def test_real_series_geometry_matches_the_tags(real_read, series_dir):
    """Source voxel (0,0,0) / (511,0,0) / (0,511,0) / last slice = the tags' LPS points with x, y negated."""
    vol, _ = real_read
    tags = {p: _tags(p) for p in sorted(series_dir.iterdir())}
    z = {p: _floats(t["0020|0032"])[2] for p, t in tags.items()}
    first, last = min(tags, key=z.get), max(tags, key=z.get)
    ipp0, ipp1 = _floats(tags[first]["0020|0032"]), _floats(tags[last]["0020|0032"])
    iop = _floats(tags[first]["0020|0037"])
    r, c = iop[:3], iop[3:]
    row_spacing, col_spacing = _floats(tags[first]["0028|0030"])
    for t in tags.values():  # one orientation for all slices
        assert np.allclose(_floats(t["0020|0037"]), iop)

    src = source_affine(vol.affine, vol.ornt, vol.source_shape)
    def ras(i, j, k):
        return (src @ [i, j, k, 1.0])[:3]
    def lps_to_ras(p):
        return np.array([-p[0], -p[1], p[2]])
    assert np.allclose(ras(0, 0, 0), lps_to_ras(ipp0), atol=1e-4)
    assert np.allclose(ras(0, 0, 19), lps_to_ras(ipp1), atol=1e-4)
    assert np.allclose(ras(511, 0, 0), lps_to_ras(ipp0 + 511 * col_spacing * r), atol=1e-4)
    assert np.allclose(ras(0, 511, 0), lps_to_ras(ipp0 + 511 * row_spacing * c), atol=1e-4)
    # Canonical corner (0,0,0) is the patient-right, posterior, inferior voxel.
    assert np.allclose(vol.affine[:3, 3], lps_to_ras(ipp0 + 511 * col_spacing * r + 511 * row_spacing * c), atol=1e-4)

    # Pixels: source slice k, [column i, row j] = the file's pixel [row j, column i] in HU.
    sitk = _sitk()
    source = from_canonical(vol.array, vol.ornt)
    for path, k in ((first, 0), (last, 19)):
        pix = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))[0]
        assert np.array_equal(source[:, :, k], pix.T)


def test_real_series_digest(real_read, series_dir, tmp_path):
    """sha256 over the sorted file digests: independent of names and layout, sensitive to bytes."""
    vol, _ = real_read
    digests = sorted(hashlib.sha256(p.read_bytes()).hexdigest() for p in series_dir.iterdir())
    assert vol.sha256 == hashlib.sha256("\n".join(digests).encode()).hexdigest()

    # Renamed files spread over sub-folders, with a stray text file: same volume and digest.
    copy = tmp_path / "study"
    for n, p in enumerate(sorted(series_dir.iterdir(), reverse=True)):
        dest = copy / f"sub{n % 3}" / f"IM{n:04d}"
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(p, dest)
    (copy / "README.txt").write_text("not DICOM\n")
    vol2, info2 = read_dicom_series_info(copy)
    assert vol2.sha256 == vol.sha256
    assert info2.skipped_files == 1
    assert np.array_equal(vol2.array, vol.array) and np.allclose(vol2.affine, vol.affine)


def test_totalsegmentator_labels_lie_on_the_dicom_grid(real_read, seg_path):
    """The LAS label map is the DICOM (LPS-stored) grid with the row axis flipped: an exact
    reorientation, no resampling.  Overlaying the stored arrays without it is wrong."""
    vol, _ = real_read
    labels = read_nifti(seg_path)
    img = nib.load(str(seg_path))
    assert nib.aff2axcodes(img.affine) == ("L", "A", "S")
    src = source_affine(vol.affine, vol.ornt, vol.source_shape)
    assert nib.aff2axcodes(src) == ("L", "P", "S")
    # Same physical voxels once both are in the canonical RAS frame.
    assert labels.shape == vol.shape
    assert grid_deviation_mm(vol.shape, vol.affine, labels.shape, labels.affine) < 1e-6
    assert np.allclose(labels.affine, vol.affine, atol=1e-6)
    # Stored label row j is stored DICOM row 511 - j.
    assert np.allclose(img.affine @ [0, 0, 0, 1], src @ [0, 511, 0, 1], atol=1e-4)

    # Mean liver HU: right with the reorientation, nonsense when the stored arrays are overlaid.
    stored_ct = from_canonical(vol.array, vol.ornt).astype(np.float32)
    stored_seg = np.asanyarray(img.dataobj)
    liver = stored_seg == 5
    assert abs(float(stored_ct[:, ::-1][liver].mean()) - 89.0) < 2.0
    assert float(stored_ct[liver].mean()) < 0.0  # naive overlay lands largely outside the liver


def _check_readme_figures(case: Case):
    for _, (name, ml, hu) in README_FIGURES.items():
        assert case.has(name), name
        assert _volume_ml(case, name) == pytest.approx(ml, rel=0.02), name
        assert abs(_mean_hu(case, name) - hu) <= 2.0, name


def test_case_with_dicom_ct_and_total_labels(series_dir, seg_path):
    """Through case_from_labelmap: a --ct folder is read as a DICOM series."""
    case = case_from_labelmap(seg_path, table="total", ct_path=series_dir, case_id="dicom_case")
    assert case.shape == (512, 512, 20) and case.has_ct
    _check_readme_figures(case)
    src = case.sources["ct"][0]
    assert src["path"] == str(series_dir) and len(src["sha256"]) == 64 and src["series_uid"] == ""

    # Anatomy as a last check of the flips: the liver lies on the patient's right, i.e. at a
    # smaller LPS x (+x = Left) and so a larger RAS x than the spleen.
    def centroid_x(name):
        crop = case.crop(name)
        i = np.argwhere(crop.mask)[:, 0].mean() + crop.offset[0]
        return (case.affine @ [i, 0, 0, 1])[0]

    assert centroid_x("liver") > centroid_x("spleen")


def test_case_with_dicom_ct_direct(series_dir, seg_path):
    """Without the hook: the DICOM case plus the label map's crops, checked against the grid."""
    from RadGPTLogic.case import Crop

    case = case_with_dicom_ct("dicom_case", series_dir)
    labels = read_nifti(seg_path)
    assert grid_deviation_mm(case.shape, case.affine, labels.shape, labels.affine) < 1e-3
    for value, (name, _, _) in README_FIGURES.items():
        case.add_crop(name, Crop.from_full(labels.array == value), source={"path": str(seg_path)})
    _check_readme_figures(case)
    assert case.warnings == []


def test_dicom_case_folder_round_trip(series_dir, seg_path, tmp_path):
    """DICOM + labels -> AbdomenAtlas folder (ct.nii.gz stored LPS, int16) -> the same figures."""
    case = case_from_labelmap(seg_path, table="total", ct_path=series_dir, case_id="rt")
    out = write_case_folder(case, tmp_path / "rt")
    ct = nib.load(str(out / "ct.nii.gz"))
    assert nib.aff2axcodes(ct.affine) == ("L", "P", "S") and ct.get_data_dtype() == np.int16
    again = load_case(out)
    assert again.shape == case.shape and np.allclose(again.affine, case.affine, atol=1e-4)
    _check_readme_figures(again)


# ============================================================== bad inputs

def test_missing_slice_is_an_error_naming_the_folder(series_dir, tmp_path):
    copy = tmp_path / "gap"
    shutil.copytree(series_dir, copy)
    files = sorted(copy.iterdir(), key=lambda p: _floats(_tags(p)["0020|0032"])[2])
    files[9].unlink()
    with pytest.raises(InputError, match=r"gap.*1 slice\(s\) missing \(a gap of 4 mm .*slice spacing is 2 mm") as exc:
        read_dicom_series(copy)
    assert exc.value.path == str(copy)
    assert "--dicom-resample" in str(exc.value)

    # With resampling allowed: 20 slices again, the lost one interpolated from its neighbours.
    vol, info = read_dicom_series_info(copy, resample=True)
    full, _ = read_dicom_series_info(series_dir)
    assert vol.shape == (512, 512, 20) and info.resampled and vol.array.dtype == np.float32
    assert np.allclose(vol.affine, full.affine)
    ref = full.array.astype(np.float32)
    kept = [k for k in range(20) if k != 9]
    assert np.array_equal(vol.array[:, :, kept], ref[:, :, kept])
    assert np.allclose(vol.array[:, :, 9], (ref[:, :, 8] + ref[:, :, 10]) / 2)
    assert any("missing" in w and "resampled" in w for w in info.warnings)
    with pytest.warns(UserWarning, match="resampled"):
        read_dicom_series(copy, resample=True)


def test_empty_and_non_dicom_folders(tmp_path):
    _sitk()
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="empty") as exc:
        read_dicom_series(empty)
    assert exc.value.path == str(empty)

    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "notes.txt").write_text("hello\n" * 100)
    (junk / "image.dcm").write_bytes(b"\x00" * 128 + b"DICM" + b"\x00" * 64)  # a marker, no data set
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), np.int16), np.eye(4)), str(junk / "ct.nii.gz"))
    with pytest.raises(InputError, match=r"no DICOM image files found \(3 file") as exc:
        read_dicom_series(junk)
    assert exc.value.path == str(junk)
    assert not is_dicom_folder(empty) and not is_dicom_folder(tmp_path / "nope")

    with pytest.raises(InputError, match="does not exist"):
        read_dicom_series(tmp_path / "nope")
    with pytest.raises(InputError, match="not a folder"):
        read_dicom_series(junk / "notes.txt")


def test_missing_simpleitk_is_a_one_line_install_hint(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "SimpleITK", None)  # import raises ImportError
    with pytest.raises(InputError) as exc:
        read_dicom_series(tmp_path)
    assert "pip install radgpt-slicer[dicom]" in exc.value.one_line() and INSTALL_HINT in exc.value.one_line()
    assert "\n" not in exc.value.one_line()
    # is_dicom_folder needs no optional package.
    assert not is_dicom_folder(tmp_path)


# ============================================================ synthetic series

def _write_series(folder: Path, hu, positions, r=(1, 0, 0), c=(0, 1, 0), pixel_spacing=(0.8, 0.5),
                  uid="1.2.826.0.1.3680043.2.1125.1", modality="CT", description="synthetic",
                  number="1", names=None, slope=None, orientations=None):
    """Write (slices, rows, columns) ``hu`` as single-frame files at LPS ``positions``.

    ``pixel_spacing`` is DICOM's (between rows, between columns).  Slopes other than
    1 are written from float data with that RescaleSlope.
    """
    sitk = _sitk()
    folder.mkdir(parents=True, exist_ok=True)
    dr, dc = pixel_spacing
    for k, (plane, pos) in enumerate(zip(hu, positions)):
        rr, cc = (np.asarray(orientations[k][0], float), np.asarray(orientations[k][1], float)) if orientations \
            else (np.asarray(r, float), np.asarray(c, float))
        n = np.cross(rr, cc)
        if slope is None:
            img = sitk.GetImageFromArray(np.asarray(plane, np.int16)[None])
        else:
            img = sitk.GetImageFromArray(np.asarray(plane, np.float32)[None])
            for tag, value in (("0028|0100", "16"), ("0028|0101", "16"), ("0028|0102", "15"), ("0028|0103", "1"),
                               ("0028|1053", repr(float(slope))), ("0028|1052", "-1024")):
                img.SetMetaData(tag, value)
        img.SetSpacing((dc, dr, 1.0))
        img.SetOrigin(tuple(float(v) for v in pos))
        img.SetDirection(tuple(np.column_stack([rr, cc, n]).ravel()))
        for tag, value in (("0008|0060", modality), ("0020|000e", uid), ("0008|103e", description),
                           ("0020|0011", number), ("0020|0013", str(k + 1)),
                           ("0008|0018", f"{uid}.{k + 1}"), ("0008|0008", "ORIGINAL\\PRIMARY\\AXIAL")):
            img.SetMetaData(tag, value)
        w = sitk.ImageFileWriter()
        w.KeepOriginalImageUIDOn()
        name = names[k] if names else f"slice{k:03d}.dcm"
        w.SetFileName(str(folder / name))
        w.Execute(img)
    return folder


def _test_pattern(n_slices=5, rows=6, cols=7):
    """Distinct value per (slice, row, column): slice*100 + row*10 + column - 500."""
    k, j, i = np.meshgrid(np.arange(n_slices), np.arange(rows), np.arange(cols), indexing="ij")
    return (k * 100 + j * 10 + i - 500).astype(np.int16)


def test_synthetic_oblique_series_geometry_and_values(tmp_path):
    """Oblique orientation, non-square pixels, files named in a shuffled order."""
    a = np.deg2rad(20)
    r = np.array([np.cos(a), np.sin(a), 0.0])
    c = np.array([0.0, np.cos(0.3), -np.sin(0.3)])
    c = c - (c @ r) * r
    c /= np.linalg.norm(c)
    n = np.cross(r, c)
    p0 = np.array([-100.0, 50.0, 300.0])
    s = 2.5
    hu = _test_pattern()
    positions = [p0 + k * s * n for k in range(5)]
    names = [f"x{(7 * k) % 5}.dcm" for k in range(5)]  # lexical order differs from the slice order
    folder = _write_series(tmp_path / "obl", hu, positions, r=r, c=c, pixel_spacing=(0.8, 0.5), names=names)
    vol, info = read_dicom_series_info(folder)
    assert vol.source_shape == (7, 6, 5)
    src = source_affine(vol.affine, vol.ornt, vol.source_shape)
    expect = np.eye(4)
    expect[:3, 0], expect[:3, 1], expect[:3, 2], expect[:3, 3] = r * 0.5, c * 0.8, n * s, p0
    assert np.allclose(src, LPS_TO_RAS @ expect, atol=1e-4)
    assert np.array_equal(from_canonical(vol.array, vol.ornt), hu.transpose(2, 1, 0))
    assert [p.name for p in info.files] == names
    assert info.pixel_spacing_mm == pytest.approx((0.5, 0.8))


def test_synthetic_rescale_slope_gives_float_hu(tmp_path):
    hu = (_test_pattern().astype(np.float32) + 0.5)
    folder = _write_series(tmp_path / "f", hu, [(0, 0, 2.0 * k) for k in range(5)], slope=0.5)
    vol = read_dicom_series(folder)
    assert vol.array.dtype == np.float32
    assert np.array_equal(from_canonical(vol.array, vol.ornt), hu.transpose(2, 1, 0))


def test_synthetic_non_uniform_spacing(tmp_path):
    z = [0.0, 2.0, 4.0, 6.5, 8.5]
    folder = _write_series(tmp_path / "nu", _test_pattern(), [(0, 0, v) for v in z])
    with pytest.raises(InputError, match="not uniform") as exc:
        read_dicom_series(folder)
    assert exc.value.path == str(folder)
    vol, info = read_dicom_series_info(folder, resample=True)
    assert info.resampled and vol.shape[2] == 5
    assert np.linalg.norm(vol.affine[:3, 2]) == pytest.approx(2.0)


def test_synthetic_gantry_tilt(tmp_path):
    """Slice origins sliding sideways by one pixel per slice: refused, or unsheared on request."""
    cols, rows, n_slices = 12, 6, 5
    dc, s = 0.5, 2.0
    hu = np.full((n_slices, rows, cols), -1000, np.int16)
    for k in range(n_slices):
        hu[k, :, 8 - k] = 500  # a rod straight along z in patient space, at LPS x = 4.0 mm
    positions = [(k * dc, 0.0, k * s) for k in range(n_slices)]
    folder = _write_series(tmp_path / "tilt", hu, positions, pixel_spacing=(0.8, dc))
    with pytest.raises(InputError, match="gantry tilt") as exc:
        read_dicom_series(folder)
    assert exc.value.path == str(folder)
    vol, info = read_dicom_series_info(folder, resample=True)
    src = from_canonical(vol.array, vol.ornt)  # (i: column, j: row, k)
    for k in range(n_slices):
        assert np.argmax(src[:, 0, k]) == 8  # the rod sits in one column once the shear is undone
    assert info.resampled and any("tilt" in w for w in info.warnings)


def test_synthetic_inconsistent_orientation_and_duplicates(tmp_path):
    tilted = (np.array([1.0, 0, 0]), np.array([0, np.cos(0.1), np.sin(0.1)]))
    flat = (np.array([1.0, 0, 0]), np.array([0.0, 1, 0]))
    folder = _write_series(tmp_path / "orient", _test_pattern(), [(0, 0, 2.0 * k) for k in range(5)],
                           orientations=[flat, flat, tilted, flat, flat])
    with pytest.raises(InputError, match="inconsistent orientation") as exc:
        read_dicom_series(folder)
    assert exc.value.path == str(folder)

    folder = _write_series(tmp_path / "dup", _test_pattern(), [(0, 0, 2.0 * (k // 2)) for k in range(5)])
    with pytest.raises(InputError, match="more than one volume"):
        read_dicom_series(folder)


def test_several_series_choice(series_dir, tmp_path):
    """Most CT slices wins (and says so); series_uid picks another; non-CT never wins."""
    study = tmp_path / "study"
    shutil.copytree(series_dir, study / "ct_thin")
    small_uid = "1.2.826.0.1.3680043.2.1125.7"
    _write_series(study / "ct_small", _test_pattern(), [(0, 0, 5.0 * k) for k in range(5)], uid=small_uid,
                  description="small")
    _write_series(study / "pet", _test_pattern(n_slices=30), [(0, 0, 2.0 * k) for k in range(30)],
                  uid="1.2.826.0.1.3680043.2.1125.8", modality="PT", description="pet")
    listed = list_dicom_series(study)
    assert [(s.modality, s.n_files) for s in listed] == [("PT", 30), ("CT", 20), ("CT", 5)]

    vol, info = read_dicom_series_info(study)
    assert vol.shape == (512, 512, 20) and info.series_uid == ""
    assert info.chosen_because == "the CT series with the most slices"
    assert len(info.warnings) == 1 and "holds 3 series" in info.warnings[0] and small_uid in info.warnings[0]
    with pytest.warns(UserWarning, match="holds 3 series"):
        read_dicom_series(study)

    vol, info = read_dicom_series_info(study, series_uid=small_uid)
    assert vol.shape == (7, 6, 5) and info.description == "small"
    with pytest.raises(InputError, match=r"no series with SeriesInstanceUID '9\.9'.*PT"):
        read_dicom_series(study, series_uid="9.9")
    with pytest.raises(InputError, match="not CT"):
        read_dicom_series(study, series_uid="1.2.826.0.1.3680043.2.1125.8")
    with pytest.raises(InputError, match="no CT series"):
        read_dicom_series(study / "pet")

    case = case_with_dicom_ct("study", study)
    assert case.shape == (512, 512, 20) and any("holds 3 series" in w for w in case.warnings)


def test_import_and_report_commands_with_a_dicom_ct(series_dir, seg_path, tmp_path):
    """`radgpt import SEG --labels total --ct DICOM_DIR` then `radgpt report`: README figures hold."""
    import json
    import os
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(repo)}

    def radgpt(*args):
        return subprocess.run([sys.executable, "-m", "RadGPTLogic.cli", *map(str, args)],
                              capture_output=True, text=True, cwd=repo, env=env)

    proc = radgpt("import", seg_path, "--labels", "total", "--ct", series_dir, "--out", tmp_path / "case")
    assert proc.returncode == 0, proc.stderr
    proc = radgpt("report", tmp_path / "case", "--out", tmp_path / "out", "--phase", "venous")
    assert proc.returncode == 0, proc.stderr
    f = json.loads((tmp_path / "out" / "findings.json").read_text(encoding="utf-8"))
    # 20 slices of upper abdomen: every organ is cut by the scan, so no volume is claimed.
    assert all(e["complete"] is False and e["volume_ml"] is None for e in f["organs"].values())
    # Whole-mask HU is the README's figure; findings report the eroded ROI, close to it.
    assert abs(f["organs"]["liver"]["mean_hu"] - 89.3) < 6
    assert abs(f["organs"]["spleen"]["mean_hu"] - 79.6) < 6
