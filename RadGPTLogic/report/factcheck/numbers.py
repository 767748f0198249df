"""Numbers with units in report text, and the values of findings.json they may state.

Base units: mm (length), mL (volume), HU, degrees, percent.  :func:`number_matches` holds the rounding tolerances.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...findings import FindingsDict
from .vocabulary import COMPARATOR, RANGE_EXPR, RATIO_EXPR, SINGLE_EXPR, SIZE_EXPR


@dataclass
class Num:
    value: float
    decimals: int
    dim: str        # length | volume | hu | deg | pct
    unit: str
    start: int
    end: int
    text: str
    comparator: bool = False


def unit_dim(unit: str) -> tuple:
    """(dimension, factor to the base unit: mm, mL, HU, degree, percent)."""
    u = unit.lower()
    if u in ("mm", "millimeter", "millimeters", "millimetre", "millimetres"):
        return "length", 1.0
    if u in ("cm", "centimeter", "centimeters", "centimetre", "centimetres"):
        return "length", 10.0
    if u == "mm3":
        return "volume", 0.001
    if u in ("ml", "mls", "cc", "cm3") or u.startswith("millilit") or u.startswith("cubic"):
        return "volume", 1.0
    if unit == "L" or u.startswith("liter") or u.startswith("litre"):
        return "volume", 1000.0
    if u in ("hu", "h.u.") or u.startswith("hounsfield"):
        return "hu", 1.0
    if u in ("°", "degree", "degrees", "deg"):
        return "deg", 1.0
    if u == "ratio":
        return "ratio", 1.0
    return "pct", 1.0


def parse_num(s: str) -> tuple:
    s = s.replace(",", "")
    return float(s), (len(s.split(".")[1]) if "." in s else 0)


def extract_numbers(text: str) -> tuple:
    """(numbers with units, size expressions) in ``text`` (normalised)."""
    nums: list = []
    sizes: list = []   # [{"start", "end", "values": [(mm, decimals, unit)], "text"}]
    taken: list = []

    def free(a, b):
        return all(b <= s or a >= e for s, e in taken)

    def comparator_before(pos):
        return bool(COMPARATOR.search(text[max(0, pos - 30):pos]))

    for m in SIZE_EXPR.finditer(text):
        if not free(m.start(), m.end()):
            continue
        unit = m.group("unit")
        dim, factor = unit_dim(unit)
        values = []
        for g in (1, 2, 3):
            if m.group(g) is None:
                continue
            v, d = parse_num(m.group(g))
            gstart = m.start(g)
            nums.append(Num(v, d, dim, unit, gstart, m.end(g), m.group(g), comparator_before(gstart)))
            values.append((v * factor, d, unit))
        sizes.append({"start": m.start(), "end": m.end(), "values": values, "text": m.group()})
        taken.append((m.start(), m.end()))
    for m in RANGE_EXPR.finditer(text):
        if not free(m.start(), m.end()):
            continue
        unit = m.group("unit")
        dim, factor = unit_dim(unit)
        for g in (1, 2):
            v, d = parse_num(m.group(g))
            nums.append(Num(v, d, dim, unit, m.start(g), m.end(g), m.group(g), comparator_before(m.start(1))))
        taken.append((m.start(), m.end()))
    for m in SINGLE_EXPR.finditer(text):
        if not free(m.start(), m.end()):
            continue
        unit = m.group("unit")
        dim, factor = unit_dim(unit)
        v, d = parse_num(m.group(2))
        if m.group("sign") == "-":
            if dim != "hu":
                continue  # a hyphen, not a sign ("S7-8 mm" never happens; "2-3 cm" is a range)
            v = -v
        start = m.start(2) if m.group("sign") is None else m.start()
        nums.append(Num(v, d, dim, unit, start, m.end(2), m.group(), comparator_before(start)))
        if dim == "length":
            sizes.append({"start": start, "end": m.end(), "values": [(abs(v) * factor, d, unit)], "text": m.group()})
        taken.append((m.start(), m.end()))
    for m in RATIO_EXPR.finditer(text):
        if free(m.start(1), m.end(1)):
            v, d = parse_num(m.group(1))
            nums.append(Num(v, d, "ratio", "ratio", m.start(1), m.end(1), m.group(1), comparator_before(m.start(1))))
    sizes.sort(key=lambda s: s["start"])
    nums.sort(key=lambda n: n.start)
    return nums, sizes


def number_matches(x: float, decimals: int, unit: str, value: float) -> bool:
    """Does the written number ``x`` (with ``decimals`` digits after the point, in
    ``unit``) state the findings value ``value`` (base unit: mm, mL, HU, degree, %)?

    Tolerances: half a unit of the last written digit, with at least one decimal
    for centimetres ("3 cm" states 29.5 mm, not 24 mm).  Lengths and volumes are
    also accepted as the re-rounding of the structured report's displayed value
    (cm with 1 decimal, mL with 1 decimal), so "21 mm" for 20.67 mm shown as 2.1 cm
    passes.
    """
    dim, factor = unit_dim(unit)
    if dim == "length" and factor == 10.0:
        tol = 0.5 * 10 ** -max(decimals, 1) * 10.0
    else:
        tol = 0.5 * 10 ** -decimals * factor
    x_base = x * factor
    candidates = [value]
    if dim == "length":
        candidates.append(round(value / 10.0, 1) * 10.0)
    elif dim == "volume":
        candidates.append(round(value, 1))
    elif dim in ("hu", "deg", "pct"):
        candidates.append(float(round(value)))
    elif dim == "ratio":
        candidates.append(round(value, 2))
    return any(abs(x_base - c) <= tol + 1e-6 * max(1.0, abs(c)) for c in candidates)


DIMENSIONS = ("length", "volume", "hu", "deg", "pct", "ratio")


def values_by_owner(findings: FindingsDict) -> dict:
    """Every value a number in the text may state, by owner and dimension (base units).

    ``{owner: {dim: [(value, what)]}}`` with owner ``"organ:<name>"`` (a findings organ
    name: ``liver``, ``kidney_left`` ...) or ``"lesion:<id>"``; ``what`` names the value
    for error messages ("volume", "mean attenuation", ...).  A liver-minus-spleen
    difference belongs to both organs, a sub-threshold volume or pancreatic part volume
    to its organ.
    """
    owners: dict = {}

    def add(owner, dim, value, what):
        if value is not None and not isinstance(value, bool):
            owners.setdefault(owner, {d: [] for d in DIMENSIONS})[dim].append((float(value), what))

    organs = findings.get("organs") or {}
    for name, entry in organs.items():
        owner = f"organ:{name}"
        add(owner, "volume", entry.get("volume_ml"), "volume")
        add(owner, "hu", entry.get("mean_hu"), "mean attenuation")
        add(owner, "hu", entry.get("sd_hu"), "attenuation SD")
        add(owner, "ratio", entry.get("pancreas_to_spleen_ratio"), "pancreas-to-spleen attenuation ratio")
        if entry.get("pancreas_to_spleen_ratio") is not None:
            add("organ:spleen", "ratio", entry["pancreas_to_spleen_ratio"], "pancreas-to-spleen attenuation ratio")
    liver_hu = (organs.get("liver") or {}).get("mean_hu")
    spleen_hu = (organs.get("spleen") or {}).get("mean_hu")
    if liver_hu is not None and spleen_hu is not None:
        d = liver_hu - spleen_hu
        for owner in ("organ:liver", "organ:spleen"):
            add(owner, "hu", d, "liver-minus-spleen attenuation")
            add(owner, "hu", -d, "spleen-minus-liver attenuation")
    for lesion in findings.get("lesions") or []:
        owner = f"lesion:{lesion['id']}"
        add(owner, "length", lesion.get("longest_diameter_mm"), "longest diameter")
        add(owner, "length", lesion.get("perpendicular_diameter_mm"), "perpendicular diameter")
        add(owner, "volume", lesion.get("volume_ml"), "volume")
        add(owner, "hu", lesion.get("mean_hu"), "mean attenuation")
        add(owner, "hu", lesion.get("sd_hu"), "attenuation SD")
        for vessel, deg in (lesion.get("vessel_contact_deg") or {}).items():
            add(owner, "deg", deg, f"{vessel} contact")
        for fraction, what in ((lesion.get("exophytic_fraction"), "exophytic fraction"),
                               (lesion.get("in_organ_fraction"), "fraction in the organ")):
            if fraction is not None:
                add(owner, "pct", fraction * 100, what)
        for shares in (lesion.get("couinaud_shares"), lesion.get("pancreas_part_shares")):
            for where, v in (shares or {}).items():
                if v is not None:
                    add(owner, "pct", v * 100, f"share in {where}")
    for sub in findings.get("sub_threshold_lesions") or []:
        add(f"organ:{sub.get('organ')}", "volume", sub.get("total_volume_ml"), "sub-threshold lesion volume")
    parts = ((findings.get("anatomy") or {}).get("pancreas_parts") or {}).get("volumes_ml") or {}
    for part, v in parts.items():
        add("organ:pancreas", "volume", v, f"pancreatic {part} volume")
    return owners


def finding_values(findings: FindingsDict) -> dict:
    """Every value a number in the text may state, by dimension (base units), whoever owns it."""
    vals: dict = {d: [] for d in DIMENSIONS}
    for dims in values_by_owner(findings).values():
        for dim, pairs in dims.items():
            vals[dim] += [v for v, _ in pairs]
    return vals


def threshold_values(findings: FindingsDict) -> dict:
    """Cut-offs a report may quote after a comparator ("> 180 degrees", "<= 2 cm")."""
    th = {"length": [5.0, 10.0, 20.0, 40.0], "volume": [], "hu": [], "deg": [180.0, 90.0, 0.0],
          "pct": [50.0, 70.0], "ratio": []}
    rules = ((findings.get("provenance") or {}).get("rules")) or {}
    for key, v in rules.items():
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            continue
        if key.endswith("_ml"):
            th["volume"].append(float(v))
        elif key.endswith("_mm3"):
            th["volume"].append(float(v) / 1000.0)
        elif key.endswith("_hu"):
            th["hu"] += [float(v), -float(v)]
        elif key.endswith("_mm"):
            th["length"].append(float(v))
        elif key.endswith("_ratio"):
            th["pct"].append(float(v) * 100)
            th["ratio"].append(float(v))
    return th
