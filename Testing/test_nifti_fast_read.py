"""Fast gzip inflate (isal / zlib-ng where installed, zlib otherwise) and concurrent NIfTI reading.

Truth: the standard library's gzip module and one-at-a-time :func:`read_nifti`.
"""

from __future__ import annotations

import gzip

import nibabel as nib
import numpy as np
import pytest

from RadGPTLogic.errors import InputError
from RadGPTLogic.io import nifti
from RadGPTLogic.io.nifti import _gunzip, read_nifti, read_niftis


@pytest.fixture
def files(tmp_path):
    rng = np.random.default_rng(3)
    paths = []
    for i in range(6):
        arr = (rng.random((40, 30, 20)) > 0.7).astype(np.uint8)
        path = tmp_path / f"m{i}.nii.gz"
        nib.save(nib.Nifti1Image(arr, np.diag([1.5, 1.5, 2.0, 1.0])), path)
        paths.append(path)
    return paths


def _multi_member(payload: bytes) -> bytes:
    third = len(payload) // 3
    return (gzip.compress(payload[:third], mtime=0) + b"\0\0" + gzip.compress(payload[third:2 * third], mtime=0)
            + gzip.compress(payload[2 * third:], mtime=0))


@pytest.mark.parametrize("fast", [True, False])
def test_gunzip_gives_the_standard_librarys_bytes(fast, monkeypatch, tmp_path):
    if not fast:
        monkeypatch.setattr(nifti, "_fast_gunzip", lambda: None)
    elif nifti._fast_gunzip() is None:
        pytest.skip("neither isal nor zlib-ng installed")
    payload = np.random.default_rng(0).integers(0, 4, 300_000, dtype=np.uint8).tobytes() + bytes(2_000_000)
    single = gzip.compress(payload, mtime=0)
    assert _gunzip(tmp_path / "a", single) == gzip.decompress(single) == payload
    multi = _multi_member(payload)
    assert _gunzip(tmp_path / "b", multi) == payload
    for bad in (single[:-5], single[:len(single) // 2], single[:30] + b"\xff" * 8 + single[38:]):
        with pytest.raises(InputError, match="corrupt or truncated gzip data"):
            _gunzip(tmp_path / "bad.nii.gz", bad)


@pytest.mark.parametrize("ahead", [0, 1, 3])
def test_read_niftis_equals_reading_one_by_one(files, ahead):
    got = list(read_niftis(files, ahead=ahead))
    assert [v.path for v in got] == files
    for vol, path in zip(got, files):
        want = read_nifti(path)
        assert vol.sha256 == want.sha256 and np.array_equal(vol.array, want.array)
        assert np.array_equal(vol.affine, want.affine)


def test_read_niftis_raises_a_bad_file_in_its_turn(files):
    data = files[2].read_bytes()
    files[2].write_bytes(data[: len(data) // 2])
    volumes = read_niftis(files, ahead=2)
    assert next(volumes).path == files[0] and next(volumes).path == files[1]
    with pytest.raises(InputError) as err:
        next(volumes)
    assert str(files[2]) in str(err.value) and "truncated" in str(err.value)
    volumes.close()

