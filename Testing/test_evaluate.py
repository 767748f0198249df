"""`radgpt evaluate`: rule labels from report text, metrics with Wilson intervals, LLM labels, the CLI."""

from __future__ import annotations

import argparse
import csv
import io
import json
import math

import pytest
from llm_server import ScriptedLLMServer

from RadGPTLogic.cli import main as cli_main
from RadGPTLogic.errors import InputError
from RadGPTLogic.evaluate import ORGANS
from RadGPTLogic.evaluate.evaluate_cli import register, run_evaluate
from RadGPTLogic.evaluate.labels import extract_labels, extract_mentions, parse_size_mm
from RadGPTLogic.evaluate.llm_labels import RETRY_PROMPT, llm_extract_labels, parse_llm_labels
from RadGPTLogic.evaluate.metrics import (
    compute_metrics,
    labels_csv,
    metrics_csv,
    metrics_markdown,
    paper_table,
    wilson_interval,
)
from RadGPTLogic.llm.client import LLMConfig

# --------------------------------------------------------------------------- rule extractor

NO = ("no", None)

# (report text, {organ: (tumor, largest_mm)}); organs left out must be "no".
RULE_CASES = [
    # negations
    ("No focal liver lesion.", {}),
    ("Unremarkable pancreas.", {}),
    ("Renal cyst ruled out.", {}),
    ("The kidneys are normal in size without hydronephrosis or mass.", {}),
    ("No liver or pancreatic mass.", {}),
    ("No masses in the liver, pancreas or kidneys.", {}),
    ("The liver is free of metastases. Pancreas negative for mass.", {}),
    ("There is no evidence of a renal tumor.", {}),
    ("Previously seen hepatic lesion has resolved.", {}),
    ("IMPRESSION: No tumor observed in the liver, pancreas or kidneys.", {}),
    ("The pancreatic duct measures 4 mm. No pancreatic mass.", {}),
    # non-tumour conditions and explanations
    ("Hepatic steatosis and cirrhosis. Bilateral renal calculi with mild hydronephrosis. Acute pancreatitis. "
     "Pancreatic atrophy.", {}),
    ("Hypodensity in segment 4 adjacent to the falciform ligament consistent with focal fat.", {}),
    ("Innumerable renal cysts in keeping with polycystic kidney disease.", {}),
    ("The liver is cirrhotic. Multiple regenerative nodules. No discrete mass.", {}),
    ("The liver measures 18 cm. No hepatic lesion.", {}),
    ("Adrenal nodule measuring 1.5 cm. Kidneys normal.", {}),
    ("History of right nephrectomy for renal cell carcinoma. The left kidney is unremarkable.", {}),
    ("CLINICAL HISTORY: Evaluate for pancreatic mass.\nFINDINGS: The pancreas is normal. No focal hepatic lesion.",
     {}),
    # positives and sizes (mm, cm, ranges, largest chosen)
    ("A 3.1 x 2.2 cm hypoattenuating mass in the pancreatic head.", {"pancreas": ("yes", 31.0)}),
    ("Liver lesion measuring 31 mm in segment 6.", {"liver": ("yes", 31.0)}),
    ("A 1.5-cm cyst in the left kidney.", {"kidney": ("yes", 15.0)}),
    ("Multiple hepatic metastases measuring up to 2 cm.", {"liver": ("yes", 20.0)}),
    ("Two liver lesions: 1.2 cm in segment 2 and 4.5 x 3.0 cm in segment 7.", {"liver": ("yes", 45.0)}),
    ("Stable 12 mm hemangioma in the right hepatic lobe. HCC in segment 8 measuring 3 cm.", {"liver": ("yes", 30.0)}),
    ("Left renal mass measuring 4.2 cm, previously 3.5 cm. Right kidney unremarkable.", {"kidney": ("yes", 42.0)}),
    ("A 2.0 cm pancreatic cyst, previously measuring 2.6 cm.", {"pancreas": ("yes", 20.0)}),
    ("No significant change in the 2.5 cm cyst in the pancreatic tail.", {"pancreas": ("yes", 25.0)}),
    ("Heterogeneous enhancing mass arising from the upper pole of the left kidney, measuring 5.6 x 4.8 x 5.1 cm, "
     "consistent with renal cell carcinoma.", {"kidney": ("yes", 56.0)}),
    ("Pancreatic head mass encasing the SMA, measuring 3.4 cm.", {"pancreas": ("yes", 34.0)}),
    ("Bosniak 2F cyst in the right kidney measuring 2.3 cm.", {"kidney": ("yes", 23.0)}),
    ("IPMN in the pancreatic body measuring 8 mm, unchanged from 7 mm.", {"pancreas": ("yes", 8.0)}),
    ("No hydronephrosis; there is a 2.1 x 1.9 x 1.6 cm exophytic lesion arising from the lower pole of the right "
     "kidney.", {"kidney": ("yes", 21.0)}),
    # uncertainty
    ("Indeterminate 8 mm hypodensity in the right kidney.", {"kidney": ("uncertain", 8.0)}),
    ("Subcentimeter hepatic hypodensity, too small to characterize.", {"liver": ("uncertain", None)}),
    ("A pancreatic mass cannot be excluded.", {"pancreas": ("uncertain", None)}),
    ("Questionable lesion in the pancreatic tail.", {"pancreas": ("uncertain", None)}),
    ("Hypodensity in segment 4 may represent a cyst.", {"liver": ("uncertain", None)}),
    ("Possible small renal mass.", {"kidney": ("uncertain", None)}),
    ("No suspicious hepatic lesion. A 7 mm hypodensity in the liver is indeterminate.", {"liver": ("uncertain", 7.0)}),
    # multi-organ, sectioned and paragraph styles
    ("FINDINGS:\nLiver: Normal size. No focal lesion.\n"
     "PANCREAS: 2.4 x 1.9 cm hypoenhancing mass in the uncinate process.\n"
     "Kidneys: Simple cysts bilaterally, the largest 1.1 cm on the right.\n"
     "Spleen: 1.0 cm cyst.\n"
     "IMPRESSION: Pancreatic mass, suspicious for adenocarcinoma.",
     {"pancreas": ("yes", 24.0), "kidney": ("yes", 11.0)}),
    ("The liver is normal in size and attenuation without focal lesion. The gallbladder is unremarkable. "
     "There is a 3.5 x 2.8 cm hypoenhancing mass in the pancreatic body with upstream ductal dilatation to 6 mm. "
     "The spleen is normal. The adrenal glands are normal. Both kidneys demonstrate simple cysts, the largest "
     "measuring 1.8 cm in the left upper pole.",
     {"pancreas": ("yes", 35.0), "kidney": ("yes", 18.0)}),
    ("The pancreas is atrophic. A 1.2 cm cystic lesion is seen. The spleen contains a 2 cm cyst.",
     {"pancreas": ("yes", 12.0)}),
    ("Kidneys: no hydronephrosis. There is a 9 mm cyst.", {"kidney": ("yes", 9.0)}),
    ("No focal liver lesion, but a 2 cm lesion in the pancreatic tail.", {"pancreas": ("yes", 20.0)}),
    ("2 cm PDAC. 5 mm renal cyst.", {"pancreas": ("yes", 20.0), "kidney": ("yes", 5.0)}),
    ("1.2 cm lesion in segment 6 of the liver and 3 cm mass in the left kidney.",
     {"liver": ("yes", 12.0), "kidney": ("yes", 30.0)}),
    ("Findings: Liver: A 2 cm lesion. Pancreas: Unremarkable. Kidneys: Normal. Impression: Liver lesion.",
     {"liver": ("yes", 20.0)}),
    ("Pancreas: No mass or ductal dilatation, 1.2 cm cyst in the tail.", {"pancreas": ("yes", 12.0)}),
    # an unknown capitalised header ends the kidney section: the cyst is hepatic by its location word
    ("KIDNEYS: No mass.\nBILIARY TREE: Normal.\nA 2 cm cyst in segment 4.", {"liver": ("yes", 20.0)}),
    ("Clinical impression: 2 cm renal cyst.", {"kidney": ("yes", 20.0)}),
    # RadGPT's template: the size sits on its own line after the lesion heading
    ("Liver lesion 1:\nLocation: hepatic segment 4/6/7/8.\nSize: 3.1 x 3.0 cm (image 52). Volume: 14.0 cm^3.",
     {"liver": ("yes", 31.0)}),
    ("IMPRESSION: Multiple (2) hypoattenuating liver masses. Largest one (hepatic segment 4/6/7/8) measures "
     "3.1 x 3.0 cm. Total volume of all liver masses: 14.2 cm^3.", {"liver": ("yes", 31.0)}),
]


