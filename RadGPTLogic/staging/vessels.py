"""The seven vessels of pancreatic staging, from whatever masks the case has.

Keys (docs/CONTRACT.md §3 ``vessel_contact_deg``): ``SMA``, ``CA``, ``CHA``, ``SMV``, ``PV``,
``aorta``, ``IVC``.  Sources, first match wins:

=======  =====================================================================
SMA      ``superior_mesenteric_artery``
CA       ``celiac_trunk``; else the trunk split from ``celiac_aa``
CHA      ``common_hepatic_artery``; else the right-hand branch split from ``celiac_aa``
SMV      ``superior_mesenteric_vein``; else split from ``veins``; else from the
         SMV/PV trunk isolated in ``portal_vein_and_splenic_vein``
PV       ``portal_vein``; else split from ``veins``; else as for the SMV
aorta    ``aorta``
IVC      ``postcava``
=======  =====================================================================

A vessel with no source is None: its contact is reported as null ("mask not
given"), never as 0.
"""

from __future__ import annotations

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


def resolve_vessels(case: Case) -> dict:
    """Key -> ``{"crop": Crop | None, "source": str}`` for the seven staging vessels."""
    out = {key: {"crop": _present(case, name), "source": name} for key, name in DIRECT.items()}
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
        from ..anatomy.veins import split_veins, venous_trunk

        combined, how = None, None
        if _present(case, "veins") is not None:
            combined, how = case.crop("veins"), "veins split"
        elif _present(case, "portal_vein_and_splenic_vein") is not None:
            trunk, trunk_how = venous_trunk(case)
            if trunk is not None and not trunk.is_empty:
                combined, how = trunk, f"portal_vein_and_splenic_vein trunk ({trunk_how})"
        if combined is not None:
            smv, pv = split_veins(combined, case.affine)
            for key, crop in (("SMV", smv), ("PV", pv)):
                if out[key]["crop"] is None and not crop.is_empty:
                    out[key] = {"crop": crop, "source": how}
    return out
