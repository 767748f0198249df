"""DICOM CT series in, the project's :class:`~RadGPTLogic.io.nifti.Volume` out.

Radiologists' CTs are DICOM series: a folder (possibly with sub-folders) of
single-frame image files, one file per axial slice, often several series side by
side (localizers, thin and thick reconstructions, PET ...).  This module picks one
CT series, checks its geometry and returns it in Hounsfield units in the engine's
canonical RAS frame, so that everything downstream (label-map importers, the
engine, ``write_case_folder``) treats it exactly like a ``ct.nii.gz``.

Public API
----------
:func:`is_dicom_folder` (cheap, needs no optional package),
:func:`list_dicom_series`, :func:`read_dicom_series_info` (``(Volume, DicomSeriesInfo)``),
:func:`read_dicom_series` (``Volume`` only; the info's warnings are issued with
:func:`warnings.warn`).  :func:`RadGPTLogic.io.assemble.case_with_dicom_ct` builds a
case on a series.

Geometry
--------
DICOM places each slice in the patient frame LPS (+x patient Left, +y Posterior,
+z Superior) with ImagePositionPatient ``p`` (centre of the first pixel),
ImageOrientationPatient ``(r, c)`` (direction of increasing column index, then of
increasing row index) and PixelSpacing ``(dr, dc)`` (distance between rows, then
between columns).  Slices are sorted by their position along the normal
``n = r x c``.  The *source* array has axes (column i, row j, slice k) and

    LPS(i, j, k) = p_0 + i * dc * r + j * dr * c + k * s * n

with ``p_0`` the first sorted slice and ``s`` the slice spacing.  RAS is LPS with
x and y negated, so the voxel-to-RAS affine is ``diag(-1, -1, 1, 1) @ A_LPS``; the
array is then reoriented exactly (a view, no resampling) into the canonical frame
like every NIfTI file (:func:`~RadGPTLogic.io.nifti.canonical_orientation`).

Checks (each failure is an :class:`~RadGPTLogic.errors.InputError` naming the folder):
the same orientation, pixel spacing and matrix in every slice; no two slices at one
position (several volumes in one series); uniform slice spacing within 1 % of the
median step (a step of about twice the spacing is reported as missing slices);
slice origins on one line along the normal (otherwise the stack is sheared: gantry
tilt).  Non-uniform spacing, missing slices and gantry tilt are accepted only with
``resample=True``, which interpolates (linear) onto a uniform, unsheared grid and
says so in the info's warnings; gaps of more than :data:`MAX_RESAMPLED_GAP` steps
are refused even then.

Values: SimpleITK/GDCM decodes every transfer syntax (JPEG 2000, JPEG lossless,
RLE ...) and applies each file's RescaleSlope/RescaleIntercept, so values are HU;
they are stored as int16 when every value is an integer in range, float32
otherwise (``Volume.slope`` 1, ``Volume.inter`` 0).

Provenance: ``Volume.sha256`` is the sha256 of the sorted, newline-joined sha256
hex digests of the series' files: it does not depend on file names, folder layout
or reading order, and changes when any file's bytes change.
"""

from __future__ import annotations

import hashlib
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..geometry import canonical_affine, canonical_orientation, to_canonical
from .nifti import Volume

# Relative tolerance on slice steps (and on the sideways drift of slice origins).
SPACING_TOLERANCE = 0.01
# Direction cosines of two slices agree when they differ by at most this much.
ORIENTATION_TOLERANCE = 1e-4
# Pixel spacings of two slices agree within this relative difference.
PIXEL_SPACING_TOLERANCE = 1e-4
# With resample=True, a gap of more than this many nominal steps is still refused
# (interpolating across it would invent anatomy).
MAX_RESAMPLED_GAP = 3.0
# What an error suggests to get past a geometry problem (the CLI's option name).
RESAMPLE_HINT = "pass --dicom-resample to interpolate onto a uniform grid"
SERIES_HINT = "pass --dicom-series UID to read another"
INSTALL_HINT = "reading DICOM needs SimpleITK: pip install radgpt-slicer[dicom]"

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])

