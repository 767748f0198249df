"""Engine: Case -> Findings, with a per-structure cache.

Each expensive step is cached under the content hashes (:meth:`Crop.digest`) of
exactly the masks it reads.  After an edit of one mask (Slicer's Segment Editor
calls :meth:`Engine.update_structure`), :meth:`Engine.compute` recomputes only the
steps that read that mask; everything else comes from the cache.

Cached steps:

* ``organ``: volume, completeness and HU of one organ; reads the organ mask and
  the lesion masks of that organ (they are left out of the HU ROI).
* ``lesions``: components, WHO diameters, volume and HU of one lesion mask; reads
  that mask (and, for a generic ``*_lesion`` mask, the typed masks it is reduced by).

* ``confidence``: mean probability and share below 0.5 of one lesion component
  (:mod:`RadGPTLogic.measure.confidence`); reads the component and the model's
  probability crop of its mask (both content hashes are the key).

* ``attach``: an organ mask united with the lesion components that belong to it
  (:mod:`RadGPTLogic.measure.attachment`), so that lesions drawn inside the organ
  mask (AbdomenAtlas) or carved out of it (Slicer's "overwrite all") give the same
  findings; reads the organ mask and its lesion masks.

Every later step reads the organs through this *view* of the case (organ masks
with their lesions), never the raw masks.  Cheap steps (steatosis verdicts, kidney
side, attenuation class, ordering and ids) run on every call.  The cache keeps only
the entries the latest :meth:`Engine.compute` used, so a long editing session does
not grow it without bound.
"""

from __future__ import annotations

import dataclasses
import platform
from collections import OrderedDict
from typing import Any

import numpy as np

from . import __version__
from . import vocabulary as vocab
from .case import Case, Crop, union_crops
from .errors import InputError
from .findings import LESION_ORGAN_ORDER, Findings
from .measure.attachment import organ_with_lesions
from .measure.confidence import lesion_confidence, probability_numbers, review_ranks
from .measure.lesions import (
    attenuation_class,
    fraction_inside,
    kidney_side,
    measure_component,
    split_components,
)
from .measure.organs import (
    attenuation_verdicts,
    centroid_ras,
    enlargement,
    enlargement_rule,
    organ_hu,
    organ_volume,
    small_limit_ml,
    small_rule,
    smallness,
)
from .measure.plausibility import mask_checks
from .rules import DEFAULT_RULES, HOLLOW_ORGANS, PHASES, PLAUSIBLE_LESION_MIN_HU, Rules

PANCREAS_PART_MASKS = vocab.PANCREAS_PARTS
# Masks the computed pancreas parts depend on (pancreas, given parts, landmarks).
PANCREAS_PART_INPUTS = ("pancreas",) + PANCREAS_PART_MASKS + (
    "superior_mesenteric_vein", "portal_vein", "veins", "portal_vein_and_splenic_vein",
    "superior_mesenteric_artery", "aorta",
)


def _organ_lesion_masks(organ: str) -> tuple:
    """Lesion mask names whose voxels belong to ``organ`` (an organ mask name)."""
    group = {"liver": "liver", "pancreas": "pancreas", "kidney_left": "kidney", "kidney_right": "kidney"}.get(organ)
    return tuple(m for m, (o, _) in vocab.LESION_ORGAN_KIND.items() if o == group)


