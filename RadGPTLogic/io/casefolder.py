"""Case folders (AbdomenAtlas layout): the one definition of their files, loading and writing.

A case folder is::

    CASE_ID/
      ct.nii.gz                          optional (ct.nii also read)
      segmentations/<structure>.nii.gz   one binary mask per structure (.nii also read)
      segmentation.json                  optional: how a model made the masks (segmentation stage)
      probabilities/<lesion mask>.npz    optional: a model's lesion probabilities (see io.probabilities)

:func:`case_folder_files` says which files a folder holds and what each is; it is
used by loading (:func:`load_case`), batch resume (input hashes) and triplet
export, so that all three agree.  :func:`write_case_folder` writes any
:class:`~RadGPTLogic.case.Case` back in this layout, on the reference file's own
grid and orientation.  See docs/CONTRACT.md.
"""

from __future__ import annotations

import errno
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import vocabulary as vocab
from ..case import Case, Crop
from ..errors import InputError
from .assemble import add_mask_volume, attach_ct, case_on_volume_grid
from .atomic import publish, sha256_file
from .nifti import nifti_gz_bytes, read_niftis
from .probabilities import PROBABILITIES, attach_probabilities, check_segmentation_record, read_probability

CT_FILE_NAMES = ("ct.nii.gz", "ct.nii")
SEGMENTATIONS = "segmentations"
SEGMENTATION_RECORD = "segmentation.json"
MASK_SUFFIXES = (".nii.gz", ".nii")


@dataclass(frozen=True)
class MaskFile:
    """One file in ``segmentations/``: its path, name without suffix, and canonical structure
    (None for names that are not structures; ``unused`` for known names no rule reads)."""

    path: Path
    stem: str
    structure: str | None
    unused: bool

    @property
    def relative(self) -> str:
        return f"{SEGMENTATIONS}/{self.path.name}"


@dataclass(frozen=True)
class CaseFolderFiles:
    """The files of one case folder (see :func:`case_folder_files`)."""

    case_dir: Path
    ct: Path | None
    masks: tuple
    other: tuple = ()  # files in segmentations/ that are not masks (named in a warning)
    segmentation: Path | None = None  # segmentation.json, when the folder has one
    probabilities: tuple = ()  # probabilities/*.npz

    def inputs(self) -> dict:
        """Files that findings depend on: relative name -> path (the CT, every known structure,
        segmentation.json and the probability files, which give lesions their confidence)."""
        out = {}
        if self.ct is not None:
            out[self.ct.name] = self.ct
        for mask in self.masks:
            if mask.structure is not None:
                out[mask.relative] = mask.path
        if self.segmentation is not None:
            out[SEGMENTATION_RECORD] = self.segmentation
            for path in self.probabilities:
                out[f"{PROBABILITIES}/{path.name}"] = path
        return out


