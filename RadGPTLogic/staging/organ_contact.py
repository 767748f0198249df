"""Contact between a pancreatic tumour and neighbouring organs (for PNET T staging).

An organ is in contact when its mask touches the tumour's (a voxel of one shares a
face, an edge or a corner with a voxel of the other, so touching masks are contact
on any grid, 5 mm slices included), overlaps it, or has a voxel centre within
``contact_mm`` of a tumour voxel centre (Euclidean, mm through the voxel spacing:
on fine grids a seam of one unlabelled voxel is still contact).  A 3 mm fat plane
reads no contact on grids of 2 mm voxels or finer.  From masks, contact is the closest observable
proxy for AJCC's "invasion"; findings say so.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..case import Case, Crop

CONTACT_ORGANS = (
    "duodenum", "common_bile_duct", "stomach", "spleen", "colon",
    "adrenal_gland_left", "adrenal_gland_right",
)


def organ_contacts(case: Case, tumour: Crop, contact_mm: float, organs=CONTACT_ORGANS) -> dict:
    """Organ name -> True/False (contact within ``contact_mm``), or None when the organ has no mask."""
    spacing = case.spacing
    pad = np.ceil(contact_mm / spacing).astype(int) + 1
    offset = tuple(int(o - p) for o, p in zip(tumour.offset, pad))
    shape = tuple(int(n + 2 * p) for n, p in zip(tumour.shape, pad))
    box = np.zeros(shape, bool)
    box[tuple(slice(p, p + n) for p, n in zip(pad, tumour.shape))] = tumour.mask
    near = ndimage.distance_transform_edt(~box, sampling=spacing) <= contact_mm
    near |= ndimage.binary_dilation(box, structure=np.ones((3, 3, 3), bool))
    out: dict[str, bool | None] = {}
    for name in organs:
        crop = case.crop(name)
        if crop is None:
            out[name] = None
        else:
            out[name] = bool(np.any(crop.in_box(offset, shape) & near))
    return out
