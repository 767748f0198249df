"""Structured reports (report.txt, report.md, report.html) rendered from findings.json.

The wording lives in jinja2 templates shipped in ``RadGPTLogic/report/templates``:

- ``report.txt.j2``, ``report.md.j2``, ``report.html.j2``: one per output format;
- ``_macros.j2``: the sentences all three share (organ, lesion, staging, impression);
- ``_style.css.j2``: the HTML page's inline style sheet.

An institution overrides any of them by file name: ``template_dir`` is searched first
and the package's templates fill in the rest.  The shipped templates are also
reachable as ``radgpt/<name>``, so an override can extend the original and replace
only a block, e.g. ``{% extends "radgpt/report.txt.j2" %}{% block impression %}...``.

Nothing here measures: every number comes from the findings dict and is only rounded
for display, by the filters in :data:`FILTERS` (diameters in cm to 1 decimal, volumes
in mL to 1 decimal, HU and degrees to whole numbers).  This module only orders and
groups (sections, the impression's ranking), and the templates only word it.
"""

from __future__ import annotations

import functools
import importlib.resources
import os
import re
from pathlib import Path
from typing import Any

import jinja2
import markupsafe

from ..findings import FindingsDict, LesionEntry
from .format import fmt_cm, fmt_deg, fmt_hu, fmt_ml, fmt_mm, fmt_mm3, fmt_num, fmt_pct, fmt_ratio

TEMPLATE_PACKAGE = __package__ or "RadGPTLogic.report"
TEMPLATE_FOLDER = "templates"

CONTRAST_PHASES = ("arterial", "venous", "delayed")
# Findings sections in reading order; other organs follow in findings order.
SECTIONS = (
    ("liver", ("liver",), "liver"),
    ("spleen", ("spleen",), None),
    ("pancreas", ("pancreas",), "pancreas"),
    ("kidneys", ("kidney_right", "kidney_left"), "kidney"),
)
T_ORDER = ("T1a", "T1b", "T1c", "T1", "T2", "T3", "T4")


# ----------------------------------------------------------------- filters
def squash(text) -> str:
    """Collapse runs of whitespace to one space and strip (for sentence macros)."""
    return re.sub(r"\s+", " ", str(text)).strip()


def capfirst(text) -> str:
    text = str(text)
    return text[:1].upper() + text[1:]


def plain(text) -> markupsafe.Markup:
    """Escape a macro's output as text in an autoescaped (HTML) template.

    jinja2 marks a macro's return value as safe when the caller autoescapes, but the
    sentence macros live in a template without autoescaping, so their output is plain
    text that still needs escaping (``str()`` drops the safe mark first).
    """
    return markupsafe.escape(str(text))


def and_join(items) -> str:
    """'a', 'a and b', 'a, b and c'."""
    items = [str(x) for x in items]
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


FILTERS = {
    "cm": fmt_cm, "mm": fmt_mm, "ml": fmt_ml, "mm3": fmt_mm3, "hu": fmt_hu, "deg": fmt_deg,
    "pct": fmt_pct, "ratio": fmt_ratio, "num": fmt_num, "squash": squash, "capfirst": capfirst,
    "and_join": and_join, "plain": plain,
}


# ------------------------------------------------------------- environment
def _package_source(name: str):
    """Loader function: a shipped template's source via importlib.resources (works from wheels and zips)."""
    if ".." in name.split("/"):
        return None
    res = importlib.resources.files(TEMPLATE_PACKAGE).joinpath(TEMPLATE_FOLDER, *name.split("/"))
    try:
        if not res.is_file():
            return None
        source = res.read_text(encoding="utf-8")
    except (FileNotFoundError, NotADirectoryError, OSError):
        return None
    return source, str(res) if isinstance(res, Path) else None, lambda: True


def _autoescape(name) -> bool:
    return name is not None and ".html" in name