# DICOM tags read from each file's header (SimpleITK metadata keys).
_TAG_SERIES_UID = "0020|000e"
_TAG_MODALITY = "0008|0060"
_TAG_DESCRIPTION = "0008|103e"
_TAG_SERIES_NUMBER = "0020|0011"
_TAG_FRAME_OF_REFERENCE = "0020|0052"
_TAG_IMAGE_TYPE = "0008|0008"
_TAG_POSITION = "0020|0032"
_TAG_ORIENTATION = "0020|0037"
_TAG_PIXEL_SPACING = "0028|0030"
_TAG_ROWS = "0028|0010"
_TAG_COLUMNS = "0028|0011"
_TAG_FRAMES = "0028|0008"
_TAG_SAMPLES = "0028|0002"
_TAG_TILT = "0018|1120"


# ===================================================================== data types

@dataclass(frozen=True)
class DicomSeriesSummary:
    """One series found in a folder (before any geometry check)."""

    uid: str
    modality: str
    description: str
    series_number: str
    n_files: int
    localizers: int = 0

    def label(self) -> str:
        uid = self.uid or "(no SeriesInstanceUID)"
        desc = f" '{self.description}'" if self.description else ""
        num = f" #{self.series_number}" if self.series_number else ""
        return f"{self.modality or '?'}{num}{desc} {uid} ({self.n_files} file(s))"


@dataclass
class DicomSeriesInfo:
    """What :func:`read_dicom_series_info` read, and why that series.

    Attributes
    ----------
    folder : Path
    series_uid, modality, description, series_number : str
    files : list of Path
        The series' files sorted along the slice normal (source slice k = files[k],
        unless ``resampled``).
    positions_mm : list of float
        Position of each sorted file along the slice normal (LPS mm).
    pixel_spacing_mm : (float, float)
        Along the column index (i) and the row index (j).
    slice_spacing_mm : float
        Spacing of the returned grid along the normal.
    resampled : bool
        True when the slices were interpolated (``resample=True`` and non-uniform
        spacing, missing slices or gantry tilt).
    chosen_because : str
    other_series : list of DicomSeriesSummary
        The folder's other series.
    skipped_files : int
        Files that are not DICOM images (or are localizers) and were ignored.
    warnings : list of str
        One-line messages for the user (series choice, resampling, skipped files).
    """

    folder: Path
    series_uid: str
    modality: str
    description: str
    series_number: str
    files: list
    positions_mm: list
    pixel_spacing_mm: tuple
    slice_spacing_mm: float
    resampled: bool = False
    chosen_because: str = ""
    other_series: list = field(default_factory=list)
    skipped_files: int = 0
    warnings: list = field(default_factory=list)


@dataclass
class _Header:
    path: Path
    uid: str
    modality: str
    description: str
    series_number: str
    frame_of_reference: str
    image_type: str
    position: tuple | None
    orientation: tuple | None
    pixel_spacing: tuple | None
    rows: int
    columns: int
    frames: int
    samples: int
    tilt: str

    @property
    def is_localizer(self) -> bool:
        return "LOCALIZER" in self.image_type.upper()

    def group_key(self) -> tuple:
        """Files with the same key form one series.  Without a SeriesInstanceUID
        (badly anonymised data) fall back on the tags that usually tell series apart."""
        if self.uid:
            return (self.uid,)
        return ("", self.modality, self.series_number, self.description, self.frame_of_reference,
                self.rows, self.columns)


# ======================================================================== public

def is_dicom_folder(path) -> bool:
    """True when ``path`` is a folder holding (at any depth) at least one DICOM file.

    Cheap and dependency-free: looks only at the first 132 bytes of files until one
    has the ``DICM`` marker (or starts like a preamble-less DICOM data set).
    """
    path = Path(path)
    if not path.is_dir():
        return False
    return any(_looks_like_dicom(p) for p in _walk_files(path))


def list_dicom_series(folder) -> list:
    """The series of a folder (recursive) as :class:`DicomSeriesSummary`, largest first.

    Raises :class:`InputError` naming ``folder`` when it is missing, empty, holds no
    DICOM image or SimpleITK is not installed.
    """
    folder = Path(folder)
    sitk = _import_sitk(folder)
    groups, _skipped, _n = _scan(sitk, folder)
    return sorted((_summary(g) for g in groups.values()), key=lambda s: (-s.n_files, s.series_number, s.uid))


