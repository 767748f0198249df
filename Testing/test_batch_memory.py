"""A batch's memory does not grow with its number of cases: rows go to disk as cases end,
tasks are made as they are handed out, and the summary and dataset tables are
streamed to disk.

Truth: the rows and files themselves (read back and compared with what was recorded),
``json.dumps(..., indent=2)`` for the summary's layout, pyarrow's own reader for the
Parquet table, and tracemalloc's count of the bytes Python holds during a real batch.
"""

from __future__ import annotations

import csv
import json
import tracemalloc
from pathlib import Path

import pytest

from RadGPTLogic.dataset.batch import SUMMARY_COLUMNS, run_batch
from RadGPTLogic.dataset.batch.case_queue import CaseQueue, CaseTable
from RadGPTLogic.dataset.batch.discovery import CaseFolder
from RadGPTLogic.dataset.batch.summary import BatchResult, RowSpool, write_summary
from RadGPTLogic.errors import InputError
from RadGPTLogic.io.atomic import atomic_writer


def _row(case_id: str, status: str = "ok", **extra) -> dict:
    row = {k: "" for k in SUMMARY_COLUMNS}
    row.update(case_id=case_id, status=status, seconds=0.5, n_lesions=1, case_dir=f"/cases/{case_id}", **extra)
    return row


def test_case_queue_makes_each_task_when_it_is_looked_at():
    made = []

    def make(index):
        made.append(index)
        return {"case_id": f"C{index}"}

    queue = CaseQueue([0, 2, 5, 7], make)
    assert len(queue) == 4 and queue and made == []
    head = queue[0]
    assert head == (0, {"case_id": "C0"}) and queue[0] is head and made == [0]  # peeking twice: one dict
    assert queue.popleft() is head and len(queue) == 3
    assert queue.popleft() == (2, {"case_id": "C2"}) and made == [0, 2]
    assert [i for i, _ in queue] == [5, 7]  # what is left, not taken
    assert len(queue) == 2
    assert queue.popleft()[0] == 5 and queue.popleft()[0] == 7
    assert not queue and len(queue) == 0
    with pytest.raises(IndexError):
        queue[0]
    with pytest.raises(IndexError):
        CaseQueue([1, 2], make)[1]


def test_case_table_keeps_what_discovery_found(tmp_path):
    found = [CaseFolder("A", tmp_path / "A"), CaseFolder("B", tmp_path / "x" / "B", problem="no segmentations/"),
             CaseFolder("C", tmp_path / "C", needs_segmentation=True)]
    table = CaseTable(found)
    assert len(table) == 3 and table.case_ids == ["A", "B", "C"]
    assert table.case_dirs == [str(c.path) for c in found] and all(type(d) is str for d in table.case_dirs)
    assert table.problems == {1: "no segmentations/"} and list(table.runnable()) == [0, 2]
    assert [table.needs_segmentation(i) for i in range(3)] == [False, False, True]


def test_row_spool_gives_rows_back_in_case_order(tmp_path):
    spool = RowSpool(tmp_path, 5)
    spool.add(3, _row("D", "failed", error="bad"))
    spool.add(0, _row("A"))
    spool.add(4, _row("E", "timeout"))
    spool.add(1, _row("B", "failed"))
    spool.add(1, _row("B", "skipped"))  # recorded again: the later row counts
    assert spool.done == 4 and 2 not in spool and 1 in spool
    assert spool.counts == {"ok": 1, "failed": 1, "timeout": 1, "skipped": 1, "cancelled": 0}
    assert [r["case_id"] for r in spool] == ["A", "B", "D", "E"]
    assert [r["status"] for r in spool] == ["ok", "skipped", "failed", "timeout"]
    assert list(spool.indices("failed", "timeout")) == [3, 4]
    assert list(tmp_path.iterdir()) == []  # an unnamed file: nothing to clean up
    spool.close()


@pytest.mark.parametrize("n_rows", [0, 1, 3])
def test_streamed_summary_is_laid_out_as_json_dumps_lays_it_out(tmp_path, n_rows):
    rows = [_row(f"BDMAP_{i:08d}", "failed" if i == 1 else "ok", error="a, \"quoted\"\nline" if i == 1 else "",
                 traceback="Traceback ...\n  boom" if i == 1 else "") for i in range(n_rows)]
    result = BatchResult(out=tmp_path, seconds=1.25, counts={"ok": n_rows}, exit_code=0)
    write_summary(result, tmp_path, "2026-12-05T12:00:00+0000", {"workers": 2, "nested": {"a": [1, 2]}}, iter(rows))
    text = (tmp_path / "batch_summary.json").read_text(encoding="utf-8")
    summary = json.loads(text)
    assert text == json.dumps(summary, indent=2) + "\n"
    assert summary["options"] == {"workers": 2, "nested": {"a": [1, 2]}} and summary["seconds"] == 1.25
    assert [c["case_id"] for c in summary["cases"]] == [r["case_id"] for r in rows]
    assert all(list(c)[:len(SUMMARY_COLUMNS)] == list(SUMMARY_COLUMNS) for c in summary["cases"])
    assert [("traceback" in c) for c in summary["cases"]] == [i == 1 for i in range(n_rows)]
    table = list(csv.DictReader((tmp_path / "batch_summary.csv").open(encoding="utf-8", newline="")))
    assert [r["case_id"] for r in table] == [r["case_id"] for r in rows]
    assert all(r["seconds"] == "0.500" for r in table)
    if n_rows > 1:
        assert table[1]["error"] == rows[1]["error"] == summary["cases"][1]["error"]
    assert result.rows == summary["cases"]  # what the result gives back is what the file holds
    assert sorted(p.name for p in tmp_path.iterdir()) == ["batch_summary.csv", "batch_summary.json"]


