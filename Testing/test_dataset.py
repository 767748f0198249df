"""radgpt batch and radgpt export-triplets on small phantom cases.

Root used by most tests (built once, never modified):

    BDMAP_00000001..05   phantom cases with different lesions and noise seeds
    BDMAP_00000006       corrupt: segmentations/liver.nii.gz truncated      -> failed
    BDMAP_00000007       ct.nii.gz but no segmentations/ (looks like a case) -> failed
    notes/               no segmentations/, no CT, not BDMAP_*: not a case   -> ignored
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import os
import re
import shutil
import signal
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from RadGPTLogic.cli import main as cli_main
from RadGPTLogic.dataset import batch as batch_mod
from RadGPTLogic.dataset.batch import normalise_phase, read_ids, read_phase_csv, run_batch
from RadGPTLogic.dataset.triplets import METADATA_COLUMNS
from RadGPTLogic.io.atomic import write_files_atomically
from RadGPTLogic.phantom import build_phantom, default_lesions, write_case

SPACING = (4.0, 4.0, 5.0)  # coarse phantom: about 0.1 s per case
GOOD = [f"BDMAP_0000000{i}" for i in range(1, 6)]
CORRUPT = "BDMAP_00000006"
NO_SEG = "BDMAP_00000007"


def _build_root(root: Path) -> None:
    lesions = default_lesions()  # liver x2, pancreatic PDAC, kidney lesion, kidney cyst
    specs = [lesions, lesions[:2], [], [lesions[2]], lesions[3:]]
    for seed, (case_id, les) in enumerate(zip(GOOD, specs)):
        write_case(build_phantom(size="small", spacing=SPACING, seed=seed, lesions=les), root, case_id=case_id)
    bad = write_case(build_phantom(size="small", spacing=SPACING, seed=9, lesions=[]), root, case_id=CORRUPT)
    liver = bad / "segmentations" / "liver.nii.gz"
    data = liver.read_bytes()
    liver.write_bytes(data[: len(data) // 2])
    (root / NO_SEG).mkdir()
    shutil.copy(root / GOOD[0] / "ct.nii.gz", root / NO_SEG / "ct.nii.gz")
    (root / "notes").mkdir()
    (root / "notes" / "readme.txt").write_text("not a case\n")


def _cli(*args):
    """radgpt (cli.main) in-process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = cli_main([str(a) for a in args])
    return rc, out.getvalue(), err.getvalue()


def _has_pyarrow() -> bool:
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        return False
    return True


def _summary(out: Path):
    rows = list(csv.DictReader((out / "batch_summary.csv").open(encoding="utf-8")))
    return {r["case_id"]: r for r in rows}, json.loads((out / "batch_summary.json").read_text(encoding="utf-8"))


