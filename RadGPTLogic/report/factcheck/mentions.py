"""Lesion mentions in report text (size, organ, location, kind) and their matching to the findings' lesions.

Also :func:`describe_text`, the coarse reading of a whole report used to label example reports.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ...findings import FindingsDict, LesionEntry
from .numbers import (
    extract_numbers,
    number_matches,
    unit_dim,
)
from .text import (
    Sentence,
    claim_organs,
    is_negated,
    mask_vessels,
    normalise,
    organ_hits,
    split_sentences,
)
from .vocabulary import (
    ATTEN_WORDS,
    BILATERAL,
    CAUDATE,
    COMPARATOR,
    CONTACT_VERBS,
    CYST_WORDS,
    ENLARGED,
    LESION_NOUN,
    LESION_ORGANS,
    LOBE,
    MEGALY_ORGAN,
    PART_WORDS,
    PDAC_WORDS,
    PNET_WORDS,
    POLE_WORDS,
    ROMAN,
    S_LIST,
    SEGMENT_LIST,
    SIDE_WORDS,
    SOLID_WORDS,
    STEATOSIS,
    VESSEL_PATTERNS,
)


def _seg_token(tok: str):
    tok = tok.strip().upper().lstrip("S")
    m = re.match(r"^([1-8]|[IVX]{1,4})([AB])?$", tok)
    if not m:
        return None
    num = int(m.group(1)) if m.group(1).isdigit() else ROMAN.get(m.group(1).lower())
    if not num or num > 8:
        return None
    return f"S{num}{(m.group(2) or '').lower()}"


def _expand_list(lst: str) -> list:
    tokens = re.split(r"\s*(,|/|and|&|\+|or|-|to)\s*", lst, flags=re.I)
    segs, prev, rng = [], None, False
    for tok in tokens:
        if tok is None or not tok.strip():
            continue
        if tok.lower() in ("-", "to"):
            rng = True
            continue
        if tok.lower() in (",", "/", "and", "&", "+", "or"):
            rng = False
            continue
        seg = _seg_token(tok)
        if seg is None:
            continue
        if rng and prev is not None:
            a, b = int(prev[1]), int(seg[1])
            for k in range(min(a, b) + 1, max(a, b)):
                segs.append(f"S{k}")
        segs.append(seg)
        prev, rng = seg, False
    return segs


def find_segments(text: str) -> list:
    """[(start, end, [segments])] for Couinaud statements in text."""
    out = []
    for m in SEGMENT_LIST.finditer(text):
        segs = _expand_list(m.group("list"))
        if segs:
            out.append((m.start(), m.end(), segs))
    for m in S_LIST.finditer(text):
        if any(s <= m.start() < e for s, e, _ in out):
            continue
        segs = _expand_list("S" + m.group("list"))
        if segs:
            out.append((m.start(), m.end(), segs))
    for m in CAUDATE.finditer(text):
        out.append((m.start(), m.end(), ["S1"]))
    return sorted(out)


def segment_ok(stated: str, allowed: list) -> bool:
    """S4 matches S4a/S4b and the other way round; S4a does not match S4b."""
    for a in allowed:
        if stated == a or stated[:2] == a or a[:2] == stated:
            return True
    return False


@dataclass
class Mention:
    text: str
    sentence: Sentence
    organ: str | None
    sizes: list            # size expressions [(mm, decimals, unit)]
    size_text: str
    segments: list
    lobes: list
    parts: list
    poles: list
    sides: list
    kinds: set
    atten: set
    ids: list
    negated_only: bool = False
    lesions: list = field(default_factory=list)   # matched lesion ids
    size_ok: bool = False
    start: int = 0          # the mention's span in ``sentence.text``
    end: int = 0


def sentence_organ(sent: Sentence, anchor: int | None = None) -> str | None:
    hits = live_organ_hits(sent.text, sent.masked)
    if not hits:
        return None
    if anchor is None:
        return hits[0][1]
    return min(hits, key=lambda h: (abs(h[0] - anchor), h[0] > anchor))[1]


def lesion_nouns(text: str) -> list:
    """[(start, end, word, negated)] for lesion nouns."""
    out = []
    for m in LESION_NOUN.finditer(text):
        after = text[m.end():]
        if re.match(r"\s*(?:-\s*)?(?:contact|involvement|abutment|encasement|vessel|interface)\b", after, re.I):
            continue  # "solid tumour contact": a contact statement, not a lesion
        out.append((m.start(), m.end(), m.group(1), is_negated(text, m.start(), m.end())))
    return out


_SPLIT_RANKS = [
    (4, re.compile(r";")),
    (3, re.compile(r",\s*(?:and|while|whereas|plus|as well as|with)\b|\b(?:while|whereas)\b", re.I)),
    (2, re.compile(r"\b(?:and|plus|as well as|also)\b", re.I)),
    (1, re.compile(r"[,:]")),
    (0, re.compile(r"\(")),
]


def _split_points(text: str, anchors: list) -> list:
    """Where a sentence with several anchors (size expressions or lesion nouns) splits
    into per-lesion mentions: at the strongest delimiter between two anchors (";" >
    ", and" > "and" > "," > "("), the last one of that strength, never inside a
    segment list ("segments 7 and 8")."""
    loc_spans = [(s, e) for s, e, _ in find_segments(text)]
    points = [0]
    for prev, cur in zip(anchors, anchors[1:]):
        lo, hi = prev[1], cur[0]
        best = None
        for _rank, pat in _SPLIT_RANKS:
            for m in pat.finditer(text, lo, hi):
                if any(s <= m.start() < e for s, e in loc_spans):
                    continue
                best = m.start()
            if best is not None:
                break
        points.append(best if best is not None else hi)
    return points


def live_organ_hits(text: str, masked: str) -> list:
    """Organ words that are not negated ("not assessed: colon" names no place)."""
    out = []
    for p, o in organ_hits(masked):
        if o == "lymph":
            continue
        m = re.match(r"\w+", masked[p:])
        if m and is_negated(text, p, p + len(m.group())):
            continue
        out.append((p, o))
    return out


def _mention_from(text: str, sent: Sentence, prev_organ: str | None, sizes: list, anchor: int) -> Mention:
    hits = live_organ_hits(text, mask_vessels(text))
    organ = None
    if hits:
        organ = min(hits, key=lambda h: (abs(h[0] - anchor), h[0] > anchor))[1]
    if organ is None:
        organ = sentence_organ(sent)
    section_side = None
    if organ is None and sent.section_organ:
        organ = sent.section_organ.split(":")[0]
    if sent.section_organ and sent.section_organ.startswith("kidney:"):
        section_side = sent.section_organ.split(":")[1]
    if organ is None:
        organ = prev_organ
    segs = [s for _, _, ss in find_segments(text) for s in ss]
    lobes = []
    for m in LOBE.finditer(text):
        side = (m.group(1) or m.group(2)).lower()
        lobes.append(side)
    parts = []
    for m in PART_WORDS.finditer(text):
        w = m.group(1).lower()
        parts.append("head" if w == "uncinate" else w)
    poles = [name for name, pat in POLE_WORDS if pat.search(text)]
    sides = []
    if organ == "kidney":
        if BILATERAL.search(text):
            sides = ["left", "right"]
        else:
            sides = sorted({m.group(1).lower() for m in SIDE_WORDS.finditer(text)})
        if not sides and section_side:
            sides = [section_side]
    kinds = set()
    if CYST_WORDS.search(text):
        kinds.add("cyst")
    if PDAC_WORDS.search(text):
        kinds.add("pdac")
    if PNET_WORDS.search(text):
        kinds.add("pnet")
    if SOLID_WORDS.search(text):
        kinds.add("solid")
    atten = {name for name, pat in ATTEN_WORDS if pat.search(text)}
    ids = []
    for m in re.finditer(r"\b(liver|pancreatic|kidney)[ _](lesion|tumou?r|cyst|pdac|pnet)[ _#]?(\d+)\b", text, re.I):
        ids.append(f"{m.group(1).lower()}_{m.group(2).lower().replace('tumour', 'tumor')}_{m.group(3)}")
    if ids and (organ is None or organ not in LESION_ORGANS):
        organ = {"liver": "liver", "pancreatic": "pancreas", "kidney": "kidney"}[ids[0].split("_")[0]]
    return Mention(text=text, sentence=sent, organ=organ, sizes=sizes, size_text="",
                   segments=segs, lobes=lobes, parts=parts if organ == "pancreas" else [],
                   poles=poles if organ == "kidney" else [], sides=sides, kinds=kinds, atten=atten, ids=ids)


def _noun_anchors(text: str) -> list:
    """Non-negated lesion nouns, adjacent ones merged ("cystic lesion"): [(start, end)]."""
    anchors: list = []
    for start, end, _, neg in lesion_nouns(text):
        if neg:
            continue
        if anchors and start - anchors[-1][1] <= 25 and not re.search(r"[,;:(]|\band\b|\bor\b",
                                                                        text[anchors[-1][1]:start]):
            anchors[-1] = (anchors[-1][0], end)
        else:
            anchors.append((start, end))
    return anchors


def _absorbed(text: str, a: int, b: int, sizes: list) -> bool:
    """Is the lesion noun text[a:b] part of the phrase of a neighbouring size expression
    (no ';' / 'and' / ', and' between them, outside segment lists)?"""
    if not sizes:
        return False
    loc_spans = [(s, e) for s, e, _ in find_segments(text)]

    def joined(lo, hi):
        for rank, pat in _SPLIT_RANKS:
            if rank < 2:
                continue
            for m in pat.finditer(text, lo, hi):
                if not any(s <= m.start() < e for s, e in loc_spans):
                    return False
        return True

    before = [s for s in sizes if s["end"] <= a]
    after = [s for s in sizes if s["start"] >= b]
    if any(s["start"] < b and s["end"] > a for s in sizes):
        return True
    return (bool(before) and joined(before[-1]["end"], a)) or (bool(after) and joined(b, after[0]["start"]))


def find_mentions(sentences: list) -> list:
    """Lesion mentions: one per size expression, else one per (group of) lesion noun(s)."""
    mentions = []
    prev_organ, prev_para, last = None, None, None
    for sent in sentences:
        if sent.para != prev_para:
            prev_organ, last = None, None
            prev_para = sent.para
        _, sizes = extract_numbers(sent.text)
        sizes = [s for s in sizes if not COMPARATOR.search(sent.text[max(0, s["start"] - 30):s["start"]])]
        nouns = _noun_anchors(sent.text)
        if sizes or nouns:
            anchors = [(s["start"], s["end"], s) for s in sizes]
            anchors += [(a, b, None) for a, b in nouns if not _absorbed(sent.text, a, b, sizes)]
            anchors.sort(key=lambda t: t[0])
            points = _split_points(sent.text, anchors)
            for i, (a0, _, size) in enumerate(anchors):
                a = points[i]
                b = points[i + 1] if i + 1 < len(points) else len(sent.text)
                piece = sent.text[a:b]
                m = _mention_from(piece, sent, prev_organ, [size] if size else [], a0 - a)
                m.start, m.end = a, b
                if size:
                    m.size_text = size["text"]
                mentions.append(m)
                last = m
                if m.organ:
                    prev_organ = m.organ
        else:
            organ = sentence_organ(sent) or (sent.section_organ or "").split(":")[0] or None
            has_loc = bool(find_segments(sent.text)) or any(p.search(sent.text) for _, p in POLE_WORDS) \
                or bool(PART_WORDS.search(sent.text))
            if has_loc and last is not None and (organ is None or organ == last.organ) \
                    and last.sentence.para == sent.para:
                extra = _mention_from(sent.text, sent, last.organ, [], 0)
                last.segments += extra.segments
                last.parts += extra.parts if last.organ == "pancreas" else []
                last.poles += extra.poles if last.organ == "kidney" else []
                if last.organ == "kidney":
                    last.sides = sorted(set(last.sides) | set(extra.sides))
            if organ:
                prev_organ = organ
            if organ and last is not None and organ != last.organ:
                last = None
    return mentions


# =============================================================================
# Matching mentions to lesions
# =============================================================================

def size_match(mention: Mention, lesion: LesionEntry) -> str:
    """'full', 'partial' or ''."""
    if not mention.sizes:
        return ""
    values = mention.sizes[0]["values"]
    L, P = lesion.get("longest_diameter_mm"), lesion.get("perpendicular_diameter_mm")
    if L is None:
        return ""

    def ok(v, target):
        x_mm, d, unit = v
        factor = unit_dim(unit)[1]
        return target is not None and number_matches(x_mm / factor, d, unit, target)

    if len(values) >= 2:
        a, b = values[0], values[1]
        if (ok(a, L) and ok(b, P)) or (ok(a, P) and ok(b, L)):
            return "full"
        if ok(a, L) or ok(b, L):
            return "partial"
        return ""
    if ok(values[0], L):
        # one number is the whole size when both diameters display alike
        if P is not None and round(L / 10.0, 1) == round(P / 10.0, 1):
            return "full"
        return "partial"
    return ""


def kind_ok(mention: Mention, lesion: LesionEntry) -> bool:
    kind = lesion.get("kind")
    if kind in mention.kinds:
        return True  # the right word is there (other words may be explanation: "criteria apply to adenocarcinoma")
    if "cyst" in mention.kinds and kind != "cyst" and not ({"pdac", "pnet"} & mention.kinds):
        return False
    if kind == "cyst" and (mention.kinds & {"solid", "pdac", "pnet"}):
        return False
    if "pdac" in mention.kinds and kind not in ("pdac", "tumor", "lesion"):
        return False
    if "pnet" in mention.kinds and kind not in ("pnet", "tumor", "lesion"):
        return False
    return True


def location_score(mention: Mention, lesion: LesionEntry) -> float:
    """How well the mention's side, segment, pancreatic part and pole fit the lesion (> 0 fits, < 0 contradicts)."""
    s = 0.0
    loc = lesion.get("location") or {}
    if mention.sides:
        s += 3 if lesion.get("side") in mention.sides else -3
    if mention.segments and loc.get("couinaud"):
        s += 2 if all(segment_ok(x, loc["couinaud"]) for x in mention.segments) else -2
    if mention.parts and loc.get("pancreas_part"):
        allowed = set(lesion.get("pancreas_parts") or []) | {loc["pancreas_part"]}
        s += 2 if all(p in allowed for p in mention.parts) else -2
    if mention.poles and loc.get("kidney_pole"):
        s += 2 if loc["kidney_pole"] in mention.poles else -2
    return s