def mask_stem(name: str) -> str:
    """A mask file's name without ``.nii.gz`` / ``.nii``."""
    for suffix in (".nii.gz", ".nii"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _kind_problem(path: Path) -> str | None:
    """Why ``path`` (named like an image) cannot be read as a file, or None when it is a regular file."""
    try:
        st = os.stat(path)  # follows links
    except FileNotFoundError:
        return "broken symbolic link (its target does not exist)" if os.path.islink(path) else "file not found"
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "symbolic link loop"
        return f"cannot read ({exc.strerror or exc})"
    if stat.S_ISDIR(st.st_mode):
        return "is a folder, not an image file"
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file (a pipe, socket or device)"
    return None


def case_folder_files(case_dir) -> CaseFolderFiles:
    """Which files the case folder ``case_dir`` holds, and what each one is.

    Every entry is used or named: a name that looks like a mask or the CT but is not
    a readable regular file (a broken link, a link loop, a folder, a pipe) is an
    :class:`InputError`; so are two files for one structure (``gall_bladder`` and
    ``gallbladder``, or ``spleen.nii.gz`` and ``spleen.nii``) and two CT files.
    Other files in ``segmentations/`` come back in ``other`` (the loader warns).
    Also an error: a missing folder, a missing ``segmentations/``, one without mask
    files.
    """
    case_dir = Path(case_dir)
    if not case_dir.exists():
        raise InputError(case_dir, "case folder does not exist")
    if not case_dir.is_dir():
        raise InputError(case_dir, "not a folder (expected a case folder with segmentations/)")
    seg_dir = case_dir / SEGMENTATIONS
    if not seg_dir.is_dir():
        raise InputError(seg_dir, "missing folder: a case needs segmentations/<structure>.nii.gz")
    try:
        names = sorted(os.listdir(seg_dir))
    except OSError as exc:
        raise InputError(seg_dir, f"cannot list the folder ({exc.strerror or exc})") from None
    masks: list[MaskFile] = []
    other: list[Path] = []
    owner: dict[str, Path] = {}  # structure -> the file that gave it
    for name in names:
        path = seg_dir / name
        if not name.endswith(MASK_SUFFIXES):
            other.append(path)
            continue
        problem = _kind_problem(path)
        if problem:
            raise InputError(path, problem)
        stem = mask_stem(name)
        structure = vocab.canonical_name(stem)
        if structure is not None:
            if structure in owner:
                raise InputError(path, f"maps to the structure '{structure}' like {owner[structure].name}; "
                                       "keep one file per structure")
            owner[structure] = path
        masks.append(MaskFile(path, stem, structure, structure is None and vocab.is_known_unused(stem)))
    if not masks:
        raise InputError(seg_dir, "no mask files (*.nii.gz) in the folder")
    ct = None
    for name in CT_FILE_NAMES:
        path = case_dir / name
        if not os.path.lexists(path):
            continue
        problem = _kind_problem(path)
        if problem:
            raise InputError(path, f"the CT cannot be read: {problem}")
        if ct is not None:
            raise InputError(path, f"two CT files ({ct.name} and {name}); keep one")
        ct = path
    record = case_dir / SEGMENTATION_RECORD
    segmentation = record if os.path.lexists(record) else None
    probabilities: list[Path] = []
    prob_dir = case_dir / PROBABILITIES
    if segmentation is not None and prob_dir.is_dir():
        try:
            probabilities = [prob_dir / n for n in sorted(os.listdir(prob_dir)) if n.endswith(".npz")]
        except OSError as exc:
            raise InputError(prob_dir, f"cannot list the folder ({exc.strerror or exc})") from None
    return CaseFolderFiles(case_dir, ct, tuple(masks), tuple(other), segmentation, tuple(probabilities))


def read_segmentation_record(path) -> dict:
    """``segmentation.json`` read and checked (:func:`~RadGPTLogic.io.probabilities.check_segmentation_record`);
    unreadable or malformed JSON is an :class:`InputError` naming the file."""
    path = Path(path)
    problem = _kind_problem(path)
    if problem:
        raise InputError(path, problem)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(path, f"cannot read the segmentation record ({exc})") from None
    except ValueError as exc:
        raise InputError(path, f"not valid JSON ({exc})") from None
    return check_segmentation_record(data, path)


def _attach_segmentation(case: Case, files: CaseFolderFiles) -> None:
    """Read ``segmentation.json`` and the probability files of the lesion masks the case has."""
    if files.segmentation is None:
        return
    record = read_segmentation_record(files.segmentation)
    case.sources[SEGMENTATION_RECORD] = [{"path": str(files.segmentation),
                                          "sha256": sha256_file(files.segmentation)}]
    crops = {}
    for name, entry in record["structures"].items():
        canonical = vocab.canonical_name(name)
        rel = entry.get("probabilities")
        if not rel or canonical not in vocab.LESIONS or canonical not in case.structures:
            continue
        path = files.case_dir / rel
        problem = _kind_problem(path)
        if problem:
            raise InputError(path, f"probabilities of {name} (listed in {SEGMENTATION_RECORD}): {problem}")
        crops[canonical] = read_probability(path, case.source_shape)
    # Every probability file counts as an input (batch resume re-runs a case when one changes).
    for path in files.probabilities:
        problem = _kind_problem(path)
        if problem:
            raise InputError(path, problem)
        case.sources[f"{PROBABILITIES}/{path.name}"] = [{"path": str(path), "sha256": sha256_file(path)}]
    attach_probabilities(case, record, crops, files.segmentation)


def load_case(case_dir, *, resample: bool = False) -> Case:
    """Load an AbdomenAtlas case folder into a :class:`Case` (every file read once).

    The CT, when present, is the reference grid; otherwise the first mask is.
    Masks on another grid are an :class:`InputError` unless ``resample`` is set, in
    which case they are resampled (nearest neighbour) onto it.  A ``segmentation.json``
    is read into ``case.segmentation`` and the probability files it lists for the
    lesion masks present into ``case.probabilities`` (canonical frame); a malformed
    record, or a probability file that is missing, unreadable or cut from another
    grid, is an :class:`InputError` naming that file.
    """
    files = case_folder_files(case_dir)
    if not any(m.structure for m in files.masks):  # only unknown or unused names
        found = ", ".join(m.path.name for m in files.masks[:6]) + (" ..." if len(files.masks) > 6 else "")
        raise InputError(files.case_dir / SEGMENTATIONS,
                         f"no mask has a known structure name (found: {found}); name masks as in "
                         "docs/CONTRACT.md (liver.nii.gz, liver_lesion.nii.gz, ...)")
    known = [m for m in files.masks if m.structure is not None]
    # The CT and the masks are read side by side (inflating releases the GIL), in this order.
    volumes = read_niftis(([files.ct] if files.ct is not None else []) + [m.path for m in known])
    try:
        case: Case | None = None
        ct = None
        if files.ct is not None:
            ct = next(volumes)
            case = case_on_volume_grid(files.case_dir.name, ct)
            attach_ct(case, ct)
        warnings, ignored = [], []
        warnings += [f"{p}: not a mask file (*.nii.gz); ignored" for p in files.other]
        for mask in files.masks:
            if mask.structure is None:
                if mask.unused:
                    ignored.append(mask.stem)
                else:
                    warnings.append(f"{mask.path}: unknown structure name '{mask.stem}' (ignored)")
                continue
            vol = next(volumes)
            if case is None:
                case = case_on_volume_grid(files.case_dir.name, vol)
            add_mask_volume(case, mask.structure, vol, resample=resample, reference=ct)
            del vol  # only its crop stays: free the decompressed file before the next one is read
    finally:
        volumes.close()  # stop reading ahead when a file is refused
    assert case is not None  # the folder has a known mask (checked above), so a grid
    case.warnings[:0] = warnings
    case.ignored.extend(ignored)
    _attach_segmentation(case, files)
    return case


# ================================================================================ writing

def full_mask(case: Case, crop: Crop) -> np.ndarray:
    """``crop`` as a full-grid uint8 (0/1) array in the canonical frame."""
    full = np.zeros(case.shape, np.uint8)  # calloc: untouched pages cost nothing
    if not crop.is_empty:
        full[crop.slices] = crop.mask
    return full


def crop_nifti_bytes(case: Case, crop: Crop) -> bytes:
    """A gzipped NIfTI-1 (uint8, 0/1) of ``crop`` on the case's reference grid and orientation."""
    return nifti_gz_bytes(full_mask(case, crop), case.ornt, case.affine)


def ct_for_writing(case: Case) -> np.ndarray:
    """CT values to store, canonical frame.

    Scaled CTs are written as HU: int16 when every HU value is an integer in range
    (the usual slope 1, intercept -1024 case), float32 otherwise.
    """
    if case.ct_raw is None:
        raise ValueError("case has no CT")
    if (case.ct_slope, case.ct_inter) == (1.0, 0.0):
        return case.ct_raw
    hu = case.hu(tuple(slice(None) for _ in range(3)))
    if np.all(hu == np.rint(hu)) and hu.min() >= -32768 and hu.max() <= 32767:
        return hu.astype(np.int16)
    return hu


def write_case_folder(case: Case, out_dir) -> Path:
    """Write ``case`` as an AbdomenAtlas case folder.

    Writes ``out_dir/ct.nii.gz`` (when the case has a CT) and
    ``out_dir/segmentations/<name>.nii.gz`` (uint8, 0/1) for every structure, all in
    the orientation and on the voxel grid of the case's reference file
    (``case.ornt``, ``case.source_shape``).  All or nothing; ``out_dir`` may exist
    only when empty.  Returns ``out_dir``.
    """
    out_dir = Path(out_dir)
    for name in case.structures:
        if Path(name).name != name or name.startswith("."):
            raise ValueError(f"structure name {name!r} is not a plain file name")
    files = {}
    if case.has_ct:
        files["ct.nii.gz"] = nifti_gz_bytes(np.asarray(ct_for_writing(case)), case.ornt, case.affine)
    for name in sorted(case.structures):
        files[f"{SEGMENTATIONS}/{name}.nii.gz"] = crop_nifti_bytes(case, case.structures[name])
    publish(out_dir, files, fresh=True)
    return out_dir


def relative_inputs(case_dir) -> dict:
    """``case_folder_files(case_dir).inputs()``, or {} when the folder is not a readable case."""
    try:
        return case_folder_files(case_dir).inputs()
    except (InputError, OSError):
        return {}


__all__ = [
    "CT_FILE_NAMES", "SEGMENTATIONS", "MASK_SUFFIXES", "MaskFile", "CaseFolderFiles", "case_folder_files",
    "load_case", "write_case_folder", "crop_nifti_bytes", "full_mask", "ct_for_writing", "relative_inputs",
    "mask_stem", "SEGMENTATION_RECORD", "read_segmentation_record",
]
