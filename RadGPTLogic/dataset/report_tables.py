"""Dataset-wide tables of finished cases: ``reports.csv`` and a tidy findings table.

``reports.csv``
    One row per case in the column style of AbdomenAtlas 3.0's report CSV
    (:data:`REPORTS_COLUMNS`): ``BDMAP ID`` (the case id), ``structured report`` (the
    report.txt text) and ``narrative report`` (the fact-checked LLM narrative where
    one was accepted, else empty).
``findings_table.parquet`` (``findings_table.csv`` where pyarrow is not installed)
    One row per organ and one row per lesion of every case (:data:`FINDINGS_COLUMNS`),
    read straight from findings.json, for analysis with pandas, R or DuckDB.
    Numbers are unrounded, as in findings.json; absent values are null (empty in CSV).

``radgpt batch`` writes both into its output folder after every run (from the cases
that are ok or skipped); ``radgpt export-triplets`` writes them into the dataset from
the same files it exports, so the dataset's tables, its metadata and its case folders
agree.  Each file is replaced atomically.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Iterable

from ..findings import FindingsDict

REPORTS_CSV = "reports.csv"
REPORTS_COLUMNS = ("BDMAP ID", "structured report", "narrative report")
FINDINGS_TABLE = "findings_table"

#: Columns of the findings table (one row per organ or lesion).
FINDINGS_COLUMNS = (
    "case_id", "phase", "row_type", "structure", "lesion_id", "organ", "side", "kind",
    "volume_ml", "mean_hu", "sd_hu", "longest_diameter_mm", "perpendicular_diameter_mm", "attenuation",
    "location", "t_stage", "resectability", "enlarged", "steatosis", "complete",
)

_NUMERIC = {"volume_ml", "mean_hu", "sd_hu", "longest_diameter_mm", "perpendicular_diameter_mm"}


def _location_text(location) -> str | None:
    """A lesion's location as one string: Couinaud segments, pancreas part or kidney pole, ``;``-joined."""
    if not location:
        return None
    if isinstance(location, dict):
        parts: list[str] = []
        for value in location.values():
            if isinstance(value, (list, tuple)):
                parts.extend(str(v) for v in value)
            elif value is not None:
                parts.append(str(value))
        return ";".join(parts) or None
    return str(location)


def findings_rows(findings: FindingsDict) -> list:
    """The findings-table rows of one case (native types)."""
    base = {"case_id": findings.get("case_id"), "phase": findings.get("phase")}
    rows = []
    for name, organ in sorted((findings.get("organs") or {}).items()):
        organ = organ or {}
        steatosis = organ.get("steatosis")
        rows.append({**base, "row_type": "organ", "structure": name, "organ": name,
                     "volume_ml": organ.get("volume_ml"), "mean_hu": organ.get("mean_hu"),
                     "sd_hu": organ.get("sd_hu"), "enlarged": organ.get("enlarged"),
                     "steatosis": steatosis if isinstance(steatosis, bool) else None,
                     "complete": organ.get("complete")})
    for lesion in findings.get("lesions") or []:
        rows.append({**base, "row_type": "lesion", "structure": lesion.get("mask"), "lesion_id": lesion.get("id"),
                     "organ": lesion.get("organ"), "side": lesion.get("side"), "kind": lesion.get("kind"),
                     "volume_ml": lesion.get("volume_ml"), "mean_hu": lesion.get("mean_hu"),
                     "sd_hu": lesion.get("sd_hu"), "longest_diameter_mm": lesion.get("longest_diameter_mm"),
                     "perpendicular_diameter_mm": lesion.get("perpendicular_diameter_mm"),
                     "attenuation": lesion.get("attenuation"), "location": _location_text(lesion.get("location")),
                     "t_stage": lesion.get("t_stage"), "resectability": lesion.get("resectability")})
    return [{k: r.get(k) for k in FINDINGS_COLUMNS} for r in rows]


def csv_cell(value) -> str:
    """One CSV cell: empty for None, ``true``/``false``, lists ``;``-joined, floats unrounded (repr)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ";".join(str(v) for v in value)
    if isinstance(value, float):
        return repr(value)
    return str(value)


def csv_text(columns, rows) -> str:
    """A CSV file (``\\n`` line ends) with ``columns`` as header and one line per row (dict or sequence)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([csv_cell(row.get(k)) for k in columns] if isinstance(row, dict) else list(row))
    return buf.getvalue()


#: Findings-table rows buffered per Parquet row group (about 8 MB of row dicts).
ROWS_PER_GROUP = 8192


def _arrow_schema():
    import pyarrow as pa

    return pa.schema([(k, pa.float64() if k in _NUMERIC else pa.bool_() if k in ("steatosis", "complete")
                       else pa.string()) for k in FINDINGS_COLUMNS])


