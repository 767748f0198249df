"""Masks computed by the engine (e.g. pancreas parts) written back as NIfTI files.

Files are written in the case's reference orientation and on its grid (the CT
file's own axes), so they overlay the CT in any viewer, load in Slicer and can be
used again as case input.

Speed: a derived mask is small, but its file covers the whole grid (78 MB of voxels
at 512 x 512 x 300).  Compressing those zeros would cost ~0.3 s a mask, so the gzip
stream is assembled from members: the header, the run of all-zero slabs before the
mask (a pre-compressed block of zeros, repeated), the slabs that hold the mask, and
the zeros after it.  Concatenated gzip members are one valid gzip file (RFC 1952),
read by zlib, nibabel, ITK and Slicer alike.
"""

from __future__ import annotations

import gzip
from functools import lru_cache

import numpy as np

from ..case import Case, Crop
from .nifti import from_canonical

_ZERO_BLOCK = 1 << 23  # 8 MiB of zeros per repeated member


@lru_cache(maxsize=1)
def _zero_member() -> bytes:
    return gzip.compress(bytes(_ZERO_BLOCK), compresslevel=1)


def _gzip_zeros(n: int) -> bytes:
    """Gzip members that decompress to ``n`` zero bytes."""
    full, rest = divmod(n, _ZERO_BLOCK)
    return _zero_member() * full + (gzip.compress(bytes(rest), compresslevel=1) if rest else b"")


def _header_bytes(case: Case, source_shape) -> bytes:
    import nibabel as nib
    from nibabel.orientations import inv_ornt_aff

    affine = case.affine @ np.linalg.inv(inv_ornt_aff(case.ornt, case.source_shape))
    hdr = nib.Nifti1Header()
    hdr.set_data_shape(tuple(int(n) for n in source_shape))
    hdr.set_data_dtype(np.uint8)
    hdr.set_sform(affine, code=1)
    hdr.set_qform(affine, code=1)
    hdr.set_xyzt_units("mm")
    hdr["vox_offset"] = 352
    hdr["scl_slope"] = 1.0
    hdr["scl_inter"] = 0.0
    return hdr.binaryblock + b"\x00" * 4  # no extensions


def mask_nifti_bytes(case: Case, crop: Crop) -> bytes:
    """A gzipped NIfTI-1 (uint8, 0/1) of ``crop`` on the case's reference grid and orientation."""
    full = np.zeros(case.shape, np.uint8)  # calloc: untouched pages cost nothing
    if not crop.is_empty:
        full[crop.slices] = crop.mask
    source = from_canonical(full, case.ornt)  # a view
    n0, n1, n2 = source.shape
    slab = n0 * n1  # bytes per slab along the slowest (Fortran-order) axis
    occupied = np.flatnonzero(source.any(axis=(0, 1))) if not crop.is_empty else np.array([], int)
    parts = [gzip.compress(_header_bytes(case, source.shape), compresslevel=1)]
    if occupied.size == 0:
        parts.append(_gzip_zeros(slab * n2))
    else:
        m0, m1 = int(occupied[0]), int(occupied[-1]) + 1
        middle = np.asfortranarray(source[:, :, m0:m1])
        parts += [
            _gzip_zeros(slab * m0),
            gzip.compress(middle.tobytes(order="F"), compresslevel=1),
            _gzip_zeros(slab * (n2 - m1)),
        ]
    return b"".join(p for p in parts if p)
