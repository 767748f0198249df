"""LLM narrative, retry loop, fallback, example selection, enhanced mode and the CLI functions,
through the real openai client against a scripted OpenAI-compatible server on 127.0.0.1."""

from __future__ import annotations

import argparse
import json
import random
import shutil

import pytest
from llm_server import ScriptedLLMServer, word_tokens
from test_factcheck import SECTIONED, make_findings, values

from RadGPTLogic.errors import InputError
from RadGPTLogic.llm import client as llm_client
from RadGPTLogic.llm.budget import SAFETY_TOKENS
from RadGPTLogic.llm.client import LLMConfig
from RadGPTLogic.phantom import staging_lesions
from RadGPTLogic.report import narrative_cli
from RadGPTLogic.report.enhance import enhance_report
from RadGPTLogic.report.narrative import (
    FAILED_HEADER,
    Example,
    case_labels,
    extract_report,
    label_report,
    load_examples,
    package_examples_dir,
    select_examples,
    write_narrative,
    write_narratives,
)


@pytest.fixture(autouse=True)
def cli_warnings_on_stderr():
    """The sub-commands here are called through ``args.func`` (not ``cli.main``): print the
    ``radgpt`` logger's lines on stderr as ``main`` would, whatever ran before this file."""
    from RadGPTLogic.cli import setup_logging

    setup_logging()


@pytest.fixture(scope="module")
def staged_dir(tmp_path_factory):
    out, f = make_findings(tmp_path_factory.mktemp("nar"), "S", lesions=staging_lesions(), phase="venous")
    return out


@pytest.fixture(scope="module")
def plain_dir(tmp_path_factory):
    out, _ = make_findings(tmp_path_factory.mktemp("plain"), "N", lesions=[])
    return out


@pytest.fixture
def case(staged_dir, tmp_path):
    """A fresh copy of the staged output folder and its texts."""
    out = tmp_path / "out"
    shutil.copytree(staged_dir, out)
    f = json.loads((out / "findings.json").read_text(encoding="utf-8"))
    good = SECTIONED.format(**values(f))
    return {"out": out, "findings": f, "good": good,
            "wrong_segment": good.replace("lesion in segment 4a", "lesion in segment 3"),
            "swapped": good.replace("upper pole of the right kidney", "upper pole of the left kidney")}


def wrap(text: str) -> str:
    return f"Here is the report.\n#start\n{text}\n#end\nJustification: every finding is in the structured report."


def config_for(server, **kw) -> LLMConfig:
    return LLMConfig(base_url=server.url, **kw)


def user_prompts(server) -> list:
    return [r["messages"][-1]["content"] for r in server.requests]


# --- examples ------------------------------------------------------------------------------


def test_shipped_examples_load_and_are_labelled():
    examples = load_examples()
    assert len(examples) >= 8
    styles = {e.style for e in examples}
    assert {"sectioned", "paragraph"} <= styles
    by = {e.name: e for e in examples}
    assert by["sectioned_01_normal"].labels == {"normal"}
    assert by["paragraph_01_normal"].labels == {"normal"}
    assert {"pancreas:pdac", "pancreas:vascular"} <= by["sectioned_03_pdac_vascular"].labels
    assert {"pancreas:pdac", "pancreas:vascular"} <= by["paragraph_03_pdac_vascular"].labels
    assert {"liver:steatosis", "spleen:enlarged"} <= by["sectioned_05_steatosis_splenomegaly"].labels
    assert {"kidney:cyst", "kidney:tumor"} <= by["sectioned_04_kidney_lesions"].labels
    assert {"liver:enlarged", "liver:steatosis"} <= by["paragraph_05_steatosis_hepatomegaly"].labels
    assert (package_examples_dir() / "sectioned_01_normal.txt").is_file()
    for e in examples:  # sectioned ones have sections, paragraph ones are one paragraph
        if e.style == "sectioned":
            assert "FINDINGS:" in e.text and "IMPRESSION:" in e.text
        else:
            assert "\n" not in e.text.strip() and "Impression:" in e.text


