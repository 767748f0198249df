"""read_nifti parses voxel data itself (no copy): it must agree with nibabel on every layout."""

from __future__ import annotations

import gzip

import nibabel as nib
import numpy as np
import pytest
from conftest import real_path

from RadGPTLogic.errors import InputError
from RadGPTLogic.geometry import from_canonical, to_canonical
from RadGPTLogic.io.nifti import read_nifti


@pytest.mark.parametrize("dtype", ["<i2", ">i2", "<f4", ">f8", "u1", "<i4"])
@pytest.mark.parametrize("klass,suffix",
                         [(nib.Nifti1Image, ".nii.gz"), (nib.Nifti2Image, ".nii"), (nib.Nifti1Image, ".nii")])
def test_voxels_match_nibabel(tmp_path, dtype, klass, suffix):
    rng = np.random.default_rng(0)
    arr = (rng.random((7, 5, 4)) * 100).astype(dtype)
    affine = np.array([[-0.8, 0, 0, 10], [0, -0.9, 0, -5], [0, 0, 2.5, 3], [0, 0, 0, 1]])
    img = klass(arr, affine)
    img.header.set_data_dtype(np.dtype(dtype))
    path = tmp_path / f"img{suffix}"
    nib.save(img, path)
    vol = read_nifti(path)
    expected = np.asarray(nib.load(path).dataobj)
    # Canonical frame: LPS-stored (-x, -y) becomes RAS by flipping axes 0 and 1.
    assert np.array_equal(from_canonical(vol.array, vol.ornt), expected)
    assert np.array_equal(vol.array, expected[::-1, ::-1, :])
    assert vol.affine[0, 0] > 0 and vol.affine[1, 1] > 0
    # Same world position of voxel (0,0,0) of the canonical array as nibabel says.
    corner = affine @ np.array([6, 4, 0, 1.0])
    assert np.allclose(vol.affine[:3, 3], corner[:3])


def test_scaled_data_keeps_raw_values_and_scaling(tmp_path):
    arr = np.arange(60, dtype=np.int16).reshape(5, 4, 3)
    img = nib.Nifti1Image(arr, np.eye(4))
    img.header.set_slope_inter(2.0, -1024.0)
    nib.save(img, tmp_path / "s.nii.gz")
    vol = read_nifti(tmp_path / "s.nii.gz")
    assert (vol.slope, vol.inter) == (2.0, -1024.0)
    assert np.allclose(vol.array * vol.slope + vol.inter, nib.load(tmp_path / "s.nii.gz").get_fdata())


def test_multi_member_gzip_and_truncation(tmp_path):
    arr = np.ones((4, 4, 4), np.uint8)
    nib.save(nib.Nifti1Image(arr, np.eye(4)), tmp_path / "a.nii")
    raw = (tmp_path / "a.nii").read_bytes()
    (tmp_path / "multi.nii.gz").write_bytes(gzip.compress(raw[:200]) + gzip.compress(raw[200:]))
    assert np.array_equal(read_nifti(tmp_path / "multi.nii.gz").array, arr)
    (tmp_path / "short.nii").write_bytes(raw[:-10])
    with pytest.raises(InputError, match="truncated"):
        read_nifti(tmp_path / "short.nii")
    (tmp_path / "junk.nii").write_bytes(b"not a nifti" * 50)
    with pytest.raises(InputError, match="junk.nii"):
        read_nifti(tmp_path / "junk.nii")


def test_real_files_match_nibabel():
    for parts in (("totalsegmentator", "ct_sm", "example_ct_sm.nii.gz"),
                  ("totalsegmentator", "aorta_cta", "ct_cropped.nii.gz"),
                  ("amos", "amos_0013_label.nii.gz")):
        path = real_path(*parts)
        vol = read_nifti(path)
        img = nib.load(path)
        assert np.array_equal(from_canonical(vol.array, vol.ornt), np.asarray(img.dataobj))
        canon = nib.as_closest_canonical(img)
        assert np.allclose(vol.affine, canon.affine)
        assert np.array_equal(vol.array, np.asarray(canon.dataobj))


def test_to_and_from_canonical_round_trip():
    from nibabel.orientations import axcodes2ornt

    arr = np.arange(24).reshape(2, 3, 4)
    for codes in (("L", "P", "S"), ("S", "R", "A"), ("I", "L", "P")):
        ornt = axcodes2ornt(codes)
        assert np.array_equal(from_canonical(to_canonical(arr, ornt), ornt), arr)


