"""Clinical thresholds and measurement conventions, each with its source.

One frozen :class:`Rules` object travels through the engine; findings.json
records it under ``provenance.rules`` so every verdict can be traced to the rule
that produced it.  Sources are summarised in
``../shared/reference/clinical_rules_and_peers.md`` (sections A1, A5) and in
docs/MEASUREMENT.md.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal, Optional

#: Contrast phases, as findings.json and every command line spell them.
Phase = Literal["non-contrast", "arterial", "venous", "delayed", "unknown"]
PHASES: tuple = ("non-contrast", "arterial", "venous", "delayed", "unknown")

#: Other spellings met in metadata tables (RadGPT's ``Plain``/``Venous``/``Delay``,
#: DICOM-ish words), after lower-casing and turning ``_``/``-`` into spaces.
PHASE_ALIASES = {
    "non-contrast": (
        "non contrast", "noncontrast", "plain", "native", "unenhanced", "non enhanced", "nonenhanced",
        "pre contrast", "precontrast", "nc",
    ),
    "arterial": ("arterial", "late arterial", "early arterial", "arterial phase", "art"),
    "venous": ("venous", "portal venous", "portal", "portalvenous", "pv", "venous phase", "portal venous phase"),
    "delayed": ("delayed", "delay", "delayed phase", "late", "equilibrium"),
    "unknown": ("unknown", "", "nan", "none", "null", "na", "n/a", "-"),
}
_PHASE_LOOKUP = {alias: phase for phase, aliases in PHASE_ALIASES.items() for alias in aliases}


def normalise_phase(value) -> Optional[str]:
    """The phase (one of :data:`PHASES`) that ``value`` spells, or None when it is not a phase.

    Accepts the canonical values and :data:`PHASE_ALIASES`, case and separators
    ignored; ``None``, empty and ``NaN`` mean ``unknown``.
    """
    if value is None:
        return "unknown"
    key = " ".join(str(value).strip().lower().replace("_", " ").replace("-", " ").split())  # as table headers
    if key.replace(" ", "-") in PHASES:
        return key.replace(" ", "-")
    return _PHASE_LOOKUP.get(key)


#: AJCC 8th T4 reading of "involves CA/SMA/CHA" (see :attr:`Rules.t4_rule`).
T4Rule = Literal["encasement", "any_contact"]
T4_RULES: tuple = ("encasement", "any_contact")


@dataclass(frozen=True)
class Rules:
    # --- lesions -------------------------------------------------------------
    # Components smaller than this are not reported as lesions but counted as
    # sub-threshold (RadGPT's README runs its generator with --th 10, i.e. 10 mm^3).
    min_lesion_volume_mm3: float = 10.0
    # Connected components use 26-connectivity (voxels sharing a face, an edge or a
    # corner belong to one lesion), as RadGPT and scipy's full 3x3x3 structure.
    # 6 (faces only) and 18 (faces and edges) are accepted.
    lesion_connectivity: int = 26
    # A lesion component drawn outside its organ mask still belongs to the organ when
    # at least this share of its outer surface touches the organ (or another lesion of
    # it) -- the Slicer Segment Editor's default "overwrite all" carves a painted
    # lesion out of the organ, leaving it wholly outside the organ mask but wrapped by
    # it.  Project convention: an internal carved lesion touches ~100 %, a 50 %
    # exophytic one ~50 %, while a neighbouring organ mislabelled as a lesion (a
    # spleen saved as liver_lesion) touches the liver on a few per cent of its surface.
    lesion_contact_min: float = 0.2
    # Lesion vs organ attenuation: "iso" when the mean HU differ by at most this
    # many HU, else hypo/hyper.  Project convention (RadGPT uses |d| < SD/10,
    # which calls almost every lesion hypo or hyper on noisy CT).
    attenuation_iso_band_hu: float = 10.0

    # --- segmentation confidence (lesions a model segmented) -----------------------
    # A lesion from a model is "low confidence" (report: "low segmentation confidence;
    # verify on images"; listed first for review) when the mean tumor probability
    # inside it is below confidence_low_mean OR the share of its voxels with a
    # probability below 0.5 is above confidence_low_share_below_0_5 (both as rounded
    # in findings.json, 3 decimals).  Rationale: 0.5 is the decision boundary of
    # nnU-Net's argmax when two classes compete, so a voxel below 0.5 is one the
    # model itself leaned against (with more classes the argmax may win below 0.5,
    # still less than even odds); well-segmented lesions have interiors near 1 and
    # only a rim near 0.5, which keeps their mean well above 0.7, while a lesion whose
    # voxels sit around the boundary, or one a third of which the model did not call
    # tumor (a mask grown by hand beyond the model's), is worth a second look.  A
    # project convention chosen for review triage, not a published cut-off; no study
    # has calibrated these numbers against reader agreement.
    confidence_low_mean: float = 0.7
    confidence_low_share_below_0_5: float = 0.3

    # --- organ size ----------------------------------------------------------
    # Spleen: Linguraru et al., Acad Radiol 2013;20:675: mild splenomegaly >= 314.47 mL
    # (mean + 1 SD), massive >= 430.84 mL (mean + 2.5 SD); RadGPT uses the same numbers.
    spleen_enlarged_ml: float = 314.5
    spleen_massive_ml: float = 430.8
    # Liver: no guideline-level volumetric cut-off; normal 1205 +/- 258 mL (Feng et al.,
    # WJG 2017).  Heuristic default 2500 mL (clinical_rules A5 recommendation).
    liver_enlarged_ml: float = 2500.0
    # Pancreas: normal adult 71-83 mL (meta-analysis, Expert Rev Gastroenterol Hepatol
    # 2018;12:757); RadGPT flags > 83 mL.
    pancreas_enlarged_ml: float = 83.0
    # Kidney (each): 207.6 mL = 415.2 / 2 total kidney volume of men (RadGPT, citing
    # PMC5837692; unverified, marked heuristic).
    kidney_enlarged_ml: float = 207.6
    # Lower limits ("small"): no consensus atrophy thresholds exist (clinical_rules A5),
    # so these are the lower ends of published normal ranges and the report says at most
    # "small", never "atrophic".
    # Liver: mean - 2 SD of 1205 +/- 258 mL (Feng et al., WJG 2017).
    liver_small_ml: float = 689.0
    # Spleen: mean - 2 SD of 236.89 +/- 77.58 mL (Linguraru et al., Acad Radiol 2013).
    spleen_small_ml: float = 81.7
    # Pancreas: mean - 2 SD of 77.9 +/- 21.7 mL (Abdom Radiol 2019;44:958).
    pancreas_small_ml: float = 34.5
    # Kidney (each): 5th percentile of women's kidney volume, 99 mL (SHIP cohort MRI,
    # J Clin Med 2024;13:769).
    kidney_small_ml: float = 99.0

    # --- attenuation of organs ------------------------------------------------
    # Unenhanced CT: liver < 40 HU = moderate-severe steatosis (Boyce et al., AJR 2010),
    # or liver minus spleen < -10 HU (Park et al., Radiology 2006).
    liver_steatosis_hu: float = 40.0
    liver_minus_spleen_hu: float = -10.0
    # Portal-venous CT: liver < 80 HU = "low attenuation, possible steatosis"
    # (Moeller ... Pickhardt, ARRS 2024 abstract 4710: sens/spec 85.6/89.6 %).
    venous_liver_low_hu: float = 80.0
    # Unenhanced CT: pancreas/spleen HU ratio < 0.7 = fatty pancreas
    # (Koc & Taydas, Turk J Gastroenterol 2020;31:640).
    pancreas_spleen_ratio: float = 0.7

    # --- pancreatic staging -----------------------------------------------------
    # Solid contact = tumour within this distance (mm) of the vessel wall or organ
    # surface, i.e. no fat plane between them.  Chosen so that a 3 mm fat gap reads
    # no contact while voxel staircase on 0.7-1 mm grids still reads contact
    # (staging/contact.py).
    contact_mm: float = 1.5
    # AJCC 8th T4 "involves CA/SMA/CHA": "encasement" (> 180 degrees, default, as
    # NCCN's encasement) or "any_contact".
    t4_rule: T4Rule = "encasement"

    def __post_init__(self) -> None:
        if self.t4_rule not in T4_RULES:
            raise ValueError(f"t4_rule must be one of {', '.join(T4_RULES)}; got {self.t4_rule!r}")
        if self.lesion_connectivity not in (6, 18, 26):
            raise ValueError(f"lesion_connectivity must be 6, 18 or 26; got {self.lesion_connectivity!r}")
        for name in ("confidence_low_mean", "confidence_low_share_below_0_5"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be a number from 0 to 1; got {value!r}")

    def as_dict(self) -> dict:
        return asdict(self)


DEFAULT_RULES = Rules()

SMALL_SOURCES = {
    "liver": "< 689 mL (mean - 2 SD of 1205 +/- 258 mL, Feng et al. WJG 2017); no consensus atrophy threshold",
    "spleen": "< 81.7 mL (mean - 2 SD of 236.9 +/- 77.6 mL, Linguraru et al. Acad Radiol 2013)",
    "pancreas": "< 34.5 mL (mean - 2 SD of 77.9 +/- 21.7 mL, Abdom Radiol 2019); no consensus atrophy threshold",
    "kidney_left": "< 99 mL (5th percentile, women, SHIP MRI cohort, J Clin Med 2024)",
    "kidney_right": "< 99 mL (5th percentile, women, SHIP MRI cohort, J Clin Med 2024)",
}

# Organs whose lumen holds gas and fluid: a mean HU over the mask describes the
# contents, not the wall, so reports give no attenuation for them.
HOLLOW_ORGANS = ("stomach", "duodenum", "colon", "intestine", "esophagus")

# Plausibility bounds, far outside any normal or pathological range: a complete organ
# outside them is almost certainly another structure under this name (a wrong label
# table, a mask saved under the wrong name), and the report says "check the masks".
# Volumes in mL; HU of solid organs on any phase (air -1000, fat -100, bone > 400).
PLAUSIBLE_VOLUME_ML = {
    "liver": (300.0, 6000.0),
    "spleen": (20.0, 4000.0),
    "pancreas": (5.0, 300.0),
    "kidney_left": (20.0, 1500.0),
    "kidney_right": (20.0, 1500.0),
    "gall_bladder": (0.5, 500.0),
    "adrenal_gland_left": (0.3, 40.0),
    "adrenal_gland_right": (0.3, 40.0),
}
SOLID_ORGANS = ("liver", "spleen", "pancreas", "kidney_left", "kidney_right")
PLAUSIBLE_SOLID_ORGAN_HU = (-150.0, 400.0)
# A lesion component whose mean attenuation is below this is gas (bowel gas, air outside the
# body), not a lesion: a stray model prediction or a brush stroke in the wrong place.  Fat-
# containing lesions (renal angiomyolipoma, teratoma) reach about -100 HU, so only gas is excluded.
PLAUSIBLE_LESION_MIN_HU = -500.0
# Structures whose left/right order in patient space is fixed (centres; situs inversus
# would be flagged too, rightly): (the one on the patient's right, the one on the left).
RIGHT_LEFT_PAIRS = (("liver", "spleen"), ("liver", "stomach"), ("gall_bladder", "stomach"),
                    ("kidney_right", "kidney_left"), ("adrenal_gland_right", "adrenal_gland_left"),
                    ("postcava", "aorta"))

ENLARGEMENT_SOURCES = {
    "spleen": "Linguraru et al., Acad Radiol 2013 (> 314.5 mL enlarged, > 430.8 mL massively enlarged)",
    "liver": "heuristic > 2500 mL (no guideline cut-off; normal 1205 +/- 258 mL, Feng et al. WJG 2017)",
    "pancreas": "> 83 mL (upper normal, meta-analysis Expert Rev Gastroenterol Hepatol 2018)",
    "kidney_left": "heuristic > 207.6 mL per kidney (RadGPT, citing PMC5837692)",
    "kidney_right": "heuristic > 207.6 mL per kidney (RadGPT, citing PMC5837692)",
}