@pytest.mark.parametrize("text,expected", RULE_CASES, ids=[c[0][:40] for c in RULE_CASES])
def test_rule_extractor(text, expected):
    got = extract_labels(text)
    assert set(got) == set(ORGANS)
    for organ in ORGANS:
        tumor, mm = expected.get(organ, NO)
        assert (got[organ]["tumor"], got[organ]["largest_mm"]) == (tumor, mm), (organ, got, extract_mentions(text))


# The general causes of labelling errors found on real reports (issue 11), each with sentences written here.
CAUSES = [
    # pseudo-negation: a negated property of a lesion that exists; "not excluding" is uncertainty
    ("pseudo-negation", "There is no enhancement of the right renal cyst.", {"kidney": ("yes", None)}),
    ("pseudo-negation", "A 2 cm right renal cyst without enhancement or septation.", {"kidney": ("yes", 20.0)}),
    ("pseudo-negation", "The liver cyst does not enhance.", {"liver": ("yes", None)}),
    ("pseudo-negation", "No enhancing mass in the pancreas.", {}),
    ("not excluding", "Hypodense hepatic lesion, not excluding metastasis.", {"liver": ("uncertain", None)}),
    # stones and calcifications described as foci
    ("stone as focus", "Hyperdense focus in the left renal sinus, consistent with a nonobstructing calculus.", {}),
    ("stone as focus", "Punctate hyperdense foci in both kidneys in keeping with nephrolithiasis.", {}),
    # a location word joined to another organ
    ("location of another organ", "Nodule in the left lobe of the lung.", {}),
    ("location of another organ", "Mass in the head of the epididymis.", {}),
    ("location of another organ", "Cyst at the upper pole of the left testis.", {}),
    ("location of another organ", "Hypodensity in segment 8 of uncertain significance.", {"liver": ("uncertain", None)}),
    # context carried into a sentence about an unlisted site
    ("unlisted site", "The liver is normal. Fatty density lesions in the right inguinal canal.", {}),
    ("unlisted site", "The kidneys are normal. A nodule in the left groin.", {}),
    ("unlisted site kept", "The pancreas is atrophic. A 1.5 cm cyst is seen in the tail.", {"pancreas": ("yes", 15.0)}),
    # one post-operative word no longer discards the sentence
    ("post-operative", "Liver: status post right hepatectomy with a new 2 cm lesion in segment 3.",
     {"liver": ("yes", 20.0)}),
    ("post-operative", "Status post left nephrectomy, now with a 1.4 cm mass in the right kidney.",
     {"kidney": ("yes", 14.0)}),
    ("post-operative", "History of renal cell carcinoma; status post left nephrectomy.", {}),
    ("post-operative", "The pancreatic mass was resected in 2019.", {}),
    # missing words
    ("missing words", "Low-density shadow in the right lobe of the liver.", {"liver": ("yes", None)}),
    ("missing words", "Multiple low-density shadows in the right kidney.", {"kidney": ("yes", None)}),
    ("missing words", "Left kidney cystic, 2 cm.", {"kidney": ("yes", 20.0)}),
    ("missing words", "Bilateral renal cystic disease.", {"kidney": ("yes", None)}),
    ("missing words", "Bilateral parapelvic cysts.", {"kidney": ("yes", None)}),
    ("missing words", "Right renal AML, 1 cm.", {"kidney": ("yes", 10.0)}),
    ("missing words", "Small ANL on the left.", {"kidney": ("yes", None)}),
    ("missing words", "A hemangioma in segment 6.", {"liver": ("yes", None)}),
    # negation that reached past the verb of its clause
    ("negation scope", "The liver is not enlarged and contains a 1.5 cm cyst.", {"liver": ("yes", 15.0)}),
    ("negation scope", "Without hydronephrosis, the right kidney has a 12 mm cyst.", {"kidney": ("yes", 12.0)}),
    ("negation scope", "Neither kidney shows a lesion.", {}),
]


