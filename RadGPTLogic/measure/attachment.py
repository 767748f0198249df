"""Which lesion voxels belong to an organ, whichever way the masks were drawn.

Two conventions meet here.  AbdomenAtlas (and most model outputs) draw a lesion
*inside* its organ mask: the liver mask includes the tumour.  3D Slicer's Segment
Editor, in its default "overwrite all" mode, *carves* a painted lesion out of the
organ segment under it: the liver mask then has a tumour-shaped hole.  The engine
treats an organ as its mask plus the lesion components that belong to it
(:func:`organ_with_lesions`), so both conventions give the same organ volume, HU
region, lesion placement and staging.

A lesion component belongs to an organ when

* at least half of its voxels lie in the organ mask (drawn inside it), or
* at least :attr:`Rules.lesion_contact_min` of its outer surface touches the organ
  or another lesion of the organ, part of it the organ itself (carved out of it;
  the direct contact keeps a right-kidney lesion from joining the left kidney
  through a neighbouring lesion).

The outer surface is the component's one-voxel face-neighbour shell, which does not
depend on whether the organ mask was carved (carving removes only lesion voxels),
so the second test reads the same in both conventions.  A component that passes
neither test lies outside its organ: the mask is probably wrong (a spleen saved as
``liver_lesion.nii.gz``), and the engine flags it instead of describing it as an
ordinary lesion.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..case import Crop, union_crops
from .lesions import connectivity_structure

_CROSS = ndimage.generate_binary_structure(3, 1)


@dataclass(frozen=True)
class Attachment:
    """How one lesion component relates to its organ.

    ``inside`` is the share of its voxels in the organ mask as drawn; ``contact`` the
    share of its outer shell (face neighbours, within the scan) in the organ or its
    other lesions; ``belongs`` the verdict.
    """

    inside: float
    contact: float
    belongs: bool


def _padded(crop: Crop, grid_shape) -> tuple:
    """Offset and shape of ``crop``'s box grown by one voxel, clipped to the grid."""
    lo = np.maximum(np.subtract(crop.offset, 1), 0)
    hi = np.minimum(np.add(np.add(crop.offset, crop.shape), 1), grid_shape)
    return tuple(int(x) for x in lo), tuple(int(x) for x in hi - lo)


def attachment(comp: Crop, organ: Crop | None, around: list, grid_shape, contact_min: float) -> Attachment:
    """:class:`Attachment` of component ``comp`` to ``organ``.

    ``around`` are crops the shell may touch to count as contact (the organ and every
    lesion mask of that organ).  With no organ mask the component belongs to none.
    """
    if organ is None or organ.is_empty or comp.is_empty:
        return Attachment(0.0, 0.0, False)
    inside = float(np.count_nonzero(organ.in_box(comp.offset, comp.shape) & comp.mask)) / comp.count
    offset, shape = _padded(comp, grid_shape)
    own = comp.in_box(offset, shape)
    shell = ndimage.binary_dilation(own, structure=_CROSS) & ~own
    n_shell = int(np.count_nonzero(shell))
    if n_shell == 0:  # the component fills the scan
        return Attachment(inside, 0.0, bool(inside >= 0.5))
    organ_shell = shell & organ.in_box(offset, shape)
    touched = organ_shell.copy()
    for crop in around:
        if crop is not None and not crop.is_empty and crop is not organ:
            touched |= shell & crop.in_box(offset, shape)
    contact = float(np.count_nonzero(touched)) / n_shell
    return Attachment(inside, contact, bool(inside >= 0.5 or (contact >= contact_min and organ_shell.any())))


def components(crop: Crop, connectivity: int = 26) -> list:
    """Every connected component of ``crop`` (no size floor), as crops."""
    if crop is None or crop.is_empty:
        return []
    labels, n = ndimage.label(crop.mask, structure=connectivity_structure(connectivity))
    out = []
    for lab, sl in enumerate(ndimage.find_objects(labels), start=1):
        if sl is None:
            continue
        offset = tuple(int(o + s.start) for o, s in zip(crop.offset, sl))
        out.append(Crop(np.ascontiguousarray(labels[sl] == lab), offset))
    return out


def organ_with_lesions(organ: Crop, lesion_masks: list, grid_shape, contact_min: float,
                       connectivity: int = 26) -> Crop:
    """The organ mask united with every lesion component that belongs to it (see module doc).

    ``lesion_masks`` are the crops of the organ's lesion masks; returns ``organ``
    itself (the same object) when nothing is added, so cache keys stay stable.
    """
    if organ is None or organ.is_empty:
        return organ
    around = [organ] + list(lesion_masks)
    added = []
    for mask in lesion_masks:
        for comp in components(mask, connectivity):
            if not attachment(comp, organ, around, grid_shape, contact_min).belongs:
                continue
            if np.array_equal(organ.in_box(comp.offset, comp.shape) & comp.mask, comp.mask):
                continue  # already inside the organ mask
            added.append(comp)
    if not added:
        return organ
    return union_crops([organ] + added)