@functools.lru_cache(maxsize=16)
def _environment(template_dir: str | None) -> jinja2.Environment:
    package = jinja2.FunctionLoader(_package_source)
    loaders: list[jinja2.BaseLoader] = []
    if template_dir is not None:
        loaders.append(jinja2.FileSystemLoader(template_dir))
    loaders += [package, jinja2.PrefixLoader({"radgpt": package})]
    env = jinja2.Environment(
        loader=jinja2.ChoiceLoader(loaders),
        autoescape=_autoescape,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=jinja2.ChainableUndefined,
    )
    env.filters.update(FILTERS)
    return env


def get_environment(template_dir=None) -> jinja2.Environment:
    """The jinja2 environment: ``template_dir`` (if given) first, then the shipped templates."""
    if template_dir is not None:
        template_dir = os.fspath(Path(template_dir).expanduser().resolve())
        if not Path(template_dir).is_dir():
            raise FileNotFoundError(f"template folder does not exist: {template_dir}")
    return _environment(template_dir)


# ----------------------------------------------------------------- context
def _lesion_number(lesion: LesionEntry) -> str:
    return str(lesion.get("id", "")).rsplit("_", 1)[-1]


def _t_rank(lesion: LesionEntry) -> int:
    t = lesion.get("t_stage")
    return T_ORDER.index(t) if t in T_ORDER else -1


def _impression(findings: FindingsDict) -> list:
    """Impression items, most significant first.

    1. staged pancreatic tumours (highest T, then largest), 2. other lesions grouped by
    organ and kind, the group with the largest lesion first, 3. organ enlargement
    (massive first), 4. steatosis, 5. "no lesion" when there is none.
    """
    organs = findings.get("organs", {})
    everything = findings.get("lesions", [])
    lesions = [l for l in everything if not l.get("outside_organ")]
    items: list[dict[str, Any]] = []
    checks = findings.get("mask_checks") or []
    outside = [l for l in everything if l.get("outside_organ")]
    if checks or outside:
        items.append({"kind": "check_masks", "checks": checks, "outside": outside})
    staged = [l for l in lesions if l.get("t_stage")]
    staged_ids = {id(l) for l in staged}
    staged.sort(key=lambda l: (-_t_rank(l), -(l.get("longest_diameter_mm") or 0.0), l.get("id", "")))
    for lesion in staged:
        contact = lesion.get("vessel_contact_deg") or {}
        touched = sorted(((k, d) for k, d in contact.items() if d), key=lambda kv: -kv[1])
        items.append({
            "kind": "staged", "lesion": lesion,
            "encased": [kv for kv in touched if kv[1] > 180],
            "abutted": [kv for kv in touched if kv[1] <= 180],
        })
    groups: dict = {}
    for lesion in lesions:
        if id(lesion) in staged_ids:
            continue
        groups.setdefault((lesion["organ"], lesion["kind"]), []).append(lesion)
    ranked = []
    for (organ, kind), members in groups.items():
        largest = max(members, key=lambda l: (l.get("longest_diameter_mm") or 0.0, l.get("volume_ml") or 0.0))
        classes = {l.get("attenuation") for l in members}
        ranked.append({
            "kind": "lesions", "organ": organ, "lesion_kind": kind, "count": len(members), "largest": largest,
            "lesions": members, "attenuation": classes.pop() if len(classes) == 1 else None,
        })
    ranked.sort(key=lambda g: (-(g["largest"].get("longest_diameter_mm") or 0.0), g["largest"].get("id", "")))
    items += ranked
    enlarged = [(n, o) for n, o in organs.items() if o.get("enlarged") in ("massively_enlarged", "enlarged")]
    enlarged.sort(key=lambda no: no[1]["enlarged"] != "massively_enlarged")
    items += [{"kind": "enlarged", "name": n, "organ_entry": o} for n, o in enlarged]
    if organs.get("liver", {}).get("steatosis") is True:
        items.append({"kind": "steatosis", "name": "liver", "organ_entry": organs["liver"]})
    elif organs.get("liver", {}).get("possible_steatosis") is True:
        items.append({"kind": "possible_steatosis", "name": "liver", "organ_entry": organs["liver"]})
    small = [(n, o) for n, o in organs.items() if o.get("small") is True]
    items += [{"kind": "small", "name": n, "organ_entry": o} for n, o in small]
    if organs.get("pancreas", {}).get("steatosis") is True:
        items.append({"kind": "fatty_pancreas", "name": "pancreas", "organ_entry": organs["pancreas"]})
    subs = findings.get("sub_threshold_lesions") or []
    if subs:
        items.append({"kind": "sub_threshold", "groups": subs})
    assessed = findings.get("lesions_assessed")
    if assessed is None:  # findings from before the key existed: every organ counts as assessed
        assessed = {o: True for o in ("liver", "pancreas", "kidney")}
    # A lesion mask component outside its organ still belongs to that organ's lesion mask: the
    # impression asks to check the masks and must not also say "no lesion" for that organ.
    with_lesions = {l.get("organ") for l in everything} | {s.get("organ") for s in subs}
    clear = [o for o, yes in assessed.items() if yes and o not in with_lesions]
    not_assessed = [o for o, yes in assessed.items() if not yes]
    if clear or not_assessed:
        items.append({"kind": "no_lesion", "organs": clear, "not_assessed": not_assessed,
                      "any_lesion": bool(lesions)})
    return items