def test_examples_from_txt_folder_and_csv(tmp_path):
    (tmp_path / "many.txt").write_text("Liver: 2.0 x 1.5 cm cyst in segment 3.\n---\nNormal study.\n---\n")
    ex = load_examples(tmp_path / "many.txt")
    assert [e.name for e in ex] == ["many#1", "many#2"]
    assert "liver:cyst" in ex[0].labels and ex[1].labels == {"normal"}
    folder = tmp_path / "dir"
    folder.mkdir()
    (folder / "b.md").write_text("Splenomegaly.")
    (folder / "a.txt").write_text("No focal lesion.")
    assert [e.name for e in load_examples(folder)] == ["a", "b"]
    csv_path = tmp_path / "ex.csv"
    csv_path.write_text('name,report,style\nx1,"Hepatic steatosis, no focal lesion.",inst\nx2,"A 3 cm mass in the '
                        'pancreatic tail.",inst\n')
    ex = load_examples(csv_path)
    assert [(e.name, e.style) for e in ex] == [("x1", "inst"), ("x2", "inst")]
    assert ex[0].labels == {"liver:steatosis"} and "pancreas:tumor" in ex[1].labels
    (tmp_path / "bad.csv").write_text("id,text\n1,hello\n")
    with pytest.raises(InputError, match="'report' column"):
        load_examples(tmp_path / "bad.csv")
    with pytest.raises(InputError, match="not found"):
        load_examples(tmp_path / "missing.txt")
    (tmp_path / "empty.txt").write_text("\n---\n")
    with pytest.raises(InputError, match="no example report"):
        load_examples(tmp_path / "empty.txt")


def test_selection_prefers_same_organs_and_kinds_and_is_deterministic(case, plain_dir):
    f = case["findings"]
    labels = case_labels(f)
    assert {"liver:tumor", "pancreas:pdac", "pancreas:vascular", "kidney:cyst", "kidney:tumor"} <= labels
    pool = [e for e in load_examples() if e.style == "sectioned"]
    picked = [e.name for e in select_examples(pool, f, k=3)]
    assert set(picked) == {"sectioned_02_liver_lesions", "sectioned_03_pdac_vascular", "sectioned_04_kidney_lesions"}
    shuffled = pool[:]
    random.Random(1).shuffle(shuffled)
    assert [e.name for e in select_examples(shuffled, f, k=3)] == picked
    plain = json.loads((plain_dir / "findings.json").read_text(encoding="utf-8"))
    assert case_labels(plain) == {"normal"}
    assert select_examples(pool, plain, k=1)[0].name == "sectioned_01_normal"
    # ties are broken by name
    spleen = label_report("Splenomegaly.")
    twins = [Example("b", "x", labels=spleen), Example("a", "y", labels=spleen)]
    assert [e.name for e in select_examples(twins, plain, k=2)] == ["a", "b"]


def test_extract_report():
    assert extract_report("blah\n#start\nLiver: fine.\n#end\nwhy") == "Liver: fine.\n"
    assert extract_report("```\nLiver: fine.\n```") == "Liver: fine.\n"
    assert extract_report("#start\nLiver: fine.") == "Liver: fine.\n"


# --- narrative through the real client ------------------------------------------------------


def test_faithful_narrative_accepted_first_try(case):
    with ScriptedLLMServer([wrap(case["good"])]) as srv:
        res = write_narrative(case["out"], config_for(srv))
    assert res.ok and res.status == "accepted" and res.accepted_attempt == 1
    assert res.model == "scripted-model"  # taken from /v1/models
    assert set(res.examples) == {"sectioned_02_liver_lesions", "sectioned_03_pdac_vascular",
                                 "sectioned_04_kidney_lesions"}
    assert (case["out"] / "narrative.txt").read_text(encoding="utf-8") == case["good"].strip() + "\n"
    record = json.loads((case["out"] / "narrative_check.json").read_text(encoding="utf-8"))
    assert record["status"] == "accepted" and record["model"] == "scripted-model"
    assert record["examples"] == res.examples and len(record["attempts"]) == 1
    assert record["final"]["ok"] and record["final"]["facts_found"] == record["final"]["facts_expected"]
    body = srv.requests[0]
    assert body["temperature"] == 0.0 and body["messages"][0]["role"] == "system"
    prompt = body["messages"][1]["content"]
    assert (case["out"] / "report.txt").read_text(encoding="utf-8").strip() in prompt
    assert "EXAMPLE REPORT 3:" in prompt and "#start" in prompt and "FACTS THAT MUST APPEAR" in prompt
    for name in res.examples:
        assert (package_examples_dir() / f"{name}.txt").read_text(encoding="utf-8").strip() in prompt