@pytest.mark.parametrize("cause,text,expected", CAUSES, ids=[f"{c[0]}: {c[1][:30]}" for c in CAUSES])
def test_general_causes_of_labelling_errors(cause, text, expected):
    got = extract_labels(text)
    for organ in ORGANS:
        tumor, mm = expected.get(organ, NO)
        assert (got[organ]["tumor"], got[organ]["largest_mm"]) == (tumor, mm), (cause, organ, got)


OUR_STRUCTURED_REPORT = """RADGPT STRUCTURED REPORT - case PHANTOM_0001
Non-contrast CT

FINDINGS:
Liver: normal size (volume 1582.3 mL); mean attenuation 60 HU; no steatosis.
  Liver lesion 1: 3.0 x 2.1 cm (image 76), volume 7.5 mL, hypoattenuating (19 HU vs liver 60 HU); location: segment S8/S7.
  Liver lesion 2: 1.7 x 1.3 cm (image 68), volume 1.8 mL, hypoattenuating (21 HU vs liver 60 HU); location: segment S4a/S4b.
Spleen: normal size (volume 229.3 mL); mean attenuation 50 HU.
Pancreas: normal size (volume 71.6 mL); mean attenuation 45 HU; no fatty infiltration.
  Pancreatic PDAC 1: 2.7 x 2.3 cm (image 41), volume 7.3 mL, hypoattenuating (30 HU vs pancreas 45 HU); location: head.
    No tumor contact: SMA, celiac axis, common hepatic artery, SMV, portal vein, aorta, IVC.
    T stage (AJCC 8th): T2 (size 2.67 cm; T4 when CA, SMA or CHA has > 180 degrees of solid tumour contact).
    Resectability (NCCN): resectable (no vascular contact).
Right kidney: normal size (volume 143.0 mL); mean attenuation 35 HU.
Left kidney: normal size (volume 142.7 mL); mean attenuation 35 HU.
  Kidney cyst 1, right side: 2.1 x 2.1 cm (image 41), volume 4.3 mL, hypoattenuating (5 HU vs right kidney 35 HU); location: upper pole; 0% exophytic.
Gallbladder: no size rule (volume 26.3 mL); mean attenuation 10 HU.

IMPRESSION:
1. 2 liver lesions; the largest (liver_lesion_1) measures 3.0 x 2.1 cm.
2. One pancreatic PDAC, 2.7 x 2.3 cm.
3. Clinical stage: T2NxMx; NCCN resectable.
4. One kidney cyst, 2.1 x 2.1 cm.
"""