def _sections(findings: FindingsDict) -> list:
    """Findings sections in reading order.

    Each section: ``organs`` (``name``, ``entry`` and the ``lesions`` that belong to
    that organ, e.g. a right-kidney cyst under the right kidney), ``lesions`` placed
    under no organ line (no organ mask, kidney side unknown), ``outside`` (lesions
    lying outside their organ mask: a mask to check, not an ordinary lesion),
    ``sub_threshold``, ``missing`` organ masks and ``lesions_assessed`` (False when
    the case had no lesion mask for the organ).
    """
    organs = findings.get("organs", {})
    lesions = findings.get("lesions", [])
    subs = findings.get("sub_threshold_lesions", [])
    assessed = findings.get("lesions_assessed") or {}
    out, shown = [], set()
    for key, names, lesion_organ in SECTIONS:
        present = [n for n in names if n in organs]
        mine = [l for l in lesions if lesion_organ and l.get("organ") == lesion_organ]
        small = [s for s in subs if lesion_organ and s.get("organ") == lesion_organ]
        if not present and not mine and not small:
            continue
        shown.update(present)
        placed = [l for l in mine if not l.get("outside_organ")]
        rows = []
        for n in present:
            side = n.split("_", 1)[1] if n.startswith("kidney_") else None
            rows.append({"name": n, "entry": organs[n],
                         "lesions": [l for l in placed if side is None or l.get("side") == side]})
        under_organs = {id(l) for row in rows for l in row["lesions"]}
        out.append({
            "key": key, "organs": rows,
            "missing": [n for n in names if n not in organs] if not present else [],
            "lesions": [l for l in placed if id(l) not in under_organs],
            "outside": [l for l in mine if l.get("outside_organ")],
            "sub_threshold": small,
            "lesions_assessed": assessed.get(lesion_organ, True) if lesion_organ else True,
            "lesion_organ": lesion_organ,
        })
    for name, entry in organs.items():
        if name not in shown:
            out.append({"key": name, "organs": [{"name": name, "entry": entry, "lesions": []}], "missing": [],
                        "lesions": [], "outside": [], "sub_threshold": [], "lesions_assessed": True,
                        "lesion_organ": None})
    return out


def _staging(lesion: LesionEntry) -> dict | None:
    """Vessels and organs of a staged lesion, sorted for wording (contact first, largest angle first)."""
    contact = lesion.get("vessel_contact_deg")
    if not isinstance(contact, dict):
        return None
    organs = lesion.get("organ_contact") or {}
    return {
        "contacts": sorted(((k, d) for k, d in contact.items() if d), key=lambda kv: -kv[1]),
        "free": [k for k, d in contact.items() if d is not None and not d],
        "missing": [k for k, d in contact.items() if d is None],
        "organs_touching": [o for o, c in organs.items() if c is True],
        "organs_free": [o for o, c in organs.items() if c is False],
        "organs_unknown": [o for o, c in organs.items() if c is None],
    }


