"""Batch resume and triplet export against the output manifest, honest metadata, phases,
and the dataset tables (reports.csv, findings table), on small phantom cases.

Truth: the files the tool wrote (their bytes and hashes), findings.json itself, and
reports re-made by ``radgpt report`` from the exported dataset.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import shutil
from pathlib import Path

import pytest

from RadGPTLogic.cli import main as cli_main
from RadGPTLogic.dataset.report_tables import (
    FINDINGS_COLUMNS,
    REPORTS_COLUMNS,
    findings_rows,
    read_findings_table,
    write_tables,
)
from RadGPTLogic.dataset.triplets import metadata_from_findings
from RadGPTLogic.io.atomic import MANIFEST, write_files_atomically
from RadGPTLogic.phantom import build_phantom, default_lesions, write_case

SPACING = (4.0, 4.0, 5.0)
CASES = ["BDMAP_00000201", "BDMAP_00000202", "BDMAP_00000203"]


def _cli(*args):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = cli_main([str(a) for a in args])
    return rc, out.getvalue(), err.getvalue()


def _rows(out: Path) -> dict:
    return {r["case_id"]: r for r in csv.DictReader((out / "batch_summary.csv").open(encoding="utf-8"))}


@pytest.fixture(scope="module")
def done(tmp_path_factory):
    """A root of three cases (the third without any kidney lesion mask) and its finished batch."""
    base = tmp_path_factory.mktemp("outputs")
    root = base / "root"
    lesions = default_lesions()  # liver x2, pancreatic PDAC, kidney lesion, kidney cyst
    for seed, (case_id, les) in enumerate(zip(CASES, [lesions, lesions[:3], lesions[:2]])):
        write_case(build_phantom(size="small", spacing=SPACING, seed=seed, lesions=les), root, case_id=case_id)
    phases = base / "phases.csv"
    phases.write_text(f"case_id,phase\n{CASES[0]},venous\n{CASES[1]},non-contrast\n{CASES[2]},arterial\n")
    out = base / "out"
    rc, _, stderr = _cli("batch", root, "--out", out, "--workers", "1", "--phase-csv", phases)
    assert rc == 0, stderr
    return root, out


def _copy(done, tmp_path):
    root, out = done
    shutil.copytree(root, tmp_path / "root")
    shutil.copytree(out, tmp_path / "out")
    return tmp_path / "root", tmp_path / "out"


# --------------------------------------------------------------------------- resume: one whole set or recompute


def test_resume_recomputes_mixed_or_unmanifested_outputs(done, tmp_path):
    root, out = _copy(done, tmp_path)
    phases = tmp_path / "phases.csv"
    phases.write_text(f"case_id,phase\n{CASES[0]},venous\n{CASES[1]},non-contrast\n{CASES[2]},arterial\n")
    good_report = (out / CASES[0] / "report.txt").read_bytes()
    # Case 0: its report replaced by another run's (as a kill between two renames used to leave it).
    shutil.copyfile(out / CASES[1] / "report.txt", out / CASES[0] / "report.txt")
    # Case 1: a folder from before manifests existed.
    (out / CASES[1] / MANIFEST).unlink()
    rc, _, stderr = _cli("batch", root, "--out", out, "--workers", "1", "--phase-csv", phases)
    assert rc == 0, stderr
    rows = _rows(out)
    assert rows[CASES[0]]["status"] == "ok" and "report.txt changed" in rows[CASES[0]]["note"]
    assert rows[CASES[1]]["status"] == "ok" and "no output manifest" in rows[CASES[1]]["note"]
    assert rows[CASES[2]]["status"] == "skipped"
    assert (out / CASES[0] / "report.txt").read_bytes() == good_report  # re-made, the set is whole again
    assert (out / CASES[1] / MANIFEST).is_file()
    rc, _, _ = _cli("batch", root, "--out", out, "--workers", "1", "--phase-csv", phases)
    assert rc == 0 and {r["status"] for r in _rows(out).values()} == {"skipped"}


# --------------------------------------------------------------------------- export: never a mixed pair


def test_export_leaves_out_pairs_that_are_not_one_run(done, tmp_path):
    root, out = _copy(done, tmp_path)
    shutil.copyfile(out / CASES[1] / "report.txt", out / CASES[0] / "report.txt")
    (out / CASES[1] / MANIFEST).unlink()
    dataset = tmp_path / "ds"
    rc, _, stderr = _cli("export-triplets", out, "--dest", dataset)
    assert rc == 1
    assert f"{CASES[0]} left out" in stderr and "not the outputs of one run" in stderr
    assert "report.txt changed" in stderr
    assert f"{CASES[1]} left out" in stderr and "no output manifest" in stderr
    assert sorted(p.name for p in dataset.iterdir() if p.is_dir()) == [CASES[2]]


# --------------------------------------------------------------------------- honest metadata and phases


def test_lesion_counts_are_empty_when_not_assessed():
    findings = {"case_id": "c", "phase": "venous", "organs": {}, "provenance": {},
                "lesions": [{"id": "liver_lesion_1", "organ": "liver", "kind": "lesion", "longest_diameter_mm": 12.5}]}
    row = metadata_from_findings(findings)  # no lesions_assessed key (older findings): all assessed
    assert (row["n_lesions_liver"], row["n_lesions_pancreas"], row["n_lesions_kidney"]) == (1, 0, 0)
    findings["lesions_assessed"] = {"liver": True, "pancreas": False, "kidney": False}
    row = metadata_from_findings(findings)
    assert (row["n_lesions_liver"], row["n_lesions_pancreas"], row["n_lesions_kidney"]) == (1, None, None)
    assert row["largest_lesion_mm_pancreas"] is None and row["lesions_assessed"] == ["liver"]


def test_export_metadata_phases_and_reports_reproduce(done, tmp_path):
    root, out = _copy(done, tmp_path)
    findings = json.loads((out / CASES[2] / "findings.json").read_text(encoding="utf-8"))
    if "lesions_assessed" not in findings:  # until the engine records it, as the tool would write it
        findings["lesions_assessed"] = {"liver": True, "pancreas": False, "kidney": False}
        write_files_atomically(out / CASES[2], {"findings.json": json.dumps(findings, indent=2) + "\n"})
    # The third case has no kidney or pancreatic lesion mask at all.
    assert not list((root / CASES[2] / "segmentations").glob("kidney_*lesion*")) and \
        not list((root / CASES[2] / "segmentations").glob("pancrea*_pdac*"))
    assert findings["lesions_assessed"]["kidney"] is False
    dataset = tmp_path / "ds"
    rc, _, stderr = _cli("export-triplets", out, "--dest", dataset)
    assert rc == 0, stderr
    meta = {r["case_id"]: r for r in csv.DictReader((dataset / "metadata.csv").open(encoding="utf-8"))}
    assert meta[CASES[2]]["n_lesions_kidney"] == "" and meta[CASES[2]]["n_lesions_pancreas"] == ""
    assert meta[CASES[2]]["n_lesions_liver"] == "2" and meta[CASES[2]]["lesions_assessed"] == "liver"
    # The second case has no kidney lesion mask either: empty once findings record it, 0 in older findings.
    second = json.loads((dataset / CASES[1] / "findings.json").read_text(encoding="utf-8"))
    kidney_assessed = (second.get("lesions_assessed") or {}).get("kidney", True)
    assert meta[CASES[1]]["n_lesions_kidney"] == ("0" if kidney_assessed else "")
    assert meta[CASES[0]]["n_lesions_kidney"] == "2"  # kidney lesion and cyst masks given
    phases = {r["case_id"]: r["phase"] for r in csv.DictReader((dataset / "phases.csv").open(encoding="utf-8"))}
    assert phases == {CASES[0]: "venous", CASES[1]: "non-contrast", CASES[2]: "arterial"}
    assert {c: meta[c]["phase"] for c in CASES} == phases
    # `radgpt report` on an exported case, with its recorded phase, re-makes the batch's report.
    for case_id in CASES:
        rc, _, stderr = _cli("report", dataset / case_id, "--out", tmp_path / "again" / case_id, "--phase",
                             phases[case_id])
        assert rc == 0, stderr
        assert (tmp_path / "again" / case_id / "report.txt").read_bytes() == \
            (dataset / case_id / "report.txt").read_bytes()
    # And a batch over the dataset with its phases.csv re-makes them all.
    rc, _, stderr = _cli("batch", dataset, "--out", tmp_path / "rebatch", "--workers", "1",
                         "--phase-csv", dataset / "phases.csv")
    assert rc == 0, stderr
    for case_id in CASES:
        assert (tmp_path / "rebatch" / case_id / "report.txt").read_bytes() == \
            (dataset / case_id / "report.txt").read_bytes()


# --------------------------------------------------------------------------- tables


def test_reports_csv_and_findings_table_agree_with_findings_and_triplets(done, tmp_path):
    root, out = _copy(done, tmp_path)
    reports = list(csv.DictReader((out / "reports.csv").open(encoding="utf-8")))
    assert tuple(reports[0]) == REPORTS_COLUMNS
    assert [r["BDMAP ID"] for r in reports] == CASES
    for r in reports:
        assert r["structured report"] == (out / r["BDMAP ID"] / "report.txt").read_text(encoding="utf-8")
        assert r["narrative report"] == ""
    table = read_findings_table(out)
    for case_id in CASES:
        findings = json.loads((out / case_id / "findings.json").read_text(encoding="utf-8"))
        mine = [r for r in table if r["case_id"] == case_id]
        lesions = [r for r in mine if r["row_type"] == "lesion"]
        organs = [r for r in mine if r["row_type"] == "organ"]
        assert sorted(r["lesion_id"] for r in lesions) == sorted(l["id"] for l in findings["lesions"])
        assert sorted(r["structure"] for r in organs) == sorted(findings["organs"])
        for r in lesions:
            truth = next(l for l in findings["lesions"] if l["id"] == r["lesion_id"])
            assert r["longest_diameter_mm"] == truth["longest_diameter_mm"]  # unrounded, exact
            assert r["volume_ml"] == truth["volume_ml"] and r["organ"] == truth["organ"]
        liver = next(r for r in organs if r["structure"] == "liver")
        assert liver["volume_ml"] == findings["organs"]["liver"]["volume_ml"]
    # The triplet dataset's tables hold the same rows, and agree with its metadata.
    dataset = tmp_path / "ds"
    assert _cli("export-triplets", out, "--dest", dataset)[0] == 0
    assert read_findings_table(dataset) == table
    assert (dataset / "reports.csv").read_text(encoding="utf-8") == (out / "reports.csv").read_text(encoding="utf-8")
    meta = {r["case_id"]: r for r in csv.DictReader((dataset / "metadata.csv").open(encoding="utf-8"))}
    for case_id in CASES:
        for organ in ("liver", "pancreas", "kidney"):
            n = sum(1 for r in table if r["case_id"] == case_id and r["row_type"] == "lesion" and r["organ"] == organ)
            assert meta[case_id][f"n_lesions_{organ}"] in (str(n), "")


def test_findings_table_csv_fallback_without_pyarrow(done, tmp_path, monkeypatch):
    _, out = done
    import builtins

    real_import = builtins.__import__

    def no_pyarrow(name, *args, **kwargs):
        if name.startswith("pyarrow"):
            raise ImportError("no pyarrow here")
        return real_import(name, *args, **kwargs)

    cases = [(json.loads((out / c / "findings.json").read_text()), (out / c / "report.txt").read_text(), None)
             for c in CASES]
    monkeypatch.setattr(builtins, "__import__", no_pyarrow)
    (tmp_path / "findings_table.parquet").write_bytes(b"stale")
    write_tables(tmp_path, cases)
    assert (tmp_path / "findings_table.csv").is_file() and not (tmp_path / "findings_table.parquet").exists()
    header = next(csv.reader((tmp_path / "findings_table.csv").open()))
    assert tuple(header) == FINDINGS_COLUMNS
    rows = read_findings_table(tmp_path)
    assert rows == [r for f, _, _ in cases for r in findings_rows(f)]
