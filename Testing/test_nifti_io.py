"""read_nifti parses voxel data itself (no copy): it must agree with nibabel on every layout."""

from __future__ import annotations

import gzip

import nibabel as nib
import numpy as np
import pytest

from RadGPTLogic.errors import InputError
from RadGPTLogic.geometry import from_canonical, to_canonical
from RadGPTLogic.io.nifti import read_nifti

from conftest import real_path


@pytest.mark.parametrize("dtype", ["<i2", ">i2", "<f4", ">f8", "u1", "<i4"])
@pytest.mark.parametrize("klass,suffix", [(nib.Nifti1Image, ".nii.gz"), (nib.Nifti2Image, ".nii"), (nib.Nifti1Image, ".nii")])
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