def _has_ct(findings: FindingsDict) -> bool:
    """Whether the case had a CT: any HU value in the findings, else a CT among the inputs."""
    values = [o.get("mean_hu") for o in findings.get("organs", {}).values()]
    values += [l.get("mean_hu") for l in findings.get("lesions", [])]
    if any(v is not None for v in values):
        return True
    inputs = (findings.get("provenance") or {}).get("inputs")
    return isinstance(inputs, dict) and "ct" in inputs


def _split_subject(what: str, lesions: dict) -> tuple:
    """``("liver_lesion_1", "kidney pole")`` when ``what`` is about a lesion of ``lesions`` (id -> entry),
    else ``(None, what)``."""
    head, _, rest = str(what).partition(" ")
    return (head, rest) if head in lesions else (None, str(what))


def _lesion_notes(findings: FindingsDict) -> dict:
    """lesion id -> not-assessable items about it ("kidney pole: ...") not already worded elsewhere
    (its location_note, its resectability reason)."""
    lesions = {l.get("id"): l for l in findings.get("lesions", [])}
    out: dict = {lid: [] for lid in lesions}
    for item in findings.get("not_assessable", []):
        lid, rest = _split_subject(item.get("what", ""), lesions)
        if lid is None:
            continue
        lesion, why = lesions[lid], str(item.get("why", ""))
        said = [lesion.get("location_note") or "", (lesion.get("resectability_detail") or {}).get("reason") or ""]
        if not any(why and why in text for text in said):
            out[lid].append(f"{rest}: {why}")
    return out


#: Not-assessable items shared by more lesions than this are said once for all of them.
GROUP_NOT_ASSESSABLE_ABOVE = 3


def _not_assessable_lines(findings: FindingsDict) -> list:
    """``[{"what", "why"}]`` in words; an item shared by many lesions of one organ is said once."""
    lesions = {l.get("id"): l for l in findings.get("lesions", [])}
    groups: dict = {}
    for item in findings.get("not_assessable", []):
        lid, rest = _split_subject(item.get("what", ""), lesions)
        organ = lesions[lid].get("organ") if lid else None
        groups.setdefault((organ, rest if lid else None, item.get("why", "")), []).append((lid, item))
    out = []
    for (organ, rest, why), members in groups.items():
        if organ is not None and len(members) > GROUP_NOT_ASSESSABLE_ABOVE:
            out.append({"what": f"{rest.capitalize()} of {len(members)} {_LESION_WORDS.get(organ, organ)} lesions",
                        "why": why})
            continue
        for _, item in members:
            out.append({"what": _humanise(findings, item.get("what", ""), lesions), "why": item.get("why", "")})
    return out


_ORGAN_WORDS = {
    "liver": "liver", "spleen": "spleen", "pancreas": "pancreas", "kidney_right": "right kidney",
    "kidney_left": "left kidney", "gall_bladder": "gallbladder", "adrenal_gland_right": "right adrenal gland",
    "adrenal_gland_left": "left adrenal gland", "intestine": "small intestine", "bladder": "urinary bladder",
}
_LESION_WORDS = {"liver": "liver", "pancreas": "pancreatic", "kidney": "kidney"}
KIND_WORDS = {"pdac": "PDAC", "pnet": "PNET"}


def lesion_title_text(lesion: LesionEntry) -> str:
    """"Liver lesion 1", "Pancreatic PDAC 2" ... as the report names a lesion."""
    kind = lesion.get("kind") or "lesion"
    organ = lesion.get("organ")
    text = f"{_LESION_WORDS.get(organ or '', organ)} {KIND_WORDS.get(kind, kind)} {_lesion_number(lesion)}"
    return text[:1].upper() + text[1:]


def _humanise(findings: FindingsDict, what: str, lesions: dict | None = None) -> str:
    """A not-assessable item's subject in words: lesion ids and organ keys become their names."""
    head, _, rest = str(what).partition(" ")
    lesions = lesions if lesions is not None else {l.get("id"): l for l in findings.get("lesions", [])}
    if head in lesions:
        return f"{lesion_title_text(lesions[head])} {rest}".strip()
    if head in _ORGAN_WORDS or head in (findings.get("organs") or {}):
        word = _ORGAN_WORDS.get(head, head.replace("_", " "))
        return f"{word[:1].upper()}{word[1:]} {rest}".strip()
    return str(what).replace("_", " ")