def test_rule_extractor_reads_our_structured_report():
    labels = extract_labels(OUR_STRUCTURED_REPORT)
    assert labels == {"liver": {"tumor": "yes", "largest_mm": 30.0},
                      "pancreas": {"tumor": "yes", "largest_mm": 27.0},
                      "kidney": {"tumor": "yes", "largest_mm": 21.0}}
    # The "No tumor contact" line is a negated mention, not a negated pancreas.
    statuses = {(m.text.lower(), m.status) for m in extract_mentions(OUR_STRUCTURED_REPORT) if "pancreas" in m.organs}
    assert ("tumor", "negated") in statuses and ("pdac", "affirmed") in statuses


def test_rule_extractor_agrees_with_the_report_command(simple_case, tmp_path):
    """Labels read back from our own report.txt match its findings.json (organ and size to the printed 1 mm)."""
    from RadGPTLogic.pipeline import run_report

    findings = run_report(simple_case, tmp_path / "out").to_dict()
    labels = extract_labels((tmp_path / "out" / "report.txt").read_text(encoding="utf-8"))
    for organ in ORGANS:
        sizes = [les["longest_diameter_mm"] for les in findings["lesions"] if les["organ"] == organ]
        if sizes:
            assert labels[organ]["tumor"] == "yes"
            assert labels[organ]["largest_mm"] == pytest.approx(max(sizes), abs=1.0)
        else:
            assert labels[organ] == {"tumor": "no", "largest_mm": None}


def test_empty_text_is_all_no():
    assert extract_labels("") == {o: {"tumor": "no", "largest_mm": None} for o in ORGANS}


@pytest.mark.parametrize("text,mm", [
    ("3.1 x 2.2 cm", 31.0), ("31 mm", 31.0), ("1.5-cm", 15.0), ("2.1 x 1.9 x 1.5 cm", 21.0),
    ("3.1 cm x 2.2 cm", 31.0), ("1.5-2.0 cm", 20.0), ("up to 2 cm", 20.0), ("12 x 40 mm", 40.0),
    ("14.0 cm^3", None), ("7.5 mL", None), ("image 52", None), ("25", 25.0),
])
def test_size_parser(text, mm):
    assert parse_size_mm(text) == mm


# --------------------------------------------------------------------------- metrics


def wilson_closed_form(x, n, z=1.959963984540054):
    p = x / n
    centre = (p + z ** 2 / (2 * n)) / (1 + z ** 2 / n)
    half = z / (1 + z ** 2 / n) * math.sqrt(p * (1 - p) / n + z ** 2 / (4 * n ** 2))
    return centre - half, centre + half


@pytest.mark.parametrize("x,n", [(8, 10), (1, 3), (45, 50), (0, 10), (10, 10), (0, 1), (1, 1), (17, 20)])
def test_wilson_matches_closed_form(x, n):
    low, high = wilson_interval(x, n)
    lo_ref, hi_ref = wilson_closed_form(x, n)
    assert low == pytest.approx(max(0.0, lo_ref), abs=1e-12)
    assert high == pytest.approx(min(1.0, hi_ref), abs=1e-12)


def test_wilson_edge_cases_and_known_values():
    z2 = 1.959963984540054 ** 2
    assert wilson_interval(0, 10) == (0.0, pytest.approx(z2 / (10 + z2)))  # 0/n: [0, z^2/(n+z^2)]
    assert wilson_interval(10, 10) == (pytest.approx(10 / (10 + z2)), 1.0)  # n/n: [n/(n+z^2), 1]
    assert wilson_interval(8, 10) == (pytest.approx(0.4902, abs=5e-5), pytest.approx(0.9433, abs=5e-5))
    assert wilson_interval(0, 0) == (None, None)
    with pytest.raises(ValueError):
        wilson_interval(3, 2)


def L(liver=None, liver_mm=None, pancreas="no", kidney="no"):
    """Labels with only the liver varying (None = no label for the liver)."""
    return {"liver": None if liver is None else {"tumor": liver, "largest_mm": liver_mm},
            "pancreas": {"tumor": pancreas, "largest_mm": None}, "kidney": {"tumor": kidney, "largest_mm": None}}


TRUTH = {
    "a": L("yes", 10.0), "b": L("yes", 15.0), "c": L("yes", 30.0), "d": L("yes", None),
    "e": L("no"), "f": L("no"), "g": L("no"), "h": L("uncertain"), "i": L("no"), "j": L("yes", 25.0),
}
PRED = {
    "a": L("yes", 12.0), "b": L("no"), "c": L("yes", 27.0), "d": L("yes", 5.0),
    "e": L("yes", 8.0), "f": L("no"), "g": L("no"), "h": L("yes"), "i": L("uncertain"), "j": L(None),
}


def _row(rows, organ, stratum):
    return next(r for r in rows if r.organ == organ and r.stratum == stratum)