def _arrow_table(rows: list, schema):
    """Findings-table rows (dicts) as a pyarrow table of ``schema``: numbers as float64, text as str."""
    import pyarrow as pa

    columns = {}
    for k in FINDINGS_COLUMNS:
        values = [row.get(k) for row in rows]
        if k in _NUMERIC:
            values = [None if v is None else float(v) for v in values]
        elif k not in ("steatosis", "complete"):
            values = [None if v is None else str(v) for v in values]
        columns[k] = pa.array(values, type=schema.field(k).type)
    return pa.table(columns, schema=schema)


class _ParquetRows:
    """Findings-table rows into a Parquet file (zstd), a row group every :data:`ROWS_PER_GROUP` rows."""

    def __init__(self, fh) -> None:
        import pyarrow.parquet as pq

        self.schema = _arrow_schema()
        self.writer = pq.ParquetWriter(fh, self.schema, compression="zstd")
        self.buffer: list = []

    def add(self, rows: list) -> None:
        self.buffer.extend(rows)
        if len(self.buffer) >= ROWS_PER_GROUP:
            self._flush()

    def _flush(self) -> None:
        if self.buffer:
            self.writer.write_table(_arrow_table(self.buffer, self.schema))
            self.buffer = []

    def close(self) -> None:
        self._flush()
        self.writer.close()


class _CsvRows:
    """Findings-table rows into a CSV file (:func:`csv_cell` values)."""

    def __init__(self, fh) -> None:
        self.writer = csv.writer(fh, lineterminator="\n")
        self.writer.writerow(FINDINGS_COLUMNS)

    def add(self, rows: list) -> None:
        self.writer.writerows([csv_cell(row.get(k)) for k in FINDINGS_COLUMNS] for row in rows)

    def close(self) -> None:
        pass


def _have_pyarrow() -> bool:
    try:
        import pyarrow  # noqa: F401
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        return False
    return True


def read_findings_table(folder) -> list:
    """The findings table of ``folder`` as a list of dicts (Parquet or CSV, whichever is there)."""
    folder = Path(folder)
    parquet, text = folder / f"{FINDINGS_TABLE}.parquet", folder / f"{FINDINGS_TABLE}.csv"
    if parquet.is_file():
        import pyarrow.parquet as pq

        return pq.read_table(parquet).to_pylist()
    rows = []
    for row in csv.DictReader(text.open(encoding="utf-8")):
        out: dict[str, str | float | bool | None] = {}
        for k, v in row.items():
            if v == "":
                out[k] = None
            elif k in _NUMERIC:
                out[k] = float(v)
            elif k in ("steatosis", "complete"):
                out[k] = v == "true"
            else:
                out[k] = v
        rows.append(out)
    return rows


def accepted_narrative(out_case: Path) -> str | None:
    """narrative.txt of an output folder when narrative_check.json says ``accepted``."""
    try:
        status = json.loads((out_case / "narrative_check.json").read_text(encoding="utf-8")).get("status")
        text = (out_case / "narrative.txt").read_text(encoding="utf-8")
    except (OSError, ValueError, AttributeError):
        return None
    return text if status == "accepted" else None


def write_tables(folder, cases: Iterable) -> list:
    """Write both tables into ``folder`` from ``(findings dict, report text, narrative or None)``
    per case, in the given order (any iterable, read once: the cases are streamed to
    disk, so 10,000 cases take no more memory than one row group); each table is
    replaced atomically.  The paths written.

    The findings table is Parquet when pyarrow is installed, else CSV; a table of the
    other format left by an earlier run is removed, so the folder holds one.
    """
    from ..io.atomic import atomic_writer

    folder = Path(folder)
    parquet = _have_pyarrow()
    table_path = folder / f"{FINDINGS_TABLE}.{'parquet' if parquet else 'csv'}"
    with atomic_writer(folder / REPORTS_CSV) as reports_fh, atomic_writer(table_path, text=not parquet) as table_fh:
        reports = csv.writer(reports_fh, lineterminator="\n")
        reports.writerow(REPORTS_COLUMNS)
        table = _ParquetRows(table_fh) if parquet else _CsvRows(table_fh)
        for findings, text, narrative in cases:
            reports.writerow([findings.get("case_id"), text, narrative or ""])
            table.add(findings_rows(findings))
        table.close()
    stale = folder / f"{FINDINGS_TABLE}.{'csv' if parquet else 'parquet'}"
    if stale.is_file():
        stale.unlink()
    return [folder / REPORTS_CSV, table_path]


def write_batch_tables(out, case_ids: Iterable[str]) -> list:
    """The tables of a batch output folder ``out`` from the ids of its cases that are ok or
    skipped (in the order given), each case's files read as it is written."""
    out = Path(out)

    def cases():
        for case_id in case_ids:
            out_case = out / case_id
            try:
                findings = json.loads((out_case / "findings.json").read_text(encoding="utf-8"))
                text = (out_case / "report.txt").read_text(encoding="utf-8")
            except (OSError, ValueError):
                continue
            yield findings, text, accepted_narrative(out_case)

    return write_tables(out, cases())
