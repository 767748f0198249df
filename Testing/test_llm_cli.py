"""`radgpt narrative` and `radgpt evaluate` as commands, against a local OpenAI-compatible server."""

from __future__ import annotations

import json

from conftest import run_cli
from llm_server import ScriptedLLMServer


def test_narrative_command_end_to_end(simple_case, tmp_path):
    out = tmp_path / "out"
    run_cli("report", simple_case, "--out", out, "--phase", "non-contrast", check=True)
    faithful = "#start\n" + (out / "report.txt").read_text(encoding="utf-8") + "\n#end"
    with ScriptedLLMServer([faithful]) as srv:
        proc = run_cli("narrative", out, "--base-url", srv.url, "--model", srv.model)
    assert proc.returncode == 0, proc.stderr
    check = json.loads((out / "narrative_check.json").read_text(encoding="utf-8"))
    assert check["status"] == "accepted"
    assert (out / "narrative.txt").read_text(encoding="utf-8").strip()
    prompt = json.dumps(srv.requests[0]["messages"])
    assert "liver" in prompt.lower()


def test_narrative_without_endpoint_is_a_clear_error(simple_case, tmp_path):
    out = tmp_path / "out"
    run_cli("report", simple_case, "--out", out, check=True)
    proc = run_cli("narrative", out, "--config", tmp_path / "none.json")
    assert proc.returncode != 0
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not (out / "narrative.txt").exists()


def test_evaluate_command_on_report_folders(simple_case, tmp_path):
    out = tmp_path / "runs" / "CASE_0001"
    run_cli("report", simple_case, "--out", out, check=True)
    truth = tmp_path / "truth.csv"
    truth.write_text("case_id,liver,liver_mm,pancreas,pancreas_mm,kidney,kidney_mm\nCASE_0001,yes,18,no,,yes,10\n")
    proc = run_cli("evaluate", "--pred", tmp_path / "runs", "--truth", truth, "--out", tmp_path / "ev")
    assert proc.returncode == 0, proc.stderr
    assert "liver" in proc.stdout.lower() and "|" in proc.stdout
    assert (tmp_path / "ev" / "metrics.csv").exists()
