"""Plain structured report (report.txt) rendered from findings.json.

Nothing here measures: every number comes from the findings dict, rounded for
display only (diameters in cm to 1 decimal, volumes in mL to 1 decimal, HU to
whole numbers).
"""

from __future__ import annotations

import html

ORGAN_TITLES = {
    "liver": "Liver", "spleen": "Spleen", "pancreas": "Pancreas", "kidney_right": "Right kidney",
    "kidney_left": "Left kidney", "gall_bladder": "Gallbladder", "stomach": "Stomach",
    "duodenum": "Duodenum", "colon": "Colon", "intestine": "Small intestine", "esophagus": "Esophagus",
    "adrenal_gland_right": "Right adrenal gland", "adrenal_gland_left": "Left adrenal gland",
    "common_bile_duct": "Common bile duct", "bladder": "Urinary bladder",
}
PHASE_TITLES = {
    "non-contrast": "Non-contrast CT", "arterial": "CT, arterial phase", "venous": "CT, portal-venous phase",
    "delayed": "CT, delayed phase", "unknown": "CT, phase not specified",
}
KIND_WORDS = {"lesion": "lesion", "tumor": "tumor", "cyst": "cyst", "pdac": "PDAC", "pnet": "PNET"}
ATTENUATION_WORDS = {"hypo": "hypoattenuating", "iso": "isoattenuating", "hyper": "hyperattenuating"}
# Sections in reading order; lesions of "kidney" go under both kidneys' section.
SECTION_ORDER = ("liver", "spleen", "pancreas", "kidneys")


def cm(mm: float) -> str:
    return f"{mm / 10.0:.1f}"


def ml(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} mL"


def hu(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f} HU"


def lesion_title(lesion: dict) -> str:
    organ = {"liver": "Liver", "pancreas": "Pancreatic", "kidney": "Kidney"}[lesion["organ"]]
    return f"{organ} {KIND_WORDS.get(lesion['kind'], lesion['kind'])}"


def lesion_line(lesion: dict, organs: dict) -> str:
    """One lesion: size, slice, volume, attenuation, location."""
    parts = [
        f"{cm(lesion['longest_diameter_mm'])} x {cm(lesion['perpendicular_diameter_mm'])} cm "
        f"(image {lesion['slice_index']})",
        f"volume {ml(lesion['volume_ml'])}",
    ]
    if lesion.get("mean_hu") is not None:
        ref = lesion.get("attenuation_reference")
        ref_hu = organs.get(ref, {}).get("mean_hu") if ref else None
        word = ATTENUATION_WORDS.get(lesion.get("attenuation"), "attenuation not classified")
        vs = f" vs {ORGAN_TITLES.get(ref, ref).lower()} {hu(ref_hu)}" if ref_hu is not None else ""
        parts.append(f"{word} ({hu(lesion['mean_hu'])}{vs})")
    side = f", {lesion['side']} side" if lesion.get("side") else ""
    loc = lesion.get("location") or {}
    where = []
    if loc.get("couinaud"):
        where.append("segment " + "/".join(loc["couinaud"]))
    if loc.get("pancreas_part"):
        where.append(loc["pancreas_part"])
    if loc.get("kidney_pole"):
        where.append(f"{loc['kidney_pole']} pole")
    location = f"; location: {', '.join(where)}" if where else ""
    if not where and lesion.get("location_note"):
        location = f"; {lesion['location_note']}"
    if lesion.get("exophytic_fraction") is not None:
        location += f"; {lesion['exophytic_fraction'] * 100:.0f}% exophytic"
    return f"{lesion_title(lesion)} {lesion['id'].rsplit('_', 1)[-1]}{side}: " + ", ".join(parts) + location + "."


VESSEL_NAMES = {
    "SMA": "SMA", "CA": "celiac axis", "CHA": "common hepatic artery", "SMV": "SMV", "PV": "portal vein",
    "aorta": "aorta", "IVC": "IVC",
}


