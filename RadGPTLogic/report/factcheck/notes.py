"""What a radiologist's notes state, so that the enhanced report's additions they support are not errors."""

from __future__ import annotations

import re

from .mentions import (
    find_mentions,
    lesion_nouns,
)
from .numbers import (
    extract_numbers,
    unit_dim,
)
from .text import (
    claim_organs,
    is_negated,
    normalise,
    split_sentences,
)
from .vocabulary import (
    ENLARGED,
    FINDINGS_ORGAN_OF,
    INVENTED_TERMS,
    MEGALY_ORGAN,
    NM_STAGE,
    OVERALL_STAGE,
    RESECT,
    STEATOSIS,
    T_STAGE,
)


class NotesFacts:
    """What a radiologist's notes state, to tag additions in the enhanced report."""

    def __init__(self, notes: str):
        self.text = normalise(notes)
        self.sentences = split_sentences(self.text)
        self.terms, self.lesion_organs, self.numbers, self.organ_claims, self.stages = set(), set(), [], set(), set()
        for sent in self.sentences:
            for label, pat in INVENTED_TERMS:
                for m in re.finditer(pat, sent.text, flags=re.I):
                    if not is_negated(sent.text, m.start(), m.end()):
                        self.terms.add(label)
            for n in extract_numbers(sent.text)[0]:
                self.numbers.append(n)
            for m in ENLARGED.finditer(sent.text):
                if not is_negated(sent.text, m.start(), m.end()):
                    if m.group(2):
                        self.organ_claims.add((MEGALY_ORGAN[m.group(2).lower()], "enlarged"))
                    for organ, _side in claim_organs(sent, m.start()):
                        self.organ_claims.add((organ, "enlarged"))
                        if organ == "kidney":
                            self.organ_claims |= {("kidney_left", "enlarged"), ("kidney_right", "enlarged")}
            for m in STEATOSIS.finditer(sent.text):
                if not is_negated(sent.text, m.start(), m.end()):
                    self.organ_claims.add(("pancreas" if "pancrea" in sent.text.lower() else "liver", "steatosis"))
            for m in T_STAGE.finditer(sent.text):
                self.stages.add("T" + m.group(1))
                for g in (2, 3):
                    if m.group(g):
                        self.stages.add(m.group(g))
            for m in NM_STAGE.finditer(sent.text):
                self.stages.add(m.group(1))
            for m in OVERALL_STAGE.finditer(sent.text):
                self.stages.add(m.group())
            if RESECT.search(sent.text):
                self.stages.add("resect")
        for m in find_mentions(self.sentences):
            if m.organ and (m.sizes or any(not n[3] for n in lesion_nouns(m.text))):
                self.lesion_organs.add(m.organ)
            elif m.sizes:
                self.lesion_organs.add(None)

    def supports(self, key) -> bool:
        if not key:
            return False
        kind = key[0]
        if kind == "term":
            return key[1] in self.terms
        if kind == "lesion":
            return key[1] in self.lesion_organs or (None in self.lesion_organs)
        if kind == "number":
            dim, value = key[1], key[2]
            for n in self.numbers:
                d, factor = unit_dim(n.unit)
                if d == dim and abs(n.value * factor - value) <= 1e-6 * max(1.0, abs(value)):
                    return True
            return False
        if kind == "size":
            return any(unit_dim(n.unit)[0] == "length" for n in self.numbers)
        if kind == "organ":
            name, claim = key[1], key[2]
            base = FINDINGS_ORGAN_OF.get(name, name)
            return (name, claim) in self.organ_claims or (base, claim) in self.organ_claims
        if kind in ("stage", "resect"):
            return bool(self.stages)
        if kind == "count":
            return bool(self.lesion_organs)
        return False