def test_summary_write_that_fails_leaves_the_old_summary(tmp_path):
    result = BatchResult(out=tmp_path, seconds=1.0, counts={"ok": 1})
    write_summary(result, tmp_path, "then", {}, [_row("A")])
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def rows_then_error():
        yield _row("B")
        raise RuntimeError("the spool broke")

    with pytest.raises(RuntimeError):
        write_summary(result, tmp_path, "now", {}, rows_then_error())
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # no half file, no leftovers


def test_atomic_writer_replaces_whole_or_not_at_all(tmp_path):
    target = tmp_path / "table.csv"
    target.write_text("old\n")
    with atomic_writer(target) as fh:
        fh.write("new\r\nline\n")
    assert target.read_bytes() == b"new\r\nline\n"  # line ends kept as written
    with pytest.raises(ValueError):
        with atomic_writer(target) as fh:
            fh.write("half")
            raise ValueError("stop")
    assert target.read_bytes() == b"new\r\nline\n" and sorted(tmp_path.iterdir()) == [target]
    (tmp_path / "file").write_text("a file, not a folder")
    with pytest.raises(InputError, match="cannot write the file"):
        with atomic_writer(tmp_path / "file" / "x.csv") as fh:
            fh.write("x")


def _noop_runner(case_dir, out_dir, **kw):
    return {"case_id": Path(case_dir).name, "lesions": []}


def test_batch_holds_no_memory_per_finished_case(tmp_path):
    """Between the 200th and the 1,200th case of a real in-process batch, the bytes Python
    holds grow by less than 100 per case (they grew by about 2.5 KB a case while
    every row and task was kept until the end)."""
    root = tmp_path / "root"
    n = 1200
    for i in range(n):
        (root / f"BDMAP_{i:08d}" / "segmentations").mkdir(parents=True)
    held = {}

    def progress(done, total, row):
        if done in (200, n):
            held[done] = tracemalloc.get_traced_memory()[0]

    tracemalloc.start()
    try:
        result = run_batch(root, tmp_path / "out", workers=1, resume=False, runner=_noop_runner, progress=progress,
                           handle_signals=False, tables=False)
    finally:
        tracemalloc.stop()
    assert result.exit_code == 0 and result.counts["ok"] == n and result.cases == n
    growth_per_case = (held[n] - held[200]) / (n - 200)
    assert growth_per_case < 100, f"{growth_per_case:.0f} bytes a case"
    assert len(result.rows) == n and result.rows[-1]["case_id"] == f"BDMAP_{n - 1:08d}"
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]  # the spool is gone


def test_tables_are_streamed_in_row_groups(tmp_path, monkeypatch):
    pq = pytest.importorskip("pyarrow.parquet")
    from RadGPTLogic.dataset import report_tables

    monkeypatch.setattr(report_tables, "ROWS_PER_GROUP", 4)
    made = []

    def cases():
        for i in range(5):
            findings = {"case_id": f"BDMAP_{i:08d}", "phase": "venous",
                        "organs": {"liver": {"volume_ml": 1500.0 + i, "enlarged": "no"},
                                   "spleen": {"volume_ml": 200.5, "mean_hu": 50}},
                        "lesions": [{"id": f"liver_lesion_{j}", "organ": "liver", "longest_diameter_mm": 10.25 * j,
                                     "location": {"segments": ["S7", "S8"]}} for j in range(i)]}
            made.append(findings)
            yield findings, f"report {i}\n", "narrative" if i == 2 else None

    written = report_tables.write_tables(tmp_path, cases())
    assert [p.name for p in written] == ["reports.csv", "findings_table.parquet"]
    expected = [r for f in made for r in report_tables.findings_rows(f)]
    assert len(expected) == 2 * 5 + (0 + 1 + 2 + 3 + 4)
    assert report_tables.read_findings_table(tmp_path) == expected
    assert pq.ParquetFile(tmp_path / "findings_table.parquet").metadata.num_row_groups > 1
    reports = list(csv.DictReader((tmp_path / "reports.csv").open(encoding="utf-8", newline="")))
    assert [(r["BDMAP ID"], r["structured report"], r["narrative report"]) for r in reports] == [
        (f"BDMAP_{i:08d}", f"report {i}\n", "narrative" if i == 2 else "") for i in range(5)]


@pytest.mark.parametrize("configured, inside", [(1000, 50), (20, 20), (None, None)])
def test_dask_developer_logs_are_shortened_unless_the_user_chose(configured, inside):
    dask = pytest.importorskip("dask")
    pytest.importorskip("distributed")
    from RadGPTLogic.dataset.batch.dask_executor import MESSAGE_LOG_LENGTH, _short_message_logs

    key = "distributed.admin.low-level-log-length"
    assert MESSAGE_LOG_LENGTH == 50
    with dask.config.set({key: configured}):
        with _short_message_logs():
            assert dask.config.get(key) == inside
        assert dask.config.get(key) == configured
