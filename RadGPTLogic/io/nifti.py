"""NIfTI files: reading into the canonical RAS frame with one-line errors, and writing.

Frames are defined in :mod:`RadGPTLogic.geometry`.  Reorientation on reading is a
view (``np.flip``/``transpose``), so it costs neither time nor memory, and masks
stored in LPS or with permuted axes describe exactly the same voxels as RAS-stored
ones: findings come out identical.

Writing (:func:`nifti_gz_bytes`) stores a canonical-frame array back in a source
frame, fast for sparse masks (see its docstring).

Ambiguous headers are read the way nibabel reads them and said so
(:attr:`Volume.warnings`, which the case assembly copies into ``case.warnings`` and
so into ``findings.warnings``):

* sform and qform both set but placing the image's corner voxels more than
  :data:`FORM_DISAGREEMENT_MM` apart: the sform is used (nibabel's choice;
  SimpleITK/ITK 5.4, and so 3D Slicer, use the qform unless sform_code is 1), and
  the warning says by how much they differ and who reads it otherwise;
* neither form set (qform_code and sform_code 0): voxel sizes are known, the
  orientation is not (nibabel's fallback affine is used);
  :attr:`Volume.orientation_known` is False, and ``radgpt import`` refuses such a
  file rather than write it out as scanner coordinates;
* spatial units other than mm: metres and microns are converted to mm (the whole
  affine is scaled, as ITK does; nibabel does not), other codes are a warning;
  unit code 0 ("unknown", written by most tools) is taken as mm silently;
* a sheared affine (axes more than :data:`SHEAR_TOLERANCE_DEG` from perpendicular):
  lengths and volumes follow the affine, but readers that drop the shear place
  voxels elsewhere.

5-D files of shape (x, y, z, 1, 1) (and any trailing axes of length 1) are read as 3-D.
"""

from __future__ import annotations

import gzip
import hashlib
import itertools
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..geometry import (
    canonical_affine,
    canonical_box,
    canonical_orientation,
    from_canonical,
    source_affine,
    source_index_of_canonical_k,
    to_canonical,
)
from .gunzip import iter_gunzip

