"""Staging of one solid pancreatic lesion: vessel contact, organ contact, AJCC T, NCCN.

Vessel models are prepared once per case (:func:`prepare_vessel_models`); each
lesion then only casts its rays (:func:`stage_lesion`).  Cysts are not staged.
"""

from __future__ import annotations

from typing import Any

from ..case import Case, Crop
from ..rules import Rules
from .ajcc import exocrine_t, pnet_t
from .nccn import resectability
from .organ_contact import organ_contacts
from .vessels import VESSEL_KEYS

SOLID_KINDS = ("lesion", "tumor", "pdac", "pnet")


def prepare_vessel_models(case: Case, vessels: dict, near: Crop | None) -> dict:
    """Key -> VesselModel (or None when the vessel has no mask), modelled near ``near`` only."""
    from .contact import prepare_vessel

    models = {}
    for key in VESSEL_KEYS:
        crop = vessels[key]["crop"]
        models[key] = None if crop is None else prepare_vessel(crop, case.affine, near=near)
    return models


def vessel_contacts(case: Case, lesion: Crop, models: dict, rules: Rules) -> dict:
    """Key -> degrees of circumferential contact (0 = none), or None when the vessel has no mask."""
    from .contact import contact_degrees

    out: dict[str, float | None] = {}
    for key in VESSEL_KEYS:
        model = models.get(key)
        out[key] = None if model is None else float(
            round(contact_degrees(model, lesion, case.affine, contact_mm=rules.contact_mm).degrees, 1)
        )
    return out


def stage_lesion(case: Case, lesion: Crop, kind: str, longest_mm: float, part: str | None,
                 contact_deg: dict, rules: Rules) -> dict:
    """Findings fields of a solid pancreatic lesion given its vessel contact angles."""
    organs = organ_contacts(case, lesion, rules.contact_mm)
    out: dict[str, Any] = {"vessel_contact_deg": contact_deg, "organ_contact": organs}
    if kind == "pnet":
        out.update(pnet_t(longest_mm, contact_deg, organs, rules.t4_rule))
        out["resectability"] = None
        out["resectability_detail"] = {
            "category": None, "drivers": [], "assumptions": [], "rule": None,
            "reason": "NCCN resectability criteria apply to adenocarcinoma, not to neuroendocrine tumours",
        }
    else:
        out.update(exocrine_t(longest_mm, contact_deg, rules.t4_rule))
        if kind != "pdac":
            out["t_stage_caveat"] = "; ".join(
                c for c in (out.get("t_stage_caveat"), f"staged as exocrine carcinoma (mask kind '{kind}')") if c
            )
        detail = resectability(contact_deg, part)
        out["resectability"] = detail["category"]
        out["resectability_detail"] = detail
    return out
