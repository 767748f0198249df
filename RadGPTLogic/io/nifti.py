"""NIfTI reading with one-line errors, and exact reorientation to canonical RAS.

Frames used throughout the engine:

* **source** frame: the array axes exactly as stored in the file.
* **canonical** frame: the same voxels with axes permuted and flipped (never
  resampled) so that array axis 0 runs towards patient Right, axis 1 towards
  Anterior and axis 2 towards Superior (nibabel's "closest canonical", RAS+).
  ``affine`` maps canonical voxel indices (i, j, k) to RAS millimetres.  Axis 2 is
  the "axial" slice axis of every measurement.

Reorientation is a view (``np.flip``/``transpose``), so it costs neither time nor
memory, and masks stored in LPS or with permuted axes describe exactly the same
voxels as RAS-stored ones: findings come out identical.
"""

from __future__ import annotations

import hashlib
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError

GRID_TOLERANCE_MM = 1e-3


@dataclass
class Volume:
    """One image file in the canonical frame.

    Attributes
    ----------
    array : ndarray
        Voxel values in the canonical frame (a view of the stored array; raw stored
        values, *not* scaled: see ``slope``/``inter``).
    affine : (4, 4) ndarray
        Canonical voxel index (i, j, k) -> RAS mm.
    ornt : (3, 2) ndarray
        nibabel orientation of the source axes: row ``s`` says which canonical axis
        source axis ``s`` became and whether it was flipped (-1).
    source_shape : tuple of int
        Shape in the source frame.
    slope, inter : float
        NIfTI scaling: real value = raw * slope + inter.
    path : Path
    """

    array: np.ndarray
    affine: np.ndarray
    ornt: np.ndarray
    source_shape: tuple
    slope: float
    inter: float
    path: Path
    sha256: str = ""

    @property
    def shape(self) -> tuple:
        return tuple(self.array.shape)

    def source_slice_index(self, k: int) -> int:
        """Index along the file's own slice axis of canonical axial slice ``k``.

        The file's slice axis is the source axis that became canonical axis 2 (S).
        """
        return source_index_of_canonical_k(self.ornt, self.source_shape, k)


def source_index_of_canonical_k(ornt: np.ndarray, source_shape, k: int) -> int:
    """Map canonical axial index ``k`` back to the index along the source axis that became S."""
    src_axis = int(np.flatnonzero(ornt[:, 0] == 2)[0])
    n = int(source_shape[src_axis])
    return int(n - 1 - k) if ornt[src_axis, 1] < 0 else int(k)


def canonical_orientation(affine: np.ndarray) -> np.ndarray:
    """nibabel orientation (source axes -> RAS axes and flips) for a voxel-to-RAS affine."""
    from nibabel.orientations import io_orientation

    return io_orientation(affine)


def canonical_affine(affine: np.ndarray, source_shape, ornt: np.ndarray) -> np.ndarray:
    """Voxel-to-RAS affine of the canonical-frame array obtained with ``ornt``."""
    from nibabel.orientations import inv_ornt_aff

    return np.asarray(affine, float) @ inv_ornt_aff(ornt, source_shape)


def to_canonical(array: np.ndarray, ornt: np.ndarray) -> np.ndarray:
    """View of a source-frame ``array`` in the canonical frame (no copy)."""
    from nibabel.orientations import apply_orientation

    return apply_orientation(array, ornt)


def from_canonical(array: np.ndarray, ornt: np.ndarray) -> np.ndarray:
    """Inverse of :func:`to_canonical`: canonical-frame array back to the source frame."""
    from nibabel.orientations import apply_orientation, ornt_transform

    identity = np.array([[a, 1] for a in range(3)], float)
    back = ornt_transform(identity, ornt)
    return apply_orientation(array, back)


def grid_deviation_mm(shape_a, affine_a, shape_b, affine_b) -> float:
    """Largest distance (mm) between corresponding corner voxel centres of two grids.

    ``inf`` when the shapes differ.  Two canonical grids describe the same physical
    voxels when this is within :data:`GRID_TOLERANCE_MM`.
    """
    if tuple(shape_a) != tuple(shape_b):
        return float("inf")
    corners = np.array(
        [[i, j, k, 1.0] for i in (0, shape_a[0] - 1) for j in (0, shape_a[1] - 1) for k in (0, shape_a[2] - 1)]
    )
    pa = corners @ np.asarray(affine_a, float).T
    pb = corners @ np.asarray(affine_b, float).T
    return float(np.max(np.linalg.norm(pa[:, :3] - pb[:, :3], axis=1)))


