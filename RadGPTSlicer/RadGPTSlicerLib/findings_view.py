"""Findings (the dict of ``Findings.to_dict()``) -> what the module panel shows.

Pure presentation helpers: table rows for the lesion table, the point the slice
views centre on, and the caliper end points drawn as markups lines.  Numbers are
only formatted here, never computed.
"""

from __future__ import annotations

#: Column titles of the lesion table, in order.
LESION_COLUMNS = ("Lesion", "Organ", "Side", "Location", "Long axis (mm)", "Short axis (mm)", "Volume (mL)",
                  "Mean HU", "Image", "Stage", "Confidence")

#: Lesions whose segment-loader probability (whole mask, segmentation.json) is below this
#: are listed first, for review; findings.json's own ``confidence.low`` (per lesion, the
#: rules' ``confidence_low_*``) takes precedence where the findings carry it.
REVIEW_BELOW = 0.8

#: Segment Editor overwrite modes (vtkMRMLSegmentEditorNode: OverwriteAllSegments = 0,
#: OverwriteVisibleSegments = 1, OverwriteNone = 2) and what they do to a painted lesion.
EDITOR_MODES = {
    0: ("overwrite all segments (Slicer's default)",
        "painting a lesion removes its voxels from the organ segment under it"),
    1: ("overwrite visible segments",
        "painting a lesion removes its voxels from visible segments under it, e.g. the organ"),
    2: ("allow overlap",
        "painted lesion voxels stay inside the organ segment too (AbdomenAtlas convention)"),
}


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


def editor_mode_text(mode: int) -> str:
    """One line for the panel: which overwrite mode the embedded Segment Editor uses."""
    name, effect = EDITOR_MODES.get(int(mode), ("unknown mode", "see the Segment Editor's Masking section"))
    return f"Editor mode: {name}: {effect}."


def _findings_confidence(lesion: dict):
    """The lesion's ``confidence`` object of findings.json (a model's probabilities), or None."""
    value = lesion.get("confidence")
    return value if isinstance(value, dict) and value.get("mean_probability") is not None else None


def lesion_confidence(lesion: dict, confidence: dict = None):
    """Segmentation confidence of a lesion, or None when unknown.

    findings.json's ``confidence.mean_probability`` (the lesion's own voxels) when the
    findings carry one; else ``confidence[mask]``, the segment loader's probability of
    the lesion's whole mask (``segmentation.json``).
    """
    own = _findings_confidence(lesion)
    if own is not None:
        return float(own["mean_probability"])
    value = (confidence or {}).get(lesion.get("mask"))
    return None if value is None else float(value)


def needs_review(lesion: dict, confidence: dict = None) -> bool:
    """Low segmentation confidence: findings.json's ``confidence.low``, else the loader's
    probability below :data:`REVIEW_BELOW`."""
    own = _findings_confidence(lesion)
    if own is not None:
        return bool(own.get("low"))
    value = lesion_confidence(lesion, confidence)
    return value is not None and value < REVIEW_BELOW


def review_order(findings: dict, confidence: dict = None) -> list:
    """Indices of ``findings["lesions"]``: low-confidence lesions first (lowest first), the rest as found.

    Findings whose lesions all carry ``review_rank`` (the engine's order, from each
    lesion's own probabilities) are shown in that order, unless the caller's
    ``confidence`` (mask -> probability, the segment loader's) speaks of a lesion the
    findings have no confidence for; then both sources are merged by the same rule.
    """
    lesions = findings.get("lesions", [])
    extra = any(_findings_confidence(l) is None and l.get("mask") in (confidence or {}) for l in lesions)
    if lesions and not extra and all(isinstance(l.get("review_rank"), int) for l in lesions):
        return sorted(range(len(lesions)), key=lambda n: (lesions[n]["review_rank"], n))
    low = [n for n, l in enumerate(lesions) if needs_review(l, confidence)]
    low.sort(key=lambda n: (lesion_confidence(lesions[n], confidence), n))
    return low + [n for n in range(len(lesions)) if n not in low]


def one_line_error(exc) -> str:
    """An exception as the one line a user sees (InputError already reads '<path>: <problem>')."""
    text = " ".join(str(exc).split())
    return text if text else type(exc).__name__


def lesion_rows(findings: dict, confidence: dict = None) -> list:
    """One row of strings per lesion, in the order of ``findings["lesions"]``."""
    rows = []
    for lesion in findings.get("lesions", []):
        conf = lesion_confidence(lesion, confidence)
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
            "" if conf is None else (f"{conf:.2f} review" if needs_review(lesion, confidence) else f"{conf:.2f}"),
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