def read_dicom_series(folder, series_uid: str | None = None, *, resample: bool = False) -> Volume:
    """Read one CT series from ``folder`` (recursively) into a canonical-frame :class:`Volume` in HU.

    See :func:`read_dicom_series_info`; the info's warnings (which series was chosen
    among several, resampling) are issued with :func:`warnings.warn`.
    """
    volume, info = read_dicom_series_info(folder, series_uid, resample=resample)
    for line in info.warnings:
        warnings.warn(line, UserWarning, stacklevel=2)
    return volume


def read_dicom_series_info(folder, series_uid: str | None = None, *, resample: bool = False):
    """Read one CT series from ``folder`` (recursively); return ``(Volume, DicomSeriesInfo)``.

    Parameters
    ----------
    folder : path
        A folder of DICOM files, at any depth; files that are not DICOM images are
        skipped (and counted in ``info.skipped_files``).
    series_uid : str, optional
        SeriesInstanceUID of the series to read.  Without it the CT series with the
        most slices is read and, when the folder holds other series, a warning says
        which one was taken.
    resample : bool
        Accept non-uniform slice spacing, a few missing slices or gantry tilt by
        interpolating onto a uniform, unsheared grid (linear).  Otherwise they are
        an :class:`InputError`.

    Returns
    -------
    (Volume, DicomSeriesInfo)
        ``Volume.array`` holds HU (int16 when all integral, else float32) in the
        canonical RAS frame; ``slope`` 1, ``inter`` 0; ``path`` is the folder;
        ``source_shape`` is (columns, rows, slices); ``sha256`` digests the files.

    Raises
    ------
    InputError
        Naming the folder: missing/empty folder, no DICOM image, no CT series, an
        unknown ``series_uid``, multi-frame files, inconsistent or missing geometry
        tags, several volumes in one series, non-uniform spacing / missing slices /
        gantry tilt (without ``resample``), undecodable pixel data, or SimpleITK not
        installed.
    """
    folder = Path(folder)
    sitk = _import_sitk(folder)
    groups, skipped, _n_files = _scan(sitk, folder)
    key, because = _choose_series(folder, groups, series_uid)
    headers = groups[key]
    chosen = _summary(headers)
    others = [_summary(g) for k, g in groups.items() if k != key]
    info_warnings = []
    if others:
        info_warnings.append(
            f"{folder}: holds {len(groups)} series; read {chosen.label()}, {because}; "
            "others: " + "; ".join(o.label() for o in sorted(others, key=lambda s: -s.n_files))
            + f" ({SERIES_HINT})"
        )
    if chosen.localizers:
        info_warnings.append(f"{folder}: {chosen.localizers} localizer image(s) of the series ignored")

    geo = _geometry(folder, headers, resample)
    info_warnings.extend(geo["warnings"])
    stack = _read_pixels(sitk, folder, geo["files"])  # (slices, rows, columns), HU
    if geo["resample"]:
        stack = _resample_stack(stack, geo)
    stack = _compact_hu(stack)

    source = stack.transpose(2, 1, 0)  # (i: column, j: row, k: slice), a view
    affine = LPS_TO_RAS @ geo["affine_lps"]
    ornt = canonical_orientation(affine)
    volume = Volume(
        array=to_canonical(source, ornt),
        affine=canonical_affine(affine, source.shape, ornt),
        ornt=ornt,
        source_shape=tuple(source.shape),
        slope=1.0,
        inter=0.0,
        path=folder,
        sha256=_series_digest(folder, geo["files"]),
    )
    info = DicomSeriesInfo(
        folder=folder,
        series_uid=chosen.uid,
        modality=chosen.modality,
        description=chosen.description,
        series_number=chosen.series_number,
        files=list(geo["files"]),
        positions_mm=[float(d) for d in geo["positions"]],
        pixel_spacing_mm=(float(geo["dc"]), float(geo["dr"])),
        slice_spacing_mm=float(geo["spacing"]),
        resampled=bool(geo["resample"]),
        chosen_because=because,
        other_series=others,
        skipped_files=skipped,
        warnings=info_warnings,
    )
    return volume, info


# ====================================================================== scanning

def _import_sitk(folder):
    try:
        import SimpleITK as sitk
    except ImportError:
        raise InputError(folder, INSTALL_HINT) from None
    return sitk


