"""Pancreas head / neck / body / tail, and the part that holds a lesion.

Definitions (AJCC 8th; clinical rules A4):

* **head**: pancreas to the patient's right of the *left* border of the SMV/PV
  confluence, uncinate process included;
* **neck**: pancreas in front of the SMV/PV, within its left-right extent;
* **body**: from the left border of the SMV/PV to the *left* border of the aorta;
* **tail**: beyond (to the patient's left of) the aorta's left border.

How the borders are drawn from masks (:func:`pancreas_parts`):

All positions are voxel centres in RAS world millimetres through the case
affine (``x`` grows to the patient's right, so "left of" means smaller ``x``;
``y`` grows anteriorly).  Borders are drawn **per canonical axial slice** ``k``
over the slices the pancreas occupies, so a curved SMV or aorta is followed:

* ``x_L(k)`` = left border of the SMV/PV trunk (:mod:`.veins`) = the smallest
  ``x`` of its voxels in slice ``k``; ``x_R(k)`` its right border (largest
  ``x``); ``y_C(k)`` its centroid's ``y``.  Below the confluence this is the SMV
  (and whatever trunk the slice holds); **above the confluence**, where the
  portal vein veers to the right towards the liver hilum, the values of the
  confluence slice are kept: the AJCC border is the confluence's left border,
  a sagittal plane there, not the portal vein's course.  Slices without trunk
  voxels (e.g. below the end of the SMV mask) take the nearest trunk slice's
  values.
* ``x_A(k)`` = left border of the aorta (smallest ``x`` of its voxels in slice
  ``k``; nearest aorta slice where the slice has none).
* A pancreas voxel at ``(x, y)`` in slice ``k`` is **neck** when
  ``x_L <= x <= x_R`` and ``y > y_C`` (in front of the trunk's centre), else
  **head** when ``x >= x_L``, else **tail** when ``x < x_A``, else **body**.
* Without any SMV/PV mask the **SMA** takes the trunk's place: the head/body
  border is the SMA's midline ``x_S(k)`` (mean ``x`` of its voxels in the slice,
  nearest SMA slice among those the pancreas occupies, else among all); there is
  no neck.  Without an aorta the body/tail border is the sagittal plane half-way
  along the left-right extent of the pancreas left of the head border.
* Small disconnected pieces of a part (26-connectivity) that touch another
  part, such as a few "body" voxels cut off inside the head by a curved border,
  join the part they share the most boundary with (see
  :data:`FRAGMENT_FRACTION`).  The parts partition the pancreas mask exactly.

With given ``pancreas_head`` / ``pancreas_neck`` / ``pancreas_body`` / ``pancreas_tail`` masks those
are used as they are (``method == "masks"``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage

from ..case import Case, Crop
from .veins import find_venous_trunk, present, slice_centre_z, slice_profile, voxel_world

PARTS = ("head", "neck", "body", "tail")
_CODE = {name: n for n, name in enumerate(PARTS, start=1)}
_FULL = np.ones((3, 3, 3), bool)

# A disconnected piece of a part smaller than this fraction of the part's largest
# piece, touching another part, is a border artefact and joins its neighbour.
FRAGMENT_FRACTION = 0.2
# A part listed in ``pancreas_parts`` of a lesion holds more than this share of
# the lesion's in-pancreas voxels.
LISTED_SHARE = 0.10
NOT_ASSESSABLE = "not assessable (no SMV/PV or SMA mask)"


@dataclass
class PancreasParts:
    """Result of :func:`pancreas_parts`.

    Attributes
    ----------
    parts : dict
        Part name (``head``, ``neck``, ``body``, ``tail``) -> :class:`Crop` in the
        canonical frame.  ``head``, ``body`` and ``tail`` are present whenever the
        parts are assessable (a part may be empty, e.g. a pancreas cut by the scan);
        ``neck`` only when it holds voxels (``smv_pv`` method).  With ``masks``,
        the given part masks, as they are.
    method : str or None
        ``"masks"`` (given part masks), ``"smv_pv"`` (SMV/PV trunk and aorta),
        ``"sma"`` (SMA midline fallback) or None (not assessable).
    reason : str or None
        Why the parts are not assessable; None when they are.
    landmarks : dict
        JSON-serialisable description of the borders used (world mm, canonical
        slice indices, sources and rules).
    affine : ndarray or None
        The case's canonical voxel -> RAS mm affine (for :func:`lesion_part`).
    """

    parts: dict
    method: str | None
    reason: str | None
    landmarks: dict = field(default_factory=dict)
    affine: np.ndarray | None = field(default=None, repr=False, compare=False)


def pancreas_parts(case: Case) -> PancreasParts:
    """Head / neck / body / tail of the case's pancreas (see the module docstring)."""
    affine = np.asarray(case.affine, float)
    given = {p: present(case, f"pancreas_{p}") for p in ("head", "neck", "body", "tail")}
    if any(c is not None for c in given.values()):
        return _from_given(case, given, affine)

    pancreas = present(case, "pancreas")
    if pancreas is None:
        return PancreasParts({}, None, "not assessable (no pancreas mask)", {}, affine)

    trunk = find_venous_trunk(case)
    sma = present(case, "superior_mesenteric_artery")
    aorta = present(case, "aorta")
    if trunk.crop is None and sma is None:
        return PancreasParts({}, None, NOT_ASSESSABLE, {"trunk": trunk.source}, affine)

    k0 = int(pancreas.offset[2])
    ks = np.arange(k0, k0 + pancreas.shape[2])  # the pancreas's slices
    landmarks: dict[str, Any] = {}
    x_r: np.ndarray | None  # the trunk's right border (mm per slice), without a trunk None
    y_c: np.ndarray | None  # the trunk's mean y (mm per slice), without a trunk None

    if trunk.crop is not None:
        method = "smv_pv"
        assert trunk.confluence_k is not None  # find_venous_trunk gives every trunk its confluence
        kc = int(trunk.confluence_k)
        prof = slice_profile(trunk.crop, affine, k_range=(-(2 ** 31), kc))
        if prof.empty:  # cannot happen for a trunk reaching the confluence; be safe
            prof = slice_profile(trunk.crop, affine)
        q = np.minimum(ks, kc)  # above the confluence: the confluence slice's values
        x_l, x_r, y_c = prof.at("x_min", q), prof.at("x_max", q), prof.at("y_mean", q)
        at_c = (prof.at("x_min", [kc])[0], prof.at("x_max", [kc])[0], prof.at("y_mean", [kc])[0])
        landmarks["head_body"] = {
            "landmark": "left border of the SMV/PV trunk",
            "source": trunk.source,
            "rule": "per axial slice up to the confluence, the confluence slice's value above it, "
                    "the nearest trunk slice's value where a slice has no trunk voxel",
            "confluence_k": kc,
            "confluence_z_mm": slice_centre_z(affine, trunk.crop, kc),
            "confluence_rule": trunk.landmarks.get("confluence", {}).get("rule"),
            "x_mm_at_confluence": float(at_c[0]),
            "x_mm_range": [float(x_l.min()), float(x_l.max())],
        }
        landmarks["neck"] = {
            "rule": "in front of the trunk's centre (y > centroid y) and within its left-right extent",
            "x_mm_at_confluence": [float(at_c[0]), float(at_c[1])],
            "y_mm_at_confluence": float(at_c[2]),
        }
        if "portal_vein_and_splenic_vein" in trunk.landmarks:
            landmarks["splenic_vein_removal"] = trunk.landmarks["portal_vein_and_splenic_vein"]
    else:
        method = "sma"
        assert sma is not None  # without a trunk and an SMA the parts were returned as not assessable
        prof = slice_profile(sma, affine, k_range=(ks[0], ks[-1]))
        where = "pancreas slices"
        if prof.empty:
            prof, where = slice_profile(sma, affine), "nearest SMA slice (the SMA does not reach the pancreas's slices)"
        x_l = prof.at("x_mean", ks)
        x_r = y_c = None
        landmarks["head_body"] = {
            "landmark": "SMA midline (mean x of the SMA per axial slice)",
            "source": "superior_mesenteric_artery",
            "rule": f"per axial slice over the {where}; nearest SMA slice where a slice has none; no neck",
            "x_mm_range": [float(x_l.min()), float(x_l.max())],
            "trunk": trunk.source,
        }
        landmarks["neck"] = None

    idx = np.nonzero(pancreas.mask)
    w = voxel_world(affine, pancreas.offset, idx, rows=(0, 1))
    x, y, kk = w[:, 0], w[:, 1], idx[2]
    right = x >= x_l[kk]
    code = np.where(right, _CODE["head"], _CODE["body"]).astype(np.uint8)
    if x_r is not None and y_c is not None:
        code[right & (x <= x_r[kk]) & (y > y_c[kk])] = _CODE["neck"]
    left = ~right
    if aorta is not None:
        aprof = slice_profile(aorta, affine, k_range=(ks[0], ks[-1]))
        if aprof.empty:
            aprof = slice_profile(aorta, affine)
        x_a = aprof.at("x_min", ks)
        code[left & (x < x_a[kk])] = _CODE["tail"]
        landmarks["body_tail"] = {
            "landmark": "left border of the aorta",
            "rule": "per axial slice; nearest aorta slice where a slice has none",
            "x_mm_range": [float(x_a.min()), float(x_a.max())],
        }
    else:
        if left.any():
            mid = 0.5 * (float(x[left].min()) + float(x[left].max()))
            code[left & (x < mid)] = _CODE["tail"]
        else:
            mid = None
        landmarks["body_tail"] = {
            "landmark": "half-way along the left-right extent of the pancreas left of the head border "
                        "(no aorta mask)",
            "rule": "one sagittal plane",
            "x_mm": mid,
        }

    labels = np.zeros(pancreas.shape, np.uint8)
    labels[idx] = code
    boxes = _boxes(idx, code)
    pieces, voxels = _reassign_fragments(labels, boxes)
    landmarks["fragments_reassigned"] = {"pieces": pieces, "voxels": voxels}

    parts = {}
    for name in PARTS:
        box = boxes.get(_CODE[name])
        if box is None:
            crop = Crop.empty()
        else:  # each part only over the box that holds it (not the whole pancreas box)
            offset = tuple(int(o + b.start) for o, b in zip(pancreas.offset, box))
            crop = _crop_of(labels[box] == _CODE[name], offset)
        if name == "neck" and crop.is_empty:
            continue  # no neck without the SMV/PV, or none in front of it
        parts[name] = crop
    return PancreasParts(parts, method, None, landmarks, affine)