def _findings(out: Path, case_id: str) -> dict:
    return json.loads((out / case_id / "findings.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("batch") / "root"
    _build_root(base)
    return base


@pytest.fixture(scope="module")
def run_w2(root, tmp_path_factory):
    out = tmp_path_factory.mktemp("out_w2") / "out"
    rc, stdout, stderr = _cli("batch", root, "--out", out, "--workers", "2")
    return out, rc, stdout, stderr


@pytest.fixture(scope="module")
def run_w1(root, tmp_path_factory):
    out = tmp_path_factory.mktemp("out_w1") / "out"
    rc, stdout, stderr = _cli("batch", root, "--out", out, "--workers", "1")
    return out, rc, stdout, stderr


# --------------------------------------------------------------------------- batch


def test_batch_statuses_summary_and_exit_code(run_w2):
    out, rc, stdout, stderr = run_w2
    assert rc == 1  # some case failed
    rows, summary = _summary(out)
    assert set(rows) == set(GOOD) | {CORRUPT, NO_SEG}  # notes/ is not a case: ignored
    for case_id in GOOD:
        assert rows[case_id]["status"] == "ok", rows[case_id]
        assert rows[case_id]["error"] == ""
        for name in ("findings.json", "report.txt", "report.md", "report.html"):
            assert (out / case_id / name).is_file()
        findings = _findings(out, case_id)
        assert int(rows[case_id]["n_lesions"]) == len(findings["lesions"])
        assert rows[case_id]["report"] == f"{case_id}/report.txt"
    # The corrupt case: failed, one line naming the file.
    err = rows[CORRUPT]["error"]
    assert rows[CORRUPT]["status"] == "failed"
    assert "\n" not in err and "liver.nii.gz" in err and "truncated" in err
    assert not (out / CORRUPT).exists()
    # A folder with a CT but no segmentations/ is reported, not dropped.
    assert rows[NO_SEG]["status"] == "failed" and "segmentations" in rows[NO_SEG]["error"]
    # Row values from the findings.
    assert rows[GOOD[0]]["organs_with_lesions"] == "liver;pancreas;kidney"
    assert rows[GOOD[0]]["t_stages"] == "pancreatic_pdac_1:T2"
    assert rows[GOOD[2]]["n_lesions"] == "0"
    # JSON summary: same rows, counts, exit code.
    assert summary["counts"] == {"ok": 5, "failed": 2, "timeout": 0, "skipped": 0, "cancelled": 0}
    assert summary["exit_code"] == 1 and summary["interrupted"] is None
    assert [c["case_id"] for c in summary["cases"]] == sorted(rows)
    # One progress line per case on stderr, and the failed ones named at the end.
    lines = [l for l in stderr.splitlines() if l.startswith("[")]
    assert len(lines) == 7
    assert any(re.fullmatch(rf"\[\d/7\] {GOOD[0]} ok \d+\.\d s", l) for l in lines), lines
    assert "BDMAP_00000006" in stderr.splitlines()[-1]
    # Nothing written outside OUT (no debug files in the working directory).
    assert not list(Path.cwd().glob("*.nii.gz"))


def test_workers_2_gives_the_same_findings_as_workers_1(run_w1, run_w2):
    out1, rc1, _, _ = run_w1
    out2, rc2, _, _ = run_w2
    assert rc1 == rc2 == 1
    for case_id in GOOD:
        assert _findings(out1, case_id) == _findings(out2, case_id)
        assert (out1 / case_id / "report.txt").read_text() == (out2 / case_id / "report.txt").read_text()
    rows1, _ = _summary(out1)
    rows2, _ = _summary(out2)
    assert {k: (r["status"], r["error"]) for k, r in rows1.items()} == \
        {k: (r["status"], r["error"]) for k, r in rows2.items()}


def test_resume_skips_done_cases_and_recomputes_a_changed_mask(root, run_w1, tmp_path):
    # Copies of the root and of a finished batch: resume compares files by name within the case folder.
    root2, out = tmp_path / "root", tmp_path / "out"
    shutil.copytree(root, root2)
    shutil.copytree(run_w1[0], out)
    before = {c: (out / c / "findings.json").stat().st_mtime_ns for c in GOOD}
    rc, _, stderr = _cli("batch", root2, "--out", out, "--workers", "1")
    rows, _ = _summary(out)
    assert rc == 1  # the corrupt case is still failed: it is never "skipped"
    assert all(rows[c]["status"] == "skipped" for c in GOOD), rows
    assert rows[CORRUPT]["status"] == "failed"
    assert all((out / c / "findings.json").stat().st_mtime_ns == before[c] for c in GOOD)
    assert rows[GOOD[0]]["t_stages"] == "pancreatic_pdac_1:T2"  # skipped rows still carry the findings

    # Change one mask: its input hash differs, so that case alone is recomputed.
    path = root2 / GOOD[1] / "segmentations" / "liver_lesion.nii.gz"
    img = nib.load(path)
    arr = np.asarray(img.dataobj).copy()
    arr[arr.nonzero()[0][0], arr.nonzero()[1][0], arr.nonzero()[2][0]] = 0
    nib.save(nib.Nifti1Image(arr, img.affine, img.header), path)
    rc, _, stderr = _cli("batch", root2, "--out", out, "--resume", "--workers", "2")
    rows, _ = _summary(out)
    assert rows[GOOD[1]]["status"] == "ok"
    assert "liver_lesion.nii.gz changed" in rows[GOOD[1]]["note"]
    assert [c for c in GOOD if rows[c]["status"] == "skipped"] == [c for c in GOOD if c != GOOD[1]]
    recorded = _findings(out, GOOD[1])["provenance"]["inputs"]["liver_lesion"][0]["sha256"]
    assert recorded == hashlib.sha256(path.read_bytes()).hexdigest()

    # A new mask file is a changed input too; --force recomputes everything.
    masks2 = root2 / GOOD[2] / "segmentations"
    shutil.copy(masks2 / "liver.nii.gz", masks2 / "liver_cyst.nii.gz")
    _cli("batch", root2, "--out", out, "--workers", "1")
    rows, _ = _summary(out)
    assert rows[GOOD[2]]["status"] == "ok" and "liver_cyst.nii.gz added" in rows[GOOD[2]]["note"]
    rc, _, _ = _cli("batch", root2, "--out", out, "--force", "--workers", "2", "--ids", _ids_file(tmp_path, GOOD[:2]))
    rows, _ = _summary(out)
    assert rc == 0 and set(rows) == set(GOOD[:2]) and all(r["status"] == "ok" for r in rows.values())


def _ids_file(folder: Path, ids) -> Path:
    path = folder / "ids.txt"
    path.write_text("# cases\n" + "\n".join(ids) + "\n")
    return path


def test_phase_csv_with_radgpt_spellings_and_ids(root, tmp_path):
    phase_csv = tmp_path / "AbdomenAtlas_metadata.csv"
    phase_csv.write_text("BDMAP ID,CT Phase,Sex\n"
                         f"{GOOD[0]},Plain,M\n{GOOD[1]},Venous,F\n{GOOD[2]},Arterial,F\n{GOOD[3]},Delay,M\n")
    ids = tmp_path / "ids.csv"
    ids.write_text(f"case_id\n{GOOD[0]}\n{GOOD[1]}\n{GOOD[4]}\nBDMAP_09999999\n")
    out = tmp_path / "out"
    rc, _, _ = _cli("batch", root, "--out", out, "--phase-csv", phase_csv, "--ids", ids, "--workers", "2")
    rows, _ = _summary(out)
    assert set(rows) == {GOOD[0], GOOD[1], GOOD[4], "BDMAP_09999999"}
    assert rows["BDMAP_09999999"]["status"] == "failed" and "BDMAP_09999999" in rows["BDMAP_09999999"]["error"]
    assert rc == 1
    assert _findings(out, GOOD[0])["phase"] == "non-contrast"
    assert _findings(out, GOOD[1])["phase"] == "venous"
    assert _findings(out, GOOD[4])["phase"] == "unknown"  # not in the CSV
    assert rows[GOOD[0]]["phase"] == "non-contrast"
    assert read_phase_csv(phase_csv) == {GOOD[0]: "non-contrast", GOOD[1]: "venous", GOOD[2]: "arterial",
                                         GOOD[3]: "delayed"}


def test_phase_spellings_and_bad_phase_csv(tmp_path, root):
    assert [normalise_phase(v) for v in ("Plain", "Venous", "Arterial", "Delay", "NaN", "", "portal venous",
                                         "non-contrast", "unknown")] == \
        ["non-contrast", "venous", "arterial", "delayed", "unknown", "unknown", "venous", "non-contrast", "unknown"]
    assert normalise_phase("hepatobiliary") is None
    headerless = tmp_path / "p.csv"
    headerless.write_text("A,venous\nB,plain\n")
    assert read_phase_csv(headerless) == {"A": "venous", "B": "non-contrast"}
    bad = tmp_path / "bad.csv"
    bad.write_text("case_id,phase\nA,venous\nB,hepatobiliary\n")
    rc, _, stderr = _cli("batch", root, "--out", tmp_path / "out", "--phase-csv", bad)
    assert rc == 2 and str(bad) in stderr and "line 3" in stderr and len(stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()
    assert read_ids(_ids_file(tmp_path, ["X", "Y", "X"])) == ["X", "Y"]


def test_bad_root_is_one_line_exit_2(tmp_path):
    rc, _, stderr = _cli("batch", tmp_path / "nowhere", "--out", tmp_path / "out")
    assert rc == 2 and "nowhere" in stderr and len(stderr.strip().splitlines()) == 1
    (tmp_path / "empty").mkdir()
    rc, _, stderr = _cli("batch", tmp_path / "empty", "--out", tmp_path / "out")
    assert rc == 2 and "no case folders" in stderr


def test_discovery_nested_hidden_duplicates(tmp_path, root):
    base = tmp_path / "tree"
    shutil.copytree(root / GOOD[2], base / "part1" / "sub" / GOOD[2])
    shutil.copytree(root / GOOD[2], base / "part2" / GOOD[2])  # same id twice
    shutil.copytree(root / GOOD[3], base / ".hidden" / GOOD[3])
    shutil.copytree(root / GOOD[4], base / "dataset" / GOOD[4])  # a triplet dataset: not searched
    (base / "dataset" / "metadata.jsonl").write_text("")
    found = batch_mod.discover_cases(base)
    assert [(c.case_id, c.problem is None) for c in found] == [(GOOD[2], True), (GOOD[2], False)]
    assert "duplicate case id" in found[1].problem
    # A root that is itself a case folder.
    assert [c.case_id for c in batch_mod.discover_cases(root / GOOD[0])] == [GOOD[0]]


# --------------------------------------------------------------------------- timeouts, dead workers, signals


def _test_runner(case_dir, out_dir, **kw):
    """run_report, except: *3 sleeps (timeout), *4 kills its own process (a crash)."""
    name = Path(case_dir).name
    if name.endswith("3"):
        (Path(out_dir).parent / f".{name}.tmp-half-written").mkdir(parents=True)  # as if killed mid-write
        time.sleep(60)
    if name.endswith("4"):
        os.kill(os.getpid(), signal.SIGKILL)
    from RadGPTLogic.pipeline import run_report

    return run_report(case_dir, out_dir, **kw)


@pytest.mark.parametrize("workers", [2, 1])
def test_timeout_and_dead_worker_never_stop_the_batch(root, tmp_path, workers):
    ids = GOOD[2:4] + [GOOD[4]] if workers == 2 else GOOD[2:3] + [GOOD[4]]  # in-process: no self-kill
    t0 = time.monotonic()
    result = run_batch(root, tmp_path / "out", workers=workers, ids=ids, timeout=1.0, runner=_test_runner)
    assert time.monotonic() - t0 < 20
    status = {r["case_id"]: r for r in result.rows}
    assert status[GOOD[2]]["status"] == "timeout" and "1 s" in status[GOOD[2]]["error"]
    assert status[GOOD[4]]["status"] == "ok"
    if workers == 2:
        assert status[GOOD[3]]["status"] == "failed" and "SIGKILL" in status[GOOD[3]]["error"]
    assert result.exit_code == 1
    rows, summary = _summary(tmp_path / "out")
    assert set(rows) == set(ids) and summary["counts"]["timeout"] == 1
    assert not list((tmp_path / "out").glob(".*"))  # no half-written output left behind


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_stops_submitting_and_writes_the_summary(root, tmp_path, workers):
    sent = []

    def progress(done, total, row):
        if not sent:
            sent.append(row["case_id"])
            os.kill(os.getpid(), signal.SIGTERM)

    result = run_batch(root, tmp_path / "out", workers=workers, ids=GOOD, progress=progress)
    assert result.exit_code == 143 and result.interrupted == "SIGTERM"
    rows, summary = _summary(tmp_path / "out")
    assert set(rows) == set(GOOD)  # every case has a row
    assert rows[sent[0]]["status"] == "ok"
    cancelled = [c for c in GOOD if rows[c]["status"] == "cancelled"]
    assert cancelled and all(rows[c]["error"] == "not started (batch interrupted)" for c in cancelled)
    assert {rows[c]["status"] for c in GOOD} <= {"ok", "cancelled"}
    assert summary["interrupted"] == "SIGTERM"
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers restored


def test_second_signal_cancels_running_cases(root, tmp_path):
    def progress(done, total, row):
        if row["status"] == "ok":
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.01)  # let the first one be handled (signals of one kind do not queue)
            os.kill(os.getpid(), signal.SIGTERM)

    t0 = time.monotonic()
    result = run_batch(root, tmp_path / "out", workers=2, ids=[GOOD[2], GOOD[4]], runner=_test_runner,
                       progress=progress)
    assert time.monotonic() - t0 < 20  # the sleeping case was cancelled, not waited for
    status = {r["case_id"]: r for r in result.rows}
    assert status[GOOD[4]]["status"] == "ok"
    assert status[GOOD[2]]["status"] == "cancelled" and "while running" in status[GOOD[2]]["error"]


# --------------------------------------------------------------------------- export-triplets


def _metadata(dataset: Path):
    rows = list(csv.DictReader((dataset / "metadata.csv").open(encoding="utf-8")))
    jsonl = [json.loads(l) for l in (dataset / "metadata.jsonl").read_text(encoding="utf-8").splitlines()]
    return {r["case_id"]: r for r in rows}, {r["case_id"]: r for r in jsonl}


def test_export_triplets_files_links_and_metadata(run_w2, root, tmp_path):
    out = run_w2[0]
    dataset = tmp_path / "dataset"
    rc, stdout, stderr = _cli("export-triplets", out, "--dest", dataset)
    assert rc == 0, stderr
    table = "findings_table.parquet" if _has_pyarrow() else "findings_table.csv"
    assert sorted(p.name for p in dataset.iterdir()) == sorted(GOOD + ["README.md", "metadata.csv", "metadata.jsonl",
                                                                       "phases.csv", "reports.csv", table])
    csv_rows, json_rows = _metadata(dataset)
    assert list(csv.reader((dataset / "metadata.csv").open()))[0] == list(METADATA_COLUMNS)
    readme = (dataset / "README.md").read_text(encoding="utf-8")
    assert all(f"`{c}`" in readme for c in METADATA_COLUMNS)
    for case_id in GOOD:
        case = dataset / case_id
        # CT and every mask, hard-linked (same file system).
        src_masks = sorted(p.name for p in (root / case_id / "segmentations").iterdir())
        assert sorted(p.name for p in (case / "segmentations").iterdir()) == src_masks
        for rel in ["ct.nii.gz"] + [f"segmentations/{m}" for m in src_masks]:
            assert os.path.samefile(case / rel, root / case_id / rel)
        assert (case / "report.txt").read_text() == (out / case_id / "report.txt").read_text()
        findings = json.loads((case / "findings.json").read_text(encoding="utf-8"))
        assert findings == _findings(out, case_id)
        assert not (case / "narrative.txt").exists()
        # Metadata equals findings.json.
        row, jrow = csv_rows[case_id], json_rows[case_id]
        for organ in ("liver", "pancreas", "kidney"):
            sizes = [l["longest_diameter_mm"] for l in findings["lesions"] if l["organ"] == organ]
            assert jrow[f"largest_lesion_mm_{organ}"] == (max(sizes) if sizes else None)
            assert row[f"largest_lesion_mm_{organ}"] == (repr(max(sizes)) if sizes else "")
            if sizes:
                assert float(row[f"largest_lesion_mm_{organ}"]) == max(sizes)
            if findings["lesions_assessed"][organ]:
                assert int(row[f"n_lesions_{organ}"]) == len(sizes)
            else:  # no lesion mask for that organ: not assessed, never "0 lesions"
                assert row[f"n_lesions_{organ}"] == "" and not sizes
        assert float(row["liver_volume_ml"]) == findings["organs"]["liver"]["volume_ml"]
        assert row["phase"] == findings["phase"] == "unknown"
        assert row["report_path"] == f"{case_id}/report.txt" and row["narrative_path"] == ""
        assert jrow["report_text"] == (case / "report.txt").read_text(encoding="utf-8")
        assert row["software_version"] == findings["provenance"]["version"]
        pairs = sorted([("ct.nii.gz" if name == "ct" else f"segmentations/{Path(e['path']).name}"), e["sha256"]]
                       for name, entries in findings["provenance"]["inputs"].items() for e in entries)
        assert row["inputs_digest"] == hashlib.sha256(json.dumps(pairs, separators=(",", ":")).encode()).hexdigest()
    one = csv_rows[GOOD[0]]
    assert one["organs_with_lesions"] == "liver;pancreas;kidney" and one["t_stage"] == "T2"
    assert one["resectability"] == "resectable" and one["has_ct"] == "true"
    assert csv_rows[GOOD[4]]["organs_with_tumors"] == "kidney"  # kidney_lesion (not only the cyst)
    assert not list(tmp_path.glob(".dataset.*"))  # no temporary folder left behind

    # A non-empty dataset is refused without --update.
    rc, _, stderr = _cli("export-triplets", out, "--dest", dataset)
    assert rc == 2 and "--update" in stderr


def test_export_copy_symlink_update_and_narrative(run_w2, root, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(run_w2[0], out)
    # An accepted narrative that still passes the fact check, and an "accepted" one that no longer does.
    # (The "not assessable" steatosis sentences of an unknown-phase report are left out: the fact checker
    # reads them as a steatosis claim.)
    good_text = re.sub(r" (Steatosis|Fatty pancreas) not assessable[^.]*\.", "",
                       (out / GOOD[0] / "report.txt").read_text(encoding="utf-8"))
    # Written as `radgpt narrative` writes them (through the output folder's manifest).
    write_files_atomically(out / GOOD[0], {"narrative.txt": good_text,
                                           "narrative_check.json": json.dumps({"status": "accepted"})})
    write_files_atomically(out / GOOD[1], {
        "narrative.txt": "Liver: a 95 mm lesion in segment 2. No other findings.\n",
        "narrative_check.json": json.dumps({"status": "accepted"})})
    # A narrative put there by hand (not in the manifest) is not the tool's: not exported.
    (out / GOOD[2] / "narrative.txt").write_text((out / GOOD[2] / "report.txt").read_text(encoding="utf-8"))
    (out / GOOD[2] / "narrative_check.json").write_text(json.dumps({"status": "accepted"}))
    dataset = tmp_path / "ds"
    rc, _, stderr = _cli("export-triplets", out, "--dest", dataset, "--copy", "--narrative")
    assert rc == 0, stderr
    ct = dataset / GOOD[0] / "ct.nii.gz"
    source_ct = root / GOOD[0] / "ct.nii.gz"
    assert not os.path.samefile(ct, source_ct) and ct.read_bytes() == source_ct.read_bytes()
    assert (dataset / GOOD[0] / "narrative.txt").read_text(encoding="utf-8") == good_text
    assert not (dataset / GOOD[1] / "narrative.txt").exists()
    assert not (dataset / GOOD[2] / "narrative.txt").exists()
    csv_rows, json_rows = _metadata(dataset)
    assert csv_rows[GOOD[0]]["narrative_path"] == f"{GOOD[0]}/narrative.txt"
    assert json_rows[GOOD[0]]["narrative_text"] == good_text and json_rows[GOOD[1]]["narrative_text"] is None

    links = tmp_path / "links"
    assert _cli("export-triplets", out, "--dest", links, "--link")[0] == 0
    assert (links / GOOD[0] / "ct.nii.gz").is_symlink()
    assert os.path.samefile(links / GOOD[0] / "ct.nii.gz", root / GOOD[0] / "ct.nii.gz")

    # --update: a dataset with one case gets the others added, the existing one kept.
    (out / "batch_summary.json").rename(out / "full.json")
    full = json.loads((out / "full.json").read_text(encoding="utf-8"))
    part = dict(full, cases=[c for c in full["cases"] if c["case_id"] == GOOD[0]])
    (out / "batch_summary.json").write_text(json.dumps(part))
    small = tmp_path / "small"
    assert _cli("export-triplets", out, "--dest", small)[0] == 0
    assert sorted(_metadata(small)[0]) == [GOOD[0]]
    (out / "batch_summary.json").write_text(json.dumps(full))
    rc, _, stderr = _cli("export-triplets", out, "--dest", small, "--update")
    assert rc == 0, stderr
    assert sorted(_metadata(small)[0]) == GOOD
    assert not list(tmp_path.glob(".small.*"))


def test_export_leaves_out_a_case_whose_masks_changed(run_w1, root, tmp_path):
    root2 = tmp_path / "root"
    shutil.copytree(root, root2)
    path = root2 / GOOD[3] / "segmentations" / "pancreatic_pdac.nii.gz"
    shutil.copyfile(root2 / GOOD[3] / "segmentations" / "spleen.nii.gz", path)  # another mask: other hash
    dataset = tmp_path / "ds"
    rc, _, stderr = _cli("export-triplets", run_w1[0], "--dest", dataset, "--cases", root2)
    assert rc == 1
    assert GOOD[3] in stderr and "pancreatic_pdac.nii.gz changed" in stderr
    assert sorted(_metadata(dataset)[0]) == [c for c in GOOD if c != GOOD[3]]
    assert not (dataset / GOOD[3]).exists()
    # Without a summary there is nothing to export.
    rc, _, stderr = _cli("export-triplets", tmp_path, "--dest", tmp_path / "ds2")
    assert rc == 2 and "batch_summary.json" in stderr


def test_radgpt_cli_registers_the_dataset_commands():
    from RadGPTLogic.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.__class__.__name__ == "_SubParsersAction")
    assert "batch" in sub.choices and "export-triplets" in sub.choices
