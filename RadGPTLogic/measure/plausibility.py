"""Plausibility checks: does each organ mask look like the organ its name says?

A mask under the wrong name (a label map read with the wrong table, a file saved
under another structure's name, left and right swapped) still yields numbers, and
a report built on them is confidently wrong.  These checks use bounds far outside
any normal or pathological range (:data:`RadGPTLogic.rules.PLAUSIBLE_VOLUME_ML`,
:data:`~RadGPTLogic.rules.PLAUSIBLE_SOLID_ORGAN_HU`) and the fixed left/right order
of paired organs (:data:`~RadGPTLogic.rules.RIGHT_LEFT_PAIRS`); a failed check is
a "check the masks" item in findings and report, never a stop.

Patient frame: RAS, so a larger x lies further to the patient's right.
"""

from __future__ import annotations

from ..case import Case
from ..rules import PLAUSIBLE_SOLID_ORGAN_HU, PLAUSIBLE_VOLUME_ML, RIGHT_LEFT_PAIRS, SOLID_ORGANS
from .organs import centroid_ras


def _name(structure: str) -> str:
    return structure.replace("_", " ")


def mask_checks(case: Case, organs: dict, centroid=None) -> list:
    """Failed plausibility checks: ``[{"structure", "check", "problem"}]`` (empty when all pass).

    ``organs`` is findings' organ dict (volume_ml, complete, mean_hu per organ);
    ``centroid(name)`` gives a structure's centre in RAS mm (default: computed here;
    the engine passes a cached one).
    """
    centroid = centroid or (lambda name: centroid_ras(case.structures[name], case.affine))
    out = []
    voxel_ml = case.voxel_volume_mm3 / 1000.0
    for name, entry in organs.items():
        bounds = PLAUSIBLE_VOLUME_ML.get(name)
        volume = entry.get("volume_ml")
        seen = (entry.get("voxel_count") or 0) * voxel_ml  # an organ cut by the scan is at least this big
        if bounds and volume is not None and volume < bounds[0]:
            out.append({"structure": name, "check": "volume",
                        "problem": f"volume {volume:.1f} mL is implausible for a {_name(name)} "
                                   f"(expected {bounds[0]:g}-{bounds[1]:g} mL)"})
        elif bounds and seen > bounds[1]:
            out.append({"structure": name, "check": "volume",
                        "problem": f"volume {'at least ' if volume is None else ''}{seen:.1f} mL is implausible "
                                   f"for a {_name(name)} (expected {bounds[0]:g}-{bounds[1]:g} mL)"})
        hu = entry.get("mean_hu")
        lo, hi = PLAUSIBLE_SOLID_ORGAN_HU
        if name in SOLID_ORGANS and hu is not None and not lo <= hu <= hi:
            out.append({"structure": name, "check": "attenuation",
                        "problem": f"mean attenuation {hu:.0f} HU is implausible for a {_name(name)} "
                                   f"(expected {lo:g} to {hi:g} HU; air, lung or bone?)"})
    for right, left in RIGHT_LEFT_PAIRS:
        r, l = case.crop(right), case.crop(left)
        if r is None or l is None or r.is_empty or l.is_empty:
            continue
        xr, xl = centroid(right)[0], centroid(left)[0]
        if xr <= xl:
            out.append({"structure": right, "check": "side",
                        "problem": f"the {_name(right)} lies to the patient's left of the {_name(left)} "
                                   f"(centres at x = {xr:.0f} and {xl:.0f} mm, RAS): left and right swapped, "
                                   "or a wrong label table or orientation"})
    return out