# ====================================================================== ambiguous headers
#
# Crafted headers; the truth is the data written (an ellipsoid of known voxel count)
# and, for what other readers do, SimpleITK reading the same file.

def _ellipsoid(shape=(30, 26, 20)):
    i, j, k = np.indices(shape)
    c = [(n - 1) / 2 for n in shape]
    return (((i - c[0]) / 10) ** 2 + ((j - c[1]) / 8) ** 2 + ((k - c[2]) / 6) ** 2 <= 1).astype(np.uint8)


def _save(path, arr, sform=None, qform=None, sform_code=1, qform_code=1, units="mm"):
    img = nib.Nifti1Image(arr, sform if sform is not None else qform)
    hdr = img.header
    hdr.set_sform(sform if sform is not None else np.eye(4), code=sform_code if sform is not None else 0)
    hdr.set_qform(qform if qform is not None else np.eye(4), code=qform_code if qform is not None else 0)
    hdr.set_xyzt_units(units)
    nib.save(img, path)
    return path


AFFINE = np.array([[-0.8, 0, 0, 10.0], [0, -0.9, 0, -5.0], [0, 0, 2.5, 3.0], [0, 0, 0, 1]])


def test_sform_qform_disagreement_is_a_warning_naming_the_form_used(tmp_path):
    sitk = pytest.importorskip("SimpleITK")
    moved = AFFINE.copy()
    moved[0, 3] += 5.0
    arr = _ellipsoid()
    for code, reads_qform in ((2, True), (1, False)):
        path = _save(tmp_path / f"d{code}.nii.gz", arr, sform=AFFINE, qform=moved, sform_code=code)
        vol = read_nifti(path)
        assert len(vol.warnings) == 1
        text = vol.warnings[0]
        assert str(path) in text and "disagree by up to 5 mm" in text and "using the sform" in text
        assert ("read the qform here" in text) == reads_qform
        # our placement is nibabel's (the sform) ...
        np.testing.assert_allclose(vol.affine @ [0, 0, 0, 1], nib.load(path).affine @ [29, 25, 0, 1], atol=1e-6)
        # ... and the warning's claim about SimpleITK holds
        origin_ras_x = -sitk.ReadImage(str(path)).GetOrigin()[0]
        assert origin_ras_x == pytest.approx(moved[0, 3] if reads_qform else AFFINE[0, 3], abs=1e-3)
    # Within 1 mm: no warning.
    near = AFFINE.copy()
    near[0, 3] += 0.5
    assert read_nifti(_save(tmp_path / "near.nii.gz", arr, sform=AFFINE, qform=near, sform_code=2)).warnings == ()


@pytest.mark.parametrize("units,factor", [("meter", 1000.0), ("micron", 0.001), ("mm", 1.0), ("unknown", 1.0)])
def test_spatial_units_are_converted_to_mm(tmp_path, units, factor):
    arr = _ellipsoid()
    scaled = AFFINE.copy()
    scaled[:3, :] /= factor  # the same geometry expressed in the file's units
    path = _save(tmp_path / "u.nii.gz", arr, sform=scaled, qform=scaled, units=units)
    vol = read_nifti(path)
    np.testing.assert_allclose(vol.affine[:3, :3] @ np.ones(3), np.abs(np.diag(AFFINE)[:3]), rtol=1e-6)
    np.testing.assert_allclose(np.abs(np.linalg.det(vol.affine[:3, :3])), 0.8 * 0.9 * 2.5, rtol=1e-6)
    if factor == 1.0:
        assert vol.warnings == ()
    else:
        assert len(vol.warnings) == 1 and "converted to mm" in vol.warnings[0]
    sitk = pytest.importorskip("SimpleITK")
    np.testing.assert_allclose(sitk.ReadImage(str(path)).GetSpacing(), [0.8, 0.9, 2.5], rtol=1e-6)


def test_metre_units_give_true_volumes_in_findings(tmp_path):
    """A metre-unit organ mask: volume in ml as for the same mask in mm (not 10^9 too small)."""
    from RadGPTLogic.engine import Engine
    from RadGPTLogic.io.casefolder import load_case

    arr = _ellipsoid()
    truth_ml = arr.sum() * 0.8 * 0.9 * 2.5 / 1000.0
    metres = AFFINE.copy()
    metres[:3, :] /= 1000.0
    case_dir = tmp_path / "M"
    (case_dir / "segmentations").mkdir(parents=True)
    _save(case_dir / "segmentations" / "spleen.nii.gz", arr, sform=metres, qform=metres, units="meter")
    findings = Engine(load_case(case_dir)).compute().to_dict()
    spleen = findings["organs"]["spleen"]
    assert spleen["volume_ml"] == pytest.approx(truth_ml, rel=1e-6)
    assert any("metres" in w and "spleen.nii.gz" in w for w in findings["warnings"])


