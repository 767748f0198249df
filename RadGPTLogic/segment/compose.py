"""Several models' label maps -> one set of structure masks, with provenance.

Precedence (documented in docs/CONTRACT.md, "Segmented case folders"):

1. **Models are listed in precedence order**, first = highest (``radgpt segment
   --model A --model B``: A before B).
2. **One structure, one model.**  When several models make the same structure,
   the mask of the earliest model is used; the others are recorded as
   ``overridden`` in its provenance.
3. **Structures that cannot share voxels** (two organs, an organ and a vessel ...)
   never do: a voxel claimed by two of them stays with the structure of the
   earlier model (within one model nnU-Net's labels are exclusive already).
   Structures that may share voxels by the AbdomenAtlas convention keep theirs:
   an organ with its parts (liver segments, pancreas head/neck/body/tail) and
   with its lesions.
4. **Organs hold their lesions** (AbdomenAtlas convention, which the engine
   expects): the voxels of each lesion mask are added to its organ's mask when
   that organ was segmented: liver and pancreas lesions to ``liver`` and
   ``pancreas``; each connected kidney lesion to the kidney it touches most
   (26-neighbourhood), else the nearer kidney centroid.  Recorded as
   ``includes_lesions``.

All arrays are in one frame and grid (the CT's canonical RAS grid).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .. import vocabulary as vocab


@dataclass
class ModelOutput:
    """One model's prediction, mapped: label value -> canonical name."""

    model_name: str
    labels: np.ndarray
    names: dict            # label value -> canonical structure name
    label_names: dict      # label value -> the model's own label name (dataset.json)
    probabilities: dict = field(default_factory=dict)  # label value -> float32 probability
    unions: dict = field(default_factory=dict)  # label value -> the values whose union is that structure
    #                                            (region-based models: a region holds the regions inside it)


@dataclass
class Composed:
    """The composed result: masks, provenance and tumor probabilities per structure."""

    masks: dict = field(default_factory=dict)          # canonical name -> bool array
    provenance: dict = field(default_factory=dict)     # canonical name -> dict (model, label, label_name, ...)
    probabilities: dict = field(default_factory=dict)  # lesion name -> float32 probability array


def may_share_voxels(a: str, b: str) -> bool:
    """True when structures ``a`` and ``b`` may overlap (organ with its parts or its lesions)."""
    return _contains(a, b) or _contains(b, a)


def _contains(organ: str, other: str) -> bool:
    if other in vocab.LESION_ORGAN_KIND:
        return organ in vocab.LESION_ORGAN_MASKS[vocab.LESION_ORGAN_KIND[other][0]]
    if other in vocab.LIVER_SEGMENTS:
        return organ == "liver"
    if other in vocab.PANCREAS_PARTS:
        return organ == "pancreas"
    return False


def compose(outputs: list) -> Composed:
    """Compose :class:`ModelOutput`\\ s given in precedence order (see the module doc)."""
    result = Composed()
    for rank, out in enumerate(outputs):
        for value, name in out.names.items():
            if not name:
                continue
            mask = np.isin(out.labels, out.unions.get(value, [value]))
            if name in result.masks:
                result.provenance[name].setdefault("overridden", []).append(
                    {"model": out.model_name, "label": int(value), "label_name": out.label_names.get(value, name)})
                continue
            if rank:  # voxels already held by an exclusive structure of an earlier model stay there
                for other, other_mask in result.masks.items():
                    if not may_share_voxels(name, other) and result.provenance[other]["_rank"] < rank:
                        mask &= ~other_mask
            result.masks[name] = mask
            result.provenance[name] = {"model": out.model_name, "label": int(value),
                                       "label_name": out.label_names.get(value, name), "_rank": rank}
            if value in out.probabilities and name in vocab.LESION_ORGAN_KIND:
                result.probabilities[name] = out.probabilities[value]
    _organs_hold_lesions(result)
    for info in result.provenance.values():
        info.pop("_rank", None)
    return result


def _organs_hold_lesions(result: Composed) -> None:
    from scipy import ndimage

    for lesion in [n for n in result.masks if n in vocab.LESION_ORGAN_KIND]:
        organs = [o for o in vocab.LESION_ORGAN_MASKS[vocab.LESION_ORGAN_KIND[lesion][0]] if o in result.masks]
        lesion_mask = result.masks[lesion]
        if not organs or not lesion_mask.any():
            continue
        if len(organs) == 1:
            _add(result, organs[0], lesion_mask, lesion)
            continue
        cube = np.ones((3, 3, 3), bool)
        components, n = ndimage.label(lesion_mask, structure=cube)
        centroids: dict = {}
        for k, box in enumerate(ndimage.find_objects(components), start=1):
            # work in the component's box grown by one voxel (a full-grid pass per component is slow)
            box = tuple(slice(max(b.start - 1, 0), b.stop + 1) for b in box)
            component = components[box] == k
            ring = ndimage.binary_dilation(component, structure=cube) & ~component
            touch = {o: int(np.count_nonzero(result.masks[o][box] & ring)) for o in organs}
            best = max(organs, key=lambda o: touch[o])
            if touch[best] == 0:
                for o in organs:
                    if o not in centroids:
                        centroids[o] = np.argwhere(result.masks[o]).mean(0) if result.masks[o].any() else None
                centre = np.argwhere(component).mean(0) + [b.start for b in box]
                known = [o for o in organs if centroids[o] is not None]
                if not known:
                    continue
                best = min(known, key=lambda o: float(np.linalg.norm(centroids[o] - centre)))
            _add(result, best, component, lesion, box)


def _add(result: Composed, organ: str, voxels: np.ndarray, lesion: str, box=None) -> None:
    """Add ``voxels`` (over ``box`` of the grid, or the whole grid) to the organ's mask."""
    if box is None:
        result.masks[organ] = result.masks[organ] | voxels
    else:
        result.masks[organ][box] |= voxels
    held = result.provenance[organ].setdefault("includes_lesions", [])
    if lesion not in held:
        held.append(lesion)
