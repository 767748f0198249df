"""Findings: the single source of truth every report is rendered from.

The JSON form is described in docs/CONTRACT.md and checked by the JSON Schema
shipped as ``RadGPTLogic/schema/findings.schema.json`` (``schema_version`` 1).
Required keys come first in a fixed order; the engine adds more (HU spread,
calipers, the rule behind each verdict) after them.  Numbers are not rounded here:
rounding is a matter of presentation and happens in the report templates.  (The
exception: a lesion's ``confidence`` numbers come rounded to 3 decimals, below the
1/255 resolution of the stored probabilities, so that ``low`` can be checked from
the file alone; see :mod:`RadGPTLogic.measure.confidence`.)

Readers of findings.json (reports, fact checker, DICOM export, triplets, the Slicer
view) type what they read with the ``TypedDict``s below; enumerated values are
``Literal`` types.  Units: mm, mL, HU, degrees; ``*_ras_mm`` are RAS millimetres.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Dict, List, Literal, Optional, TypedDict, cast

LesionOrgan = Literal["liver", "pancreas", "kidney"]
LesionKind = Literal["lesion", "tumor", "cyst", "pdac", "pnet"]
Side = Literal["left", "right"]
Attenuation = Literal["hypo", "iso", "hyper"]
Enlargement = Literal["no", "enlarged", "massively_enlarged"]
Resectability = Literal["resectable", "borderline", "locally_advanced"]
PancreasPart = Literal["head", "neck", "body", "tail"]
KidneyPole = Literal["upper", "interpolar", "lower"]
StagingVessel = Literal["SMA", "CA", "CHA", "SMV", "PV", "aorta", "IVC"]


class OrganEntry(TypedDict, total=False):
    """``findings["organs"][name]``: volume (mL; null when cut by the scan edge), HU, verdicts."""

    volume_ml: Optional[float]
    mean_hu: Optional[float]
    sd_hu: Optional[float]
    complete: bool
    enlarged: Optional[Enlargement]
    enlarged_rule: Optional[str]
    small: Optional[bool]
    small_below_ml: float
    small_rule: str
    steatosis: Optional[bool]
    possible_steatosis: bool
    steatosis_rule: str
    liver_minus_spleen_hu: Optional[float]
    pancreas_to_spleen_ratio: float
    hu_meaningful: bool
    hu_roi: Optional[str]
    voxel_count: int
    empty: bool


class Location(TypedDict, total=False):
    couinaud: List[str]
    pancreas_part: PancreasPart
    kidney_pole: KidneyPole


class Confidence(TypedDict):
    """``findings["lesions"][i]["confidence"]``: how sure the segmentation model was of the lesion.

    Over the component's voxels (canonical frame; voxels outside the stored probability
    crop count as 0): ``mean_probability`` (0-1) and ``share_below_0_5`` (0-1, voxels the
    model leaned against), both to 3 decimals; ``low`` by the ``confidence_low_*`` rules;
    ``model`` that wrote the mask; ``mask_edited`` when the mask differs from the model's
    (see docs/CONTRACT.md, "Confidence").
    """

    mean_probability: float
    share_below_0_5: float
    low: bool
    model: str
    mask_edited: bool


class LesionEntry(TypedDict, total=False):
    """``findings["lesions"][i]``: one connected lesion component (see docs/CONTRACT.md)."""

    id: str
    organ: LesionOrgan
    side: Optional[Side]
    kind: LesionKind
    mask: str
    longest_diameter_mm: float
    perpendicular_diameter_mm: float
    volume_ml: float
    mean_hu: Optional[float]
    sd_hu: Optional[float]
    attenuation: Optional[Attenuation]
    attenuation_reference: Optional[str]
    slice_index: int
    canonical_slice: int
    voxel_count: int
    calipers_ras_mm: Dict[str, List[List[float]]]
    location: Location
    location_note: str
    in_organ_fraction: Optional[float]
    outside_organ: bool
    couinaud_shares: Dict[str, float]
    couinaud_by: str
    pancreas_parts: List[str]
    pancreas_part_shares: Dict[str, float]
    exophytic_fraction: Optional[float]
    vessel_contact_deg: Optional[Dict[str, Optional[float]]]
    organ_contact: Dict[str, Optional[bool]]
    t_stage: Optional[str]
    t_stage_basis: str
    t_stage_rule: str
    t_stage_caveat: Optional[str]
    resectability: Optional[Resectability]
    resectability_detail: dict
    confidence: Optional[Confidence]
    review_rank: int


class SubThreshold(TypedDict):
    mask: str
    organ: LesionOrgan
    count: int
    total_volume_ml: float
    floor_mm3: float


class NotAssessable(TypedDict):
    what: str
    why: str


class MaskCheck(TypedDict):
    structure: str
    check: Literal["volume", "attenuation", "side"]
    problem: str


class FindingsDict(TypedDict, total=False):
    """The whole findings.json (:meth:`Findings.to_dict`)."""

    schema_version: int
    case_id: str
    phase: str
    organs: Dict[str, OrganEntry]
    lesions: List[LesionEntry]
    lesions_assessed: Dict[str, bool]
    mask_checks: List[MaskCheck]
    sub_threshold_lesions: List[SubThreshold]
    not_assessable: List[NotAssessable]
    warnings: List[str]
    anatomy: dict
    provenance: dict


def findings_schema() -> dict:
    """The JSON Schema of findings.json (shipped with the package)."""
    import importlib.resources

    text = importlib.resources.files("RadGPTLogic").joinpath("schema/findings.schema.json").read_text("utf-8")
    return json.loads(text)

SCHEMA_VERSION = 1

ORGAN_KEYS = ("volume_ml", "mean_hu", "complete", "enlarged", "steatosis")
LESION_KEYS = (
    "id", "organ", "side", "kind", "longest_diameter_mm", "perpendicular_diameter_mm",
    "volume_ml", "mean_hu", "attenuation", "slice_index", "location", "vessel_contact_deg",
    "t_stage", "resectability",
)
# Order of organs in findings and reports (RadReport-like: liver first).
LESION_ORGAN_ORDER = ("liver", "pancreas", "kidney")


def _ordered(entry: dict, keys: tuple) -> dict:
    """Required keys first (missing ones as null), then the rest in insertion order."""
    out = {k: entry.get(k) for k in keys}
    out.update((k, v) for k, v in entry.items() if k not in out)
    return out


@dataclass
class Findings:
    """Everything the engine concluded about one case.

    ``organs`` maps organ name -> dict; ``lesions`` is a list of dicts (largest
    first within each organ); ``sub_threshold`` lists per lesion mask the
    components below the size floor; ``not_assessable`` lists what could not be
    judged and why; ``anatomy`` holds per-case landmarks (vessel sources, pancreas
    parts); ``provenance`` records software, inputs and rules.
    """

    case_id: str
    phase: str
    organs: dict = field(default_factory=dict)
    lesions: list = field(default_factory=list)
    sub_threshold: list = field(default_factory=list)
    not_assessable: list = field(default_factory=list)
    warnings: list = field(default_factory=list)
    anatomy: dict = field(default_factory=dict)
    provenance: dict = field(default_factory=dict)
    lesions_assessed: dict = field(default_factory=dict)
    mask_checks: list = field(default_factory=list)

    def to_dict(self) -> FindingsDict:
        return {
            "schema_version": SCHEMA_VERSION,
            "case_id": self.case_id,
            "phase": self.phase,
            # The engine's entries are plain dicts; here they become the typed entries readers see.
            "organs": {name: cast(OrganEntry, _ordered(entry, ORGAN_KEYS)) for name, entry in self.organs.items()},
            "lesions": [cast(LesionEntry, _ordered(entry, LESION_KEYS)) for entry in self.lesions],
            "lesions_assessed": self.lesions_assessed,
            "mask_checks": self.mask_checks,
            "sub_threshold_lesions": self.sub_threshold,
            "not_assessable": self.not_assessable,
            "warnings": self.warnings,
            "anatomy": self.anatomy,
            "provenance": self.provenance,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n"

    @classmethod
    def from_dict(cls, data: dict) -> "Findings":
        if data.get("schema_version") != SCHEMA_VERSION:
            raise ValueError(f"unsupported findings schema_version {data.get('schema_version')!r}")
        return cls(
            case_id=data["case_id"],
            phase=data["phase"],
            organs=data.get("organs", {}),
            lesions=data.get("lesions", []),
            sub_threshold=data.get("sub_threshold_lesions", []),
            not_assessable=data.get("not_assessable", []),
            warnings=data.get("warnings", []),
            anatomy=data.get("anatomy", {}),
            provenance=data.get("provenance", {}),
            lesions_assessed=data.get("lesions_assessed", {}),
            mask_checks=data.get("mask_checks", []),
        )