def test_metrics_counts_strata_and_exclusion():
    rows = compute_metrics(PRED, TRUTH, uncertain="exclude")
    assert [(r.organ, r.stratum) for r in rows] == [(o, s) for o in ORGANS for s in ("all", "<= 20 mm", "> 20 mm")]
    r = _row(rows, "liver", "all")  # a, c, d TP; b FN; e FP; f, g TN; h, i excluded; j missing
    assert (r.tp, r.fn, r.fp, r.tn, r.excluded, r.missing, r.pos_size_unknown) == (3, 1, 1, 2, 2, 1, 1)
    assert r.sensitivity == pytest.approx(3 / 4) and r.specificity == pytest.approx(2 / 3)
    assert r.ppv == pytest.approx(3 / 4)
    assert (r.sensitivity_low, r.sensitivity_high) == pytest.approx(wilson_closed_form(3, 4))
    assert (r.specificity_low, r.specificity_high) == pytest.approx(wilson_closed_form(2, 3))
    small = _row(rows, "liver", "<= 20 mm")  # a TP, b FN; all negatives: e FP, f, g TN
    assert (small.tp, small.fn, small.fp, small.tn, small.n) == (1, 1, 1, 2, 5)
    assert small.sensitivity == 0.5 and small.ppv == 0.5 and small.specificity == r.specificity
    large = _row(rows, "liver", "> 20 mm")  # c TP
    assert (large.tp, large.fn, large.fp, large.tn) == (1, 0, 1, 2)
    assert large.sensitivity == 1.0 and (large.sensitivity_low, large.sensitivity_high) == pytest.approx(
        (1 / (1 + 1.959963984540054 ** 2), 1.0))
    assert small.size_mae_mm == 2.0 and large.size_mae_mm == 3.0 and r.size_mae_mm == pytest.approx(2.5)
    assert r.size_pairs == 2  # d has no true size
    kid = _row(rows, "kidney", "all")  # all 10 cases negative on both sides
    assert (kid.tp, kid.fn, kid.fp, kid.tn) == (0, 0, 0, 10)
    assert kid.sensitivity is None and kid.ppv is None and kid.specificity == 1.0


def test_uncertain_as_positive_or_negative():
    pos = _row(compute_metrics(PRED, TRUTH, uncertain="positive"), "liver", "all")
    # h: truth U -> yes, pred yes: TP (no size, "all" only); i: truth no, pred U -> yes: FP
    assert (pos.tp, pos.fn, pos.fp, pos.tn, pos.excluded, pos.pos_size_unknown) == (4, 1, 2, 2, 0, 2)
    neg = _row(compute_metrics(PRED, TRUTH, uncertain="negative"), "liver", "all")
    # h: truth U -> no, pred yes: FP; i: truth no, pred U -> no: TN
    assert (neg.tp, neg.fn, neg.fp, neg.tn, neg.excluded) == (3, 1, 2, 3, 0)


def test_threshold_boundary_belongs_to_small_stratum():
    truth = {"x": L("yes", 20.0), "y": L("yes", 20.1)}
    pred = {"x": L("yes"), "y": L("no")}
    rows = compute_metrics(pred, truth)
    assert (_row(rows, "liver", "<= 20 mm").tp, _row(rows, "liver", "> 20 mm").fn) == (1, 1)
    rows = compute_metrics(pred, truth, threshold_mm=10)
    assert [r.stratum for r in rows[:3]] == ["all", "<= 10 mm", "> 10 mm"]
    assert _row(rows, "liver", "> 10 mm").n_pos == 2


def test_metrics_outputs():
    rows = compute_metrics(PRED, TRUTH)
    table = list(csv.DictReader(io.StringIO(metrics_csv(rows))))
    assert len(table) == 9 and table[0]["organ"] == "liver" and table[0]["tp"] == "3"
    assert table[0]["sensitivity"] == "0.7500" and table[6]["sensitivity"] == ""
    md = metrics_markdown(rows)
    assert "| Liver | all | 4 / 3 | 75.0% (30.1-95.4) [3/4] | 66.7% (20.8-93.9) [2/3] | 75.0% (30.1-95.4) [3/4] |" in md
    assert "n/a (0/0)" in md and "Liver: 2 excluded as uncertain; 1 without a label" in md
    # The RadGPT paper's layout: an organ per row, sensitivity and specificity per size, the specificity note inside.
    paper = paper_table(rows).splitlines()
    assert paper[0].count("|") == 6 and "Tumour <= 2 cm: sensitivity" in paper[0] and "Tumour > 2 cm" in paper[0]
    assert paper[0].count("all tumour-free cases, the same in both sizes") == 2
    assert [line.split("|")[1].strip() for line in paper[2:]] == ["Liver", "Kidney", "Pancreas"]
    small, large = _row(rows, "liver", "<= 20 mm"), _row(rows, "liver", "> 20 mm")
    cells = [c.strip() for c in paper[2].split("|")[2:6]]
    assert cells[0].endswith(f"[{small.tp}/{small.tp + small.fn}]") and cells[2].endswith(f"[{large.tp}/{large.tp + large.fn}]")
    assert cells[1] == cells[3] == "66.7% (20.8-93.9) [2/3]"
    assert paper_table(compute_metrics(PRED, TRUTH, threshold_mm=15), 15).count("Tumour <= 15 mm") == 2
    lab = list(csv.DictReader(io.StringIO(labels_csv(PRED, notes={"j": "LLM error"}))))
    assert lab[0] == {"case_id": "a", "liver": "yes", "liver_mm": "12", "pancreas": "no", "pancreas_mm": "",
                      "kidney": "no", "kidney_mm": "", "note": ""}
    assert lab[-1]["liver"] == "" and lab[-1]["note"] == "LLM error"