def _walk_files(folder: Path):
    """Files under ``folder`` in a stable order (hidden files and folders skipped)."""
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith("."):
                yield Path(root) / name


def _looks_like_dicom(path: Path) -> bool:
    """DICM marker at byte 128, or a preamble-less data set starting with group 0002/0008."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    if len(head) == 132 and head[128:132] == b"DICM":
        return True
    return len(head) >= 8 and head[:2] in (b"\x02\x00", b"\x08\x00") and head[2:4] in (
        b"\x00\x00", b"\x01\x00", b"\x05\x00", b"\x08\x00", b"\x10\x00", b"\x16\x00", b"\x12\x00"
    )


def _scan(sitk, folder: Path):
    """Headers of the folder's DICOM image files grouped by series: ``(groups, skipped, n_files)``."""
    if not folder.exists():
        raise InputError(folder, "DICOM folder does not exist")
    if not folder.is_dir():
        raise InputError(folder, "not a folder (expected a folder of DICOM files)")
    files = list(_walk_files(folder))
    if not files:
        raise InputError(folder, "folder is empty: no DICOM files")
    groups: dict = {}
    skipped = 0
    with _itk_warnings_off(sitk):
        for path in files:
            header = _read_header(sitk, path) if _looks_like_dicom(path) else None
            if header is None:
                skipped += 1
                continue
            groups.setdefault(header.group_key(), []).append(header)
    if not groups:
        raise InputError(
            folder, f"no DICOM image files found ({len(files)} file(s) examined, none readable as a DICOM image)"
        )
    return groups, skipped, len(files)


class _itk_warnings_off:
    """Silence ITK's stderr warnings (GDCM on odd files) for the duration of a read."""

    def __init__(self, sitk):
        self.po = sitk.ProcessObject

    def __enter__(self):
        self.old = self.po.GetGlobalWarningDisplay()
        self.po.SetGlobalWarningDisplay(False)

    def __exit__(self, *exc):
        self.po.SetGlobalWarningDisplay(self.old)
        return False


def _read_header(sitk, path: Path):
    """Parse one file's header with GDCM; None when it is not a readable DICOM image."""
    reader = sitk.ImageFileReader()
    reader.SetImageIO("GDCMImageIO")
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        return None
    meta = {k: reader.GetMetaData(k) for k in reader.GetMetaDataKeys()}

    def text(tag):
        return meta.get(tag, "").strip().strip("\x00").strip()

    size = reader.GetSize()
    return _Header(
        path=path,
        uid=text(_TAG_SERIES_UID),
        modality=text(_TAG_MODALITY).upper(),
        description=text(_TAG_DESCRIPTION),
        series_number=text(_TAG_SERIES_NUMBER),
        frame_of_reference=text(_TAG_FRAME_OF_REFERENCE),
        image_type=text(_TAG_IMAGE_TYPE),
        position=_floats(text(_TAG_POSITION), 3),
        orientation=_floats(text(_TAG_ORIENTATION), 6),
        pixel_spacing=_floats(text(_TAG_PIXEL_SPACING), 2),
        rows=_int(text(_TAG_ROWS), size[1] if len(size) > 1 else 0),
        columns=_int(text(_TAG_COLUMNS), size[0]),
        frames=max(_int(text(_TAG_FRAMES), 1), size[2] if len(size) > 2 else 1),
        samples=_int(text(_TAG_SAMPLES), reader.GetNumberOfComponents()),
        tilt=text(_TAG_TILT),
    )


def _floats(value: str, n: int):
    parts = [p for p in value.replace(",", "\\").split("\\") if p.strip()]
    if len(parts) != n:
        return None
    try:
        out = tuple(float(p) for p in parts)
    except ValueError:
        return None
    return out if all(math.isfinite(v) for v in out) else None


def _int(value: str, default: int) -> int:
    try:
        return int(float(value))
    except ValueError:
        return int(default)


def _summary(headers) -> DicomSeriesSummary:
    h = headers[0]
    return DicomSeriesSummary(
        uid=h.uid, modality=h.modality, description=h.description, series_number=h.series_number,
        n_files=sum(1 for x in headers if not x.is_localizer),
        localizers=sum(1 for x in headers if x.is_localizer),
    )