class Engine:
    """Computes :class:`Findings` for one :class:`Case`; cheap to call again after an edit.

    Parameters
    ----------
    case : Case
    phase : str
        One of :data:`RadGPTLogic.rules.PHASES`.
    rules : Rules
        Thresholds and conventions (defaults cite their sources).
    """

    def __init__(self, case: Case, phase: str = "unknown", rules: Rules = DEFAULT_RULES):
        self.set_phase(phase)
        self.case = case
        self.rules = rules
        self._view = case  # the case with organ masks united with their lesions (set by compute)
        self._cache: dict = {}
        self._used: set = set()
        self._digests: dict = {}  # name -> (crop object, digest)
        self._probability_digests: dict = {}  # lesion mask -> (probability crop object, digest)
        self._derived: dict = {}
        self.stats = {"hits": 0, "misses": 0}

    # ------------------------------------------------------------------ cache
    def _digest(self, name: str) -> str | None:
        crop = self._view.crop(name)
        if crop is None:
            return None
        held = self._digests.get(name)
        if held is None or held[0] is not crop:
            held = (crop, crop.digest())
            self._digests[name] = held
        return held[1]

    def _cached(self, key: tuple, fn):
        self._used.add(key)
        if key in self._cache:
            self.stats["hits"] += 1
            return self._cache[key]
        self.stats["misses"] += 1
        value = self._cache[key] = fn()
        return value

    def update_structure(self, name: str, mask) -> None:
        """Replace one structure's mask (a :class:`Crop`, or a full canonical-grid array).

        The next :meth:`compute` recomputes only what depends on it.  Provenance then
        records the structure as edited in memory (its file hash no longer applies).
        """
        canonical = vocab.canonical_name(name) or name
        crop = mask if isinstance(mask, Crop) else Crop.from_full(np.asarray(mask))
        self.case.set_structure(canonical, crop)
        self.case.sources[canonical] = [{"name": name, "edited": True}]

    def remove_structure(self, name: str) -> None:
        canonical = vocab.canonical_name(name) or name
        self.case.structures.pop(canonical, None)
        self.case.sources.pop(canonical, None)

    def set_phase(self, phase: str) -> None:
        """Change the contrast phase; cached measurements stay valid (only verdicts depend on it)."""
        if phase not in PHASES:
            raise ValueError(f"phase must be one of {', '.join(PHASES)}; got {phase!r}")
        self.phase = phase

    # ---------------------------------------------------------------- compute
    def compute(self) -> Findings:
        """Findings of the current masks (only steps whose inputs changed are recomputed)."""
        self._used = set()
        self._view = self.case
        try:
            return self._compute()
        finally:
            # Keep only what the current masks can hit: a long Slicer session stays bounded.
            self._cache = {k: v for k, v in self._cache.items() if k in self._used}
            self._digests = {n: d for n, d in self._digests.items() if n in self._view.structures}
            self._probability_digests = {n: d for n, d in self._probability_digests.items()
                                         if n in self.case.probabilities}

    def _compute(self) -> Findings:
        rules = self.rules
        findings = Findings(case_id=self.case.case_id, phase=self.phase)
        findings.warnings = list(self.case.warnings)
        effective = self._effective_lesion_masks(findings)
        findings.lesions_assessed = {
            organ: any(m in effective for m in vocab.LESION_ORGAN_KIND if vocab.LESION_ORGAN_KIND[m][0] == organ)
            for organ in LESION_ORGAN_ORDER
        }
        self._view = case = self._organ_view(effective)

        # Organs ---------------------------------------------------------------
        for name in vocab.ORGANS:
            if not case.has(name):
                continue
            lesion_names = [m for m in _organ_lesion_masks(name) if m in effective]
            key = ("organ", name, self._digest(name), tuple(effective[m][1] for m in lesion_names))
            findings.organs[name] = dict(
                self._cached(key, lambda: self._organ(name, [effective[m][0] for m in lesion_names])))
            entry = findings.organs[name]
            if entry.get("empty"):
                findings.not_assessable.append({"what": f"{name}", "why": "organ mask is empty"})
            entry["enlarged"] = enlargement(name, entry["volume_ml"], rules)
            entry["enlarged_rule"] = enlargement_rule(name)
            if small_rule(name):
                entry["small"] = smallness(name, entry["volume_ml"], rules)
                entry["small_below_ml"] = small_limit_ml(name, rules)
                entry["small_rule"] = small_rule(name)
            if name in HOLLOW_ORGANS and entry.get("mean_hu") is not None:
                # Gas and fluid in the lumen: the number describes contents, not the organ.
                entry["hu_meaningful"] = False
            if not entry["complete"]:
                findings.not_assessable.append(
                    {"what": f"{name} volume", "why": "organ touches the edge of the scan (incomplete coverage)"}
                )
        attenuation_verdicts(findings.organs, self.phase, rules)
        findings.mask_checks = mask_checks(case, findings.organs, centroid=lambda n: self._cached(
            ("centroid", n, self._digest(n)), lambda: centroid_ras(case.structures[n], case.affine)))
        findings.warnings += [f"{c['structure']}: {c['problem']}; check the masks" for c in findings.mask_checks]

        # Landmarks shared by all lesions (computed once per case) ---------------
        ctx = self._anatomy_context(effective, findings)

        # Lesions --------------------------------------------------------------
        per_organ: OrderedDict[str, list[dict]] = OrderedDict((o, []) for o in LESION_ORGAN_ORDER)
        for mask_name, (crop, digest) in effective.items():
            organ, kind = vocab.LESION_ORGAN_KIND[mask_name]
            kept, n_small, small_ml = self._cached(("lesions", mask_name, digest, rules.lesion_connectivity),
                                                   lambda: self._lesions(crop))
            if n_small:
                findings.sub_threshold.append(
                    {"mask": mask_name, "organ": organ, "count": n_small, "total_volume_ml": small_ml,
                     "floor_mm3": rules.min_lesion_volume_mm3}
                )
            for rank, (comp, measured) in enumerate(kept, start=1):
                entry = {"id": f"{mask_name}_{rank}", "organ": organ, "side": None, "kind": kind}
                entry.update(measured)
                entry["mask"] = mask_name
                entry.update(self._lesion_context(organ, comp, entry, findings, ctx))
                entry["confidence"] = self._confidence(mask_name, comp)
                per_organ[organ].append(entry)
        for entries in per_organ.values():
            # Largest first; ties in mask order, then by rank as a number (2 before 10).
            entries.sort(key=lambda e: (-e["voxel_count"], vocab.LESIONS.index(e["mask"]),
                                        int(e["id"].rsplit("_", 1)[1])))
            findings.lesions.extend(entries)
        for entry in findings.lesions:  # gas is never a lesion (a stray prediction or stroke): say so
            hu = entry.get("mean_hu")
            if hu is not None and hu < PLAUSIBLE_LESION_MIN_HU:
                check = {"structure": entry["id"], "check": "attenuation",
                         "problem": f"mean attenuation {hu:.0f} HU is that of gas, not of a lesion"}
                findings.mask_checks.append(check)
                findings.warnings.append(f"{entry['id']}: {check['problem']}; check the masks")
        for entry, rank in zip(findings.lesions, review_ranks(findings.lesions)):
            entry["review_rank"] = rank

        self._derived = {}
        parts = ctx.get("parts")
        if parts is not None and parts.method not in (None, "masks"):
            self._derived = {f"pancreas_{p}": c for p, c in parts.parts.items()}
        findings.provenance = self._provenance()
        return findings

    # ------------------------------------------------------------------ steps
    def _effective_lesion_masks(self, findings: Findings) -> dict:
        """Lesion masks present, a generic ``*_lesion`` reduced by the typed masks of its organ.

        Returns name -> (crop, digest of what it was computed from).
        """
        out: dict[str, tuple[Crop, str]] = {}
        for name in vocab.LESIONS:
            crop, digest = self.case.crop(name), self._digest(name)
            if crop is not None and digest is not None:  # the case has this mask
                out[name] = (crop, digest)
        for organ, generic in vocab.GENERIC_LESION.items():
            if generic not in out or out[generic][0].is_empty:
                continue
            typed = [m for m in out
                     if m != generic and vocab.LESION_ORGAN_KIND[m][0] == organ and not out[m][0].is_empty]
            if not typed:
                continue
            crop = out[generic][0]
            overlap = np.zeros(crop.shape, bool)
            for m in typed:
                overlap |= out[m][0].in_box(crop.offset, crop.shape)
            overlap &= crop.mask
            if overlap.any():
                findings.warnings.append(
                    f"{generic}: {int(overlap.sum())} voxels also in {', '.join(typed)}; "
                    "they are reported under the typed mask only"
                )
                reduced = Crop.from_full(crop.mask & ~overlap)
                if not reduced.is_empty:
                    reduced = Crop(reduced.mask, tuple(a + b for a, b in zip(reduced.offset, crop.offset)))
                digest = "|".join([out[generic][1]] + [out[m][1] for m in typed])
                out[generic] = (reduced, digest)
        return out

    def _organ_view(self, effective: dict) -> Case:
        """The case with each organ mask united with the lesion components that belong to it.

        Raises :class:`InputError` naming the lesion mask when a lesion mask is larger
        than its organ (a mask saved under the wrong name).
        """
        case, rules = self.case, self.rules
        replaced = {}
        for organ, organ_masks in vocab.LESION_ORGAN_MASKS.items():
            lesion_names = [m for m in effective if vocab.LESION_ORGAN_KIND[m][0] == organ]
            if not lesion_names:
                continue
            lesion_crops = [effective[m][0] for m in lesion_names]
            for name in organ_masks:
                crop = case.crop(name)
                if crop is None or crop.is_empty:
                    continue
                key = ("attach", name, self._digest(name), tuple(effective[m][1] for m in lesion_names),
                       rules.lesion_contact_min, rules.lesion_connectivity)
                replaced[name] = self._cached(key, lambda: organ_with_lesions(
                    crop, lesion_crops, case.shape, rules.lesion_contact_min, rules.lesion_connectivity))
            organ_crops = [replaced.get(n) or case.crop(n) for n in organ_masks]
            organ_voxels = sum(c.count for c in organ_crops if c is not None)
            if organ_voxels:
                for m in lesion_names:
                    if effective[m][0].count > organ_voxels:
                        where = next((s.get("path") or s.get("name") for s in case.sources.get(m, [])), m)
                        raise InputError(where, f"the {m} mask ({effective[m][0].count} voxels) is larger than "
                                                f"its organ mask ({organ_voxels} voxels): check the masks")
        if not replaced:
            return case
        return dataclasses.replace(case, structures={**case.structures, **replaced})

    def _organ(self, name: str, lesion_crops: list) -> dict:
        case = self._view
        crop = case.structures[name]  # only organs the case has are measured
        if crop.is_empty:
            # An erased or freshly added segment: absent, not a normal-sized organ.
            return {"volume_ml": None, "mean_hu": None, "complete": False, "sd_hu": None,
                    "voxel_count": 0, "hu_roi": None, "empty": True}
        volume, complete, n = organ_volume(crop, case.shape, case.voxel_volume_mm3)
        exclude = None
        if lesion_crops:
            exclude = union_crops(lesion_crops, crop)
        stats = organ_hu(case, crop, exclude)
        return {
            "volume_ml": volume,
            "mean_hu": stats.mean if stats else None,
            "complete": complete,
            "sd_hu": stats.sd if stats else None,
            "voxel_count": n,
            "hu_roi": stats.roi if stats else None,
        }

    def _lesions(self, crop: Crop):
        kept, n_small, small_ml = split_components(
            crop, self.case.voxel_volume_mm3, self.rules.min_lesion_volume_mm3, self.rules.lesion_connectivity
        )
        return [(comp, measure_component(self.case, comp, self.rules)) for comp in kept], n_small, small_ml

    def _lesion_context(self, organ: str, comp: Crop, entry: dict, findings: Findings, ctx: dict) -> dict:
        """Side, location, staging, share inside the organ and attenuation class.

        These depend on other masks than the lesion's own, so they are assembled on
        every call from cached pieces (vessel models, contact angles, parts).
        """
        case = self._view
        out: dict[str, Any] = {"location": {}}
        organ_masks = [case.crop(m) for m in vocab.LESION_ORGAN_MASKS[organ]]
        out["in_organ_fraction"] = fraction_inside(comp, organ_masks)
        # Lesions that belong to the organ lie wholly in the view's organ; the rest is outside it.
        out["outside_organ"] = out["in_organ_fraction"] is not None and out["in_organ_fraction"] < 0.5
        if out["outside_organ"]:
            findings.warnings.append(
                f"{entry['id']}: lies outside the {organ} mask ({100 * out['in_organ_fraction']:.0f}% inside); "
                "check the masks (is this file the right structure?)")
        reference: str | None = organ
        if organ == "kidney":
            side, how = kidney_side(case, comp)
            out["side"] = side
            out["side_rule"] = how
            if side is None:
                findings.not_assessable.append({"what": f"{entry['id']} side", "why": how})
            reference = f"kidney_{side}" if side else None
            out.update(self._kidney_location(comp, side, entry, findings))
        elif organ == "liver":
            out.update(self._liver_location(comp, entry, findings, ctx))
        organ_entry = findings.organs.get(reference) if reference else None
        organ_hu_value = organ_entry.get("mean_hu") if organ_entry else None
        out["attenuation"] = attenuation_class(entry.get("mean_hu"), organ_hu_value, self.rules.attenuation_iso_band_hu)
        out["attenuation_reference"] = reference if organ_hu_value is not None else None
        out.update({"vessel_contact_deg": None, "t_stage": None, "resectability": None})
        if organ == "pancreas" and out["outside_organ"]:
            findings.not_assessable.append({"what": f"{entry['id']} staging",
                                            "why": "lesion outside the pancreas mask (check the masks)"})
        elif organ == "pancreas":
            out.update(self._pancreas_location_and_stage(comp, entry, findings, ctx, out["location"]))
        return out

    def _confidence(self, mask_name: str, comp: Crop) -> dict | None:
        """The ``confidence`` of one lesion component, or None when no model's
        probabilities come with its mask (hand-made masks, imports, Slicer nodes)."""
        case = self.case
        probability = case.probabilities.get(mask_name)
        structures = (case.segmentation or {}).get("structures") or {}
        record = next((e for n, e in structures.items() if (vocab.canonical_name(n) or n) == mask_name), None)
        if probability is None or not isinstance(record, dict):
            return None
        held = self._probability_digests.get(mask_name)
        if held is None or held[0] is not probability:
            held = self._probability_digests[mask_name] = (probability, probability.digest())
        numbers = self._cached(("confidence", comp.digest(), held[1]),
                               lambda: probability_numbers(comp, probability))
        sources = [s for s in case.sources.get(mask_name, []) if isinstance(s, dict)]
        now = {s["sha256"] for s in sources if s.get("sha256")}
        recorded = record.get("sha256")
        edited = any(s.get("edited") for s in sources) or (bool(recorded) and bool(now) and recorded not in now)
        return lesion_confidence(numbers, self.rules, record.get("model") or "segmentation model", edited)

    # -------------------------------------------------------------- anatomy
    def _anatomy_context(self, effective: dict, findings: Findings) -> dict:
        """Per-case landmarks: vessels (+ models near solid pancreatic lesions), pancreas parts."""
        from .staging.pancreatic import SOLID_KINDS

        case = self._view
        ctx: dict[str, Any] = {"vessels": None, "models": None, "parts": None, "bifurcation_z": None}
        organs_with_lesions = {vocab.LESION_ORGAN_KIND[m][0] for m, (c, _) in effective.items() if not c.is_empty}
        solid = [m for m, (c, _) in effective.items()
                 if vocab.LESION_ORGAN_KIND[m][0] == "pancreas" and vocab.LESION_ORGAN_KIND[m][1] in SOLID_KINDS
                 and not c.is_empty]
        needs_vessels = bool(solid) or ("liver" in organs_with_lesions and case.has("liver_segment_4"))
        if needs_vessels:
            from .staging.vessels import SOURCE_MASKS, resolve_vessels

            vkey = ("vessels",) + tuple(self._digest(n) for n in SOURCE_MASKS)
            ctx["vessels"] = self._cached(vkey, lambda: resolve_vessels(case))
            findings.anatomy["vessels"] = {
                k: (v["source"] if v["crop"] is not None else None) for k, v in ctx["vessels"].items()
            }
            if solid:
                from .staging.pancreatic import prepare_vessel_models

                near_crops = [effective[m][0] for m in solid]
                near = union_crops(near_crops) if any(not c.is_empty for c in near_crops) else None
                mkey = ("models", vkey, tuple(effective[m][1] for m in solid))
                ctx["models"] = self._cached(mkey, lambda: prepare_vessel_models(case, ctx["vessels"], near))
                ctx["models_key"] = mkey
            if "liver" in organs_with_lesions:
                from .anatomy.liver import portal_bifurcation_z

                pv = ctx["vessels"]["PV"]["crop"]
                ctx["bifurcation_z"] = self._cached(("bifurcation", vkey),
                                                    lambda: portal_bifurcation_z(pv, case.affine))
        if case.has("pancreas") and not case.structures["pancreas"].is_empty:
            from .anatomy.pancreas import pancreas_parts

            pkey = ("pancreas_parts",) + tuple(self._digest(n) for n in PANCREAS_PART_INPUTS)
            parts = ctx["parts"] = self._cached(pkey, lambda: pancreas_parts(case))
            findings.anatomy["pancreas_parts"] = {
                "method": parts.method,
                "reason": parts.reason,
                "landmarks": parts.landmarks,
                "volumes_ml": {p: c.count * case.voxel_volume_mm3 / 1000.0 for p, c in parts.parts.items()},
            }
        return ctx

    def derived_masks(self) -> dict:
        """Masks the engine computed (pancreas parts when not given): name -> Crop.

        Valid after :meth:`compute`; written by ``radgpt report`` under ``derived/``.
        """
        return dict(self._derived)

    def _liver_location(self, comp: Crop, entry: dict, findings: Findings, ctx: dict) -> dict:
        from .anatomy.liver import couinaud_location

        loc = couinaud_location(self._view, comp, ctx.get("bifurcation_z"))
        if loc is None:
            findings.not_assessable.append(
                {"what": f"{entry['id']} Couinaud segment", "why": "segment not assessable (no segment masks)"}
            )
            return {"location_note": "segment not assessable (no segment masks)"}
        out = {"location": {"couinaud": loc["couinaud"]}, "couinaud_shares": loc["couinaud_shares"],
               "couinaud_by": loc["couinaud_by"]}
        if ctx.get("bifurcation_z") is not None:
            out["s4_split_z_ras_mm"] = round(float(ctx["bifurcation_z"]), 2)
        return out

    def _kidney_location(self, comp: Crop, side: str | None, entry: dict, findings: Findings) -> dict:
        from .anatomy.kidney import exophytic_fraction, kidney_parenchyma, kidney_pole

        if side is None:
            return {"location_note": "kidney pole not assessable (side unknown)"}
        kidney_lesions = [m for m, (o, _) in vocab.LESION_ORGAN_KIND.items() if o == "kidney"]
        parenchyma = kidney_parenchyma(self._view, side, kidney_lesions)
        kidney_entry = findings.organs.get(f"kidney_{side}", {})
        pole = kidney_pole(self._view, comp, parenchyma, bool(kidney_entry.get("complete")))
        out = {"kidney_pole_rule": pole["kidney_pole_rule"],
               "exophytic_fraction": exophytic_fraction(comp, parenchyma, self.case.affine)}
        if pole["kidney_pole"] is None:
            findings.not_assessable.append({"what": f"{entry['id']} kidney pole", "why": pole["kidney_pole_rule"]})
        else:
            out["location"] = {"kidney_pole": pole["kidney_pole"]}
        return out

    def _pancreas_location_and_stage(self, comp: Crop, entry: dict, findings: Findings, ctx: dict,
                                     location: dict) -> dict:
        from .anatomy.pancreas import lesion_part
        from .staging.pancreatic import SOLID_KINDS, stage_lesion, vessel_contacts

        out: dict[str, Any] = {}
        parts = ctx.get("parts")
        part = None
        placed = lesion_part(parts, comp) if parts is not None and parts.method is not None else None
        if placed is None:
            why = parts.reason if parts is not None and parts.reason else "not assessable (no pancreas parts)"
            out["location_note"] = f"pancreas part {why}"
            findings.not_assessable.append({"what": f"{entry['id']} pancreas part", "why": why})
        else:
            part = placed["pancreas_part"]
            out["location"] = {"pancreas_part": part}
            out["pancreas_parts"] = placed.get("pancreas_parts")
            out["pancreas_part_shares"] = placed.get("shares")
            if placed.get("by"):
                out["pancreas_part_by"] = placed["by"]
        if entry["kind"] not in SOLID_KINDS or ctx.get("models") is None:
            return out
        ckey = ("contact", comp.digest(), ctx["models_key"], self.rules.contact_mm)
        contact = self._cached(ckey, lambda: vessel_contacts(self._view, comp, ctx["models"], self.rules))
        out.update(stage_lesion(self._view, comp, entry["kind"], entry["longest_diameter_mm"], part,
                                dict(contact), self.rules))
        detail = out.get("resectability_detail") or {}
        if out.get("resectability") is None and detail.get("reason"):
            findings.not_assessable.append({"what": f"{entry['id']} resectability", "why": detail["reason"]})
        return out

    def _provenance(self) -> dict:
        case = self.case
        return {
            "software": "radgpt-slicer",
            "version": __version__,
            "python": platform.python_version(),
            "numpy": np.__version__,
            "phase": self.phase,
            "inputs": {name: entries for name, entries in case.sources.items()},
            "ignored_structures": sorted(case.ignored),
            "grid": {
                "shape_canonical_ras": list(case.shape),
                "spacing_mm": [float(x) for x in case.spacing],
                "affine_canonical_ras": np.round(case.affine, 6).tolist(),
            },
            "rules": self.rules.as_dict(),
        }


def compute_findings(case: Case, phase: str = "unknown", rules: Rules = DEFAULT_RULES) -> Findings:
    """One-shot convenience: ``Engine(case, phase, rules).compute()``."""
    return Engine(case, phase, rules).compute()