# --------------------------------------------------------------------------- LLM extractor

def answer(liver="no", liver_mm=None, pancreas="no", pancreas_mm=None, kidney="no", kidney_mm=None):
    return json.dumps({"liver": {"tumor": liver, "largest_mm": liver_mm},
                       "pancreas": {"tumor": pancreas, "largest_mm": pancreas_mm},
                       "kidney": {"tumor": kidney, "largest_mm": kidney_mm}})


@pytest.fixture
def no_llm_env(monkeypatch, tmp_path):
    for key in ("RADGPT_LLM_BASE_URL", "RADGPT_LLM_MODEL", "RADGPT_LLM_API_KEY", "OPENAI_API_KEY",
                "RADGPT_LLM_TIMEOUT"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("RADGPT_LLM_CONFIG", str(tmp_path / "no-such-llm.json"))


def test_parse_llm_answers():
    ok = answer("yes", 31, "uncertain", None, "no", 5)
    labels, reason = parse_llm_labels(ok)
    assert reason is None and labels == {"liver": {"tumor": "yes", "largest_mm": 31.0},
                                         "pancreas": {"tumor": "uncertain", "largest_mm": None},
                                         "kidney": {"tumor": "no", "largest_mm": None}}
    assert parse_llm_labels(f"Here you go:\n```json\n{ok}\n```\nHope this helps.")[0] == labels
    assert parse_llm_labels(f"The labels are {ok} as requested.")[0] == labels
    assert parse_llm_labels(answer("yes", "3.1 x 2.2 cm"))[0]["liver"]["largest_mm"] == 31.0
    assert parse_llm_labels('{"Liver": {"tumor": "U"}, "Pancreas": {"tumor": false}, "Kidneys": {"tumor": 1}}')[0] == {
        "liver": {"tumor": "uncertain", "largest_mm": None}, "pancreas": {"tumor": "no", "largest_mm": None},
        "kidney": {"tumor": "yes", "largest_mm": None}}
    assert parse_llm_labels("no idea") == (None, "no JSON object in the answer")
    assert "maybe-ish" in parse_llm_labels(answer("maybe-ish"))[1]
    assert "kidney" in parse_llm_labels('{"liver": {"tumor": "no"}, "pancreas": {"tumor": "no"}}')[1]
    assert "largest_mm" in parse_llm_labels(answer("yes", -4))[1]
    assert parse_llm_labels("")[0] is None


def _report_reply(body):
    """Scripted model: labels from a token in the report ("LIVER20" -> liver yes 20 mm)."""
    text = body["messages"][1]["content"]
    if "LIVER20" in text:
        return answer("yes", 20)
    if "PANC35" in text:
        return "```json\n" + answer(pancreas="yes", pancreas_mm=35) + "\n```"
    if "KIDNEYU" in text:
        return answer(kidney="uncertain")
    return answer()


def test_llm_labels_through_the_openai_client():
    reports = ["Report LIVER20", "Report PANC35", "Report KIDNEYU", "Normal report"]
    with ScriptedLLMServer(_report_reply) as srv:
        results = llm_extract_labels(LLMConfig(base_url=srv.url), reports, max_concurrency=2)
    assert [r.tries for r in results] == [1, 1, 1, 1] and all(r.reason is None for r in results)
    assert results[0].labels["liver"] == {"tumor": "yes", "largest_mm": 20.0}
    assert results[1].labels["pancreas"] == {"tumor": "yes", "largest_mm": 35.0}  # fenced JSON
    assert results[2].labels["kidney"]["tumor"] == "uncertain"
    assert results[3].labels == {o: {"tumor": "no", "largest_mm": None} for o in ORGANS}
    body = srv.requests[0]
    assert body["temperature"] == 0.0 and body["model"] == "scripted-model"
    assert body["messages"][0]["role"] == "system" and "cysts count as tumours" in body["messages"][1]["content"]
    assert '"largest_mm"' in body["messages"][1]["content"]


def test_llm_invalid_then_valid_retry():
    def reply(body):
        if len(body["messages"]) > 2:  # the retry turn
            return answer("yes", 12)
        return "Sure! The liver has a tumour {liver: yes}"

    with ScriptedLLMServer(reply) as srv:
        (res,) = llm_extract_labels(LLMConfig(base_url=srv.url, model="m"), ["Report"])
    assert res.labels["liver"] == {"tumor": "yes", "largest_mm": 12.0} and res.tries == 2
    assert len(srv.requests) == 2
    retry = srv.requests[1]["messages"]
    assert retry[2] == {"role": "assistant", "content": "Sure! The liver has a tumour {liver: yes}"}
    assert retry[3]["role"] == "user" and RETRY_PROMPT.split("(")[0] in retry[3]["content"]


def test_llm_invalid_twice_and_server_errors_give_null_labels():
    with ScriptedLLMServer(["not json", "still not json"]) as srv:
        (res,) = llm_extract_labels(LLMConfig(base_url=srv.url, model="m"), ["Report"])
    assert res.labels is None and "invalid answer twice" in res.reason and len(srv.requests) == 2
    with ScriptedLLMServer(["never"], fail_first=100) as srv:
        (res,) = llm_extract_labels(LLMConfig(base_url=srv.url, model="m", max_retries=0), ["Report"])
    assert res.labels is None and res.reason.startswith("LLM error:") and len(srv.requests) == 1


def test_llm_concurrency_is_bounded():
    with ScriptedLLMServer(lambda body: answer(), delay_s=0.1) as srv:
        results = llm_extract_labels(LLMConfig(base_url=srv.url, model="m"), [f"r{i}" for i in range(8)],
                                     max_concurrency=3)
    assert len(results) == 8 and all(r.labels for r in results)
    assert 1 <= srv.max_in_flight <= 3


# --------------------------------------------------------------------------- CLI


def parse(*argv):
    p = argparse.ArgumentParser(prog="radgpt")
    p.add_argument("--debug", action="store_true")
    sub = p.add_subparsers(dest="command", required=True)
    register(sub)
    return p.parse_args(["evaluate", *map(str, argv)])


def write_csv(path, header, rows):
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


PRED_REPORTS = [
    ("c1", "Liver: 3.1 x 2.2 cm lesion in segment 7. Pancreas: unremarkable. Kidneys: no mass."),
    ("c2", "No focal liver lesion. 1.2 cm cyst in the left kidney."),
    ("c3", "Possible pancreatic tail lesion. Liver normal."),
    ("c4", "Normal study. LIVER20"),
    ("c5", "Only in the predictions."),
]
TRUTH_REPORTS = [
    ("c1", "A 3.0 cm hepatic mass. Normal pancreas and kidneys."),
    ("c2", "1.5 cm liver metastasis. Left renal cyst measuring 12 mm."),
    ("c3", "2.5 cm PDAC in the pancreatic tail."),
    ("c4", "Unremarkable CT of the abdomen."),
    ("c6", "Only in the reference."),
]


def test_cli_end_to_end_on_report_csvs(tmp_path, capsys):
    pred = write_csv(tmp_path / "pred.csv", ["case_id", "report"], PRED_REPORTS)
    truth = write_csv(tmp_path / "truth.csv", ["case_id", "report"], TRUTH_REPORTS)
    out = tmp_path / "out"
    # through the CLI's main, which routes the radgpt logger's warnings to stderr
    assert cli_main(["evaluate", "--pred", str(pred), "--truth", str(truth), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    with capsys.disabled():  # the table, for the record (visible with pytest -s)
        print("\n" + captured.out)
    # Liver: truth c1 (30 mm), c2 (15 mm) positive; pred finds c1 only; c3, c4 negative on both sides.
    assert "| Liver | all | 2 / 2 | 50.0% (9.5-90.5) [1/2] | 100.0% (34.2-100.0) [2/2] | 100.0% (20.7-100.0) [1/1] |" \
        in captured.out
    assert "|  | <= 20 mm | 1 / 2 | 0.0% (0.0-79.3) [0/1] |" in captured.out
    # first the paper's table: liver <= 2 cm misses c2, > 2 cm finds c1, specificity 2/2 in both
    assert "| Liver | 0.0% (0.0-79.3) [0/1] | 100.0% (34.2-100.0) [2/2] | 100.0% (20.7-100.0) [1/1] | " \
        "100.0% (34.2-100.0) [2/2] |" in captured.out
    assert captured.out.index("| Liver | 0.0%") < captured.out.index("| Liver | all |")
    # Pancreas: c3 is uncertain in the prediction: left out by default.
    assert "| Pancreas | all | 0 / 3 | n/a (0/0) |" in captured.out and "Pancreas: 1 excluded as uncertain" in captured.out
    assert "only in PRED" in captured.err and "c5" in captured.err and "c6" in captured.err
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == [
        "labels_pred.csv", "labels_truth.csv", "metrics.csv", "metrics.md"]
    pred_labels = {r["case_id"]: r for r in csv.DictReader(open(out / "labels_pred.csv"))}
    assert set(pred_labels) == {"c1", "c2", "c3", "c4"}
    assert (pred_labels["c1"]["liver"], pred_labels["c1"]["liver_mm"]) == ("yes", "31")
    assert pred_labels["c3"]["pancreas"] == "uncertain"
    truth_labels = {r["case_id"]: r for r in csv.DictReader(open(out / "labels_truth.csv"))}
    assert truth_labels["c2"]["kidney_mm"] == "12" and truth_labels["c3"]["pancreas_mm"] == "25"
    assert (out / "metrics.md").read_text(encoding="utf-8") in captured.out

    # The written label tables are valid inputs themselves, and give the same metrics.
    args = parse("--pred", out / "labels_pred.csv", "--truth", out / "labels_truth.csv", "--uncertain", "positive")
    assert args.func(args) == 0
    again = capsys.readouterr().out
    assert "| Pancreas | all | 1 / 3 | 100.0% (20.7-100.0) [1/1] |" in again  # c3: uncertain -> positive


def test_cli_reads_folders_and_radgpt_output_folders(tmp_path):
    truth = tmp_path / "truth"
    truth.mkdir()
    (truth / "A.txt").write_text("2.5 cm mass in the pancreatic head.")
    (truth / "B.txt").write_text("Normal abdomen.")
    pred = tmp_path / "pred"
    (pred / "A").mkdir(parents=True)
    (pred / "A" / "report.txt").write_text("Pancreas: no mass.")
    (pred / "A" / "narrative.txt").write_text("A 2.4 cm pancreatic head mass.")
    (pred / "B").mkdir()
    (pred / "B" / "report.txt").write_text("No tumor observed in the liver, pancreas or kidneys.")
    (pred / "notes").mkdir()  # no report inside: skipped with a warning
    warnings = []
    res = run_evaluate(pred, truth, warn=warnings.append)
    assert res.pred_labels["A"]["pancreas"] == {"tumor": "yes", "largest_mm": 24.0}  # narrative.txt preferred
    assert any("notes" in w for w in warnings)
    res = run_evaluate(pred, truth, report_file="report.txt")
    assert res.pred_labels["A"]["pancreas"]["tumor"] == "no"
    row = _row(res.rows, "pancreas", "> 20 mm")
    assert (row.tp, row.fn, row.tn, row.fp) == (0, 1, 1, 0)


def test_cli_bad_inputs_name_the_file(tmp_path):
    good = write_csv(tmp_path / "good.csv", ["case_id", "report"], [("a", "Normal.")])
    cases = {
        "missing.csv": None,
        "nocase.csv": (["id", "report"], [("a", "x")]),
        "nocolumns.csv": (["case_id", "text"], [("a", "x")]),
        "dup.csv": (["case_id", "report"], [("a", "x"), ("a", "y")]),
        "badlabel.csv": (["case_id", "liver", "liver_mm", "pancreas", "pancreas_mm", "kidney", "kidney_mm"],
                         [("a", "maybe", "", "no", "", "no", "")]),
        "badmm.csv": (["case_id", "liver", "liver_mm", "pancreas", "pancreas_mm", "kidney", "kidney_mm"],
                      [("a", "yes", "2 cm", "no", "", "no", "")]),
        "other.csv": (["case_id", "report"], [("zzz", "x")]),
    }
    for name, content in cases.items():
        path = tmp_path / name
        if content:
            write_csv(path, *content)
        with pytest.raises(InputError) as err:
            run_evaluate(path, good)
        assert name in str(err.value), (name, str(err.value))
    (tmp_path / "latin1.csv").write_bytes("case_id,report\na,caf\xe9\n".encode("latin-1"))
    with pytest.raises(InputError, match="latin1.csv: not UTF-8"):
        run_evaluate(tmp_path / "latin1.csv", good)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no reports found"):
        run_evaluate(tmp_path / "empty", good)


def test_cli_llm_extractor_against_local_server(tmp_path, capsys, no_llm_env):
    pred = write_csv(tmp_path / "pred.csv", ["case_id", "report"], PRED_REPORTS[:4])
    truth = write_csv(tmp_path / "truth.csv", ["case_id", "report"], [(c, "LIVER20") for c, _ in PRED_REPORTS[:4]])
    with ScriptedLLMServer(_report_reply, delay_s=0.05) as srv:
        args = parse("--pred", pred, "--truth", truth, "--extractor", "llm", "--base-url", srv.url,
                     "--concurrency", "2", "--out", tmp_path / "out")
        assert args.func(args) == 0
    assert len(srv.requests) == 8 and srv.max_in_flight <= 2
    out = capsys.readouterr().out
    assert "labels by LLM" in out
    assert "| Liver | all | 4 / 0 | 25.0% (4.6-69.9) [1/4] | n/a (0/0) | 100.0% (20.7-100.0) [1/1] |" in out


def test_cli_llm_without_endpoint_or_answers(tmp_path, capsys, no_llm_env):
    pred = write_csv(tmp_path / "pred.csv", ["case_id", "report"], PRED_REPORTS[:2])
    args = parse("--pred", pred, "--truth", pred, "--extractor", "llm")
    with pytest.raises(InputError, match="needs an LLM endpoint"):
        args.func(args)
    with ScriptedLLMServer(["x"], fail_first=100) as srv:
        cfg = tmp_path / "llm.json"
        cfg.write_text(json.dumps({"base_url": srv.url, "model": "m", "max_retries": 0}))
        args = parse("--pred", pred, "--truth", pred, "--extractor", "llm", "--config", cfg)
        assert args.func(args) == 1
    assert "no usable LLM answer" in capsys.readouterr().err