def report_context(findings: FindingsDict, key_images: dict | None = None, key_image_note: str | None = None) -> dict:
    """Everything the templates see.

    ``f`` (also ``findings``) is the findings dict itself; the rest is ordering and grouping only.
    """
    phase = findings.get("phase", "unknown")
    rules = (findings.get("provenance") or {}).get("rules") or {}
    return {
        "f": findings,
        "findings": findings,  # the same dict under a self-explanatory name, for institution templates
        "case_id": findings.get("case_id", ""),
        "phase": phase,
        "contrast": phase in CONTRAST_PHASES,
        "has_ct": _has_ct(findings),
        "rules": rules,
        "sections": _sections(findings),
        "impression": _impression(findings),
        "not_assessable": _not_assessable_lines(findings),
        "warnings": findings.get("warnings", []),
        "lesion_number": {l.get("id"): _lesion_number(l) for l in findings.get("lesions", [])},
        "staging": {l.get("id"): _staging(l) for l in findings.get("lesions", [])},
        "lesion_notes": _lesion_notes(findings),
        "key_images": key_images or {},
        "key_image_note": key_image_note,
    }


# -------------------------------------------------------------------- API
def _render(name: str, context: dict, template_dir) -> str:
    text = get_environment(template_dir).get_template(name).render(context)
    text = re.sub(r"[ \t]+\n", "\n", text)
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip("\n") + "\n"


def render_text(findings: FindingsDict, template_dir=None) -> str:
    """The structured report as plain text (report.txt)."""
    return _render("report.txt.j2", report_context(findings), template_dir)


def render_markdown(findings: FindingsDict, template_dir=None) -> str:
    """The structured report as Markdown (report.md)."""
    return _render("report.md.j2", report_context(findings), template_dir)


#: Key images per lesion organ in report.html: the largest lesions get one, the rest are listed.
KEY_IMAGES_PER_ORGAN = 10


def key_image_lesions(findings: FindingsDict) -> list:
    """Ids of the lesions that get a key image: the :data:`KEY_IMAGES_PER_ORGAN` largest of each organ."""
    chosen: list[str | None] = []
    per_organ: dict[str | None, int] = {}  # organ -> lesions chosen so far
    for lesion in sorted(findings.get("lesions", []), key=lambda l: -(l.get("volume_ml") or 0.0)):
        n = per_organ.get(lesion.get("organ"), 0)
        if n < KEY_IMAGES_PER_ORGAN:
            chosen.append(lesion.get("id"))
            per_organ[lesion.get("organ")] = n + 1
    return chosen


def _html_key_images(findings: FindingsDict, case) -> tuple:
    images, note = {}, None
    if case is None:
        note = "no key images (the renderer was not given the case's CT and masks)"
    else:
        from .keyimages import key_images

        for lesion_id, ki in key_images(case, findings, only=key_image_lesions(findings)).items():
            images[lesion_id] = {
                "src": ki.data_uri(), "width": ki.width, "height": ki.height, "note": ki.note,
                "has_ct": ki.has_ct, "labels": ki.labels,
            }
    return images, note


def render_html(findings: FindingsDict, case=None, template_dir=None) -> str:
    """One self-contained HTML page: organ table, structured report and, given the
    :class:`~RadGPTLogic.case.Case`, a key image per lesion (inline PNG data URIs; the
    largest :data:`KEY_IMAGES_PER_ORGAN` lesions of each organ)."""
    images, note = _html_key_images(findings, case)
    return _render("report.html.j2", report_context(findings, images, note), template_dir)


def render_reports(findings: FindingsDict, case=None, template_dir=None) -> dict:
    """``{"report.txt", "report.md", "report.html"}`` from one shared context (built once)."""
    context = report_context(findings)
    images, note = _html_key_images(findings, case)
    return {
        "report.txt": _render("report.txt.j2", context, template_dir),
        "report.md": _render("report.md.j2", context, template_dir),
        "report.html": _render("report.html.j2", {**context, "key_images": images, "key_image_note": note},
                               template_dir),
    }
