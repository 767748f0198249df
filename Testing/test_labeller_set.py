"""The rule labeller on labelled sets of invented sentences and reports (Testing/data/labeller_*.txt).

``labeller_set.txt`` (183 items, no real patient text) holds plain positives and negatives, negation
and pseudo-negation traps, uncertainty, post-operative wording, other organs and sites, stones,
context carried between sentences, missing words and multi-organ reports; the rules were fixed
against it.  ``labeller_heldout.txt`` (69 items) was written after those fixes.  Goal: >= 98 % per
organ on each; the measured accuracy is recorded in docs/EVALUATION.md.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from RadGPTLogic.evaluate import ORGANS
from RadGPTLogic.evaluate.labels import extract_labels

SETS = {name: Path(__file__).parent / "data" / f"labeller_{name}.txt" for name in ("set", "heldout")}
CODES = {"y": "yes", "n": "no", "u": "uncertain"}


def load_set(name: str = "set") -> list:
    """[(text, {organ: "yes" | "no" | "uncertain"})] from a set file."""
    items = []
    for line in SETS[name].read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        codes, text = line.split("|", 1)
        labels = dict(zip(ORGANS, (CODES[c] for c in codes.split())))
        items.append((text.strip().replace("\\n", "\n"), labels))
    return items


def accuracy_by_organ(items: list) -> tuple:
    """({organ: fraction of items whose label the labeller gets right}, [misses])."""
    right = {o: 0 for o in ORGANS}
    misses = []
    for text, truth in items:
        got = extract_labels(text)
        for organ in ORGANS:
            if got[organ]["tumor"] == truth[organ]:
                right[organ] += 1
            else:
                misses.append((organ, truth[organ], got[organ]["tumor"], text))
    return {o: right[o] / len(items) for o in ORGANS}, misses


def test_the_set_is_large_and_varied():
    items = load_set()
    assert len(items) >= 150 and len(load_set("heldout")) >= 60
    for organ in ORGANS:
        values = [t[organ] for _, t in items]
        assert values.count("yes") >= 15 and values.count("no") >= 100 and values.count("uncertain") >= 2


@pytest.mark.parametrize("name", sorted(SETS))
@pytest.mark.parametrize("organ", ORGANS)
def test_accuracy_per_organ_is_at_least_98_percent(name, organ):
    accuracy, misses = accuracy_by_organ(load_set(name))
    assert accuracy[organ] >= 0.98, [m for m in misses if m[0] == organ]
