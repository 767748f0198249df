"""The seven vessels of pancreatic staging, from whatever masks the case has.

Keys (docs/CONTRACT.md §3 ``vessel_contact_deg``): ``SMA``, ``CA``, ``CHA``, ``SMV``, ``PV``,
``aorta``, ``IVC``.  Sources, first match wins:

=======  =====================================================================
SMA      ``superior_mesenteric_artery``
CA       ``celiac_trunk``; else the trunk split from ``celiac_aa``
CHA      ``common_hepatic_artery``; else the right-hand branch split from ``celiac_aa``
SMV      ``superior_mesenteric_vein``; else from the combined trunk: ``veins``, or
         the SMV/PV trunk isolated in ``portal_vein_and_splenic_vein``
PV       ``portal_vein``; else from the combined trunk, as for the SMV
aorta    ``aorta``
IVC      ``postcava``
=======  =====================================================================

The combined trunk (:func:`~RadGPTLogic.anatomy.veins.combined_trunk`) serves
the SMV/PV pair in two ways.  With one of the pair given as its own mask (the
usual TotalSegmentator / AbdomenAtlas pair: ``superior_mesenteric_vein`` plus
``portal_vein_and_splenic_vein``), the other is the trunk minus the given mask on
its side of the confluence (:func:`~RadGPTLogic.anatomy.veins.other_vein`).  With
neither given, the trunk is split at the bend of its centreline
(:func:`~RadGPTLogic.anatomy.veins.split_veins`).

A vessel with no source is None: its contact is reported as null ("mask not
given"), never as 0.
"""

from __future__ import annotations

from typing import Optional, TypedDict

from ..case import Case, Crop

VESSEL_KEYS = ("SMA", "CA", "CHA", "SMV", "PV", "aorta", "IVC")
DIRECT = {
    "SMA": "superior_mesenteric_artery", "CA": "celiac_trunk", "CHA": "common_hepatic_artery",
    "SMV": "superior_mesenteric_vein", "PV": "portal_vein", "aorta": "aorta", "IVC": "postcava",
}
# Every mask name resolve_vessels may read (the engine's cache key).
SOURCE_MASKS = tuple(DIRECT.values()) + ("celiac_aa", "veins", "portal_vein_and_splenic_vein")


def _present(case: Case, name: str) -> Crop | None:
    crop = case.crop(name)
    return crop if crop is not None and not crop.is_empty else None


class ResolvedVessel(TypedDict):
    """One staging vessel: its mask (None when the case has no source for it) and where it came from."""

    crop: Optional[Crop]
    source: str


def resolve_vessels(case: Case) -> dict[str, ResolvedVessel]:
    """Key -> ``{"crop": Crop | None, "source": str}`` for the seven staging vessels."""
    out: dict[str, ResolvedVessel] = {
        key: {"crop": _present(case, name), "source": name} for key, name in DIRECT.items()}
    for key in VESSEL_KEYS:
        if out[key]["crop"] is None:
            out[key] = {"crop": None, "source": "no mask"}

    celiac = _present(case, "celiac_aa")
    if celiac is not None and (out["CA"]["crop"] is None or out["CHA"]["crop"] is None):
        from .celiac import split_celiac

        split = split_celiac(celiac, out["aorta"]["crop"], case.affine)
        for key, name in (("CA", "celiac_trunk"), ("CHA", "common_hepatic_artery")):
            if out[key]["crop"] is None and not split[name].is_empty:
                out[key] = {"crop": split[name], "source": f"celiac_aa split ({split.get('how', '')})".strip()}

    if out["SMV"]["crop"] is None or out["PV"]["crop"] is None:
        from ..anatomy.veins import combined_trunk, other_vein, split_veins

        smv, pv = out["SMV"]["crop"], out["PV"]["crop"]
        given = smv if smv is not None else pv
        trunk, how, _ = combined_trunk(case, given)
        if trunk is None:
            return out
        if given is None:  # neither the SMV nor the PV
            smv, pv = split_veins(trunk, case.affine)
            for key, crop in (("SMV", smv), ("PV", pv)):
                if not crop.is_empty:
                    out[key] = {"crop": crop, "source": f"{how}, split at the confluence bend"}
        else:
            given_is = "SMV" if smv is not None else "PV"
            missing = "PV" if given_is == "SMV" else "SMV"
            crop, info = other_vein(trunk, given, given_is, case.affine)
            if not crop.is_empty:
                where = "above" if missing == "PV" else "below"
                out[missing] = {"crop": crop, "source": (
                    f"{how} minus {DIRECT[given_is]}, {where} the confluence ({info['extent_mm']:.0f} mm long)")}
    return out
