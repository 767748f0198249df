"""Coded terminology of every structure: one table for DICOM SEG/SR and for 3D Slicer.

Each canonical name of :mod:`RadGPTLogic.vocabulary` has one :class:`Term`: the
segmentation property category and type (with a laterality modifier where the
structure has a side), for lesions the anatomic region (the organ), a recommended
display colour (sRGB 0-255) and a human label.  The same table serves

* the DICOM export (:mod:`RadGPTLogic.io.dicom_export`): segment category / type /
  modifier / anatomic region, SR finding type and site, RecommendedDisplayCIELabValue;
* 3D Slicer: :func:`slicer_terminology_context` (a ``.term.json`` terminology
  context), :func:`slicer_anatomic_context` (its anatomic-region context),
  :func:`slicer_terminology_entry` (the ``TerminologyEntry`` tag string of a segment)
  and :func:`slicer_colour_table_csv` (a colour table with terminology, Slicer's
  ``.csv`` colour-table format);
* reading Slicer files back: :func:`name_from_terminology` maps a segment's
  terminology codes (its ``Segment<N>_Tags`` ``TerminologyEntry``) to a canonical name.

Codes are SNOMED CT (``SCT``) and were checked against pydicom's code dictionary
(the DICOM standard's concept tables) wherever pydicom knows them; the meanings are
the DICOM context-group meanings.  Exceptions, each with its source:

* ``pancreas_head`` / ``_body`` / ``_tail``: SCT 64163001, 40133006, 73239005
  (SNOMED CT body structures "head/body/tail of pancreas"; not in pydicom).
* ``portal_vein_and_splenic_vein``: SCT 110765007 "Portal vein and splenic vein",
  the code TotalSegmentator itself writes for that mask
  (wasserth/TotalSegmentator, resources/totalsegmentator_snomed_mapping.csv).
* ``hepatic_vessel``: Blood vessel (59820001) with anatomic region Liver, the way
  TotalSegmentator codes its ``lung_vessels``.
* Three names have no single SNOMED CT concept we could verify and get codes of our
  own coding scheme :data:`LOCAL_SCHEME` (a DICOM private scheme, declared in the
  SEG's CodingSchemeIdentificationSequence): ``pancreas_neck`` (the engine's own
  part), ``veins`` (AbdomenAtlas SMV + portal vein) and ``celiac_aa`` (celiac trunk
  with the common hepatic and splenic arteries).

No canonical name falls back on the generic "Anatomical Structure" type; a test
checks that.  Colours follow 3D Slicer's General Anatomy terminology where it has
the structure (liver 221/130/101, kidneys 185/102/83, ...); the rest are chosen to
stay apart (arteries red, veins blue, liver segments and pancreas parts in shades
of their organ's colour).
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, replace

from . import vocabulary as vocab

LOCAL_SCHEME = "99RADGPT"
LOCAL_SCHEME_NAME = "RadGPT for 3D Slicer local codes"
CONTEXT_NAME = "Segmentation category and type - RadGPT abdominal CT"
ANATOMIC_CONTEXT_NAME = "Anatomic codes - RadGPT abdominal CT"
SEGMENT_CONTEXT_SCHEMA = "https://raw.githubusercontent.com/qiicr/dcmqi/master/doc/segment-context-schema.json#"
ANATOMIC_CONTEXT_SCHEMA = "https://raw.githubusercontent.com/qiicr/dcmqi/master/doc/anatomic-context-schema.json#"


@dataclass(frozen=True)
class Code:
    """One coded concept: value, coding scheme designator, meaning."""

    value: str
    scheme: str
    meaning: str

    def slicer(self) -> str:
        """``scheme^value^meaning``, the form of a code inside a Slicer terminology string."""
        return f"{self.scheme}^{self.value}^{self.meaning}"

    def as_dict(self) -> dict:
        return {"CodeValue": self.value, "CodingSchemeDesignator": self.scheme, "CodeMeaning": self.meaning}


def _sct(value: str, meaning: str) -> Code:
    return Code(value, "SCT", meaning)


def _local(value: str, meaning: str) -> Code:
    return Code(value, LOCAL_SCHEME, meaning)


ANATOMICAL_STRUCTURE = _sct("91723000", "Anatomical Structure")
MORPHOLOGICALLY_ALTERED = _sct("49755003", "Morphologically Abnormal Structure")
LEFT = _sct("7771000", "Left")
RIGHT = _sct("24028007", "Right")
SIDES = {"left": LEFT, "right": RIGHT}


@dataclass(frozen=True)
class Term:
    """How one structure is coded and shown.

    ``region`` / ``region_modifier`` are the anatomic region (and its laterality)
    of a lesion, or the organ a vessel lies in; ``rgb`` the recommended display
    colour (sRGB, 0-255); ``label`` a human name ("left kidney").
    """

    name: str
    category: Code
    type: Code
    type_modifier: Code | None
    region: Code | None
    region_modifier: Code | None
    rgb: tuple
    label: str

    @property
    def side(self) -> str | None:
        """``"left"``/``"right"`` when the term carries a laterality, else None."""
        for side, code in SIDES.items():
            if code in (self.type_modifier, self.region_modifier):
                return side
        return None


# ------------------------------------------------------------------------ organ codes

LIVER = _sct("10200004", "Liver")
PANCREAS = _sct("15776009", "Pancreas")
KIDNEY = _sct("64033007", "Kidney")
ADRENAL = _sct("23451007", "Adrenal gland")

# name -> (type, laterality or None, region or None, rgb, label)
_ANATOMY: dict[str, tuple[Code, Code | None, Code | None, tuple[int, ...], str]] = {
    "liver": (LIVER, None, None, (221, 130, 101), "liver"),
    "spleen": (_sct("78961009", "Spleen"), None, None, (157, 108, 162), "spleen"),
    "pancreas": (PANCREAS, None, None, (249, 180, 111), "pancreas"),
    "kidney_left": (KIDNEY, LEFT, None, (185, 102, 83), "left kidney"),
    "kidney_right": (KIDNEY, RIGHT, None, (185, 102, 83), "right kidney"),
    "gall_bladder": (_sct("28231008", "Gallbladder"), None, None, (139, 150, 98), "gallbladder"),
    "stomach": (_sct("69695003", "Stomach"), None, None, (216, 132, 105), "stomach"),
    "duodenum": (_sct("38848004", "Duodenum"), None, None, (255, 253, 229), "duodenum"),
    "colon": (_sct("71854001", "Colon"), None, None, (204, 168, 143), "colon"),
    "intestine": (_sct("30315005", "Small intestine"), None, None, (205, 167, 142), "small bowel"),
    "esophagus": (_sct("32849002", "Esophagus"), None, None, (211, 171, 143), "esophagus"),
    "adrenal_gland_left": (ADRENAL, LEFT, None, (249, 186, 150), "left adrenal gland"),
    "adrenal_gland_right": (ADRENAL, RIGHT, None, (249, 186, 150), "right adrenal gland"),
    "common_bile_duct": (_sct("79741001", "Common bile duct"), None, None, (0, 145, 30), "common bile duct"),
    "bladder": (_sct("89837001", "Bladder"), None, None, (222, 154, 132), "urinary bladder"),
    # organ parts
    "pancreas_head": (_sct("64163001", "Head of pancreas"), None, None, (250, 160, 80), "head of pancreas"),
    "pancreas_neck": (_local("pancreas_neck", "Neck of pancreas"), None, None, (252, 200, 120), "neck of pancreas"),
    "pancreas_body": (_sct("40133006", "Body of pancreas"), None, None, (240, 190, 140), "body of pancreas"),
    "pancreas_tail": (_sct("73239005", "Tail of pancreas"), None, None, (230, 150, 100), "tail of pancreas"),
    # vessels
    "aorta": (_sct("15825003", "Aorta"), None, None, (224, 97, 76), "aorta"),
    "postcava": (_sct("64131007", "Inferior vena cava"), None, None, (0, 151, 206), "inferior vena cava"),
    "portal_vein_and_splenic_vein": (_sct("110765007", "Portal vein and splenic vein"), None, None,
                                     (20, 120, 190), "portal and splenic vein"),
    "superior_mesenteric_artery": (_sct("42258001", "Superior mesenteric artery"), None, None,
                                   (200, 70, 60), "superior mesenteric artery"),
    "superior_mesenteric_vein": (_sct("90771006", "Superior Mesenteric Vein"), None, None,
                                 (60, 170, 225), "superior mesenteric vein"),
    "portal_vein": (_sct("32764006", "Portal vein"), None, None, (0, 110, 170), "portal vein"),
    "splenic_vein": (_sct("35819009", "Splenic vein"), None, None, (80, 140, 200), "splenic vein"),
    "celiac_trunk": (_sct("57850000", "Truncus coeliacus"), None, None, (230, 110, 80), "celiac trunk"),
    "common_hepatic_artery": (_sct("66559000", "Common Hepatic Artery"), None, None,
                              (240, 140, 100), "common hepatic artery"),
    "splenic_artery": (_sct("22083002", "Splenic artery"), None, None, (190, 60, 50), "splenic artery"),
    "hepatic_vessel": (_sct("59820001", "Blood Vessel"), None, LIVER, (120, 100, 200), "hepatic vessels"),
    "hepatic_veins": (_sct("8993003", "Hepatic vein"), None, None, (40, 90, 160), "hepatic veins"),
    "veins": (_local("veins", "Superior mesenteric vein and portal vein"), None, None,
              (30, 140, 200), "SMV and portal vein"),
    "celiac_aa": (_local("celiac_aa", "Celiac trunk and its branches"), None, None,
                  (235, 120, 90), "celiac trunk and branches"),
}
_COUINAUD = ("I", "II", "III", "IV", "V", "VI", "VII", "VIII")
_COUINAUD_CODES = ("71133005", "277956007", "277957003", "277958008", "277959000", "277960005",
                   "277961009", "277962002")
_COUINAUD_SHADES = (1.0, 0.82, 1.12, 0.9, 1.06, 0.76, 1.16, 0.96)  # of the liver colour
for _k, (_roman, _code, _shade) in enumerate(zip(_COUINAUD, _COUINAUD_CODES, _COUINAUD_SHADES), start=1):
    _ANATOMY[f"liver_segment_{_k}"] = (
        _sct(_code, f"Couinaud hepatic segment {_roman}"), None, None,
        tuple(min(255, int(round(c * _shade))) for c in (221, 130, 101)), f"liver segment {_k}")

# Lesion kinds: the segmented property type of a lesion mask (category
# Morphologically Altered Structure, anatomic region = its organ).
LESION_TYPES = {
    "lesion": _sct("52988006", "Lesion"),
    "tumor": _sct("108369006", "Neoplasm"),
    "cyst": _sct("367643001", "Cyst"),
    "pdac": _sct("35917007", "Adenocarcinoma"),
    "pnet": _sct("255046005", "Neuroendocrine tumor"),
}
_LESION_RGB = {"lesion": (255, 90, 90), "tumor": (255, 40, 40), "cyst": (205, 205, 100),
               "pdac": (220, 20, 60), "pnet": (255, 105, 180)}
ORGAN_CODES = {"liver": LIVER, "pancreas": PANCREAS, "kidney": KIDNEY}


def _build() -> dict:
    table = {}
    for name, (ptype, side, region, rgb, label) in _ANATOMY.items():
        table[name] = Term(name, ANATOMICAL_STRUCTURE, ptype, side, region, None, tuple(rgb), label)
    for name in vocab.LESIONS:
        organ, kind = vocab.LESION_ORGAN_KIND[name]
        table[name] = Term(name, MORPHOLOGICALLY_ALTERED, LESION_TYPES[kind], None, ORGAN_CODES[organ], None,
                           _LESION_RGB[kind], f"{organ} {kind}")
    return table


TERMS = _build()


def term_for(name: str) -> Term:
    """The :class:`Term` of canonical structure ``name`` (KeyError for others)."""
    return TERMS[name]


def lesion_term(mask_name: str, side: str | None = None) -> Term:
    """The term of a lesion of ``mask_name``; ``side`` (``"left"``/``"right"``, e.g. a
    kidney lesion's side in findings) becomes the laterality of its anatomic region."""
    base = TERMS[mask_name]
    modifier = SIDES.get(str(side).lower()) if side else None
    if modifier is None:
        return base
    return replace(base, region_modifier=modifier, label=f"{side} {base.label}")


def organ_term(organ: str, side: str | None = None) -> tuple:
    """``(code, laterality or None)`` of a findings organ name (``liver``, ``kidney``,
    ``kidney_left`` ...), for SR finding sites."""
    if organ in TERMS and TERMS[organ].category == ANATOMICAL_STRUCTURE:
        term = TERMS[organ]
        return term.type, term.type_modifier
    if organ in ORGAN_CODES:
        return ORGAN_CODES[organ], SIDES.get(str(side).lower()) if side else None
    raise KeyError(organ)


def local_codes_used(terms) -> bool:
    """Whether any of ``terms`` uses a code of :data:`LOCAL_SCHEME`."""
    return any(c is not None and c.scheme == LOCAL_SCHEME
               for t in terms for c in (t.category, t.type, t.type_modifier, t.region, t.region_modifier))


# ------------------------------------------------------------- Slicer terminology files

def _type_entry(term: Term) -> dict:
    entry = dict(term.type.as_dict())
    entry["recommendedDisplayRGBValue"] = list(term.rgb)
    # A lesion type serves every organ (the organ is the anatomic region).
    entry["3dSlicerLabel"] = term.type.meaning.lower() if term.category == MORPHOLOGICALLY_ALTERED else term.label
    return entry


def slicer_terminology_context() -> dict:
    """The whole table as a 3D Slicer terminology context (``.term.json``; dcmqi's
    segment-context schema): categories, their types, laterality modifiers with
    their own labels and colours.  Load it in Slicer with
    ``slicer.modules.terminologies.logic().LoadTerminologyFromFile(path)``."""
    categories: dict[Code, dict[Code, dict]] = {}  # category -> type -> the type's context entry
    for term in TERMS.values():
        cat = categories.setdefault(term.category, {})
        entry = cat.get(term.type)
        if entry is None:
            entry = cat[term.type] = _type_entry(term)
            if term.type_modifier is not None:
                # A type with sides lists them as modifiers, each with its own label.
                for key in ("recommendedDisplayRGBValue", "3dSlicerLabel"):
                    entry.pop(key)
                entry["Modifier"] = []
        if term.type_modifier is not None:
            mod = dict(term.type_modifier.as_dict())
            mod["recommendedDisplayRGBValue"] = list(term.rgb)
            mod["3dSlicerLabel"] = term.label
            entry["Modifier"].append(mod)
        if term.region is not None and term.category == MORPHOLOGICALLY_ALTERED:
            entry["showAnatomy"] = True
    out = []
    for category, types in categories.items():
        category_entry = dict(category.as_dict())
        category_entry["showAnatomy"] = category == MORPHOLOGICALLY_ALTERED
        category_entry["Type"] = list(types.values())
        out.append(category_entry)
    return {"SegmentationCategoryTypeContextName": CONTEXT_NAME, "@schema": SEGMENT_CONTEXT_SCHEMA,
            "SegmentationCodes": {"Category": out}}


def slicer_anatomic_context() -> dict:
    """The anatomic regions lesions refer to (liver, pancreas, kidney with sides), as a
    3D Slicer anatomic context (dcmqi's anatomic-context schema)."""
    regions = []
    for organ, code in ORGAN_CODES.items():
        entry = dict(code.as_dict())
        if organ == "kidney":
            entry["Modifier"] = [LEFT.as_dict(), RIGHT.as_dict()]
        regions.append(entry)
    return {"AnatomicContextName": ANATOMIC_CONTEXT_NAME, "@schema": ANATOMIC_CONTEXT_SCHEMA,
            "AnatomicCodes": {"AnatomicRegion": regions}}


def slicer_terminology_entry(term: Term) -> str:
    """The ``TerminologyEntry`` tag value Slicer stores for a segment of ``term``:
    ``context~category~type~modifier~regionContext~region~regionModifier`` with each
    code as ``scheme^value^meaning`` (empty ``^^`` when absent)."""
    empty = "^^"
    parts = [
        CONTEXT_NAME, term.category.slicer(), term.type.slicer(),
        term.type_modifier.slicer() if term.type_modifier else empty,
        ANATOMIC_CONTEXT_NAME if term.region else "",
        term.region.slicer() if term.region else empty,
        term.region_modifier.slicer() if term.region_modifier else empty,
    ]
    return "~".join(parts)


COLOUR_TABLE_COLUMNS = (
    "LabelValue", "Name", "Color_R", "Color_G", "Color_B", "Color_A",
    "Category_CodingScheme", "Category_CodeValue", "Category_CodeMeaning",
    "Type_CodingScheme", "Type_CodeValue", "Type_CodeMeaning",
    "TypeModifier_CodingScheme", "TypeModifier_CodeValue", "TypeModifier_CodeMeaning",
    "Region_CodingScheme", "Region_CodeValue", "Region_CodeMeaning",
    "RegionModifier_CodingScheme", "RegionModifier_CodeValue", "RegionModifier_CodeMeaning",
)


def label_values() -> dict:
    """Canonical name -> its label value in :func:`slicer_colour_table_csv` (1, 2, ... in
    the vocabulary's order; stable as long as names are only appended)."""
    return {name: n for n, name in enumerate((n for n in vocab.CANONICAL if n in TERMS), start=1)}


def slicer_colour_table_csv() -> str:
    """Every structure as a 3D Slicer colour table with terminology (the ``.csv`` colour
    table of ``vtkMRMLColorTableStorageNode``: LabelValue, Name, Color_R..A, then
    category / type / modifier / region / region-modifier codes)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(COLOUR_TABLE_COLUMNS)
    for name, value in label_values().items():
        t = TERMS[name]
        row = [value, name, *t.rgb, 255]
        for code in (t.category, t.type, t.type_modifier, t.region, t.region_modifier):
            row += [code.scheme, code.value, code.meaning] if code else ["", "", ""]
        writer.writerow(row)
    return buf.getvalue()


def write_slicer_files(folder) -> list:
    """Write ``radgpt.term.json`` (terminology), ``radgpt-anatomy.json`` (anatomic
    context) and ``radgpt.csv`` (colour table) into ``folder``; returns their paths."""
    from pathlib import Path

    from .io.atomic import atomic_write_file

    folder = Path(folder)
    out = []
    for name, text in (("radgpt.term.json", json.dumps(slicer_terminology_context(), indent=2) + "\n"),
                       ("radgpt-anatomy.json", json.dumps(slicer_anatomic_context(), indent=2) + "\n"),
                       ("radgpt.csv", slicer_colour_table_csv())):
        out.append(atomic_write_file(folder / name, text))
    return out


# ------------------------------------------------------------- codes -> canonical names

# Morphologically altered structure types that mean "a tumour", "a lesion", "a cyst".
# (Neoplasm; primary, secondary, malignant primary neoplasm; adenocarcinoma; neuroendocrine tumour.)
_TUMOUR_TYPES = {"108369006", "372087000", "14799000", "86049000", "1187332001", "35917007", "700423003",
                 "255046005"}
_LESION_TYPE_VALUES = {"52988006", "4147007"}  # Lesion, Mass (a mass need not be a neoplasm)
_CYST_TYPES = {"367643001"}
_ORGAN_OF_REGION = {
    LIVER.value: "liver", PANCREAS.value: "pancreas", KIDNEY.value: "kidney",
    "64163001": "pancreas", "40133006": "pancreas", "73239005": "pancreas",
    **{code: "liver" for code in _COUINAUD_CODES},
}
_LESION_PREFIX = {"liver": "liver", "pancreas": "pancreatic", "kidney": "kidney"}
_ANATOMICAL_CATEGORIES = {ANATOMICAL_STRUCTURE.value, "123037004"}  # DICOM CID 7150 and Slicer's
_MORPHOLOGY_CATEGORIES = {MORPHOLOGICALLY_ALTERED.value}


def _anatomy_index() -> dict:
    index: dict[tuple[str, str, str | None], str] = {}  # (scheme, type, type modifier) -> structure name
    for term in TERMS.values():
        if term.category != ANATOMICAL_STRUCTURE:
            continue
        key = (term.type.scheme, term.type.value, term.type_modifier.value if term.type_modifier else None)
        index.setdefault(key, term.name)
    return index


_ANATOMY_INDEX = _anatomy_index()


def name_from_terminology(category: Code | None, ptype: Code | None, type_modifier: Code | None = None,
                          region: Code | None = None, region_modifier: Code | None = None) -> tuple:
    """Canonical name for a segment's terminology codes, and why not when there is none.

    Anatomical structures match on type (+ laterality modifier) codes of the table
    (Slicer's "Anatomical Structure" category 123037004 and DICOM's 91723000 alike);
    a left/right organ without a side does not match.  Morphologically altered
    structures (category 49755003) match on their type and anatomic region: a
    neoplasm / carcinoma / tumour type -> ``<organ>_tumor`` (``pancreatic_pdac`` for
    adenocarcinoma, ``pancreatic_pnet`` for neuroendocrine tumour of the pancreas), a
    lesion or mass -> ``<organ>_lesion``, a cyst -> ``<organ>_cyst``, for organ =
    liver, pancreas (or its parts) or kidney.

    Returns ``(name, None)`` or ``(None, reason)``.
    """
    if ptype is None or not ptype.value:
        return None, "no terminology type"
    if category is not None and category.value in _MORPHOLOGY_CATEGORIES:
        if region is None or region.value not in _ORGAN_OF_REGION:
            where = f"'{region.meaning}'" if region is not None and region.value else "no anatomic region"
            return None, f"'{ptype.meaning}' in {where} (lesions are reported for liver, pancreas and kidney)"
        organ = _ORGAN_OF_REGION[region.value]
        if ptype.value in ("35917007", "1187332001", "700423003") and organ == "pancreas":
            return "pancreatic_pdac", None
        if ptype.value == "255046005" and organ == "pancreas":
            return "pancreatic_pnet", None
        kind = ("tumor" if ptype.value in _TUMOUR_TYPES else "lesion" if ptype.value in _LESION_TYPE_VALUES
                else "cyst" if ptype.value in _CYST_TYPES else None)
        if kind is None:
            return None, f"morphology '{ptype.meaning}' is not a lesion, tumour or cyst type"
        return f"{_LESION_PREFIX[organ]}_{kind}", None
    if category is not None and category.value and category.value not in _ANATOMICAL_CATEGORIES:
        return None, f"category '{category.meaning}' is not an anatomical structure"
    modifier = type_modifier.value if type_modifier is not None and type_modifier.value else None
    name = _ANATOMY_INDEX.get((ptype.scheme, ptype.value, modifier))
    if name is None and modifier is not None:
        name = _ANATOMY_INDEX.get((ptype.scheme, ptype.value, None))
    if name is not None:
        return name, None
    if (ptype.scheme, ptype.value, LEFT.value) in _ANATOMY_INDEX:
        return None, f"'{ptype.meaning}' without a side (left or right)"
    return None, f"type '{ptype.meaning}' ({ptype.scheme} {ptype.value}) is not a structure RadGPT reports on"


def parse_slicer_terminology(entry: str) -> dict:
    """Split a Slicer ``TerminologyEntry`` string into its codes.

    Returns ``{"context", "category", "type", "type_modifier", "region_context",
    "region", "region_modifier"}`` with :class:`Code` values (None where empty).
    """
    parts = (entry or "").split("~")
    parts += [""] * (7 - len(parts))
    keys = ("context", "category", "type", "type_modifier", "region_context", "region", "region_modifier")
    out: dict[str, Code | str | None] = {}
    for key, part in zip(keys, parts[:7]):
        if key in ("context", "region_context"):
            out[key] = part
            continue
        fields = part.split("^")
        fields += [""] * (3 - len(fields))
        scheme, value, meaning = (f.strip() for f in fields[:3])
        out[key] = Code(value, scheme, meaning) if value else None
    return out


__all__ = [
    "Code", "Term", "TERMS", "LOCAL_SCHEME", "LOCAL_SCHEME_NAME", "ANATOMICAL_STRUCTURE", "MORPHOLOGICALLY_ALTERED",
    "LEFT", "RIGHT", "SIDES", "LESION_TYPES", "ORGAN_CODES", "term_for", "lesion_term", "organ_term",
    "local_codes_used", "slicer_terminology_context", "slicer_anatomic_context", "slicer_terminology_entry",
    "slicer_colour_table_csv", "label_values", "write_slicer_files", "name_from_terminology",
    "parse_slicer_terminology",
]
