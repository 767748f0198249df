"""The text model: normalising, sentences with their section context, organ words, negation and hedging.

Works on normalised text (:func:`normalise`); positions are character offsets in a sentence.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .vocabulary import (
    BILATERAL,
    HEDGE,
    NEG_BOUNDARY,
    ORGAN_WORDS,
    OTHER_VESSELS,
    POST_NEG,
    PRE_NEG,
    SECTION_HEADERS,
    SIDE_WORDS,
    VESSEL_PATTERNS,
)

_TRANSLATE = str.maketrans({
    "×": "x", "–": "-", "—": "-", "−": "-", "‐": "-", "\u00a0": " ", "\u2009": " ", "’": "'", "“": '"',
    "”": '"', "³": "3", "\t": " ", "•": "-",
})


def normalise(text: str) -> str:
    """Plain ASCII-ish text with list markers and markdown emphasis blanked out."""
    t = text.replace("\r\n", "\n").replace("\r", "\n").translate(_TRANSLATE)
    t = t.replace("≤", "<=").replace("≥", ">=").replace("&gt;", ">").replace("&lt;", "<")
    t = re.sub(r"\*\*|__(?=\w)|(?<=\w)__", "", t)
    t = re.sub(r"^[ ]*#{1,6}[ ]*", "", t, flags=re.M)
    t = re.sub(r"^[ ]*(?:\d{1,2}[.)]|[-*+])[ ]+", lambda m: " " * len(m.group()), t, flags=re.M)
    return t


def mask(text: str, pattern, flags=0) -> str:
    return re.sub(pattern, lambda m: "#" * len(m.group()), text, flags=flags)


def mask_vessels(text: str) -> str:
    """``text`` with vessel names blanked, so that "hepatic artery" or "renal vein" names no organ."""
    masked = mask(text, OTHER_VESSELS, re.I)
    for pat in VESSEL_PATTERNS.values():
        masked = mask(masked, pat)
    return masked


@dataclass
class Sentence:
    text: str           # the sentence (header label removed)
    masked: str         # same, vessel names blanked (for organ words)
    section: str        # "findings", "impression", "meta" ...
    section_organ: str | None  # organ of the section header ("kidney:right" possible)
    para: int


ABBREVIATIONS = re.compile(r"\b(?:vs|e\.g|i\.e|approx|dr|fig|cf|resp|incl|ca)\.$", re.I)


def split_sentences(text: str) -> list:
    """Sentences with their section context."""
    out = []
    section, section_organ, para = "findings", None, 0
    blank = False
    for line in text.split("\n"):
        if not line.strip():
            blank = True
            continue
        if blank:
            para += 1
            blank = False
        pieces, start = [], 0
        for gap in re.finditer(r"(?<=[.!?])\s+(?=[A-Z(\"\d])", line):
            if ABBREVIATIONS.search(line[start:gap.start()]):
                continue
            pieces.append(line[start:gap.start()])
            start = gap.end()
        pieces.append(line[start:])
        for piece in pieces:
            piece = piece.strip()
            if not piece:
                continue
            # Section headers: "Liver:", "IMPRESSION:", "Right kidney: ..."
            m = re.match(r"^\s*([A-Za-z][A-Za-z /&-]{1,40}?)\s*:\s*", piece)
            if m and m.group(1).strip().lower() in SECTION_HEADERS:
                kind, organ = SECTION_HEADERS[m.group(1).strip().lower()]
                if kind == "organ":
                    section_organ = organ
                    section = "findings" if section != "impression" else section
                else:
                    section, section_organ = ("impression" if kind == "impression" else "findings"), None
                    if kind == "meta" and m.group(1).strip().lower() != "findings":
                        section = "meta"
                para += 1
                piece = piece[m.end():]
                if not piece.strip():
                    continue
            out.append(Sentence(piece, mask_vessels(piece), section, section_organ, para))
    return out


def organ_hits(masked: str) -> list:
    """[(pos, organ)] for organ words in (vessel-masked) text."""
    hits = []
    for organ, pat in ORGAN_WORDS:
        for m in re.finditer(pat, masked, flags=re.I):
            hits.append((m.start(), organ))
    for m in re.finditer(r"\bS[1-8][ab]?\b", masked):  # "S7": case-sensitive
        hits.append((m.start(), "liver"))
    return sorted(set(hits))


def is_negated(text: str, start: int, end: int, window: int = 14) -> bool:
    """Is the term text[start:end] negated (NegEx-like, clause scope)?"""
    before = text[:start]
    cue = None
    for m in PRE_NEG.finditer(before):
        cue = m
    if cue is not None:
        between = before[cue.end():]
        if not NEG_BOUNDARY.search(between) and len(between.split()) <= window:
            return True
    after = text[end:]
    cut = NEG_BOUNDARY.search(after)
    scope = after[:cut.start()] if cut else after
    # The cue is anchored right after the term ("steatosis not assessable on ..."), so
    # the length of the rest of the clause does not matter.
    if POST_NEG.match(scope):
        return True
    return False


def is_hedged(text: str, start: int) -> bool:
    before = text[max(0, start - 80):start]
    cut = None
    for m in re.finditer(r"[;.]", before):
        cut = m
    if cut:
        before = before[cut.end():]
    after = text[start:start + 60]
    return bool(HEDGE.search(before)) or bool(
        re.match(r"^\W{0,3}(?:is|are)?\s*(?:possible|suspected|likely|questioned)", after, re.I))


def short(text: str, pos: int | None = None, width: int = 70) -> str:
    text = " ".join(text.split())
    if pos is None or len(text) <= width:
        return text if len(text) <= width else text[:width - 3] + "..."
    a = max(0, pos - width // 2)
    return ("..." if a else "") + text[a:a + width] + ("..." if a + width < len(text) else "")


def organ_near(sent: Sentence, start: int, end: int) -> str | None:
    hits = [(p, o) for p, o in organ_hits(sent.masked) if o != "lymph"]
    inside = [o for p, o in hits if start <= p < end + 25]
    if inside:
        return inside[0]
    if hits:
        return min(hits, key=lambda h: abs(h[0] - start))[1]
    return (sent.section_organ or "").split(":")[0] or None


def claim_organs(sent: Sentence, pos: int) -> list:
    """Organs (and kidney side) a size/attenuation claim at ``pos`` is about."""
    masked = sent.masked
    # the clause holding the claim
    cuts = [0] + [m.end() for m in re.finditer(r";|\.\s|\bbut\b|\bwhile\b|\bwhereas\b|,(?=\s*(?:and\s+)?(?:the\s+)?"
                                               r"(?:liver|spleen|pancreas|kidneys?|right|left|gallbladder)\b)",
                                               masked, re.I) if m.end() <= pos]
    lo = max(cuts)
    hi_m = re.search(r";|\.\s|\bbut\b|\bwhile\b|\bwhereas\b", masked[pos:], re.I)
    hi = pos + hi_m.start() if hi_m else len(masked)
    clause = masked[lo:hi]
    hits = [(p + lo, o) for p, o in organ_hits(clause) if o not in ("lymph",)]
    if re.search(r"\blymph|\bnod(?:es?|al)\b", clause, re.I):
        return []
    if not hits:
        organ = (sent.section_organ or "")
        if not organ or organ in ("vessels", "lymph", "other"):
            return []
        base, _, section_side = organ.partition(":")
        return [(base, section_side or None)]
    organs = []
    for p, o in hits:
        side: str | None = None
        if o == "kidney":
            if BILATERAL.search(clause) or re.search(r"\bkidneys\b", clause, re.I):
                side = None
            else:
                sm = SIDE_WORDS.search(masked[max(lo, p - 15):p + 30])
                side = sm.group(1).lower() if sm else ((sent.section_organ or "").partition(":")[2] or None)
        if (o, side) not in organs:
            organs.append((o, side))
    # one organ per claim unless the clause lists several ("the liver and spleen are enlarged")
    if len(organs) > 1 and not re.search(r"\b(?:and|both)\b", clause, re.I):
        organs = [min(((abs(p - pos), (o, s)) for (p, o), (oo, s) in zip(hits, organs)), key=lambda t: t[0])[1]]
    return organs
