"""Chunked gzip inflate (isal / zlib-ng where installed, zlib otherwise), sparse mask reading
and concurrent NIfTI reading.

Truth: the standard library's gzip module, nibabel's own reading of the same files, and
one-at-a-time :func:`read_nifti`.
"""

from __future__ import annotations

import gzip

import nibabel as nib
import numpy as np
import pytest

from RadGPTLogic.errors import InputError
from RadGPTLogic.io import gunzip as gunzip_module
from RadGPTLogic.io import nifti as nifti_module
from RadGPTLogic.io.gunzip import iter_gunzip
from RadGPTLogic.io.nifti import read_nifti, read_niftis


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


def gunzip(path, data: bytes) -> bytes:
    return b"".join(iter_gunzip(path, data))


@pytest.fixture(params=["fast", "zlib"])
def inflater(request, monkeypatch):
    """Each test runs with the fast library (where installed) and with the standard library."""
    import zlib

    if request.param == "zlib":
        monkeypatch.setattr(gunzip_module, "inflate_library", lambda: (zlib, (zlib.error,)))
    elif gunzip_module.inflate_library()[0] is zlib:
        pytest.skip("neither isal nor zlib-ng installed")
    return request.param


def test_gunzip_gives_the_standard_librarys_bytes(inflater, tmp_path):
    payload = np.random.default_rng(0).integers(0, 4, 300_000, dtype=np.uint8).tobytes() + bytes(2_000_000)
    single = gzip.compress(payload, mtime=0)
    assert gunzip(tmp_path / "a", single) == gzip.decompress(single) == payload
    multi = _multi_member(payload)
    assert gunzip(tmp_path / "b", multi) == payload
    # Small chunks both ways: members and chunk edges fall everywhere.
    chunks = list(iter_gunzip(tmp_path / "c", multi, out_chunk=4096, in_chunk=777))
    assert b"".join(chunks) == payload and max(map(len, chunks)) == 4096
    bad_crc = bytearray(single)
    bad_crc[-6] ^= 1
    bad_length = bytearray(single)
    bad_length[-2] ^= 1
    for bad in (single[:-5], single[:len(single) // 2], single[:30] + b"\xff" * 8 + single[38:],
                bytes(bad_crc), bytes(bad_length), multi + b"garbage"):
        with pytest.raises(InputError, match="corrupt or truncated gzip data") as err:
            gunzip(tmp_path / "bad.nii.gz", bad)
        assert "bad.nii.gz" in str(err.value)


@pytest.mark.parametrize("axes", [(0, 1, 2), (2, 0, 1), (1, 2, 0)])
@pytest.mark.parametrize("flips", [(1, 1, 1), (-1, 1, -1)])
def test_sparse_mask_reads_as_nibabel_reads_it(inflater, tmp_path, axes, flips):
    """A mostly empty mask in any orientation: same voxels as nibabel's reading, and the
    reader's box holds every nonzero voxel."""
    shape = (64, 48, 200)  # 3 KiB slabs: the data fills a few 1 MiB chunks of many
    source = np.zeros(shape, np.uint8)
    source[10:30, 5:40, 120:131] = 1
    source[20, 20, 60] = 1  # a lone voxel far from the rest
    affine = np.zeros((4, 4))
    affine[3, 3] = 1
    for src_axis, (world, sign) in enumerate(zip(axes, flips)):
        affine[world, src_axis] = sign * (0.8 + src_axis * 0.5)
    path = tmp_path / "mask.nii.gz"
    nib.save(nib.Nifti1Image(source, affine), path)
    vol = read_nifti(path)
    want = np.asanyarray(nib.as_closest_canonical(nib.load(path)).dataobj)
    assert np.array_equal(vol.array, want)
    assert vol.nonzero_box is not None
    outside = np.ones(vol.shape, bool)
    outside[vol.nonzero_box] = False
    assert not vol.array[outside].any() and vol.array[vol.nonzero_box].sum() == source.sum()
    # All zeros: an empty box.
    nib.save(nib.Nifti1Image(np.zeros(shape, np.uint8), affine), path)
    vol = read_nifti(path)
    assert vol.array[vol.nonzero_box].size == 0 and not vol.array.any()


def _reader_threads() -> int:
    import threading

    return sum(t.name.startswith("radgpt-read") for t in threading.enumerate())


@pytest.mark.parametrize("ahead", [0, 1, 3])
def test_read_niftis_equals_reading_one_by_one(files, ahead, monkeypatch):
    monkeypatch.setattr(nifti_module, "READ_AHEAD_MIN_BYTES", 0)  # these small files are read ahead too
    volumes = read_niftis(files, ahead=ahead)
    got = [next(volumes)]
    assert (0 < _reader_threads() <= ahead) if ahead else _reader_threads() == 0
    got += list(volumes)
    assert [v.path for v in got] == files
    for vol, path in zip(got, files):
        want = read_nifti(path)
        assert vol.sha256 == want.sha256 and np.array_equal(vol.array, want.array)
        assert np.array_equal(vol.affine, want.affine)


def test_small_files_are_read_without_a_thread(files):
    assert sum(p.stat().st_size for p in files) < nifti_module.READ_AHEAD_MIN_BYTES
    volumes = read_niftis(files, ahead=2)
    first = next(volumes)
    assert _reader_threads() == 0 and np.array_equal(first.array, read_nifti(files[0]).array)
    volumes.close()


def test_read_niftis_raises_a_bad_file_in_its_turn(files, monkeypatch):
    monkeypatch.setattr(nifti_module, "READ_AHEAD_MIN_BYTES", 0)
    data = files[2].read_bytes()
    files[2].write_bytes(data[: len(data) // 2])
    volumes = read_niftis(files, ahead=2)
    assert next(volumes).path == files[0] and next(volumes).path == files[1]
    with pytest.raises(InputError) as err:
        next(volumes)
    assert str(files[2]) in str(err.value) and "truncated" in str(err.value)
    volumes.close()

