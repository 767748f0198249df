"""Finding the case folders under a batch root (one :class:`CaseFolder` per case, problems named)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ...errors import InputError

#: Files that mark a folder as a batch output or a triplet dataset (copies, not cases).
OUTPUT_MARKERS = ("batch_summary.json", "metadata.jsonl")


@dataclass(frozen=True)
class CaseFolder:
    """A case folder found under the root; ``problem`` (one line) when it cannot be run."""

    case_id: str
    path: Path
    problem: str | None = None
    needs_segmentation: bool = False  # a CT without masks, to be segmented first


def _is_case(path: Path) -> bool:
    return (path / "segmentations").is_dir()


def _has_ct(path: Path) -> bool:
    from ...io.casefolder import CT_FILE_NAMES

    return any((path / n).is_file() for n in CT_FILE_NAMES)


def _looks_like_case(path: Path) -> bool:
    return path.name.upper().startswith("BDMAP_") or _has_ct(path)


def discover_cases(root, exclude=(), segment: bool = False) -> list:
    """Case folders under ``root``, sorted by case id (then path).

    A case folder holds ``segmentations/``; ``root`` itself may be one.  The search
    descends into other folders (not into case folders, hidden folders, ``exclude``,
    or folders holding ``batch_summary.json`` or ``metadata.jsonl``: batch outputs
    and triplet datasets), following symbolic links once.  Folders that look like a case
    (hold ``ct.nii.gz``/``ct.nii`` or are named ``BDMAP_*``) but lack
    ``segmentations/`` come back with a ``problem``; so does the second folder of
    a case id found twice.  With ``segment`` (a segmentation model is given), a
    folder holding a CT but no ``segmentations/`` is a case to segment first
    (``needs_segmentation``).
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError(root, "case root does not exist or is not a folder")
    if _is_case(root):
        return [CaseFolder(root.name, root, None)]
    skip = {os.path.realpath(p) for p in exclude}
    found, stack, seen = [], [root], set()
    while stack:
        folder = stack.pop()
        real = os.path.realpath(folder)
        if real in seen:
            continue
        seen.add(real)
        try:
            with os.scandir(folder) as it:
                subdirs = sorted(Path(e.path) for e in it if not e.name.startswith(".") and e.is_dir())
        except OSError:
            continue
        for sub in reversed(subdirs):
            if os.path.realpath(sub) in skip:
                continue
            if any((sub / n).is_file() for n in OUTPUT_MARKERS):
                continue  # a batch output or a triplet dataset: copies, not cases
            if _is_case(sub):
                found.append(CaseFolder(sub.name, sub, None))
            elif segment and _has_ct(sub):
                found.append(CaseFolder(sub.name, sub, None, needs_segmentation=True))
            elif _looks_like_case(sub):
                problem = InputError(sub / "segmentations",
                                     "missing folder: a case needs segmentations/<structure>.nii.gz").one_line()
                found.append(CaseFolder(sub.name, sub, problem))
            else:
                stack.append(sub)
    found.sort(key=lambda c: (c.case_id, c.problem is not None, str(c.path)))
    out: list[CaseFolder] = []
    first: dict[str, CaseFolder] = {}  # case id -> the folder that keeps it
    for case in found:
        if case.case_id in first:
            other = first[case.case_id]
            duplicate = InputError(case.path, f"duplicate case id (also found at {other.path}); not run")
            case = CaseFolder(case.case_id, case.path, duplicate.one_line())
        else:
            first[case.case_id] = case
        out.append(case)
    return out
