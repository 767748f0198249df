"""Label values of a model's exported segmentation, and the structure each one is.

nnU-Net v2 names its classes in ``dataset.json`` ``"labels"`` (name -> value).  In a
*region-based* model some values are lists (a region is the union of those training
labels) and ``"regions_class_order"`` gives, region by region in ``labels`` order
(background left out), the value the predictor writes into the exported segmentation
where that region's probability exceeds 0.5; later regions overwrite earlier ones.

:func:`output_labels` gives value -> dataset label name of the exported segmentation,
:func:`output_regions` the exported values whose union is each label, and
:func:`map_labels` / :func:`label_table` map the names onto the RadGPT vocabulary
(:mod:`RadGPTLogic.vocabulary`): canonical names and their aliases (TotalSegmentator,
AMOS, AbdomenAtlas spellings), then a user mapping file for anything else.

Names the vocabulary knows but no report rule uses (bones, lungs, muscles ...:
:func:`RadGPTLogic.vocabulary.is_known_unused`) keep their dataset spelling; they are
written as masks like any other and the case loader lists them in ``case.ignored``.
A name that is neither is an error naming ``dataset.json`` and the label.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping

from .. import vocabulary as vocab
from ..errors import InputError
from ..io.label_tables import LabelTable
from .models import ModelFolder

_NOT_EXPORTED = ("background", "ignore")


def _label_items(dataset_json: Mapping, where=None) -> list:
    """(name, value or tuple of values) of the foreground labels, in ``labels`` order."""
    labels = dataset_json.get("labels")
    if not isinstance(labels, Mapping) or not labels:
        raise InputError(where, 'no "labels" (name -> value) in dataset.json')
    items: list = []
    for name, value in labels.items():
        if name in _NOT_EXPORTED:
            continue
        if isinstance(value, (list, tuple)):
            if not value or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
                raise InputError(where, f"label '{name}': a region must be a list of integer labels, not {value!r}")
            if set(value) == {0}:
                continue  # a background region
            items.append((name, tuple(int(v) for v in value)))
        elif isinstance(value, int) and not isinstance(value, bool):
            if value != 0:
                items.append((name, int(value)))
        else:
            raise InputError(where, f"label '{name}': value must be an integer or a list of integers, not {value!r}")
    return items


def is_region_based(dataset_json: Mapping) -> bool:
    """True when a label is a region of several labels (nnU-Net's own test: a list longer than one)."""
    labels = dataset_json.get("labels") or {}
    return any(isinstance(v, (list, tuple)) and len(v) > 1 for v in labels.values())


def _region_order(dataset_json: Mapping, items: list, where) -> list:
    order = dataset_json.get("regions_class_order")
    if not isinstance(order, (list, tuple)) or not all(isinstance(v, int) and not isinstance(v, bool)
                                                        for v in order):
        raise InputError(where, 'region-based labels need "regions_class_order" (a list of integers)')
    if len(order) != len(items):
        raise InputError(where, f'"regions_class_order" has {len(order)} entries for {len(items)} regions')
    if len(set(order)) != len(order) or 0 in order:
        raise InputError(where, '"regions_class_order" must hold distinct values other than 0')
    return [int(v) for v in order]


def output_labels(dataset_json: Mapping, where=None) -> dict[int, str]:
    """Label value in the predictor's exported segmentation -> ``dataset.json`` label name.

    Plain models: each label's own value.  Region-based models: region *i* (in
    ``labels`` order, background and ``ignore`` left out) is written as
    ``regions_class_order[i]``.  ``where`` names the file in errors.
    """
    items = _label_items(dataset_json, where)
    if not is_region_based(dataset_json):
        out: dict[int, str] = {}
        for name, value in items:
            value = value[0] if isinstance(value, tuple) else value
            if value in out:
                raise InputError(where, f"label value {value} is given twice ('{out[value]}' and '{name}')")
            out[value] = name
        return out
    order = _region_order(dataset_json, items, where)
    return {value: name for value, (name, _) in zip(order, items)}


def output_regions(dataset_json: Mapping, where=None) -> dict[str, list[int]]:
    """``dataset.json`` label name -> the exported values whose union is that structure.

    Plain models: ``[value]``.  Region-based models: the written values of every region
    whose training labels are a subset of this region's (itself included), so a nested
    scheme (kidney ⊃ lesion) gives the kidney its lesion's voxels back.  This is exact
    for nested regions; for regions that overlap without nesting the exported
    segmentation itself keeps only the last region painted.
    """
    items = _label_items(dataset_json, where)
    if not is_region_based(dataset_json):
        return {name: [value] if isinstance(value, int) else list(value) for name, value in items}
    order = _region_order(dataset_json, items, where)
    sets = [set(value) if isinstance(value, tuple) else {value} for _, value in items]
    out: dict[str, list[int]] = {}
    for i, (name, _) in enumerate(items):
        out[name] = sorted(order[j] for j in range(len(items)) if sets[j] <= sets[i])
    return out


# --------------------------------------------------------------------- user mapping

def _structure_name(target: str) -> str | None:
    """The RadGPT name for a mapping target: canonical, or a known-unused spelling kept as is."""
    canonical = vocab.canonical_name(target)
    if canonical is not None:
        return canonical
    if vocab.is_known_unused(target):
        return target
    return None


def load_user_map(path) -> dict:
    """Read a label mapping file: JSON ``{"dataset label name": "RadGPT structure name" or null}``.

    Targets are canonical names or aliases (:mod:`RadGPTLogic.vocabulary`) and are
    returned canonical; a target of ``null`` or ``""`` skips that label deliberately.

    Raises
    ------
    InputError
        Naming ``path``: missing, not JSON, not an object, or a target that is not a
        structure name RadGPT knows.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise InputError(path, "label mapping file not found")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(path, f"not a readable JSON label mapping ({exc})") from None
    if not isinstance(data, dict):
        raise InputError(path, 'a label mapping must be a JSON object {"dataset label name": "structure name"}')
    return _checked_map(data, path)


def _checked_map(data: Mapping, where) -> dict:
    out: dict = {}
    for key, target in data.items():
        if not isinstance(key, str) or not key.strip():
            raise InputError(where, f"label mapping key must be a label name, not {key!r}")
        if target is None or (isinstance(target, str) and not target.strip()):
            out[key.strip()] = None
            continue
        if not isinstance(target, str):
            raise InputError(where, f"'{key}': target must be a structure name or null, not {target!r}")
        name = _structure_name(target)
        if name is None:
            raise InputError(where, f"'{key}': '{target}' is not a structure name RadGPT knows "
                                    "(see docs/CONTRACT.md section 1)")
        out[key.strip()] = name
    return out


def _user_target(user_map: Mapping, label: str):
    """(found, target) for ``label`` in the user map: exact key first, then by normalised spelling."""
    if label in user_map:
        return True, user_map[label]
    key = vocab.normalise(label)
    for name, target in user_map.items():
        if vocab.normalise(name) == key:
            return True, target
    return False, None


def _label_structures(model: ModelFolder, user_map: Mapping | None) -> dict:
    """dataset label name -> RadGPT structure name (None: skipped by the user map)."""
    where = model.path / "dataset.json"
    checked = _checked_map(user_map, "label mapping") if user_map else {}
    out: dict = {}
    unknown = []
    for name, _ in _label_items(model.dataset_json, where):
        found, target = _user_target(checked, name)
        if found:
            out[name] = target
            continue
        structure = _structure_name(name)
        if structure is None:
            unknown.append(name)
        out[name] = structure
    if unknown:
        names = ", ".join(f"'{n}'" for n in unknown)
        raise InputError(where, f"label{'s' if len(unknown) > 1 else ''} {names} of model {model.name} "
                                f"{'are' if len(unknown) > 1 else 'is'} not a structure RadGPT knows; give a "
                                f'label mapping file (JSON {{"{unknown[0]}": "<RadGPT structure name>"}}, '
                                "or null to skip it)")
    return out


def map_labels(model: ModelFolder, user_map: Mapping | None = None) -> dict[int, str]:
    """Exported label value -> RadGPT structure name, for every label of ``model``.

    Names are canonical (:func:`RadGPTLogic.vocabulary.canonical_name`, so
    ``inferior_vena_cava`` -> ``postcava``), except names the vocabulary knows but no
    rule uses (bones, lungs ...), which keep their dataset spelling: they become masks
    that the case loader lists as ignored.  ``user_map`` (see :func:`load_user_map`)
    wins over the vocabulary; a label it maps to ``None``/``""`` is deliberately
    skipped (left out of the result).  Keys of ``user_map`` that name no label of this
    model are ignored, so one file can serve several models.  Background (0) and
    ``ignore`` are never mapped.  For region-based models the value is the one written
    for each region (see :func:`output_labels`); :func:`label_table` also gives the
    unions.

    Raises
    ------
    InputError
        Naming the model's ``dataset.json`` and every label that maps to nothing, with
        the hint to give a mapping file.
    """
    structures = _label_structures(model, user_map)
    values = output_labels(model.dataset_json, model.path / "dataset.json")
    return {value: structures[name] for value, name in values.items() if structures[name] is not None}


def label_table(model: ModelFolder, user_map: Mapping | None = None) -> LabelTable:
    """The exported segmentation's :class:`~RadGPTLogic.io.label_tables.LabelTable` in RadGPT names.

    Plain models: ``names`` is :func:`map_labels`.  Region-based models: ``names`` is
    empty and ``unions`` maps each structure to its exported values
    (:func:`output_regions`), so a voxel counts for every region that contains it.
    Labels mapping to the same structure are united.  The table is ``complete`` (a value
    it lacks is an error) unless the user map skips a label (its voxels are then
    ignored with a warning); its source is the
    ``dataset.json``, so it can go straight to
    :func:`RadGPTLogic.io.labelmaps.case_from_labelmap`.
    """
    where = model.path / "dataset.json"
    structures = _label_structures(model, user_map)
    complete = all(s is not None for s in structures.values())
    if not is_region_based(model.dataset_json):
        return LabelTable(map_labels(model, user_map), {}, source=str(where), complete=complete)
    unions: dict[str, list[int]] = {}
    for name, values in output_regions(model.dataset_json, where).items():
        structure = structures[name]
        if structure is None:
            continue
        unions[structure] = sorted(set(unions.get(structure, [])) | set(values))
    return LabelTable({}, unions, source=str(where), complete=complete)