def _choose_series(folder: Path, groups: dict, series_uid):
    """Key of the series to read and why."""
    summaries = {k: _summary(g) for k, g in groups.items()}
    listing = "; ".join(s.label() for s in sorted(summaries.values(), key=lambda s: -s.n_files))
    if series_uid is not None:
        wanted = str(series_uid).strip()
        keys = [k for k, s in summaries.items() if s.uid == wanted]
        if not keys:
            raise InputError(folder, f"no series with SeriesInstanceUID {wanted!r}; found: {listing}")
        if len(keys) > 1:
            raise InputError(folder, f"several series without a SeriesInstanceUID; found: {listing}")
        key = keys[0]
        if summaries[key].modality not in ("CT", ""):
            raise InputError(folder, f"series {wanted} is {summaries[key].modality}, not CT (values would not be HU)")
        return key, "the series asked for"
    ct = [k for k, s in summaries.items() if s.modality == "CT" and s.n_files > 0]
    because = "the CT series with the most slices"
    if not ct:
        ct = [k for k, s in summaries.items() if s.modality == "" and s.n_files > 0]
        because = "the series with the most slices (no Modality tag: assumed CT)"
    if not ct:
        raise InputError(folder, f"no CT series in the folder; found: {listing}")
    key = min(ct, key=lambda k: (-summaries[k].n_files, _int(summaries[k].series_number, 0), summaries[k].uid))
    if len(groups) == 1:
        because = "the only series"
    return key, because


# ====================================================================== geometry