def staging_lines(lesion: dict) -> list:
    """Vascular involvement, T stage and resectability of a staged pancreatic lesion."""
    contact = lesion.get("vessel_contact_deg")
    if not contact:
        return []
    lines = []
    touched = [(k, d) for k, d in contact.items() if d]
    for key, deg in touched:
        word = "encasement" if deg > 180 else "abutment"
        lines.append(f"{VESSEL_NAMES[key]}: solid tumor contact {deg:.0f} degrees ({word}).")
    free = [VESSEL_NAMES[k] for k, d in contact.items() if d == 0]
    if free:
        lines.append("No tumor contact: " + ", ".join(free) + ".")
    missing = [VESSEL_NAMES[k] for k, d in contact.items() if d is None]
    if missing:
        lines.append("Not assessable (no mask): " + ", ".join(missing) + ".")
    organs = [o.replace("_", " ") for o, c in (lesion.get("organ_contact") or {}).items() if c]
    if organs:
        lines.append("Contact with adjacent organs: " + ", ".join(organs) + ".")
    if lesion.get("t_stage"):
        lines.append(f"T stage (AJCC 8th): {lesion['t_stage']} ({lesion.get('t_stage_basis')}; {lesion.get('t_stage_rule')}).")
    detail = lesion.get("resectability_detail") or {}
    if lesion.get("resectability"):
        drivers = "; ".join(detail.get("drivers") or []) or "no vascular contact"
        lines.append(f"Resectability (NCCN): {lesion['resectability'].replace('_', ' ')} ({drivers}).")
    elif detail.get("reason"):
        lines.append(f"Resectability (NCCN): {detail['reason']}.")
    return lines


def organ_line(name: str, entry: dict) -> str:
    bits = []
    if entry.get("volume_ml") is not None:
        size = {"no": "normal size", "enlarged": "enlarged", "massively_enlarged": "massively enlarged"}.get(
            entry.get("enlarged"), "no size rule"
        )
        bits.append(f"{size} (volume {ml(entry['volume_ml'])})")
    else:
        bits.append("volume not assessable (organ cut by the scan edge)")
    if entry.get("mean_hu") is not None:
        bits.append(f"mean attenuation {hu(entry['mean_hu'])}")
    if entry.get("steatosis") is True:
        bits.append("fatty infiltration" if name == "liver" else "fatty infiltration (P/S < 0.7)")
    elif entry.get("steatosis") is False:
        bits.append("no steatosis" if name == "liver" else "no fatty infiltration")
    if entry.get("possible_steatosis"):
        bits.append("low attenuation, possible steatosis")
    return f"{ORGAN_TITLES.get(name, name)}: " + "; ".join(bits) + "."


def _impression(findings: dict) -> list:
    lines = []
    organs = findings["organs"]
    for name, entry in organs.items():
        if entry.get("enlarged") in ("enlarged", "massively_enlarged"):
            lines.append(f"{entry['enlarged'].replace('_', ' ').capitalize()} {ORGAN_TITLES.get(name, name).lower()}.")
    if organs.get("liver", {}).get("steatosis"):
        lines.append("Hepatic steatosis.")
    if organs.get("pancreas", {}).get("steatosis"):
        lines.append("Fatty pancreas.")
    by_organ: dict = {}
    for lesion in findings["lesions"]:
        by_organ.setdefault(lesion["organ"], []).append(lesion)
    ranked = sorted(by_organ.items(), key=lambda kv: -max(l["longest_diameter_mm"] for l in kv[1]))
    for organ, lesions in ranked:
        big = max(lesions, key=lambda l: l["longest_diameter_mm"])
        size = f"{cm(big['longest_diameter_mm'])} x {cm(big['perpendicular_diameter_mm'])} cm"
        noun = {"liver": "liver", "pancreas": "pancreatic", "kidney": "kidney"}[organ]
        if len(lesions) == 1:
            side = f" ({big['side']})" if big.get("side") else ""
            lines.append(f"One {noun} {KIND_WORDS[big['kind']]}{side}, {size}.")
        else:
            lines.append(f"{len(lesions)} {noun} lesions; the largest ({big['id']}) measures {size}.")
        staged = [l for l in lesions if l.get("t_stage")]
        if staged:
            order = ["T1a", "T1b", "T1c", "T1", "T2", "T3", "T4"]
            worst = max(staged, key=lambda l: order.index(l["t_stage"]) if l["t_stage"] in order else -1)
            text = f"Clinical stage: {worst['t_stage']}NxMx"
            if worst.get("resectability"):
                text += f"; NCCN {worst['resectability'].replace('_', ' ')}"
            lines.append(text + ".")
    if not findings["lesions"]:
        lines.append("No liver, pancreatic or kidney lesion in the masks provided.")
    return lines


