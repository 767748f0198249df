"""Findings: the single source of truth every report is rendered from.

The JSON form follows CONTRACT.md section 3 (``schema_version`` 1).  Required keys
come first in a fixed order; the engine adds more (HU spread, calipers, the rule
behind each verdict) after them.  Numbers are not rounded here: rounding is a
matter of presentation and happens in the report templates.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

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

    def to_dict(self) -> dict:
        return {
            "schema_version": SCHEMA_VERSION,
            "case_id": self.case_id,
            "phase": self.phase,
            "organs": {name: _ordered(entry, ORGAN_KEYS) for name, entry in self.organs.items()},
            "lesions": [_ordered(entry, LESION_KEYS) for entry in self.lesions],
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