def test_sheared_affine_warns_and_volumes_follow_the_affine(tmp_path):
    sheared = AFFINE.copy()
    sheared[0, 1] = 0.3  # the j axis leans into x
    arr = _ellipsoid()
    vol = read_nifti(_save(tmp_path / "s.nii.gz", arr, sform=sheared, qform=AFFINE, sform_code=2))
    assert any("sheared" in w for w in vol.warnings)
    np.testing.assert_allclose(vol.affine @ [1, 2, 3, 1], sheared @ [30 - 2, 26 - 3, 3, 1], atol=1e-5)
    plain = read_nifti(_save(tmp_path / "p.nii.gz", arr, sform=AFFINE, qform=AFFINE))
    assert not any("sheared" in w for w in plain.warnings)


def test_no_orientation_warns_in_findings_and_import_refuses(tmp_path):
    from conftest import load_findings, run_cli

    arr = _ellipsoid()
    case_dir = tmp_path / "N"
    (case_dir / "segmentations").mkdir(parents=True)
    path = case_dir / "segmentations" / "liver.nii.gz"
    img = nib.Nifti1Image(arr, None)
    img.header.set_zooms((0.8, 0.9, 2.5))
    img.header.set_xyzt_units("mm")
    nib.save(img, path)
    hdr = nib.load(path).header
    assert int(hdr["qform_code"]) == 0 and int(hdr["sform_code"]) == 0
    vol = read_nifti(path)
    assert not vol.orientation_known and any("no orientation" in w for w in vol.warnings)
    # report: runs, and says so in findings
    proc = run_cli("report", case_dir, "--out", tmp_path / "out")
    assert proc.returncode == 0, proc.stderr
    findings = load_findings(tmp_path / "out")
    assert any("no orientation" in w and "liver.nii.gz" in w for w in findings["warnings"])
    assert findings["organs"]["liver"]["volume_ml"] == pytest.approx(arr.sum() * 0.8 * 0.9 * 2.5 / 1000, rel=1e-6)
    # import: refused with one line naming the file; nothing written
    labels = tmp_path / "labels.nii.gz"
    nib.save(nib.Nifti1Image(arr, None), labels)
    proc = run_cli("import", labels, "--labels", "amos", "--out", tmp_path / "case")
    assert proc.returncode == 2
    error = proc.stderr.strip().splitlines()[-1]
    assert error.startswith("radgpt: error: ") and str(labels) in error and "no orientation" in error
    assert not (tmp_path / "case").exists()


def test_header_warnings_reach_import_output(tmp_path):
    from conftest import run_cli

    moved = AFFINE.copy()
    moved[1, 3] += 3.0
    labels = np.zeros((30, 26, 20), np.uint8)
    labels[_ellipsoid().astype(bool)] = 6  # AMOS: liver
    path = _save(tmp_path / "labels.nii.gz", labels, sform=AFFINE, qform=moved, sform_code=2)
    proc = run_cli("import", path, "--labels", "amos", "--out", tmp_path / "case")
    assert proc.returncode == 0, proc.stderr
    assert "radgpt: warning:" in proc.stderr and "disagree by up to 3 mm" in proc.stderr


def test_five_dimensional_single_volume(tmp_path):
    arr = _ellipsoid()
    nib.save(nib.Nifti1Image(arr[..., None, None], AFFINE), tmp_path / "five.nii.gz")
    assert nib.load(tmp_path / "five.nii.gz").shape == arr.shape + (1, 1)
    vol = read_nifti(tmp_path / "five.nii.gz")
    assert vol.source_shape == arr.shape
    assert np.array_equal(from_canonical(vol.array, vol.ornt), arr)
    nib.save(nib.Nifti1Image(np.stack([arr] * 3, axis=-1)[:, :, :, None, :], AFFINE), tmp_path / "vec.nii.gz")
    with pytest.raises(InputError, match="expected a 3-D image"):
        read_nifti(tmp_path / "vec.nii.gz")