def _score(mention: Mention, lesion: LesionEntry) -> float:
    s = location_score(mention, lesion)
    sm = size_match(mention, lesion)
    s += {"full": 10, "partial": 6, "": 0}[sm]
    if lesion["id"] in mention.ids:
        s += 8
    if mention.kinds:
        s += 1 if kind_ok(mention, lesion) else -1
    return s


def match_mentions(mentions: list, findings: FindingsDict) -> None:
    """Fill ``mention.lesions`` (ids) and ``mention.size_ok``."""
    lesions = findings.get("lesions") or []
    for m in mentions:
        cands = [les for les in lesions if m.organ in (None, "vessels") or les["organ"] == m.organ]
        if m.organ not in (None, "vessels") and m.organ not in LESION_ORGANS:
            cands = []
        if not cands:
            continue
        scored = sorted(((_score(m, les), les) for les in cands), key=lambda t: -t[0])
        if m.sizes:
            best_score, best = scored[0]
            if best_score > 0:
                m.lesions = [best["id"]]
                m.size_ok = size_match(m, best) == "full"
        else:
            top = scored[0][0]
            if top > 0:
                m.lesions = [les["id"] for s, les in scored if s == top]
            elif top == 0:
                m.lesions = [les["id"] for s, les in scored if s == 0]


