"""NCCN resectability of pancreatic adenocarcinoma, encoded from the table literally.

Source: NCCN Pancreatic Adenocarcinoma v1.2022 resectability criteria (as reproduced
in clinical_rules_and_peers.md §A2).  Inputs are the contact angles (degrees; None
when that vessel's mask was not given) and the tumour's location.

Arterial (CA, SMA, CHA):

* **Resectable**: no contact with CA, SMA or CHA.
* **Borderline, head/uncinate**: solid contact with the CHA without extension to the
  CA or hepatic artery bifurcation; solid contact with the SMA <= 180 degrees.
* **Borderline, body/tail**: solid contact with the CA <= 180 degrees; CA > 180
  degrees without aortic involvement (and with an intact gastroduodenal artery,
  which masks cannot show; some panel members call this locally advanced).
* **Locally advanced, head/uncinate**: solid contact > 180 degrees with SMA or CA.
* **Locally advanced, body/tail**: solid contact > 180 degrees with SMA or CA;
  CA contact with aortic involvement.

Venous (SMV/PV, IVC):

* **Resectable**: no SMV/PV contact, or <= 180 degrees without contour irregularity.
* **Borderline**: SMV/PV contact > 180 degrees, or <= 180 degrees with contour
  irregularity or thrombosis (reconstructable); any solid contact with the IVC.
* **Locally advanced**: unreconstructable SMV/PV (not assessable from masks).

Where the table is silent, the choice made is listed under ``assumptions``:
CA contact <= 180 degrees in a head tumour, CHA contact in a body/tail tumour and
SMA contact <= 180 degrees in a body/tail tumour are called borderline.  A neck
tumour is judged by the head/uncinate rules.  The category is the worse of the
arterial and venous ones.  It is null with a reason when a vessel needed by the
rules has no mask, or when the tumour's location is unknown and the head and
body/tail rules disagree.  Metastatic disease is outside what masks show.
"""

from __future__ import annotations

ORDER = ("resectable", "borderline", "locally_advanced")
NEEDED = ("SMA", "CA", "CHA", "SMV", "PV", "IVC")

ALWAYS_ASSUMED = (
    "no venous contour irregularity or thrombosis (not assessable from masks)",
    "SMV/PV reconstructability not assessed from masks",
    "arterial variants (replaced/accessory hepatic arteries) not assessed",
    "distant metastasis not assessed (outside the masks)",
)


def _worse(a: str, b: str) -> str:
    return a if ORDER.index(a) >= ORDER.index(b) else b


def _arterial(deg: dict, region: str, drivers: list, assumptions: list) -> str:
    sma, ca, cha, aorta = deg["SMA"], deg["CA"], deg["CHA"], deg.get("aorta") or 0.0
    cat = "resectable"
    if region == "head":
        if sma > 180 or ca > 180:
            drivers += [f"{v} {d:.0f} deg (> 180)" for v, d in (("SMA", sma), ("CA", ca)) if d > 180]
            return "locally_advanced"
        if 0 < sma <= 180:
            drivers.append(f"SMA {sma:.0f} deg (<= 180)")
            cat = "borderline"
        if cha > 0:
            drivers.append(f"CHA {cha:.0f} deg")
            if ca > 0:
                assumptions.append("CHA contact may extend to the celiac axis (NCCN borderline requires it does not)")
            else:
                assumptions.append("CHA contact assumed not to reach the hepatic artery bifurcation")
            cat = "borderline"
        if 0 < ca <= 180:
            drivers.append(f"CA {ca:.0f} deg (<= 180)")
            assumptions.append("CA contact <= 180 deg in a head tumour: NCCN silent, called borderline")
            cat = "borderline"
        return cat
    # body / tail
    if sma > 180:
        drivers.append(f"SMA {sma:.0f} deg (> 180)")
        return "locally_advanced"
    if ca > 0 and aorta > 0:
        drivers.append(f"CA {ca:.0f} deg with aortic contact {aorta:.0f} deg")
        return "locally_advanced"
    if ca > 180:
        drivers.append(f"CA {ca:.0f} deg (> 180) without aortic involvement")
        assumptions.append("gastroduodenal artery assumed intact; some panel members call this locally advanced")
        cat = "borderline"
    elif ca > 0:
        drivers.append(f"CA {ca:.0f} deg (<= 180)")
        cat = "borderline"
    if 0 < sma <= 180:
        drivers.append(f"SMA {sma:.0f} deg (<= 180)")
        assumptions.append("SMA contact <= 180 deg in a body/tail tumour: NCCN silent, called borderline")
        cat = "borderline"
    if cha > 0:
        drivers.append(f"CHA {cha:.0f} deg")
        assumptions.append("CHA contact in a body/tail tumour: NCCN silent, called borderline")
        cat = "borderline"
    return cat


def _venous(deg: dict, drivers: list) -> str:
    cat = "resectable"
    for vein in ("SMV", "PV"):
        if deg[vein] > 180:
            drivers.append(f"{vein} {deg[vein]:.0f} deg (> 180)")
            cat = "borderline"
    if deg["IVC"] > 0:
        drivers.append(f"IVC {deg['IVC']:.0f} deg (any contact)")
        cat = "borderline"
    return cat


def _region(part: str | None) -> list:
    if part in ("head", "neck", "uncinate"):
        return ["head"]
    if part in ("body", "tail"):
        return ["body_tail"]
    return ["head", "body_tail"]


def resectability(contact_deg: dict, pancreas_part: str | None) -> dict:
    """NCCN category with drivers and assumptions.

    ``contact_deg`` maps ``SMA``, ``CA``, ``CHA``, ``SMV``, ``PV``, ``aorta``, ``IVC`` to
    degrees (0 = no contact) or None (mask not given).  Returns ``{"category",
    "drivers", "assumptions", "reason", "rule"}``; ``category`` is None with a
    ``reason`` when not assessable.
    """
    rule = "NCCN Pancreatic Adenocarcinoma v1.2022 resectability criteria (literal)"
    missing = [v for v in NEEDED if contact_deg.get(v) is None]
    regions = _region(pancreas_part)
    if "body_tail" in regions and contact_deg.get("aorta") is None:
        missing.append("aorta")
    if missing:
        return {"category": None, "drivers": [], "assumptions": [], "rule": rule,
                "reason": f"not assessable: no mask for {', '.join(missing)}"}
    results = []
    for region in regions:
        drivers: list[str] = []
        assumptions = list(ALWAYS_ASSUMED)
        if region == "head" and pancreas_part == "neck":
            assumptions.append("neck tumour judged by the head/uncinate rules")
        arterial = _arterial(contact_deg, region, drivers, assumptions)
        venous = _venous(contact_deg, drivers)
        results.append((_worse(arterial, venous), drivers, assumptions))
    if len({r[0] for r in results}) > 1:
        return {"category": None, "drivers": [], "assumptions": [], "rule": rule,
                "reason": "not assessable: tumour location unknown and head vs body/tail rules disagree"}
    category, drivers, assumptions = results[0]
    if len(results) > 1:
        assumptions = assumptions + ["location unknown: head and body/tail rules agree"]
    return {"category": category, "drivers": drivers, "assumptions": assumptions, "reason": None, "rule": rule}
