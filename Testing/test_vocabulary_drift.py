"""The labeller and the fact checker keep their own parsers, but not their own vocabularies.

The rule labeller (RadGPTLogic/evaluate/labels.py) is deliberately independent of the fact checker
(RadGPTLogic/report/factcheck/): it grades narratives that the checker accepted, so it must not share
the checker's blind spots (see the labeller's docstring).  This test keeps the two vocabularies from
drifting apart: every word of a lexicon (the labelled sets, the shipped example reports and a list of
terms) that either side reads as a lesion word, or as a liver/pancreas/kidney word, must be read the
same way by the other, unless it is one of the documented deliberate differences below.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from RadGPTLogic.evaluate import labels
from RadGPTLogic.report.factcheck import vocabulary as fc
from RadGPTLogic.report.narrative import package_examples_dir

DATA = Path(__file__).parent / "data"
TERMS = ("lesion lesions mass masses tumor tumour tumors cyst cysts nodule nodules neoplasm carcinoma carcinomas "
         "adenocarcinoma metastasis metastases HCC RCC PDAC PNET angiomyolipoma hemangioma haemangioma adenoma "
         "cholangiocarcinoma hepatoma hypodensity hypodensities liver hepatic pancreas pancreatic kidney kidneys "
         "renal uncinate nephroma bosniak IPMN insulinoma oncocytoma lymphoma focus foci cystic malignancy "
         "cancer neuroendocrine abscess FNH").split()

# Words the two read differently on purpose (word -> why).
LESION_DIFFERENCES = {
    "focus": "checker: any focus may be an invented lesion; labeller: only an attenuating focus is a lesion",
    "foci": "as 'focus'",
    "abscess": "checker: an invented finding; labeller: an explanation that a lesion is not a tumour",
    "neuroendocrine": "checker: a kind word (PNET); labeller: 'neuroendocrine tumour' is the mention",
    "metastatic": "checker: a lesion word; labeller: only 'metastatic disease/deposits/lesions'",
    "lymphoma": "labeller: a tumour; checker: a diagnosis word (an invented finding), not a lesion noun",
    "oncocytoma": "labeller: a renal tumour; checker: a kidney word (the engine never names it a kind)",
    "insulinoma": "labeller: a pancreatic tumour; checker: a pancreas word",
    "ipmn": "labeller: a pancreatic tumour; checker: a pancreas word and a diagnosis word",
    "bosniak": "labeller: a renal cyst; checker: a kidney word and a diagnosis word",
}
ORGAN_DIFFERENCES = {
    "head": "labeller: a pancreatic location word; checker: a pancreatic part word (not an organ word)",
    "tail": "as 'head'",
    "caudate": "checker: a liver word; labeller: 'caudate lobe' only ('caudate nucleus' is the brain)",
    "aml": "checker: a kidney word; labeller: names the kidney only when nothing else in the clause does",
    "anl": "as 'AML'",
}


def lexicon() -> set:
    words = set(TERMS)
    texts = [p.read_text(encoding="utf-8") for p in DATA.glob("labeller_*.txt")]
    texts += [p.read_text(encoding="utf-8") for p in package_examples_dir().glob("*.txt")]
    for text in texts:
        words |= set(re.findall(r"[A-Za-z]{3,}", text))
    return words


def checker_lesion(word: str) -> bool:
    return bool(fc.LESION_NOUN.fullmatch(word))


def labeller_lesion(word: str) -> bool:
    return bool(labels._LESION_RE.fullmatch(word))


def checker_organ(word: str):
    found = {o for o, pat in fc.ORGAN_WORDS if re.fullmatch(pat, word, flags=re.I)}
    return next(iter(found & {"liver", "pancreas", "kidney"}), None)


def labeller_organ(word: str):
    found = {o for rx, o, _ in labels._ORGAN_RES if rx.fullmatch(word)}
    return next(iter(found & {"liver", "pancreas", "kidney"}), None)


def test_lesion_words_agree():
    words = lexicon()
    differ = sorted(w for w in words if checker_lesion(w) != labeller_lesion(w)
                    and w.lower() not in LESION_DIFFERENCES)
    assert differ == [], "lesion words read differently (add to both vocabularies or document): " + ", ".join(differ)


def test_organ_words_agree():
    words = lexicon()
    differ = sorted(w for w in words if checker_organ(w) != labeller_organ(w)
                    and w.lower() not in ORGAN_DIFFERENCES)
    assert differ == [], "organ words read differently (add to both vocabularies or document): " + ", ".join(differ)


@pytest.mark.parametrize("word", ["lesion", "mass", "tumour", "cyst", "nodule", "carcinoma", "metastases",
                                  "hemangioma", "adenoma", "neoplasm"])
def test_both_label_a_sentence_alike(word):
    """The same sentence reads as the same organ's lesion to both."""
    from RadGPTLogic.evaluate.labels import extract_labels
    from RadGPTLogic.report.factcheck import describe_text

    for organ, place in (("liver", "liver"), ("pancreas", "pancreatic tail"), ("kidney", "left kidney")):
        text = f"A 2 cm {word} in the {place}."
        assert extract_labels(text)[organ]["tumor"] == "yes", text
        assert organ in {o for o, _ in describe_text(text)["lesions"]}, text
