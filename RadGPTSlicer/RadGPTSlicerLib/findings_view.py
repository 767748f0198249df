"""Findings (the dict of ``Findings.to_dict()``) -> what the module panel shows.

Pure presentation helpers: table rows for the lesion table, the point the slice
views centre on, and the caliper end points drawn as markups lines.  Numbers are
only formatted here, never computed.
"""

from __future__ import annotations

#: Column titles of the lesion table, in order.
LESION_COLUMNS = ("Lesion", "Organ", "Side", "Location", "Long axis (mm)", "Short axis (mm)", "Volume (mL)",
                  "Mean HU", "Image", "Stage")


def location_text(lesion: dict) -> str:
    """Couinaud segments, pancreas part or kidney pole as shown in the table (or the note why not)."""
    loc = lesion.get("location") or {}
    if loc.get("couinaud"):
        return "/".join(loc["couinaud"])
    if loc.get("pancreas_part"):
        return loc["pancreas_part"]
    if loc.get("kidney_pole"):
        return f"{loc['kidney_pole']} pole"
    return "not assessable" if lesion.get("location_note") else ""


def stage_text(lesion: dict) -> str:
    """AJCC T and NCCN category of a staged pancreatic lesion, e.g. ``T2, borderline``."""
    parts = [lesion.get("t_stage"), (lesion.get("resectability") or "").replace("_", " ")]
    return ", ".join(p for p in parts if p)


def _fmt(value, digits: int) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def lesion_rows(findings: dict) -> list:
    """One row of strings per lesion, in the order of ``findings["lesions"]``."""
    rows = []
    for lesion in findings.get("lesions", []):
        rows.append((
            str(lesion["id"]),
            str(lesion.get("organ") or ""),
            str(lesion.get("side") or ""),
            location_text(lesion),
            _fmt(lesion.get("longest_diameter_mm"), 1),
            _fmt(lesion.get("perpendicular_diameter_mm"), 1),
            _fmt(lesion.get("volume_ml"), 2),
            _fmt(lesion.get("mean_hu"), 0),
            "" if lesion.get("slice_index") is None else str(lesion["slice_index"]),
            stage_text(lesion),
        ))
    return rows


def caliper_points(lesion: dict) -> dict:
    """``{"longest": [[x, y, z], [x, y, z]], "perpendicular": [...]}`` in RAS mm (missing ones left out)."""
    calipers = lesion.get("calipers_ras_mm") or {}
    return {name: [list(map(float, p)) for p in pts] for name, pts in calipers.items() if pts and len(pts) == 2}


def lesion_focus_ras(lesion: dict):
    """RAS point to centre the slice views on: the middle of the longest diameter.

    It lies in the axial slice where the WHO diameters were measured, inside the
    lesion's cross-section.  None when the lesion has no calipers.
    """
    longest = caliper_points(lesion).get("longest")
    if not longest:
        return None
    (x0, y0, z0), (x1, y1, z1) = longest
    return [(x0 + x1) / 2.0, (y0 + y1) / 2.0, (z0 + z1) / 2.0]
