"""Cross-module consistency on randomised phantoms (seeded, so failures reproduce).

For varied grids, phases, lesion sets and combined or missing masks: the engine runs
without error, the structured report passes the fact checker against its own
findings, the HTML renders, and the rule labeller reads back which organs have lesions.
"""

from __future__ import annotations

import numpy as np
import pytest

from RadGPTLogic.case import Case
from RadGPTLogic.engine import Engine
from RadGPTLogic.evaluate.labels import extract_labels
from RadGPTLogic.phantom import LesionSpec, build_phantom, default_lesions, staging_lesions
from RadGPTLogic.report.factcheck import check_narrative
from RadGPTLogic.report.structured import render_html, render_text


def random_case(seed: int):
    rng = np.random.default_rng(seed)
    spacing = (float(rng.choice([0.9, 1.5, 2.0])), float(rng.choice([0.9, 1.5, 2.0])),
               float(rng.choice([1.0, 2.5, 5.0])))
    lesions = list(staging_lesions() if rng.random() < 0.5 else default_lesions())
    if rng.random() < 0.5:
        lesions = [l for l in lesions if rng.random() < 0.6]
    if rng.random() < 0.6:
        centre = (float(rng.uniform(-60, 30)), float(rng.uniform(0, 35)), float(rng.uniform(-30, 25)))
        kind = str(rng.choice(["pancreatic_tumor", "pancreatic_pnet", "pancreatic_cyst"]))
        lesions.append(LesionSpec(kind, centre, (float(rng.uniform(4, 12)),) * 3))
    p = build_phantom(size="small", spacing=spacing, lesions=lesions, seed=seed,
                      phase=str(rng.choice(["non-contrast", "venous"])))
    masks = dict(p.masks)
    r = rng.random()
    if r < 0.3:
        masks["celiac_aa"] = (masks.pop("celiac_trunk") | masks.pop("common_hepatic_artery")
                              | masks.pop("splenic_artery"))
    if r > 0.7:
        masks["portal_vein_and_splenic_vein"] = (masks.pop("superior_mesenteric_vein") | masks.pop("portal_vein")
                                                 | masks.pop("splenic_vein"))
    if rng.random() < 0.2:
        masks.pop("superior_mesenteric_artery")
    if rng.random() < 0.2:
        for k in range(1, 9):
            masks.pop(f"liver_segment_{k}")
    phase = str(rng.choice(["non-contrast", "venous", "arterial", "unknown"]))
    return Case.from_arrays(f"R{seed}", p.affine, masks, ct=p.ct), phase


@pytest.mark.parametrize("seed", range(8))
def test_report_checker_and_labeller_agree(seed):
    case, phase = random_case(seed)
    f = Engine(case, phase).compute().to_dict()
    text = render_text(f)
    check = check_narrative(text, f)
    assert check.ok, check.errors
    assert "<img" in render_html(f, case=case) or not f["lesions"]
    labels = extract_labels(text)
    for organ in ("liver", "pancreas", "kidney"):
        has = any(l["organ"] == organ for l in f["lesions"])
        assert (labels[organ]["tumor"] == "yes") == has, (organ, labels[organ])
        if has:
            largest = max(l["longest_diameter_mm"] for l in f["lesions"] if l["organ"] == organ)
            assert labels[organ]["largest_mm"] == pytest.approx(largest, abs=1.0)
