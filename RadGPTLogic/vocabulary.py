"""Structure names: the canonical vocabulary and every alias mapped onto it.

Canonical names are AbdomenAtlas 3.0 file stems (docs/CONTRACT.md section 1).  Other
tools name the same structures differently (TotalSegmentator says
``inferior_vena_cava`` where AbdomenAtlas says ``postcava``); :func:`canonical_name`
folds all of them onto one name so that the rest of the engine sees one
vocabulary.

Names are compared after :func:`normalise`: lower case, spaces, hyphens and
slashes turned into underscores, a trailing ``.nii.gz``/``.nii``/``.nrrd`` removed.
"""

from __future__ import annotations

import re

ORGANS = (
    "liver", "spleen", "pancreas", "kidney_left", "kidney_right", "gall_bladder",
    "stomach", "duodenum", "colon", "intestine", "esophagus", "adrenal_gland_left",
    "adrenal_gland_right", "common_bile_duct", "bladder",
)
LIVER_SEGMENTS = tuple(f"liver_segment_{k}" for k in range(1, 9))
# pancreas_neck is our addition to AbdomenAtlas 3.0's names: the engine computes it
# (parenchyma anterior to the SMV/PV confluence) and accepts it back as input.
PANCREAS_PARTS = ("pancreas_head", "pancreas_neck", "pancreas_body", "pancreas_tail")
ORGAN_PARTS = LIVER_SEGMENTS + PANCREAS_PARTS
VESSELS = (
    "aorta", "postcava", "portal_vein_and_splenic_vein", "superior_mesenteric_artery",
    "superior_mesenteric_vein", "portal_vein", "splenic_vein", "celiac_trunk",
    "common_hepatic_artery", "splenic_artery", "hepatic_vessel", "hepatic_veins",
    # combined masks that the engine splits itself
    "veins", "celiac_aa",
)
LESIONS = (
    "liver_lesion", "liver_tumor", "liver_cyst",
    "kidney_lesion", "kidney_tumor", "kidney_cyst",
    "pancreatic_lesion", "pancreatic_tumor", "pancreatic_cyst", "pancreatic_pdac",
    "pancreatic_pnet",
)
CANONICAL = ORGANS + ORGAN_PARTS + VESSELS + LESIONS
GROUPS = {
    "organs": ORGANS, "organ_parts": ORGAN_PARTS, "vessels": VESSELS, "lesions": LESIONS,
}

# Lesion mask name -> (organ reported in findings, lesion kind).  The organ is the
# one named by docs/CONTRACT.md section 3 (`liver`, `pancreas`, `kidney`).
LESION_ORGAN_KIND = {
    name: (
        {"liver": "liver", "kidney": "kidney", "pancreatic": "pancreas"}[name.split("_")[0]],
        name.split("_", 1)[1],
    )
    for name in LESIONS
}
# The organ masks that hold each lesion organ's parenchyma.
LESION_ORGAN_MASKS = {
    "liver": ("liver",),
    "pancreas": ("pancreas",),
    "kidney": ("kidney_left", "kidney_right"),
}
# A generic ``*_lesion`` mask may overlap typed masks of the same organ (AbdomenAtlas
# ships both); the typed masks win, so a lesion is never reported twice.
GENERIC_LESION = {"liver": "liver_lesion", "kidney": "kidney_lesion", "pancreas": "pancreatic_lesion"}