def _from_given(case: Case, given: dict, affine: np.ndarray) -> PancreasParts:
    """Parts from the given part masks, as they are; landmarks say how well they fit the pancreas."""
    parts = {p: c for p, c in given.items() if c is not None}
    marks: dict[str, Any] = {"given": sorted(parts, key=PARTS.index),
             "missing": [p for p in ("head", "body", "tail") if p not in parts]}
    pancreas = present(case, "pancreas")
    if pancreas is not None:
        covered = np.zeros(pancreas.shape, np.uint8)
        for crop in parts.values():
            covered += crop.in_box(pancreas.offset, pancreas.shape)
        marks["pancreas_voxels_in_no_part"] = int(np.count_nonzero(pancreas.mask & (covered == 0)))
        marks["pancreas_voxels_in_several_parts"] = int(np.count_nonzero(pancreas.mask & (covered > 1)))
    return PancreasParts(parts, "masks", None, marks, affine)


def _crop_of(box: np.ndarray, offset) -> Crop:
    sub = Crop.from_full(box)
    if sub.is_empty:
        return sub
    return Crop(sub.mask, tuple(int(a + b) for a, b in zip(sub.offset, offset)))


def _boxes(idx, code) -> dict:
    """Part code -> bounding box (slices) of its voxels, from voxel index lists."""
    out = {}
    for c in np.unique(code):
        sel = code == c
        out[int(c)] = tuple(slice(int(v[sel].min()), int(v[sel].max()) + 1) for v in idx)
    return out


