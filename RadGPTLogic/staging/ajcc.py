"""AJCC 8th edition T category for pancreatic tumours (imaging assigns only T).

Exocrine pancreas (PDAC and any solid non-PNET pancreatic lesion), AJCC 8th:

====  ==========================================================
T1a   <= 0.5 cm
T1b   > 0.5 cm and < 1 cm
T1c   1 cm to 2 cm (inclusive)
T2    > 2 cm and <= 4 cm
T3    > 4 cm
T4    involves the celiac axis (CA), SMA and/or common hepatic artery (CHA), any size
====  ==========================================================

"Involves" has no angle in AJCC.  Default rule ``"encasement"``: T4 when any of
CA/SMA/CHA has > 180 degrees of solid contact (NCCN's encasement).  Setting
``"any_contact"`` makes any solid contact T4.  Findings record the rule used.

Well-differentiated pancreatic NET (AJCC 8th, chapter 34): T1 < 2 cm; T2 2-4 cm;
T3 > 4 cm or invading the duodenum or common bile duct; T4 invading adjacent organs
(stomach, spleen, colon, adrenal gland) or the wall of large vessels (CA, SMA).
From masks, "invading" is read as contact (the same arterial rule for vessels):
the result says so.

Size is the WHO longest axial diameter (the "greatest dimension" in the axial plane).
"""

from __future__ import annotations

T4_RULES = {
    "encasement": "T4 when CA, SMA or CHA has > 180 degrees of solid tumour contact",
    "any_contact": "T4 when CA, SMA or CHA has any solid tumour contact",
}
T4_ARTERIES = ("CA", "SMA", "CHA")
PNET_T4_VESSELS = ("CA", "SMA")
PNET_T3_ORGANS = ("duodenum", "common_bile_duct")
PNET_T4_ORGANS = ("stomach", "spleen", "colon", "adrenal_gland_left", "adrenal_gland_right")


def _involved(deg: float | None, rule: str) -> bool:
    if deg is None:
        return False
    return deg > 180.0 if rule == "encasement" else deg > 0.0


def exocrine_size_t(size_cm: float) -> str:
    """T1a..T3 by greatest dimension in cm (AJCC 8th exocrine)."""
    if size_cm <= 0.5:
        return "T1a"
    if size_cm < 1.0:
        return "T1b"
    if size_cm <= 2.0:
        return "T1c"
    if size_cm <= 4.0:
        return "T2"
    return "T3"


def pnet_size_t(size_cm: float) -> str:
    """T1..T3 by size alone (AJCC 8th pancreatic NET)."""
    if size_cm < 2.0:
        return "T1"
    if size_cm <= 4.0:
        return "T2"
    return "T3"


def exocrine_t(longest_mm: float, contact_deg: dict, rule: str = "encasement") -> dict:
    """T category of an exocrine pancreatic tumour.

    ``contact_deg`` maps ``CA``/``SMA``/``CHA`` (and others) to degrees or None (no mask).
    Returns ``{"t_stage", "t_stage_rule", "t_stage_basis", "t_stage_caveat"}``.
    """
    if rule not in T4_RULES:
        raise ValueError(f"unknown T4 rule {rule!r}; use one of {sorted(T4_RULES)}")
    involved = [a for a in T4_ARTERIES if _involved(contact_deg.get(a), rule)]
    missing = [a for a in T4_ARTERIES if contact_deg.get(a) is None]
    caveat = None
    if involved:
        t = "T4"
        basis = "arterial involvement: " + ", ".join(f"{a} {contact_deg[a]:.0f} deg" for a in involved)
    else:
        t = exocrine_size_t(longest_mm / 10.0)
        basis = f"size {longest_mm / 10.0:.2f} cm"
        if missing:
            caveat = f"T4 not excluded: no mask for {', '.join(missing)}"
    return {"t_stage": t, "t_stage_rule": T4_RULES[rule], "t_stage_basis": basis, "t_stage_caveat": caveat}


def pnet_t(longest_mm: float, contact_deg: dict, organ_contact: dict, rule: str = "encasement") -> dict:
    """T category of a pancreatic NET; ``organ_contact`` maps organ name -> bool or None (no mask)."""
    if rule not in T4_RULES:
        raise ValueError(f"unknown T4 rule {rule!r}; use one of {sorted(T4_RULES)}")
    size_cm = longest_mm / 10.0
    vessels = [v for v in PNET_T4_VESSELS if _involved(contact_deg.get(v), rule)]
    t4_organs = [o for o in PNET_T4_ORGANS if organ_contact.get(o)]
    t3_organs = [o for o in PNET_T3_ORGANS if organ_contact.get(o)]
    missing = [o for o in PNET_T3_ORGANS + PNET_T4_ORGANS if organ_contact.get(o) is None]
    missing += [v for v in PNET_T4_VESSELS if contact_deg.get(v) is None]
    if vessels or t4_organs:
        t = "T4"
        basis = "contact with " + ", ".join(vessels + t4_organs)
    elif t3_organs or size_cm > 4.0:
        t = "T3"
        basis = f"size {size_cm:.2f} cm" + (f"; contact with {', '.join(t3_organs)}" if t3_organs else "")
    else:
        t = pnet_size_t(size_cm)
        basis = f"size {size_cm:.2f} cm"
    caveat = "organ and vessel 'invasion' read as contact on masks"
    if missing and t != "T4":
        caveat += f"; not assessed (no mask): {', '.join(missing)}"
    return {
        "t_stage": t,
        "t_stage_rule": "AJCC 8th pancreatic NET; " + T4_RULES[rule].replace("CA, SMA or CHA", "CA or SMA"),
        "t_stage_basis": basis,
        "t_stage_caveat": caveat,
    }