ALIASES = {
    # TotalSegmentator `total` and its sub-tasks
    "gallbladder": "gall_bladder",
    "inferior_vena_cava": "postcava",
    "ivc": "postcava",
    "urinary_bladder": "bladder",
    "small_bowel": "intestine",
    "small_intestine": "intestine",
    "kidney_cyst_left": "kidney_cyst",
    "kidney_cyst_right": "kidney_cyst",
    "liver_tumour": "liver_tumor",
    "liver_lesions": "liver_lesion",
    # AMOS / BTCV / FLARE style names (after normalise())
    "right_kidney": "kidney_right",
    "left_kidney": "kidney_left",
    "kidney_r": "kidney_right",
    "kidney_l": "kidney_left",
    "right_adrenal_gland": "adrenal_gland_right",
    "left_adrenal_gland": "adrenal_gland_left",
    "adrenal_gland_r": "adrenal_gland_right",
    "adrenal_gland_l": "adrenal_gland_left",
    "postcava_ivc": "postcava",
    "bile_duct": "common_bile_duct",
    "cbd": "common_bile_duct",
    # vessels
    "sma": "superior_mesenteric_artery",
    "smv": "superior_mesenteric_vein",
    "pv": "portal_vein",
    "celiac_artery": "celiac_trunk",
    "celiac_axis": "celiac_trunk",
    "ca": "celiac_trunk",
    "cha": "common_hepatic_artery",
    "hepatic_artery": "common_hepatic_artery",
    "portal_and_splenic_vein": "portal_vein_and_splenic_vein",
    "portal_vein_splenic_vein": "portal_vein_and_splenic_vein",
    "hepatic_vein": "hepatic_veins",
    "liver_vessels": "hepatic_vessel",
    # RadGPT / AbdomenAtlas variants of lesion names
    "hepatic_lesion": "liver_lesion",
    "hepatic_tumor": "liver_tumor",
    "hepatic_cyst": "liver_cyst",
    "renal_lesion": "kidney_lesion",
    "renal_tumor": "kidney_tumor",
    "renal_cyst": "kidney_cyst",
    "pancreas_lesion": "pancreatic_lesion",
    "pancreas_tumor": "pancreatic_tumor",
    "pancreas_cyst": "pancreatic_cyst",
    "pancreas_pdac": "pancreatic_pdac",
    "pancreas_pnet": "pancreatic_pnet",
    "pdac": "pancreatic_pdac",
    "pnet": "pancreatic_pnet",
}
for _k in range(1, 9):
    ALIASES[f"liver_segment{_k}"] = f"liver_segment_{_k}"
    ALIASES[f"couinaud_{_k}"] = f"liver_segment_{_k}"
    # Not "segment_<k>": that is 3D Slicer's default name for any new segment.

# Structures that are recognised but not used by any report rule (bones, lungs,
# muscles of TotalSegmentator `total`, AbdomenAtlas extras).  They are skipped
# without a warning; a name that is neither canonical, alias nor known-unused
# gets a warning.
_KNOWN_UNUSED_PATTERNS = (
    r"lung(_.*)?", r"vertebrae_.*", r"rib_(left|right)_\d+", r"costal_cartilages",
    r"sternum", r"sacrum", r"femur_(left|right)", r"hip_(left|right)", r"humerus_.*",
    r"scapula_.*", r"clavicula_.*", r"gluteus_.*", r"autochthon_.*", r"iliopsoas_.*",
    r"spinal_cord", r"brain", r"skull", r"heart.*", r"trachea", r"thyroid_gland",
    r"prostate(_uterus)?", r"uterus", r"rectum", r"pulmonary_.*", r"brachiocephalic_.*",
    r"subclavian_artery_.*", r"common_carotid_artery_.*", r"superior_vena_cava",
    r"atrial_appendage_left", r"iliac_(artery|vena)_.*", r"body(_.*)?",
    r"aorta_(true|false)_lumen", r"background",
    # side-first spellings ("Left femur", "right lung upper lobe")
    r"(left|right)_(lung|femur|hip|humerus|scapula|clavicula|rib|iliac|gluteus|autochthon|iliopsoas|"
    r"subclavian|common_carotid|brachiocephalic)(_.*)?",
)
_KNOWN_UNUSED_RE = re.compile("|".join(f"(?:{p})" for p in _KNOWN_UNUSED_PATTERNS) + r"\Z")


def normalise(name: str) -> str:
    """Lower-case ``name``, strip a file extension, and use ``_`` as the only separator."""
    stem = name.strip()
    for ext in (".nii.gz", ".nii", ".seg.nrrd", ".nrrd", ".mha", ".mhd"):
        if stem.lower().endswith(ext):
            stem = stem[: -len(ext)]
            break
    stem = re.sub(r"[\s\-/()]+", "_", stem.lower()).strip("_")
    return re.sub(r"_+", "_", stem)


def canonical_name(name: str) -> str | None:
    """Canonical AbdomenAtlas 3.0 name for ``name``, or None when it is not a reportable structure.

    >>> canonical_name("inferior_vena_cava")
    'postcava'
    >>> canonical_name("Right Kidney")
    'kidney_right'
    """
    key = normalise(name)
    if key in CANONICAL:
        return key
    return ALIASES.get(key)


def is_known_unused(name: str) -> bool:
    """True for structures we recognise (bones, lungs, muscles ...) but do not report on."""
    return bool(_KNOWN_UNUSED_RE.match(normalise(name)))


def group_of(canonical: str) -> str:
    """The docs/CONTRACT.md group (``organs``, ``organ_parts``, ``vessels``, ``lesions``) of a canonical name."""
    for group, names in GROUPS.items():
        if canonical in names:
            return group
    raise KeyError(canonical)