def _reassign_fragments(labels: np.ndarray, boxes: dict) -> tuple[int, int]:
    """Give small detached pieces of a part to the neighbouring part they touch most.

    For each part, its 26-connected pieces other than the largest one that are
    smaller than :data:`FRAGMENT_FRACTION` of the largest and touch (26-
    neighbourhood) voxels of another part are relabelled as the part that holds
    most of their touching neighbours (ties: the earlier part in head, neck, body,
    tail).  Pieces touching no other part (an island of the pancreas mask itself)
    keep their label.  Repeated until nothing changes (at most three passes).
    ``labels`` (uint8 part codes, 0 outside) is changed in place; ``boxes`` maps
    each code to a box holding all its voxels.  Returns the number of pieces and
    voxels moved.
    """
    moved_pieces = moved_voxels = 0
    for _ in range(3):
        changed = False
        for code in range(1, len(PARTS) + 1):
            bbox = boxes.get(code)
            if bbox is None:
                continue
            comp, n = ndimage.label(labels[bbox] == code, structure=_FULL)
            if n < 2:
                continue
            sizes = np.bincount(comp.ravel())
            sizes[0] = 0
            largest = int(np.argmax(sizes))
            region = labels[bbox]
            for lbl, sl in enumerate(ndimage.find_objects(comp), start=1):
                if lbl == largest or sl is None or sizes[lbl] >= FRAGMENT_FRACTION * sizes[largest]:
                    continue
                grown = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in sl)
                piece = comp[grown] == lbl
                ring = ndimage.binary_dilation(piece, structure=_FULL) & ~piece
                around = region[grown][ring]
                around = around[(around != 0) & (around != code)]
                if around.size == 0:
                    continue
                new = int(np.bincount(around).argmax())
                region[grown][piece] = new
                # The receiving part's box grows to hold the piece.
                piece_box = tuple(slice(b.start + g.start, b.start + g.stop) for b, g in zip(bbox, grown))
                boxes[new] = tuple(slice(min(a.start, p.start), max(a.stop, p.stop))
                                   for a, p in zip(boxes[new], piece_box))
                moved_pieces += 1
                moved_voxels += int(sizes[lbl])
                changed = True
        if not changed:
            break
    return moved_pieces, moved_voxels


