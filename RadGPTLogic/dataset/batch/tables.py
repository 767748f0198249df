"""Input tables of a batch: the phase of each case (``--phase-csv``) and the case ids to run (``--ids``).

Small CSV/TSV files read whole; header names are matched loosely so that RadGPT's
``AbdomenAtlas_metadata.csv`` works as is.  Every problem is an
:class:`~RadGPTLogic.errors.InputError` naming the file (and line).
"""

from __future__ import annotations

import csv
from pathlib import Path

from ...errors import InputError
from ...rules import PHASES, normalise_phase


def _norm_key(text: str) -> str:
    """A table header or id for comparison: lower case, ``_``/``-`` as spaces, spaces squeezed."""
    return " ".join(str(text).strip().lower().replace("_", " ").replace("-", " ").split())


_ID_HEADERS = {"case id", "case", "id", "bdmap id", "bdmap", "caseid", "case name", "name"}
_PHASE_HEADERS = {"phase", "ct phase", "contrast phase", "contrast"}


def _read_table(path) -> list:
    """``(line number, stripped cells)`` of a small CSV/TSV file; blank lines dropped."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise InputError(path, f"cannot read file ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise InputError(path, "not a UTF-8 text file") from None
    lines = text.splitlines()
    first = next((line for line in lines if line.strip()), "")
    delimiter = "\t" if "\t" in first else ";" if (";" in first and "," not in first) else ","
    rows = []
    for n, row in enumerate(csv.reader(lines, delimiter=delimiter), start=1):
        cells = [c.strip() for c in row]
        if any(cells):
            rows.append((n, cells))
    return rows


def read_phase_csv(path) -> dict:
    """``case_id -> phase`` from a CSV with ``case_id,phase`` columns.

    Header names are matched loosely (``case_id``/``BDMAP ID``/``case``/``id`` and
    ``phase``/``CT Phase``); without a header the first two columns are taken.
    Values go through :func:`~RadGPTLogic.rules.normalise_phase`; an unknown value,
    or one case given two different phases, is an :class:`InputError` naming the
    file and line.
    """
    rows = _read_table(path)
    if not rows:
        raise InputError(path, "empty phase CSV (expected case_id,phase rows)")
    header = [_norm_key(c) for c in rows[0][1]]
    id_col = next((i for i, h in enumerate(header) if h in _ID_HEADERS), None)
    phase_col = next((i for i, h in enumerate(header) if h in _PHASE_HEADERS), None)
    if id_col is not None and phase_col is not None:
        body = rows[1:]
    elif len(rows[0][1]) >= 2 and normalise_phase(rows[0][1][1]) is not None and id_col is None:
        id_col, phase_col, body = 0, 1, rows  # no header
    else:
        raise InputError(path, "no case_id and phase columns (expected a header 'case_id,phase')")
    out: dict[str, str] = {}
    for line, cells in body:
        case_id = cells[id_col] if id_col < len(cells) else ""
        if not case_id:
            continue
        raw = cells[phase_col] if phase_col < len(cells) else ""
        phase = normalise_phase(raw)
        if phase is None:
            raise InputError(path, f"line {line}: unknown phase {raw!r} for {case_id} "
                                   f"(expected one of {', '.join(PHASES)}, or Plain/Venous/Arterial/Delay)")
        if case_id in out and out[case_id] != phase:
            raise InputError(path, f"line {line}: {case_id} has two phases ({out[case_id]} and {phase})")
        out[case_id] = phase
    return out


def read_ids(path) -> list:
    """Case ids from a text file (one per line, ``#`` comments) or a CSV with a
    ``case_id`` / ``BDMAP ID`` column (else its first column); order kept, duplicates dropped."""
    rows = _read_table(path)
    if not rows:
        return []
    header = [_norm_key(c) for c in rows[0][1]]
    col = next((i for i, h in enumerate(header) if h in _ID_HEADERS), None)
    body = rows[1:] if col is not None else rows
    col = col or 0
    out = []
    for _, cells in body:
        value = cells[col] if col < len(cells) else ""
        if value and not value.startswith("#") and value not in out:
            out.append(value)
    return out