def render_text(findings: dict) -> str:
    """The structured report as plain text."""
    organs = findings["organs"]
    out = [f"RADGPT STRUCTURED REPORT - case {findings['case_id']}", PHASE_TITLES.get(findings["phase"], findings["phase"]), ""]
    out.append("FINDINGS:")
    lesions_by_section: dict = {}
    for lesion in findings["lesions"]:
        section = "kidneys" if lesion["organ"] == "kidney" else lesion["organ"]
        lesions_by_section.setdefault(section, []).append(lesion)
    subs_by_section: dict = {}
    for sub in findings.get("sub_threshold_lesions", []):
        section = "kidneys" if sub["organ"] == "kidney" else sub["organ"]
        subs_by_section.setdefault(section, []).append(sub)
    shown = set()
    for section in SECTION_ORDER:
        names = ("kidney_right", "kidney_left") if section == "kidneys" else (section,)
        present = [n for n in names if n in organs]
        if not present and section not in lesions_by_section:
            continue
        for n in present:
            out.append(organ_line(n, organs[n]))
            shown.add(n)
        if not present:
            out.append(f"{section.capitalize()}: no organ mask given.")
        for lesion in lesions_by_section.get(section, []):
            out.append("  " + lesion_line(lesion, organs))
            out += ["    " + line for line in staging_lines(lesion)]
        for sub in subs_by_section.get(section, []):
            out.append(
                f"  {sub['count']} further {sub['mask'].replace('_', ' ')} component(s) below "
                f"{sub['floor_mm3']:g} mm3 (total {sub['total_volume_ml'] * 1000:.1f} mm3), not measured."
            )
    for name, entry in organs.items():
        if name not in shown:
            out.append(organ_line(name, entry))
    if findings.get("not_assessable"):
        out += ["", "NOT ASSESSABLE:"]
        out += [f"- {item['what']}: {item['why']}" for item in findings["not_assessable"]]
    out += ["", "IMPRESSION:"]
    out += [f"{i}. {line}" for i, line in enumerate(_impression(findings), start=1)]
    return "\n".join(out) + "\n"


def render_html(findings: dict) -> str:
    """A minimal self-contained HTML page: organ table and the text report (key images come later)."""
    rows = "".join(
        f"<tr><td>{html.escape(ORGAN_TITLES.get(n, n))}</td><td>{ml(e.get('volume_ml'))}</td>"
        f"<td>{hu(e.get('mean_hu'))}</td><td>{html.escape(str(e.get('enlarged')))}</td></tr>"
        for n, e in findings["organs"].items()
    )
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>RadGPT report {html.escape(findings['case_id'])}</title>"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #999;padding:2px 8px}pre{white-space:pre-wrap}</style></head><body>"
        f"<h1>Case {html.escape(findings['case_id'])}</h1>"
        "<table><tr><th>Organ</th><th>Volume</th><th>Mean HU</th><th>Enlarged</th></tr>"
        f"{rows}</table><pre>{html.escape(render_text(findings))}</pre></body></html>\n"
    )