def _geometry(folder: Path, headers, resample: bool) -> dict:
    """Sort the slices along the normal and check the stack; the voxel -> LPS affine.

    Returns a dict with ``files`` (sorted), ``positions`` (mm along the normal),
    ``affine_lps`` (4x4 for the returned grid), ``dc``/``dr`` (pixel spacing along
    columns i / rows j), ``spacing`` (slice step of the returned grid), ``resample``
    (None, or the plan: target positions and per-slice sideways shifts) and
    ``warnings``.
    """
    images = [h for h in headers if not h.is_localizer]
    if not images:
        raise InputError(folder, "the series holds only localizer images")
    first = images[0]
    multi = [h for h in images if h.frames > 1]
    if multi:
        raise InputError(
            folder,
            f"{multi[0].path.name} is a multi-frame (enhanced) DICOM image with {multi[0].frames} frames; "
            "only series of single-frame files are supported (convert it, e.g. with dcm2niix)",
        )
    if any(h.samples != 1 for h in images):
        raise InputError(folder, "the series holds colour images (SamplesPerPixel != 1), not CT")
    for tag, attr in (("ImagePositionPatient", "position"), ("ImageOrientationPatient", "orientation"),
                      ("PixelSpacing", "pixel_spacing")):
        missing = [h for h in images if getattr(h, attr) is None]
        if missing:
            raise InputError(
                folder, f"{missing[0].path.name} (and {len(missing) - 1} other file(s)) lack a valid {tag}: "
                "the slices cannot be placed in space",
            )
    if len(images) < 2:
        raise InputError(folder, "the series holds a single slice, not a volume")
    if any((h.rows, h.columns) != (first.rows, first.columns) for h in images):
        sizes = sorted({(h.rows, h.columns) for h in images})
        raise InputError(folder, f"slices of the series differ in matrix size (rows x columns {sizes})")
    ps = np.array([h.pixel_spacing for h in images], float)
    if np.any(ps <= 0) or np.any(np.abs(ps - ps[0]) > PIXEL_SPACING_TOLERANCE * ps[0]):
        raise InputError(folder, f"slices of the series differ in PixelSpacing ({ps.min():.6g}..{ps.max():.6g} mm) "
                                 "or it is not positive")
    iop = np.array([h.orientation for h in images], float)
    if np.any(np.abs(iop - iop[0]) > ORIENTATION_TOLERANCE):
        raise InputError(
            folder, "slices of the series differ in ImageOrientationPatient (inconsistent orientation); "
            "the series mixes differently oriented images",
        )
    r, c = iop[0, :3], iop[0, 3:]
    if abs(np.linalg.norm(r) - 1) > 1e-3 or abs(np.linalg.norm(c) - 1) > 1e-3 or abs(r @ c) > 1e-3:
        raise InputError(folder, f"ImageOrientationPatient {tuple(iop[0])} is not two orthogonal unit vectors")
    r = r / np.linalg.norm(r)
    c = c - (c @ r) * r
    c = c / np.linalg.norm(c)
    n = np.cross(r, c)
    dr, dc = float(ps[0, 0]), float(ps[0, 1])  # between rows (along c), between columns (along r)

    pos = np.array([h.position for h in images], float)
    d = pos @ n
    order = np.argsort(d, kind="stable")
    files = [images[i].path for i in order]
    pos, d = pos[order], d[order]
    steps = np.diff(d)
    dup = np.flatnonzero(steps < 1e-3)
    if dup.size:
        raise InputError(
            folder,
            f"{dup.size} pair(s) of slices share a position (e.g. {files[dup[0]].name} and "
            f"{files[dup[0] + 1].name} at {d[dup[0]]:.4g} mm along the normal): the series holds more than one "
            "volume (several phases, echoes or reconstructions); pick another series or split it",
        )
    nominal = float(np.median(steps))
    problems, plan = [], {}
    bad = np.abs(steps - nominal) > SPACING_TOLERANCE * nominal
    if bad.any():
        ratio = steps[bad] / nominal
        whole = np.rint(steps / nominal)  # each step in whole nominal spacings
        gaps = bad & (np.abs(steps / nominal - whole) <= SPACING_TOLERANCE * whole) & (steps > 1.5 * nominal)
        if gaps.any() and gaps.sum() == bad.sum():
            n_missing = int(np.sum(np.rint(steps[gaps] / nominal) - 1))
            g = int(np.flatnonzero(gaps)[0])
            where = "a gap" if gaps.sum() == 1 else f"{int(gaps.sum())} gaps, the first"
            problems.append(
                f"{n_missing} slice(s) missing ({where} of {steps[g]:.4g} mm after {files[g].name} "
                f"at {d[g]:.4g} mm, where the slice spacing is {nominal:.4g} mm)"
            )
        else:
            problems.append(
                f"slice spacing is not uniform: {int(bad.sum())} of {len(steps)} steps differ from the median "
                f"{nominal:.4g} mm by more than {SPACING_TOLERANCE:.0%} (steps {steps.min():.4g}..{steps.max():.4g} mm)"
            )
        if resample and float(ratio.max()) > MAX_RESAMPLED_GAP:
            raise InputError(
                folder,
                problems[-1] + f"; a gap of {float(ratio.max()):.3g} slice spacings is too large to interpolate",
            )
        plan["targets"] = d[0] + nominal * np.arange(int(round((d[-1] - d[0]) / nominal)) + 1)
    # Sideways drift of each slice origin from the normal through the first one.
    rel = pos - pos[0]
    lateral = rel - np.outer(rel @ n, n)
    drift = np.linalg.norm(lateral, axis=1)
    if drift.max() > SPACING_TOLERANCE * nominal:
        extent = float(d[-1] - d[0])
        angle = math.degrees(math.atan2(float(drift[-1]), extent)) if extent > 0 else 0.0
        tag = f", GantryDetectorTilt {first.tilt} degrees" if first.tilt else ""
        problems.append(
            f"slice origins drift {drift.max():.3g} mm sideways over {extent:.4g} mm (gantry tilt of about "
            f"{angle:.2f} degrees{tag}): the stack is sheared"
        )
        plan["shift_ij"] = np.stack([lateral @ r / dc, lateral @ c / dr], axis=1)  # pixels along i, j
    out_warnings = []
    spacing = float((d[-1] - d[0]) / (len(d) - 1))
    if problems:
        if not resample:
            raise InputError(folder, "; ".join(problems) + f"; {RESAMPLE_HINT}")
        out_warnings.append(f"{folder}: " + "; ".join(problems) + "; resampled (linear) onto a uniform grid")
        if bad.any():
            spacing = nominal
        else:
            plan["targets"] = d.copy()  # spacing is fine: only the shear is undone
        plan["positions"] = d
    else:
        plan = {}
    affine = np.eye(4)
    affine[:3, 0] = r * dc
    affine[:3, 1] = c * dr
    affine[:3, 2] = n * spacing
    affine[:3, 3] = pos[0]
    return {
        "files": files, "positions": d, "affine_lps": affine, "dc": dc, "dr": dr, "spacing": spacing,
        "resample": plan or None, "warnings": out_warnings,
    }