def describe_text(text: str) -> dict:
    """What a free-text report asserts, coarsely: for labelling example reports.

    ``{"lesions": [(organ, kind)], "enlarged": {organ}, "steatosis": {organ},
    "vascular": bool}``; ``kind`` is ``cyst``, ``pdac``, ``pnet`` or ``tumor``
    (any other lesion).  Negated statements are left out.
    """
    sentences = split_sentences(normalise(text))
    lesions = []
    for m in find_mentions(sentences):
        nouns = [n for n in lesion_nouns(m.text) if not n[3]]
        if not (nouns or m.sizes) or m.organ not in LESION_ORGANS:
            continue
        kind = "pdac" if "pdac" in m.kinds else "pnet" if "pnet" in m.kinds else \
            "cyst" if "cyst" in m.kinds else "tumor"
        lesions.append((m.organ, kind))
    enlarged, steatosis, vascular = set(), set(), False
    for sent in sentences:
        for m in ENLARGED.finditer(sent.text):
            if is_negated(sent.text, m.start(), m.end()):
                continue
            organs = [MEGALY_ORGAN[m.group(2).lower()]] if m.group(2) else [o for o, _ in claim_organs(sent, m.start())]
            enlarged |= {o for o in organs if o in ("liver", "spleen", "pancreas", "kidney")}
        for m in STEATOSIS.finditer(sent.text):
            if not is_negated(sent.text, m.start(), m.end()):
                steatosis.add("pancreas" if re.search(r"pancrea", sent.text, re.I) else "liver")
        for pat in VESSEL_PATTERNS.values():
            for v in re.finditer(pat, sent.text):
                if is_negated(sent.text, v.start(), v.end()):
                    continue
                if any(p.search(sent.text) for _, p in CONTACT_VERBS):
                    vascular = True
    return {"lesions": lesions, "enlarged": enlarged, "steatosis": steatosis, "vascular": vascular}