def test_retry_lists_errors_then_accepts(case):
    with ScriptedLLMServer([wrap(case["wrong_segment"]), wrap(case["good"])]) as srv:
        res = write_narrative(case["out"], config_for(srv))
    assert res.status == "accepted" and res.accepted_attempt == 2 and len(srv.requests) == 2
    second = srv.requests[1]["messages"]
    # a fresh prompt with the errors listed; the failed answer itself is not sent again
    assert [m["role"] for m in second] == ["system", "user"]
    assert case["wrong_segment"].strip() not in second[-1]["content"]
    assert "failed the automatic fact check" in second[-1]["content"]
    assert "wrong_location" in second[-1]["content"] and "S3" in second[-1]["content"]
    assert all(r["max_tokens"] > 0 for r in srv.requests)
    record = json.loads((case["out"] / "narrative_check.json").read_text(encoding="utf-8"))
    assert [a["ok"] for a in record["attempts"]] == [False, True]
    assert record["attempts"][0]["errors"][0]["kind"] == "wrong_location"


def test_always_wrong_keeps_structured_report(case):
    with ScriptedLLMServer([wrap(case["swapped"])]) as srv:
        res = write_narrative(case["out"], config_for(srv), max_tries=3)
    assert res.status == "fallback" and not res.ok and len(srv.requests) == 3
    text = (case["out"] / "narrative.txt").read_text(encoding="utf-8")
    assert text.splitlines()[0] == FAILED_HEADER.format(tries=3)
    assert (case["out"] / "report.txt").read_text(encoding="utf-8").strip() in text
    record = json.loads((case["out"] / "narrative_check.json").read_text(encoding="utf-8"))
    assert record["status"] == "fallback" and record["narrative_of_record"] == "structured_report"
    assert len(record["attempts"]) == 3 and all(a["errors"] for a in record["attempts"])
    assert "swapped_side" in {e["kind"] for e in record["final"]["errors"]}
    assert all("swapped_side" in p for p in user_prompts(srv)[1:])


def test_batch_bounded_concurrency(case, tmp_path):
    dirs = []
    for i in range(4):
        d = tmp_path / f"b{i}"
        shutil.copytree(case["out"], d)
        dirs.append(d)
    with ScriptedLLMServer(lambda body: wrap(case["good"]), delay_s=0.1) as srv:
        results = write_narratives(dirs, config_for(srv, model="m"), max_concurrency=2)
    assert [r.status for r in results] == ["accepted"] * 4
    assert srv.max_in_flight <= 2 and len(srv.requests) == 4
    assert all((d / "narrative.txt").is_file() for d in dirs)


def test_no_endpoint_is_a_clear_error(case):
    with pytest.raises(InputError, match="no LLM endpoint configured"):
        write_narrative(case["out"], None)


def test_bad_out_dir(tmp_path):
    with ScriptedLLMServer(["x"]) as srv:
        with pytest.raises(InputError, match="findings.json"):
            write_narrative(tmp_path, config_for(srv))
    assert not srv.requests


def test_user_examples_and_style(case, tmp_path):
    ex = tmp_path / "inst.txt"
    ex.write_text("Liver: two lesions.\n---\nPancreas: 2 cm adenocarcinoma of the head abutting the SMV.\n---\n"
                  "Normal study.\n")
    with ScriptedLLMServer([wrap(case["good"])]) as srv:
        res = write_narrative(case["out"], config_for(srv), examples=ex, style="Use British spelling.", k=2)
    assert res.examples == ["inst#2", "inst#1"]
    assert "Style note from the institution: Use British spelling." in srv.requests[0]["messages"][1]["content"]
    with ScriptedLLMServer([wrap(case["good"])]) as srv:
        res = write_narrative(case["out"], config_for(srv), style="paragraph")
    assert all(name.startswith("paragraph_") for name in res.examples)


# --- enhanced mode -------------------------------------------------------------------------------