def read_nifti(path: str | os.PathLike) -> Volume:
    """Read a 3-D NIfTI file into the canonical frame.

    Raises :class:`InputError` naming ``path`` for a missing or unreadable file, a
    corrupt gzip stream, a non-3-D image or a degenerate affine.
    """
    import nibabel as nib

    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file not found")
    # Read the bytes once: they are hashed for provenance and parsed from memory,
    # so no file is read twice.
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(path, f"cannot read file ({exc.strerror or exc})") from None
    sha256 = hashlib.sha256(data).hexdigest()
    if data[:2] == b"\x1f\x8b":
        data = _gunzip(path, data)
    image_class = _nifti_class(data)
    if image_class is None:
        raise InputError(path, "not a NIfTI-1 or NIfTI-2 image (bad header)")
    try:
        img = image_class.from_bytes(data)  # parses the header only
        header = img.header
        shape = tuple(int(n) for n in header.get_data_shape())
        dtype = header.get_data_dtype()
        proxy = img.dataobj
        # The proxy's offset, not the raw header field: a single-file NIfTI may store
        # vox_offset 0, which readers take as the minimum (352 / 544 bytes).
        offset = int(getattr(proxy, "offset", header.get_data_offset()))
    except (nib.filebasedimages.ImageFileError, nib.spatialimages.HeaderDataError, ValueError) as exc:
        raise InputError(path, f"not a readable NIfTI image ({exc})") from None
    count = int(np.prod(shape, dtype=np.int64))
    if len(data) < offset + count * dtype.itemsize:
        raise InputError(
            path, f"image data truncated: {len(data) - offset} bytes for {count} voxels of {dtype}"
        )
    # A read-only view of the decompressed bytes: no copy of the voxel data.
    raw = np.frombuffer(data, dtype=dtype, count=count, offset=offset).reshape(shape, order="F")
    raw = np.asarray(raw)
    if raw.ndim == 4 and raw.shape[3] == 1:
        raw = raw[..., 0]
    if raw.ndim != 3:
        raise InputError(path, f"expected a 3-D image, found shape {raw.shape}")
    affine = np.asarray(img.affine, float)
    if not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise InputError(path, "degenerate or non-finite voxel-to-world affine")
    slope = getattr(proxy, "slope", 1.0)
    inter = getattr(proxy, "inter", 0.0)
    slope = 1.0 if slope is None or not np.isfinite(slope) or slope == 0 else float(slope)
    inter = 0.0 if inter is None or not np.isfinite(inter) else float(inter)
    ornt = canonical_orientation(affine)
    return Volume(
        array=to_canonical(raw, ornt),
        affine=canonical_affine(affine, raw.shape, ornt),
        ornt=ornt,
        source_shape=tuple(raw.shape),
        slope=slope,
        inter=inter,
        path=path,
        sha256=sha256,
    )


def _gunzip(path: Path, data: bytes) -> bytes:
    """Decompress (possibly multi-member) gzip data; CRC and length are checked by zlib."""
    out = []
    try:
        while data:
            d = zlib.decompressobj(wbits=31)
            out.append(d.decompress(data))
            if not d.eof:
                raise InputError(path, "corrupt or truncated gzip data (unexpected end of stream)")
            data = d.unused_data.lstrip(b"\x00")
    except zlib.error as exc:
        raise InputError(path, f"corrupt or truncated gzip data ({exc})") from None
    return out[0] if len(out) == 1 else b"".join(out)


def _nifti_class(data: bytes):
    """nibabel image class for an uncompressed NIfTI byte string (by its header size field)."""
    import nibabel as nib

    if len(data) < 348:
        return None
    for order in ("<", ">"):
        size = int(np.frombuffer(data[:4], dtype=order + "i4")[0])
        if size == 348:
            return nib.Nifti1Image
        if size == 540:
            return nib.Nifti2Image
    return None