# sform and qform placing a corner voxel further apart than this (mm) get a warning.
FORM_DISAGREEMENT_MM = 1.0
# Axes further than this from perpendicular (degrees) make the affine "sheared".
SHEAR_TOLERANCE_DEG = 0.01
# NIfTI xyzt_units spatial codes -> mm per unit (0 "unknown" is taken as mm).
_UNITS_TO_MM = {0: 1.0, 1: 1000.0, 2: 1.0, 3: 0.001}
_UNIT_NAMES = {1: "metres", 3: "microns"}


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
    sha256 : str
        Of the file's bytes.
    warnings : tuple of str
        Ambiguities of the header (see the module docstring), one line each, naming the file.
    orientation_known : bool
        False when the header sets neither qform nor sform: axes are not placed in the patient.
    nonzero_box : tuple of slice, or None
        Canonical-frame slices outside which every stored (raw) voxel is zero, when
        the reader knows them (gzipped files: see :func:`_inflate_rest`); None: unknown.
        Lets a mask be checked and cropped without scanning its empty slabs.
    """

    array: np.ndarray
    affine: np.ndarray
    ornt: np.ndarray
    source_shape: tuple
    slope: float
    inter: float
    path: Path
    sha256: str = ""
    warnings: tuple = ()
    orientation_known: bool = True
    nonzero_box: tuple | None = None

    @property
    def shape(self) -> tuple:
        return tuple(self.array.shape)

    def source_slice_index(self, k: int) -> int:
        """Index along the file's own slice axis of canonical axial slice ``k``.

        The file's slice axis is the source axis that became canonical axis 2 (S).
        """
        return source_index_of_canonical_k(self.ornt, self.source_shape, k)


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
    chunks = None
    if data[:2] == b"\x1f\x8b":
        chunks = iter_gunzip(path, data)
        data = _nifti_head(chunks)
    image_class = _nifti_class(data)
    if image_class is None:
        raise InputError(path, "not a NIfTI-1 or NIfTI-2 image (bad header)")
    try:
        # nibabel logs (and quietly repairs) header problems; we say them ourselves, in one line.
        nib_log = nib.imageglobals.logger
        was_disabled, nib_log.disabled = nib_log.disabled, True
        try:
            img = image_class.from_bytes(data)  # parses the header only
        finally:
            nib_log.disabled = was_disabled
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
    occupied = None  # bytes [lo, hi) of the file outside which every voxel byte is zero
    voxel_bytes: bytes | np.ndarray = data  # the whole file, uncompressed
    if chunks is not None:
        voxel_bytes, length, occupied = _inflate_rest(data, chunks, offset, offset + count * dtype.itemsize)
    else:
        length = len(data)
    if length < offset + count * dtype.itemsize:
        raise InputError(
            path, f"image data truncated: {length - offset} bytes for {count} voxels of {dtype}"
        )
    # A read-only view of the decompressed bytes: no copy of the voxel data.
    raw: np.ndarray = np.frombuffer(voxel_bytes, dtype=dtype, count=count, offset=offset).reshape(shape, order="F")
    raw = np.asarray(raw)
    while raw.ndim > 3 and raw.shape[-1] == 1:  # (x, y, z, 1) and (x, y, z, 1, 1): one volume
        raw = raw[..., 0]
    if raw.ndim != 3:
        raise InputError(path, f"expected a 3-D image, found shape {raw.shape}")
    affine = np.asarray(img.affine, float)
    if not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise InputError(path, "degenerate or non-finite voxel-to-world affine")
    # The header as stored: nibabel's checks quietly set a zero voxel size to 1.
    stored = image_class.header_class(data[: image_class.header_class.sizeof_hdr], check=False)
    affine, notes, orientation_known = _header_geometry(path, header, affine, raw.shape,
                                                        stored_zooms=stored["pixdim"][1:4])
    slope = getattr(proxy, "slope", 1.0)
    inter = getattr(proxy, "inter", 0.0)
    slope = 1.0 if slope is None or not np.isfinite(slope) or slope == 0 else float(slope)
    inter = 0.0 if inter is None or not np.isfinite(inter) else float(inter)
    ornt = canonical_orientation(affine)
    nonzero_box = None
    if occupied is not None:
        nonzero_box = canonical_box(ornt, raw.shape, _source_box(raw.shape, occupied, offset, dtype.itemsize))
    return Volume(
        array=to_canonical(raw, ornt),
        affine=canonical_affine(affine, raw.shape, ornt),
        ornt=ornt,
        source_shape=tuple(raw.shape),
        slope=slope,
        inter=inter,
        path=path,
        sha256=sha256,
        warnings=tuple(notes),
        orientation_known=orientation_known,
        nonzero_box=nonzero_box,
    )


def _nifti_head(chunks) -> bytes:
    """The first inflated chunks of a gzipped NIfTI file: at least the header and its
    extensions (up to ``vox_offset``), fewer only when the file is shorter."""
    head = b""
    need = 544  # the larger (NIfTI-2) header plus the extension flag
    for chunk in chunks:
        head += chunk
        if len(head) >= need:
            image_class = _nifti_class(head)
            if image_class is None:
                break  # not NIfTI: the caller says so
            vox_offset = image_class.header_class(head[: image_class.header_class.sizeof_hdr],
                                                  check=False)["vox_offset"]
            need = max(need, int(vox_offset) if np.isfinite(vox_offset) else 0)
            if len(head) >= need:
                break
    return head


def _inflate_rest(head: bytes, chunks, offset: int, nbytes: int) -> tuple[np.ndarray, int, tuple]:
    """Inflate the rest of a gzipped NIfTI file into a buffer of its ``nbytes`` (header and voxels).

    The buffer starts as zeros (``calloc``: pages never written cost no memory) and
    only chunks holding a nonzero byte are copied in, so a mostly empty mask costs
    the memory of its occupied slabs.  Returns ``(buffer, inflated length,
    occupied)``: the (read-only) ``uint8`` buffer, how many bytes the stream held in
    all (less than ``nbytes`` when truncated), and the byte range ``(lo, hi)`` of
    the voxel data outside which every byte is zero (``lo == hi`` when all are zero).
    """
    buffer = np.zeros(nbytes, np.uint8)
    length, lo, hi = 0, None, None
    for chunk in itertools.chain((head,), chunks):
        start, end = length, min(length + len(chunk), nbytes)
        length += len(chunk)
        if start >= end:
            continue  # bytes past the image (still inflated: every CRC is checked)
        part = np.frombuffer(chunk, np.uint8, count=end - start)
        voxels = part[max(offset - start, 0):]
        has_data = voxels.size > 0 and bool(voxels.any())
        if has_data:
            lo = max(start, offset) if lo is None else lo
            hi = end
        if has_data or start < offset:
            buffer[start:end] = part
    buffer.flags.writeable = False
    return buffer, length, ((offset, offset) if lo is None or hi is None else (lo, hi))


def _source_box(shape, occupied, offset: int, itemsize: int) -> tuple:
    """Source-frame voxel ranges holding every nonzero byte of ``occupied`` (file byte range):
    whole first axes and the slabs of the slowest (last, Fortran-order) axis it touches."""
    if occupied[0] >= occupied[1]:  # no nonzero byte: an empty range of slabs
        return tuple((0, n) for n in shape[:-1]) + ((0, 0),)
    slab = int(np.prod(shape[:-1], dtype=np.int64))
    first_voxel = (occupied[0] - offset) // itemsize
    last_voxel = (occupied[1] - offset - 1) // itemsize
    return tuple((0, n) for n in shape[:-1]) + ((first_voxel // slab, last_voxel // slab + 1),)


def _corners(shape) -> np.ndarray:
    """The 8 corner voxel indices of an array of ``shape`` as homogeneous columns (4, 8)."""
    idx = np.array(np.meshgrid(*[[0, max(int(n) - 1, 0)] for n in shape[:3]], indexing="ij")).reshape(3, -1)
    return np.vstack([idx, np.ones((1, idx.shape[1]))])


def _header_geometry(path: Path, header, affine: np.ndarray, shape, stored_zooms=None) -> tuple:
    """``(affine in mm, warnings, orientation_known)`` of a NIfTI header (see the module docstring).

    ``affine`` is nibabel's choice (sform, else qform, else its fallback) in the
    file's units.
    """
    notes = []
    qform_code, sform_code = int(header["qform_code"]), int(header["sform_code"])
    orientation_known = qform_code > 0 or sform_code > 0
    unit_code = int(header["xyzt_units"]) & 0x07
    scale = _UNITS_TO_MM.get(unit_code)
    if scale is None:
        scale = 1.0
        notes.append(f"{path}: unknown spatial unit code {unit_code} in the header; taken as mm")
    elif scale != 1.0:
        notes.append(f"{path}: spatial units are {_UNIT_NAMES[unit_code]}; positions and voxel sizes "
                     f"converted to mm (x {scale:g}), as ITK does (nibabel does not)")
    if not orientation_known:
        zooms = [float(z) for z in (header["pixdim"][1:4] if stored_zooms is None else stored_zooms)]
        if not all(np.isfinite(z) and z > 0 for z in zooms):
            # nibabel would silently take 1 mm for a zero voxel size: every volume would be wrong.
            raise InputError(path, f"voxel size {zooms[0]:g} x {zooms[1]:g} x {zooms[2]:g} in the header "
                                   "(pixdim) and no orientation (qform_code and sform_code are 0): the voxel "
                                   "size is unknown; fix the header")
        notes.append(f"{path}: no orientation in the header (qform_code and sform_code are 0): voxel sizes are "
                     "known but not how the axes lie in the patient, so left/right and front/back are not "
                     "trustworthy (read with nibabel's default axes)")
    elif qform_code > 0 and sform_code > 0:
        qform = np.asarray(header.get_qform(), float)
        sform = np.asarray(header.get_sform(), float)
        corners = _corners(shape)
        gap = float(np.max(np.linalg.norm((sform @ corners - qform @ corners)[:3], axis=0))) * scale
        if gap > FORM_DISAGREEMENT_MM:
            # ITK 5.4 (SimpleITK, and 3D Slicer's NIfTI reader) takes the sform only when its
            # code is 1 (scanner anatomical), otherwise the qform.
            if sform_code == 1:
                who = "as nibabel and SimpleITK/ITK do (sform_code 1); readers preferring the qform"
            else:
                who = (f"as nibabel does; SimpleITK/ITK and 3D Slicer read the qform here (sform_code "
                       f"{sform_code}) and")
            notes.append(f"{path}: sform and qform disagree by up to {gap:.3g} mm; using the sform, {who} "
                         "place this image elsewhere")
    cols = affine[:3, :3] / np.linalg.norm(affine[:3, :3], axis=0)
    cosines = np.abs(cols.T @ cols - np.eye(3))
    worst = float(np.degrees(np.arcsin(min(1.0, float(cosines.max())))))
    if worst > SHEAR_TOLERANCE_DEG:
        notes.append(f"{path}: the voxel-to-world affine is sheared (axes up to {worst:.3g} degrees from "
                     "perpendicular); lengths and volumes follow it, but readers that drop the shear "
                     "(ITK, 3D Slicer) place voxels differently")
    if scale != 1.0:
        affine = affine.copy()
        affine[:3, :] *= scale
    return affine, notes, orientation_known


def read_niftis(paths, ahead: int = 1):
    """Read several NIfTI files, ``ahead`` of them in background threads while the caller
    works on the current one; yields their volumes (:class:`Volume`) in the order of ``paths``.

    Reading is mostly inflating and hashing, which release the GIL, so the next files
    are read while the caller checks and crops the current one.  At most ``ahead + 1``
    decompressed files are held at once (the caller should drop each volume before
    asking for the next), which is what bounds memory: a full-size mask is 75 MB and
    inflating it may briefly need twice that.  A file's :class:`InputError` is raised
    when its turn comes, exactly as :func:`read_nifti` would raise it; files after it
    are not waited for.  ``ahead=0`` reads one file at a time in this thread.
    """
    from collections import deque
    from concurrent.futures import Future, ThreadPoolExecutor

    paths = list(paths)
    if ahead > 0 and _total_size(paths) < READ_AHEAD_MIN_BYTES:
        ahead = 0
    if ahead <= 0 or len(paths) <= 1:
        for path in paths:
            yield read_nifti(path)
        return
    pool = ThreadPoolExecutor(max_workers=ahead, thread_name_prefix="radgpt-read")
    pending: deque[Future[Volume]] = deque()
    queue = iter(paths)
    try:
        for path in queue:
            pending.append(pool.submit(read_nifti, path))
            if len(pending) >= ahead:
                break
        while pending:
            volume = pending.popleft().result()
            nxt = next(queue, None)
            if nxt is not None:
                pending.append(pool.submit(read_nifti, nxt))  # read while the caller works on this one
            yield volume
            del volume
    finally:
        for future in pending:
            future.cancel()
        pool.shutdown(wait=True)


#: Files smaller than this in all (bytes on disk) are read one after the other: handing
#: small files to a thread costs more than it overlaps (measured on a 4 mm phantom case
#: of 30 files, 0.5 MB: 5 ms of its 68 ms), and in a batch the other cores are busy
#: with other cases anyway.
READ_AHEAD_MIN_BYTES = 4 << 20


def _total_size(paths) -> int:
    total = 0
    for path in paths:
        try:
            total += os.stat(path).st_size
        except OSError:
            return READ_AHEAD_MIN_BYTES  # read_nifti names the problem in its turn
    return total


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


# =============================================================================== writing

_ZERO_BLOCK = 1 << 23  # 8 MiB of zeros per repeated gzip member


@lru_cache(maxsize=1)
def _zero_member() -> bytes:
    return gzip.compress(bytes(_ZERO_BLOCK), compresslevel=1, mtime=0)


def _gzip_zeros(n: int) -> bytes:
    """Gzip members that decompress to ``n`` zero bytes."""
    full, rest = divmod(n, _ZERO_BLOCK)
    return _zero_member() * full + (gzip.compress(bytes(rest), compresslevel=1, mtime=0) if rest else b"")


def _header_bytes(source_shape, dtype, affine: np.ndarray) -> bytes:
    """A NIfTI-1 single-file header (+ empty extension flag) for ``affine`` in mm."""
    import nibabel as nib

    hdr = nib.Nifti1Header()
    hdr.set_data_shape(tuple(int(n) for n in source_shape))
    hdr.set_data_dtype(dtype)
    # Both forms, code 1 (scanner): readers differ in which one they trust.
    hdr.set_sform(affine, code=1)
    hdr.set_qform(affine, code=1)
    hdr.set_xyzt_units("mm")
    hdr["vox_offset"] = 352
    hdr["scl_slope"] = 1.0
    hdr["scl_inter"] = 0.0
    return hdr.binaryblock + b"\x00" * 4  # no extensions


def nifti_gz_bytes(canonical: np.ndarray, ornt: np.ndarray, affine: np.ndarray) -> bytes:
    """A gzipped NIfTI-1 file of a canonical-frame array, stored in the source frame ``ornt``.

    ``affine`` maps canonical voxel indices to RAS mm; the file gets the matching
    source affine.  See :func:`source_nifti_gz_bytes`.
    """
    source = from_canonical(canonical, ornt)  # a view
    return source_nifti_gz_bytes(source, source_affine(affine, ornt, source.shape))


def source_nifti_gz_bytes(source: np.ndarray, affine: np.ndarray) -> bytes:
    """A gzipped NIfTI-1 file holding ``source`` as stored, with voxel-to-RAS ``affine`` (mm).

    The array keeps its dtype; no scaling (slope 1, intercept 0); sform and qform
    both code 1.  Speed: a mask file covers the whole grid (78 MB of voxels at
    512 x 512 x 300) but is mostly zeros; compressing them would cost ~0.3 s a mask.
    The stream is therefore assembled from gzip members: the header, a
    pre-compressed block of zeros repeated for each all-zero run of slabs (along the
    slowest, last axis), and the slabs holding data.  Concatenated gzip members are
    one valid gzip file (RFC 1952), read by zlib, nibabel, ITK and Slicer alike.
    Output is deterministic (no time stamp in the gzip headers).
    """
    source = np.asarray(source)
    if source.dtype == bool:
        source = source.view(np.uint8)
    n0, n1, n2 = source.shape
    slab = n0 * n1 * source.dtype.itemsize  # bytes per slab along the slowest (Fortran-order) axis
    parts = [gzip.compress(_header_bytes(source.shape, source.dtype, affine), compresslevel=1, mtime=0)]
    occupied = np.flatnonzero(source.any(axis=(0, 1)))
    if occupied.size == 0:
        parts.append(_gzip_zeros(slab * n2))
    else:
        first, last = int(occupied[0]), int(occupied[-1]) + 1
        middle = np.asfortranarray(source[:, :, first:last])
        parts += [
            _gzip_zeros(slab * first),
            gzip.compress(middle.tobytes(order="F"), compresslevel=1, mtime=0),
            _gzip_zeros(slab * (n2 - last)),
        ]
    return b"".join(p for p in parts if p)