NOTES = "Cirrhotic liver morphology. Portocaval lymph node measuring 1.2 cm.\n"


def test_enhance_merges_notes_and_tags_additions(case):
    structured = (case["out"] / "report.txt").read_text(encoding="utf-8")
    merged = structured.replace("IMPRESSION:", "Liver (radiologist): cirrhotic morphology.\n"
                                               "Lymph nodes: portocaval lymph node, 1.2 cm.\n\nIMPRESSION:")
    merged = merged.rstrip() + "\n5. Cirrhotic liver; 1.2 cm portocaval lymph node (radiologist notes).\n"
    narrative = case["good"].rstrip() + "\n5. Cirrhotic liver and a 1.2 cm portocaval lymph node.\n"
    with ScriptedLLMServer([wrap(case["good"])]) as srv:  # an accepted narrative first
        write_narrative(case["out"], config_for(srv))

    def reply(body):
        prompt = body["messages"][1]["content"]
        return wrap(merged if "structured report below" in prompt else narrative)

    with ScriptedLLMServer(reply) as srv:
        res = enhance_report(case["out"], NOTES, config_for(srv))
    assert res.ok and res.statuses == {"structured": "accepted", "narrative": "accepted"}
    assert NOTES.strip() in srv.requests[0]["messages"][1]["content"]
    assert (case["out"] / "report_enhanced.txt").read_text(encoding="utf-8") == merged
    assert (case["out"] / "narrative_enhanced.txt").read_text(encoding="utf-8") == narrative
    record = json.loads((case["out"] / "report_enhanced_check.json").read_text(encoding="utf-8"))
    tags = record["reports"]["structured"]["from_notes"]
    assert tags and all(t["tag"] == "from notes" for t in tags)
    assert {"invented_finding", "changed_number"} <= {t["kind"] for t in tags}
    assert record["reports"]["structured"]["final"]["ok"]


def test_enhance_that_drops_a_fact_falls_back(case):
    structured = (case["out"] / "report.txt").read_text(encoding="utf-8")
    lossy = "\n".join(les for les in structured.splitlines() if "cyst" not in les.lower())  # the kidney cyst is gone
    assert lossy != structured.rstrip()
    with ScriptedLLMServer([wrap(lossy + "\nLymph nodes: portocaval node 1.2 cm.\n")]) as srv:
        res = enhance_report(case["out"], NOTES, config_for(srv), max_tries=2)
    assert res.statuses == {"structured": "fallback"} and len(srv.requests) == 2
    assert "dropped_lesion" in srv.requests[1]["messages"][-1]["content"]
    text = (case["out"] / "report_enhanced.txt").read_text(encoding="utf-8")
    assert text.startswith(structured.rstrip()) and NOTES.strip() in text


# --- command-line functions through a tiny parser ---------------------------------------------


def parse(*argv):
    p = argparse.ArgumentParser(prog="radgpt")
    p.add_argument("--debug", action="store_true")
    narrative_cli.register(p.add_subparsers(dest="command", required=True))
    return p.parse_args([str(a) for a in argv])