def _overlap_count(a: Crop, b: Crop) -> int:
    """Number of voxels in both crops."""
    if a.is_empty or b.is_empty:
        return 0
    lo = np.maximum(a.offset, b.offset)
    hi = np.minimum(np.add(a.offset, a.shape), np.add(b.offset, b.shape))
    if np.any(hi <= lo):
        return 0
    sa = tuple(slice(int(l - o), int(h - o)) for l, h, o in zip(lo, hi, a.offset))
    sb = tuple(slice(int(l - o), int(h - o)) for l, h, o in zip(lo, hi, b.offset))
    return int(np.count_nonzero(a.mask[sa] & b.mask[sb]))


def lesion_part(parts: PancreasParts, lesion: Crop) -> dict | None:
    """The pancreas part(s) holding a lesion component.

    Shares are counted over the lesion's voxels that lie in some part (its
    in-pancreas voxels).  Returns ``{"pancreas_part": the part with the largest
    share, "pancreas_parts": parts holding more than 10 % (largest share first;
    ties in head, neck, body, tail order), "shares": {part: fraction} (every part,
    summing to 1), "by": "overlap"}``.

    A lesion that overlaps no part gets the part nearest to its centroid (the
    part holding the pancreas voxel closest to it, world mm):
    ``{"pancreas_part": p, "pancreas_parts": [p], "shares": {}, "by": "nearest",
    "distance_mm": d}``.  None when the parts are not assessable or the lesion is
    empty.
    """
    if parts is None or parts.method is None or not parts.parts or lesion is None or lesion.is_empty:
        return None
    names = sorted(parts.parts, key=PARTS.index)
    counts = {n: _overlap_count(parts.parts[n], lesion) for n in names}
    total = sum(counts.values())
    if total == 0:
        return _nearest_part(parts, lesion, names)
    shares = {n: counts[n] / total for n in names}
    order = sorted(names, key=lambda n: (-shares[n], PARTS.index(n)))
    listed = [n for n in order if shares[n] > LISTED_SHARE]
    return {"pancreas_part": order[0], "pancreas_parts": listed or [order[0]], "shares": shares, "by": "overlap"}


def _nearest_part(parts: PancreasParts, lesion: Crop, names) -> dict | None:
    if parts.affine is None:
        return None
    centre = voxel_world(parts.affine, lesion.offset, np.nonzero(lesion.mask)).mean(axis=0)
    best = None
    for n in names:
        crop = parts.parts[n]
        if crop.is_empty:
            continue
        p = voxel_world(parts.affine, crop.offset, np.nonzero(crop.mask))
        d = float(np.sqrt(((p - centre) ** 2).sum(axis=1).min()))
        if best is None or d < best[1]:
            best = (n, d)
    if best is None:
        return None
    return {"pancreas_part": best[0], "pancreas_parts": [best[0]], "shares": {}, "by": "nearest",
            "distance_mm": best[1]}