# ======================================================================== pixels

def _read_pixels(sitk, folder: Path, files) -> np.ndarray:
    """Decode the sorted files into one (slices, rows, columns) array of HU.

    Integer slices are kept as int16 while every value fits; the stack switches to
    float32 at the first slice that needs it (non-integral rescaling).
    """
    stack: np.ndarray | None = None
    with _itk_warnings_off(sitk):
        for k, path in enumerate(files):
            reader = sitk.ImageFileReader()
            reader.SetImageIO("GDCMImageIO")
            reader.SetFileName(str(path))
            try:
                img = reader.Execute()
            except RuntimeError as exc:
                detail = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
                raise InputError(folder, f"cannot decode the pixel data of {path.name} ({detail})") from None
            sl = sitk.GetArrayViewFromImage(img)
            if sl.ndim == 3:
                sl = sl[0]
            if stack is None:
                stack = np.empty((len(files),) + sl.shape, np.int16)
            if sl.shape != stack.shape[1:]:
                raise InputError(folder,
                                 f"{path.name}: pixel matrix {sl.shape} differs from the series' {stack.shape[1:]}")
            if stack.dtype == np.int16 and not _fits_int16(sl):
                stack = stack.astype(np.float32)
            stack[k] = sl
    if stack is None:
        raise InputError(folder, "no slices to read")
    if stack.dtype == np.float32 and not np.all(np.isfinite(stack)):
        raise InputError(folder, "pixel data holds NaN or infinite values")
    return stack


def _fits_int16(sl: np.ndarray) -> bool:
    if np.issubdtype(sl.dtype, np.integer):
        return sl.size == 0 or (int(sl.min()) >= -32768 and int(sl.max()) <= 32767)
    return bool(np.all(np.isfinite(sl)) and np.all(sl == np.rint(sl)) and sl.min() >= -32768 and sl.max() <= 32767)


def _compact_hu(stack: np.ndarray) -> np.ndarray:
    """int16 when every value is an integer in range, float32 otherwise."""
    if stack.dtype == np.int16:
        return stack
    stack = stack.astype(np.float32, copy=False)
    if _fits_int16(stack):
        return stack.astype(np.int16)
    return stack


def _resample_stack(stack: np.ndarray, geo: dict) -> np.ndarray:
    """Undo gantry-tilt shear (per-slice shift) and interpolate onto uniform positions (linear)."""
    from scipy.ndimage import shift as nd_shift

    plan = geo["resample"]
    work = stack.astype(np.float32)
    fill = float(work.min())
    if "shift_ij" in plan:
        for k, (si, sj) in enumerate(plan["shift_ij"]):
            if abs(si) > 1e-6 or abs(sj) > 1e-6:
                # output[j, i] = input[j - sj, i - si]: slice k moved onto the normal through slice 0.
                work[k] = nd_shift(work[k], (sj, si), order=1, mode="constant", cval=fill)
    d = plan["positions"]
    targets = plan["targets"]
    if len(targets) == len(d) and np.allclose(targets, d, atol=1e-9):
        return work
    out = np.empty((len(targets),) + work.shape[1:], np.float32)
    idx = np.clip(np.searchsorted(d, targets, side="right") - 1, 0, len(d) - 2)
    for m, (t, a) in enumerate(zip(targets, idx)):
        w = float(np.clip((t - d[a]) / (d[a + 1] - d[a]), 0.0, 1.0))
        out[m] = work[a] * (1.0 - w) + work[a + 1] * w if w > 0 else work[a]
    return out


# ==================================================================== provenance

def _series_digest(folder: Path, files) -> str:
    """sha256 over the sorted sha256 hex digests of the series' files."""
    digests = []
    for path in files:
        h = hashlib.sha256()
        try:
            with open(path, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
        except OSError as exc:
            raise InputError(folder, f"cannot read {path.name} ({exc.strerror or exc})") from None
        digests.append(h.hexdigest())
    return hashlib.sha256("\n".join(sorted(digests)).encode("ascii")).hexdigest()