@pytest.fixture
def no_llm_env(monkeypatch, tmp_path):
    for key in ("RADGPT_LLM_BASE_URL", "RADGPT_LLM_MODEL", "RADGPT_LLM_API_KEY", "OPENAI_API_KEY",
                "RADGPT_LLM_CONFIG", "RADGPT_LLM_TIMEOUT"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setattr(llm_client, "DEFAULT_CONFIG_FILE", tmp_path / "absent.json")


def test_cli_narrative_and_enhance(case, capsys, no_llm_env, tmp_path):
    with ScriptedLLMServer([wrap(case["good"])]) as srv:
        args = parse("narrative", case["out"], "--base-url", srv.url, "--max-tries", "2", "--concurrency", "1")
        assert args.func(args) == 0
    assert "narrative accepted on try 1" in capsys.readouterr().out
    with ScriptedLLMServer([wrap(case["swapped"])]) as srv:
        args = parse("narrative", case["out"], "--base-url", srv.url, "--model", "m", "--max-tries", "2")
        assert args.func(args) == 0
    err = capsys.readouterr().err
    assert "failed the fact check 2 time(s)" in err and "narrative-of-record" in err
    notes = tmp_path / "notes.txt"
    notes.write_text(NOTES)
    structured = (case["out"] / "report.txt").read_text(encoding="utf-8")
    with ScriptedLLMServer([wrap(structured.rstrip() + "\nLymph nodes: portocaval lymph node 1.2 cm.\n")]) as srv:
        args = parse("enhance", case["out"], "--notes", notes, "--base-url", srv.url)
        assert args.func(args) == 0
    assert "notes merged into the structured report" in capsys.readouterr().out


def test_cli_without_endpoint_or_with_bad_input(case, no_llm_env, tmp_path):
    args = parse("narrative", case["out"])
    with pytest.raises(InputError) as err:
        args.func(args)
    assert "no LLM endpoint configured" in err.value.one_line() and "--base-url" in err.value.one_line()
    args = parse("enhance", case["out"], "--notes", tmp_path / "missing.txt", "--base-url", "http://127.0.0.1:9/v1")
    with pytest.raises(InputError, match="notes file not found"):
        args.func(args)
    args = parse("narrative", case["out"], "--base-url", "http://127.0.0.1:9/v1", "--max-tries", "0")
    with pytest.raises(InputError, match="max-tries"):
        args.func(args)


def test_cli_unreachable_server_falls_back_with_exit_1(case, capsys, no_llm_env, tmp_path):
    cfg = tmp_path / "llm.json"
    cfg.write_text(json.dumps({"max_retries": 0, "timeout_s": 2}))
    with ScriptedLLMServer(["x"], fail_first=100) as srv:
        args = parse("narrative", case["out"], "--base-url", srv.url, "--model", "m", "--config", cfg)
        assert args.func(args) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("radgpt: error:") and "\n" not in err and "llm_error" in err
    text = (case["out"] / "narrative.txt").read_text(encoding="utf-8")
    assert text.startswith("NOTE: no LLM narrative") and (case["out"] / "report.txt").read_text().strip() in text
    record = json.loads((case["out"] / "narrative_check.json").read_text(encoding="utf-8"))
    assert (record["status"], record["reason"], record["tries"]) == ("fallback", "llm_error", 1)
    assert "HTTP 500" in record["attempts"][0]["llm_error"]["message"]
    # no server at all: the model list cannot be read; still the fallback, nothing lost
    res = write_narrative(case["out"], LLMConfig(base_url="http://127.0.0.1:9/v1", max_retries=0))
    assert (res.status, res.reason, res.attempts) == ("fallback", "llm_error", [])
    assert (case["out"] / "report.txt").read_text().strip() in (case["out"] / "narrative.txt").read_text()


# --- context budget, cut-off answers, overflow ---------------------------------------------------


def test_examples_are_chosen_to_fit_a_small_window(case):
    with ScriptedLLMServer([wrap(case["good"])], context_tokens=100000, report_context=True, tokenize=True) as big:
        write_narrative(case["out"], config_for(big))
    # A window that leaves the three-example prompt less room than the report's own length: fewer examples fit.
    least = len(word_tokens((case["out"] / "report.txt").read_text(encoding="utf-8")))
    window = json.loads((case["out"] / "narrative_check.json").read_text())["attempts"][0]["prompt_tokens"] \
        + SAFETY_TOKENS + least - 1
    with ScriptedLLMServer([wrap(case["good"])], context_tokens=window, report_context=True, tokenize=True) as srv:
        res = write_narrative(case["out"], config_for(srv))
    assert res.ok and srv.refused == 0
    record = res.record
    assert record["context"] == {"context_tokens": window, "context_source": "server", "token_counter": "server"}
    assert 0 < len(record["examples_in_accepted_prompt"]) < 3
    assert srv.prompt_tokens[0] + srv.requests[0]["max_tokens"] <= window


def test_overflow_refused_by_the_server_is_refitted(case):
    """The server reports no window (8192 assumed) but has less: its 400 names the window, the prompt is rebuilt."""
    with ScriptedLLMServer([wrap(case["good"])], tokenize=True) as big:
        write_narrative(case["out"], config_for(big))
    window = big.prompt_tokens[0] + big.requests[0]["max_tokens"] - 100
    with ScriptedLLMServer([wrap(case["good"])], context_tokens=window, tokenize=True) as srv:
        res = write_narrative(case["out"], config_for(srv), max_tries=3)
    assert srv.refused == 1 and len(srv.requests) == 2
    assert res.ok and res.accepted_attempt == 2
    first = res.record["attempts"][0]
    assert first["llm_error"]["kind"] == "context_overflow" and first["context_tokens"] == 8192
    assert res.record["context"]["context_source"] == "server_error"
    assert srv.prompt_tokens[1] + srv.requests[1]["max_tokens"] <= window


def test_window_too_small_for_any_prompt_falls_back_without_asking(case, capsys, no_llm_env):
    with ScriptedLLMServer(["x"], context_tokens=300, report_context=True) as srv:
        args = parse("narrative", case["out"], "--base-url", srv.url)
        assert args.func(args) == 1
    assert not srv.requests
    record = json.loads((case["out"] / "narrative_check.json").read_text(encoding="utf-8"))
    assert (record["status"], record["reason"]) == ("fallback", "context_too_small")
    assert "context_too_small" in capsys.readouterr().err


def test_runaway_answer_is_cut_and_retried_without_resending_it(case):
    runaway = "The liver is normal. " * 3000
    with ScriptedLLMServer([runaway, wrap(case["good"])]) as srv:
        res = write_narrative(case["out"], config_for(srv))
    assert res.ok and res.accepted_attempt == 2
    first = res.record["attempts"][0]
    assert first["finish_reason"] == "length" and first["usage_completion_tokens"] == first["max_tokens"]
    structured_words = len((case["out"] / "report.txt").read_text(encoding="utf-8").split())
    assert first["max_tokens"] < 10 * structured_words  # bounded by the report's length, not the window
    retry = srv.requests[1]["messages"][-1]["content"]
    assert "cut off" in retry and "The liver is normal. The liver is normal." not in retry


def test_every_llm_failure_keeps_the_structured_report(case):
    structured = (case["out"] / "report.txt").read_text(encoding="utf-8").strip()
    scenarios = [
        ({"replies": ["x"], "fail_first": 100}, "llm_error"),
        ({"replies": ["   "]}, "empty_answer"),
        ({"replies": ["word " * 5000]}, "truncated"),
        ({"replies": [wrap(case["swapped"])]}, "fact_check_failed"),
        ({"replies": ["x"], "fail_first": 100, "fail_status": 400}, "llm_error"),
    ]
    for kwargs, reason in scenarios:
        with ScriptedLLMServer(**kwargs) as srv:
            res = write_narrative(case["out"], config_for(srv, max_retries=0), max_tries=2)
        assert (res.status, res.reason) == ("fallback", reason), kwargs
        assert structured in (case["out"] / "narrative.txt").read_text(encoding="utf-8")
        record = json.loads((case["out"] / "narrative_check.json").read_text(encoding="utf-8"))
        assert record["reason"] == reason and record["reason_detail"] and record["tries"] == len(record["attempts"])


def test_batch_narratives_fall_back_per_case(case, tmp_path, capsys, no_llm_env):
    """Several output folders: each case ends on its own (one accepted, one cut off), all files written."""
    dirs = []
    for i in range(2):
        d = tmp_path / f"c{i}"
        shutil.copytree(case["out"], d)
        dirs.append(d)

    calls = []

    def by_case(body):  # with one request at a time: the first answer runs on, the second is faithful
        calls.append(body)
        return "word " * 5000 if len(calls) % 2 == 1 else wrap(case["good"])

    with ScriptedLLMServer(by_case) as srv:
        args = parse("narrative", *dirs, "--base-url", srv.url, "--model", "m", "--max-tries", "1", "--concurrency",
                     "1")
        assert args.func(args) == 0  # a cut-off answer is the model's text, not an endpoint failure
    statuses = [json.loads((d / "narrative_check.json").read_text(encoding="utf-8"))["status"] for d in dirs]
    reasons = [json.loads((d / "narrative_check.json").read_text(encoding="utf-8"))["reason"] for d in dirs]
    assert sorted(zip(statuses, reasons), key=str) == [("accepted", None), ("fallback", "truncated")]
    assert all((d / "narrative.txt").read_text(encoding="utf-8").strip() for d in dirs)
    assert "truncated" in capsys.readouterr().err
