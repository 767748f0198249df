"""The check itself: a narrative compared with findings.json, fact by fact (see the package docstring)."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Literal

from ...findings import FindingsDict, LesionEntry
from .mentions import (
    find_mentions,
    kind_ok,
    lesion_nouns,
    location_score,
    match_mentions,
    segment_ok,
    size_match,
)
from .notes import (
    NotesFacts,
)
from .numbers import (
    extract_numbers,
    finding_values,
    number_matches,
    threshold_values,
    unit_dim,
    values_by_owner,
)
from .text import (
    Sentence,
    claim_organs,
    is_hedged,
    is_negated,
    normalise,
    organ_near,
    short,
    split_sentences,
)
from .vocabulary import (
    CONTACT_VERBS,
    COUNT_EXPR,
    DIM_WORDS,
    ENLARGED,
    FINDINGS_ORGAN_OF,
    IMAGE_NO,
    INVENTED_TERMS,
    LESION_ORGANS,
    MEGALY_ORGAN,
    NM_STAGE,
    NORMAL_ATTEN,
    NORMAL_SIZE,
    NUMBER_WORDS,
    OVERALL_STAGE,
    RESECT,
    RULE_CLAUSE,
    SINGLE_COUNT,
    STEATOSIS,
    T_RULE_AFTER,
    T_STAGE,
    VESSEL_PATTERNS,
    VESSEL_WORDS,
)

ErrorKind = Literal[
    "dropped_lesion", "dropped_size", "dropped_location", "dropped_stage", "dropped_resectability",
    "dropped_vessel_contact", "dropped_organ_finding", "changed_number", "misattributed_number", "wrong_location",
    "swapped_side", "wrong_stage", "wrong_resectability", "wrong_vessel_contact", "wrong_organ_finding", "wrong_kind",
    "invented_finding",
]

ERROR_KINDS: dict[ErrorKind, str] = {
    "dropped_lesion": "a lesion of the findings is not mentioned",
    "dropped_size": "a lesion is mentioned without its size (both diameters)",
    "dropped_location": "a lesion's location (segment, pancreatic part, kidney side or pole) is missing",
    "dropped_stage": "the T stage of a staged lesion is missing",
    "dropped_resectability": "the resectability category is missing",
    "dropped_vessel_contact": "a vessel the tumour touches is not mentioned",
    "dropped_organ_finding": "an organ finding (enlargement, steatosis) is missing",
    "changed_number": "a number that matches no value of the findings (after allowed rounding and unit conversion)",
    "misattributed_number": "a number of the findings given to another organ or lesion than its own "
                            "(e.g. the pancreas's volume stated for the spleen)",
    "wrong_location": "a lesion placed in a segment, pancreatic part or kidney pole it does not occupy",
    "swapped_side": "a kidney lesion given the other side",
    "wrong_stage": "a T stage other than the findings'",
    "wrong_resectability": "a resectability category other than the findings'",
    "wrong_vessel_contact": "abutment/encasement or degrees that contradict the measured contact",
    "wrong_organ_finding": "an organ statement that contradicts the findings "
                           "(e.g. 'normal size' for an enlarged organ)",
    "wrong_kind": "a lesion called by a kind it is not (cyst vs solid, PDAC vs PNET) or with the wrong attenuation",
    "invented_finding": "a lesion, organ abnormality, metastasis, lymph node, stage or other finding "
                        "the findings do not hold",
}


@dataclass
class CheckResult:
    ok: bool
    errors: list = field(default_factory=list)          # [{"kind", "detail"}]
    facts_expected: list = field(default_factory=list)  # fact labels the text must hold
    facts_found: list = field(default_factory=list)     # those it holds
    warnings: list = field(default_factory=list)        # non-fatal remarks
    from_notes: list = field(default_factory=list)      # [{"kind", "detail"}]: additions the notes support

    def to_dict(self) -> dict:
        return asdict(self)

    def error_kinds(self) -> set:
        return {e["kind"] for e in self.errors}


def _cm(mm: float) -> str:
    return f"{mm / 10.0:.1f}"


def lesion_location_text(lesion: LesionEntry) -> str:
    loc = lesion.get("location") or {}
    bits = []
    if loc.get("couinaud"):
        bits.append("segment " + "/".join(loc["couinaud"]))
    if loc.get("pancreas_part"):
        bits.append(f"pancreatic {loc['pancreas_part']}")
    if lesion.get("side"):
        bits.append(f"{lesion['side']} kidney")
    if loc.get("kidney_pole"):
        bits.append(f"{loc['kidney_pole']} pole")
    return ", ".join(bits)


def fact_checklist(findings: FindingsDict) -> list:
    """The facts a narrative must keep, as short lines (also shown to the LLM)."""
    lines = []
    for lesion in findings.get("lesions") or []:
        L, P = lesion.get("longest_diameter_mm"), lesion.get("perpendicular_diameter_mm")
        kind: str | None = lesion.get("kind")
        kind = {"pdac": "PDAC", "pnet": "PNET"}.get(kind or "", kind)
        organ = {"liver": "liver", "pancreas": "pancreatic", "kidney": "kidney"}.get(lesion["organ"], lesion["organ"])
        text = f"{organ} {kind} ({lesion['id']}): {_cm(L)} x {_cm(P)} cm" if L is not None and P is not None \
            else f"{organ} {kind} ({lesion['id']})"
        where = lesion_location_text(lesion)
        if where:
            text += f", {where}"
        lines.append(text)
        contact = lesion.get("vessel_contact_deg") or {}
        for key, deg in contact.items():
            if deg:
                word = "encasement" if deg > 180 else "abutment"
                lines.append(f"  {VESSEL_WORDS.get(key, key)}: {deg:.0f} degrees of contact ({word})")
        if lesion.get("t_stage"):
            lines.append(f"  T stage {lesion['t_stage']}")
        resectability = lesion.get("resectability")
        if resectability:
            lines.append(f"  resectability: {resectability.replace('_', ' ')}")
    for name, entry in (findings.get("organs") or {}).items():
        title = name.replace("_", " ")
        enlarged = entry.get("enlarged")
        if enlarged in ("enlarged", "massively_enlarged"):
            lines.append(f"{title}: {enlarged.replace('_', ' ')}")
        if entry.get("steatosis") is True:
            lines.append(f"{title}: steatosis (fatty infiltration)")
        elif entry.get("possible_steatosis"):
            lines.append(f"{title}: low attenuation, possible steatosis (not certain)")
    if not findings.get("lesions"):
        lines.append("no liver, pancreatic or kidney lesion")
    return lines


class _Checker:
    def __init__(self, text: str, findings: FindingsDict, notes: str | None):
        self.raw = text
        self.text = normalise(text)
        self.f = findings
        self.lesions = findings.get("lesions") or []
        self.organs = findings.get("organs") or {}
        self.errors: list = []       # (kind, detail, key)
        self.warnings: list = []
        self.expected: list = []
        self.found: list = []
        self.sentences = split_sentences(self.text)
        self.by_id = {les["id"]: les for les in self.lesions}
        self.owned = values_by_owner(findings)
        self.mentions: list = []
        self.notes = NotesFacts(notes) if notes else None

    def err(self, kind: ErrorKind, detail: str, key=None) -> None:
        if kind not in ERROR_KINDS:  # a typo here would reach narrative_check.json unnoticed
            raise ValueError(f"unknown fact-check error kind {kind!r}")
        self.errors.append((kind, detail, key))

    def fact(self, label: str, ok: bool) -> bool:
        self.expected.append(label)
        if ok:
            self.found.append(label)
        return ok

    # -- lesions -------------------------------------------------------------
    def check_lesions(self) -> None:
        mentions = find_mentions(self.sentences)
        match_mentions(mentions, self.f)
        self.mentions = mentions
        by_id = {les["id"]: les for les in self.lesions}
        organs_with_lesions = {les["organ"] for les in self.lesions}
        organs_with_lesions |= {s.get("organ") for s in self.f.get("sub_threshold_lesions") or []}
        self._check_size_owners(mentions, by_id)
        for m in mentions:
            if m.lesions:
                continue
            nouns = [n for n in lesion_nouns(m.text) if not n[3]]
            if m.organ and m.organ not in LESION_ORGANS and m.organ not in ("vessels",):
                if nouns:
                    self.err("invented_finding", f"a lesion in the {m.organ.replace('_', ' ')} ('{short(m.text)}'); "
                             "the findings hold no lesion there", ("lesion", m.organ))
                continue
            if m.organ in LESION_ORGANS and m.organ not in organs_with_lesions:
                if nouns or m.sizes:
                    self.err("invented_finding", f"a {m.organ} lesion ('{short(m.text)}'); the findings hold "
                             f"no {m.organ} lesion", ("lesion", m.organ))
                continue
            if m.organ in (None, "vessels") and not self.lesions and nouns:
                self.err("invented_finding", f"a lesion ('{short(m.text)}'); the findings hold no lesion",
                         ("lesion", None))
                continue
            if m.sizes and (nouns or m.organ in LESION_ORGANS):
                organ = m.organ or "any organ"
                self.err("invented_finding", f"a lesion of {m.size_text} in {organ} ('{short(m.text)}') matches no "
                         "lesion of the findings", ("lesion", m.organ))
        for lesion in self.lesions:
            lid = lesion["id"]
            mine = [m for m in mentions if lid in m.lesions]
            if not self.fact(f"{lid}: mentioned", bool(mine)):
                self.err("dropped_lesion", f"{lid} ({_describe(lesion)}) is not mentioned")
                continue
            sized = [m for m in mine if m.sizes]
            size_cm = f"{_cm(lesion['longest_diameter_mm'])} x {_cm(lesion['perpendicular_diameter_mm'])} cm"
            size_label = f"{lid}: size {size_cm}"
            # A two-number size that is not this lesion's is an error even when another sentence gets it right.
            wrong = [m for m in sized if len(m.lesions) == 1 and (not size_match(m, lesion) or (
                size_match(m, lesion) == "partial" and len(m.sizes[0]["values"]) >= 2))]
            for m in wrong:
                owner = next((les for les in self.lesions if les is not lesion and les["organ"] == lesion["organ"]
                              and size_match(m, les) == "full"), None)
                if owner is not None:
                    self.err("misattributed_number", f"size {m.size_text} is {owner['id']}'s but is given to {lid} "
                             f"({lesion_location_text(lesion)}) ('{short(m.text)}')", ("size", lid))
                else:
                    self.err("changed_number", f"{lid}: size stated as {m.size_text}; findings {size_cm}",
                             ("size", lid))
            if not self.fact(size_label, any(m.size_ok for m in sized)) and not wrong:
                partial = [m for m in sized if size_match(m, lesion) == "partial"]
                if partial:
                    self.err("dropped_size", f"{lid}: only one diameter given ({partial[0].size_text}); findings "
                             f"{size_cm}")
                else:
                    self.err("dropped_size", f"{lid}: size {size_cm} is not stated")
            self._check_location(lesion, mine, by_id)
            for m in mine:
                if len(m.lesions) != 1:
                    continue
                if m.kinds and not kind_ok(m, lesion):
                    said = ", ".join(sorted(m.kinds))
                    self.err("wrong_kind", f"{lid} is a {lesion.get('kind')} but is described as {said} "
                             f"('{short(m.text)}')", ("kind", lid))
                att = lesion.get("attenuation")
                if m.atten and att and att not in m.atten and len(m.atten) == 1:
                    self.err("wrong_kind", f"{lid} is {att}attenuating but is described as "
                             f"{next(iter(m.atten))}attenuating ('{short(m.text)}')", ("atten", lid))

    def _check_size_owners(self, mentions: list, by_id: dict) -> None:
        """A size that is one lesion's, written where the text places another lesion (swapped sizes)."""
        for m in mentions:
            if not (m.sizes and m.size_ok and len(m.lesions) == 1):
                continue
            owner = by_id[m.lesions[0]]
            if location_score(m, owner) >= 0:
                continue
            placed = [les for les in self.lesions if les is not owner and les["organ"] == owner["organ"]
                      and location_score(m, les) > 0]
            if placed:
                self.err("misattributed_number", f"size {m.size_text} is {owner['id']}'s "
                         f"({lesion_location_text(owner)}) but is given to the lesion at "
                         f"{lesion_location_text(placed[0])} ({placed[0]['id']}) ('{short(m.text)}')",
                         ("size", owner["id"]))

    def _check_location(self, lesion: LesionEntry, mine: list, by_id: dict) -> None:
        lid = lesion["id"]
        loc = lesion.get("location") or {}

        def allowed_union(m, getter):
            out = set()
            for other in m.lesions:
                out |= set(getter(by_id[other]) or [])
            return out

        wrong = False
        if loc.get("couinaud"):
            segs = loc["couinaud"]
            stated: list | set = [s for m in mine for s in m.segments]
            for m in mine:
                allowed = list(allowed_union(m, lambda les: (les.get("location") or {}).get("couinaud")))
                bad = [s for s in m.segments if not segment_ok(s, allowed)]
                if bad:
                    wrong = True
                    self.err("wrong_location", f"{lid} is in {'/'.join(segs)} but the text says "
                             f"{'/'.join(bad)} ('{short(m.text)}')", ("location", lid))
                lobe_sets = {"right": {"S5", "S6", "S7", "S8"}, "left": {"S2", "S3", "S4", "S4a", "S4b"}}
                for lobe in m.lobes:
                    if not any(s in lobe_sets[lobe] or s[:2] in lobe_sets[lobe] for s in allowed):
                        wrong = True
                        self.err("wrong_location", f"{lid} is in {'/'.join(segs)} but the text says the {lobe} "
                                 f"lobe ('{short(m.text)}')", ("location", lid))
            ok = any(segment_ok(s, segs) for s in stated)
            if not self.fact(f"{lid}: location {'/'.join(segs)}", ok) and not wrong:
                self.err("dropped_location", f"{lid}: Couinaud segment {'/'.join(segs)} is not stated")
            elif ok:
                missing = [s for s in segs if not any(segment_ok(x, [s]) for x in stated)]
                if missing:
                    self.warnings.append(f"{lid}: segment {'/'.join(missing)} not named (also occupied)")
        if loc.get("pancreas_part"):
            part = loc["pancreas_part"]
            stated = [p for m in mine for p in m.parts]
            for m in mine:
                allowed = allowed_union(m, lambda les: [(les.get("location") or {}).get("pancreas_part")]
                                        + list(les.get("pancreas_parts") or []))
                bad = sorted({p for p in m.parts if p not in allowed})
                if bad:
                    wrong = True
                    self.err("wrong_location", f"{lid} is in the pancreatic {part} but the text says "
                             f"{'/'.join(bad)} ('{short(m.text)}')", ("location", lid))
            if not self.fact(f"{lid}: location pancreatic {part}", part in stated) and not wrong:
                self.err("dropped_location", f"{lid}: pancreatic part ({part}) is not stated")
        if lesion.get("organ") == "kidney" and lesion.get("side"):
            side = lesion["side"]
            stated = {s for m in mine for s in m.sides}
            swapped = False
            for m in mine:
                allowed = allowed_union(m, lambda les: [les.get("side")])
                bad = [s for s in m.sides if s not in allowed]
                if bad:
                    swapped = True
                    self.err("swapped_side", f"{lid} is in the {side} kidney but the text says {bad[0]} "
                             f"('{short(m.text)}')", ("side", lid))
            if not self.fact(f"{lid}: side {side}", side in stated) and not swapped:
                self.err("dropped_location", f"{lid}: kidney side ({side}) is not stated")
        if loc.get("kidney_pole"):
            pole = loc["kidney_pole"]
            stated = {p for m in mine for p in m.poles}
            for m in mine:
                allowed = allowed_union(m, lambda les: [(les.get("location") or {}).get("kidney_pole")])
                bad = [p for p in m.poles if p not in allowed]
                if bad:
                    wrong = True
                    self.err("wrong_location", f"{lid} is {pole} pole but the text says {bad[0]} "
                             f"('{short(m.text)}')", ("location", lid))
            if not self.fact(f"{lid}: {pole} pole", pole in stated) and not wrong:
                self.err("dropped_location", f"{lid}: kidney pole ({pole}) is not stated")

    # -- numbers -------------------------------------------------------------
    def check_numbers(self) -> None:
        values = finding_values(self.f)
        thresholds = threshold_values(self.f)
        for sent in self.sentences:
            nums, _ = extract_numbers(sent.text)
            for n in nums:
                pool = values.get(n.dim, [])
                if any(number_matches(n.value, n.decimals, n.unit, v) for v in pool):
                    if not n.comparator:
                        self._check_owner(sent, n)
                    continue
                if n.comparator and any(number_matches(n.value, n.decimals, n.unit, v) for v in thresholds[n.dim]):
                    continue
                dim, factor = unit_dim(n.unit)
                self.err("changed_number", f"'{n.text.strip()}' ('{short(sent.text, n.start)}') matches no "
                         f"{DIM_WORDS[n.dim]} in the findings", ("number", n.dim, round(n.value * factor, 6)))
            slices = {les.get(key) for les in self.lesions for key in ("slice_index", "canonical_slice")}
            for m in IMAGE_NO.finditer(sent.text):
                if int(m.group(1)) not in slices:
                    self.err("changed_number", f"image {m.group(1)} is no lesion's slice in the findings",
                             ("image", int(m.group(1))))
            self._check_counts(sent)

    # -- attribution: a right number under the wrong organ or lesion ----------
    def _owner_of(self, sent: Sentence, n) -> tuple:
        """(owners the sentence attaches the number to, how it names them), or ((), None) when it names none.

        Inside a lesion mention matched to one lesion: that lesion (and its organ, for "19 HU vs
        liver 60 HU").  Otherwise the organ(s) of the number's clause or section.
        """
        for m in self.mentions:
            if m.sentence is sent and m.start <= n.start < m.end and len(m.lesions) == 1:
                lesion = self.by_id[m.lesions[0]]
                lesion_side = lesion.get("side")
                host = [f"organ:{name}" for name in self.organs
                        if FINDINGS_ORGAN_OF.get(name, name) == lesion["organ"]
                        and (lesion["organ"] != "kidney" or not lesion_side or name.endswith(lesion_side))]
                return (f"lesion:{lesion['id']}", *host), lesion["id"]
        owners = []
        for organ, side in claim_organs(sent, n.start):
            names = [name for name in self.organs if FINDINGS_ORGAN_OF.get(name, name) == organ
                     and (side is None or name.endswith(side))]
            owners += [f"organ:{name}" for name in names]
            owners += [f"lesion:{les['id']}" for les in self.lesions if les["organ"] == organ
                       and (side is None or les.get("side") in (None, side))]
        named = [o for o in owners if o.startswith("organ:")]
        if not named:
            return (), None
        return tuple(owners), " / ".join(o.split(":", 1)[1].replace("_", " ") for o in named)

    def _check_owner(self, sent: Sentence, n) -> None:
        if n.dim in ("length", "deg"):  # sizes: matched per mention; degrees: the vessel check
            return
        owners, said = self._owner_of(sent, n)
        if not owners:
            return
        if any(number_matches(n.value, n.decimals, n.unit, v)
               for o in owners for v, _ in self.owned.get(o, {}).get(n.dim, [])):
            return
        true = [f"the {what} of the {o.split(':', 1)[1].replace('_', ' ')}"
                for o, dims in self.owned.items() for v, what in dims[n.dim]
                if number_matches(n.value, n.decimals, n.unit, v)]
        self.err("misattributed_number", f"'{n.text.strip()}' is stated for the {said} "
                 f"('{short(sent.text, n.start)}') but is {true[0] if true else 'another value'}",
                 ("number", n.dim, round(n.value * unit_dim(n.unit)[1], 6)))

    def _check_counts(self, sent: Sentence) -> None:
        for m in COUNT_EXPR.finditer(sent.text):
            if is_negated(sent.text, m.start(), m.end()):
                continue
            word, noun = m.group(1).lower(), m.group(2).lower()
            organ = organ_near(sent, m.start(), m.end())
            in_organ = organ in LESION_ORGANS + (None,)
            pool = [les for les in self.lesions if organ in (None, les["organ"])] if in_organ else []
            if noun.startswith("cyst"):
                pool = [les for les in pool if les.get("kind") == "cyst"]
            actual = len(pool)
            subs = sum(s.get("count", 0) for s in self.f.get("sub_threshold_lesions") or []
                       if organ in (None, s.get("organ")))
            if word in ("multiple", "several", "numerous", "innumerable"):
                if actual + subs < 2:
                    self.err("changed_number", f"'{m.group()}' but the findings hold {actual}", ("count", organ))
                continue
            n = NUMBER_WORDS.get(word) or int(word)
            if n not in (actual, actual + subs, subs):
                self.err("changed_number", f"'{m.group()}' but the findings hold {actual} "
                         f"{organ + ' ' if organ else ''}lesion(s)", ("count", organ, n))
        for m in SINGLE_COUNT.finditer(sent.text):
            if m.group(1).lower() == "one":
                continue
            organ = organ_near(sent, m.start(), m.end())
            pool = [les for les in self.lesions if organ in (None, les["organ"])]
            if m.group(2).lower().startswith("cyst"):
                pool = [les for les in pool if les.get("kind") == "cyst"]
            if len(pool) != 1:
                self.err("changed_number", f"'{m.group()}' but the findings hold {len(pool)}", ("count", organ))

    # -- staging -------------------------------------------------------------
    def check_staging(self) -> None:
        stages = {t for t in (les.get("t_stage") for les in self.lesions) if t}
        stated = []
        for sent in self.sentences:
            for m in T_STAGE.finditer(sent.text):
                if T_RULE_AFTER.match(sent.text[m.end():]):
                    continue
                # "T4 not excluded (no SMA mask)": a caveat, not a stage claim.
                if re.match(r"\s*(?:is\s+|was\s+)?(?:not excluded|cannot be excluded|not assess\w*)",
                            sent.text[m.end():], re.I):
                    continue
                before = sent.text[max(0, m.start() - 25):m.start()]
                if re.search(r"(?:<=|>=|<|>|\bvs\.?|\bnot|\bnor|\brather than|\binstead of)\s*$", before, re.I):
                    continue
                t = "T" + m.group(1)
                stated.append(t)
                for g in (2, 3):
                    tok = m.group(g)
                    if tok and tok[1:].lower() != "x":
                        self.err("invented_finding", f"{tok} stated ('{m.group()}'); the findings hold no N or M stage",
                                 ("stage", tok))
                if t.lower() == "tx":
                    continue
                if stages:
                    if t not in stages and not any(s.startswith(t) for s in stages):
                        self.err("wrong_stage", f"{t} stated; the findings give {'/'.join(sorted(stages))}",
                                 ("stage", t))
                else:
                    self.err("invented_finding", f"T stage {t} stated; the findings hold no T stage", ("stage", t))
            for m in NM_STAGE.finditer(sent.text):
                # N/M tokens that are part of a T-stage token were handled above
                if re.search(r"T(?:is|x|[0-4][abc]?)(?:N\w+)?$", sent.text[max(0, m.start() - 8):m.start()]):
                    continue
                if is_negated(sent.text, m.start(), m.end()):
                    continue
                self.err("invented_finding", f"{m.group(1)} stated; the findings hold no N or M stage",
                         ("stage", m.group(1)))
            for m in OVERALL_STAGE.finditer(sent.text):
                self.err("invented_finding", f"'{m.group()}' stated; the findings hold only a T stage",
                         ("stage", m.group()))
        for lesion in self.lesions:
            t_stage = lesion.get("t_stage")
            if t_stage:
                if not self.fact(f"{lesion['id']}: T stage {t_stage}", t_stage in stated):
                    coarse = [s for s in stated if t_stage.startswith(s)]
                    self.err("dropped_stage", f"{lesion['id']}: T stage {t_stage} is not stated"
                             + (f" (only {coarse[0]})" if coarse else ""))
        self._check_resectability()

    def _check_resectability(self) -> None:
        cats = {c for c in (les.get("resectability") for les in self.lesions) if c}
        stated = set()
        for sent in self.sentences:
            for m in RESECT.finditer(sent.text):
                word = m.group(1).lower()
                if word == "borderline" and not re.search(r"resect|NCCN|pancrea|PDAC|tumou?r|stage", sent.text, re.I):
                    continue
                if word.startswith("borderline"):
                    cat = "borderline"
                elif word.startswith(("locally", "unresect", "non", "nonresect", "not")):
                    cat = "locally_advanced"
                else:
                    if is_negated(sent.text, m.start(), m.end()):
                        cat = "locally_advanced"
                    else:
                        cat = "resectable"
                if re.search(r"\b(?:not assess\w*|cannot be assessed|not determined)\b",
                             sent.text[m.end():m.end() + 40], re.I):
                    continue
                stated.add(cat)
                if cats and cat not in cats:
                    self.err("wrong_resectability", f"'{m.group()}' stated; the findings say "
                             f"{'/'.join(c.replace('_', ' ') for c in sorted(cats))}", ("resect", cat))
                elif not cats:
                    self.err("invented_finding", f"resectability '{m.group()}' stated; the findings give no category",
                             ("resect", cat))
        for lesion in self.lesions:
            r = lesion.get("resectability")
            if r:
                if not self.fact(f"{lesion['id']}: resectability {r.replace('_', ' ')}", r in stated):
                    self.err("dropped_resectability", f"{lesion['id']}: resectability "
                             f"({r.replace('_', ' ')}) is not stated")

    # -- vessels -------------------------------------------------------------
    def check_vessels(self) -> None:
        contact: dict = {}
        # Every measured value per vessel: with several staged lesions a statement is
        # accepted when it fits any of them (mentions are not scoped to a lesion).
        values: dict = {}
        for lesion in self.lesions:
            for key, deg in (lesion.get("vessel_contact_deg") or {}).items():
                if deg is None:
                    contact.setdefault(key, None)
                else:
                    contact[key] = max(deg, contact.get(key) or 0.0)
                    values.setdefault(key, []).append(deg)
        mentioned = set()
        thresholds = threshold_values(self.f)["deg"]
        for sent in self.sentences:
            vessel_hits = []
            for key, pat in VESSEL_PATTERNS.items():
                for m in re.finditer(pat, sent.text):
                    vessel_hits.append((m.start(), m.end(), key))
            vessel_hits.sort()
            if not vessel_hits:
                continue
            nums, _ = extract_numbers(sent.text)
            degs = [n for n in nums if n.dim == "deg" and not (n.comparator and n.value in thresholds)]
            verbs = []
            for verb_name, verb_pat in CONTACT_VERBS:
                for m in verb_pat.finditer(sent.text):
                    verbs.append((m.start(), m.end(), verb_name))
            verbs.sort()
            for s, e, key in vessel_hits:
                negated = is_negated(sent.text, s, e)
                if negated:
                    continue
                # A staging rule quoted in the report ("T4 when CA or SMA has > 180
                # degrees of contact") names vessels without claiming contact.
                clause = re.split(r"[;:]", sent.text[:s])[-1]
                if RULE_CLAUSE.search(clause):
                    continue
                verb = _verb_for(sent.text, s, e, verbs, vessel_hits)
                deg_stated = _deg_for(sent.text, s, e, degs, vessel_hits)
                if verb is None and deg_stated is None:
                    # a vessel named without a contact statement: mentioned, nothing claimed
                    if contact.get(key):
                        mentioned.add(key)
                    continue
                mentioned.add(key)
                actual = contact.get(key, "absent")
                label = VESSEL_WORDS.get(key, key)
                if actual in ("absent", None):
                    self.err("wrong_vessel_contact", f"{label}: contact stated ('{short(sent.text, s)}') but the "
                             "findings " + ("could not assess it" if actual is None else "hold no measurement"),
                             ("vessel", key))
                    continue
                if actual == 0:
                    self.err("wrong_vessel_contact", f"{label}: contact stated ('{short(sent.text, s)}') but the "
                             "findings measure none (0 degrees)", ("vessel", key))
                    continue
                measured = [v for v in values.get(key, []) if v > 0]
                if verb == "encase" and not any(v > 180 for v in measured):
                    self.err("wrong_vessel_contact", f"{label}: 'encasement' stated but contact is {actual:.0f} "
                             "degrees (<= 180, abutment)", ("vessel", key))
                if verb == "abut" and not any(v <= 180 for v in measured):
                    self.err("wrong_vessel_contact", f"{label}: 'abutment' stated but contact is {actual:.0f} "
                             "degrees (> 180, encasement)", ("vessel", key))
                if deg_stated is not None and not any(
                        number_matches(deg_stated.value, deg_stated.decimals, deg_stated.unit, v) for v in measured):
                    self.err("wrong_vessel_contact", f"{label}: {deg_stated.text.strip()} stated but contact is "
                             f"{actual:.0f} degrees", ("vessel", key))
        for key, deg in contact.items():
            if deg:
                label = VESSEL_WORDS.get(key, key)
                if not self.fact(f"contact with {label} ({deg:.0f} degrees)", key in mentioned):
                    self.err("dropped_vessel_contact", f"tumour contact with the {label} ({deg:.0f} degrees) is "
                             "not stated")

    # -- organs --------------------------------------------------------------
    def check_organs(self) -> None:
        claims = []  # (organ, side, claim, negated, hedged, text)
        for sent in self.sentences:
            for m in ENLARGED.finditer(sent.text):
                if m.group(2):
                    organs = [(MEGALY_ORGAN[m.group(2).lower()], None)]
                else:
                    organs = claim_organs(sent, m.start())
                neg = is_negated(sent.text, m.start(), m.end())
                massive = bool(re.search(r"\bmassive(?:ly)?|\bmarked(?:ly)?",
                                         sent.text[max(0, m.start() - 20):m.end()], re.I))
                for organ, side in organs:
                    claim = "massive" if massive and not neg else "enlarged"
                    claims.append((organ, side, claim, neg, False, sent.text))
            for m in NORMAL_SIZE.finditer(sent.text):
                if is_negated(sent.text, m.start(), m.end()) and "not enlarged" not in m.group().lower():
                    continue
                for organ, side in claim_organs(sent, m.start()):
                    claims.append((organ, side, "enlarged", True, False, sent.text))
            for m in STEATOSIS.finditer(sent.text):
                word = m.group().lower()
                if "pancrea" in word or re.search(r"pancrea", sent.masked[max(0, m.start() - 40):m.end() + 30], re.I):
                    organ = "pancreas"
                else:
                    organ = "liver"
                neg, hedged = is_negated(sent.text, m.start(), m.end()), is_hedged(sent.text, m.start())
                if re.match(r"^[\w\s]{0,30}?\b(?:cannot|can ?not|could not) be (?:excluded|ruled out)"
                            r"|^[\w\s]{0,30}?\bnot excluded",
                            sent.text[m.end():], re.I):
                    neg, hedged = False, True
                claims.append((organ, None, "steatosis", neg, hedged, sent.text))
            for m in NORMAL_ATTEN.finditer(sent.text):
                for organ, side in claim_organs(sent, m.start()):
                    if organ in ("liver", "pancreas"):
                        claims.append((organ, side, "steatosis", True, False, sent.text))

        def entries(organ, side):
            if organ == "kidney":
                names = [f"kidney_{side}"] if side else ["kidney_left", "kidney_right"]
            else:
                names = [organ]
            return [(n, self.organs.get(n)) for n in names]

        found = set()
        for organ, side, claim, neg, hedged, text in claims:
            if organ in ("lymph", "vessels", "other"):
                continue
            for name, entry in entries(organ, side):
                title = name.replace("_", " ")
                if claim in ("enlarged", "massive"):
                    state = (entry or {}).get("enlarged")
                    big = state in ("enlarged", "massively_enlarged")
                    if not neg and big:
                        found.add((name, "enlarged"))
                        if claim == "massive" and state == "enlarged":
                            self.err("wrong_organ_finding", f"{title}: 'massive' enlargement stated; the findings "
                                     "say enlarged", ("organ", name, "massive"))
                    elif not neg and not big:
                        if organ == "kidney" and side is None and any(
                                (e or {}).get("enlarged") in ("enlarged", "massively_enlarged")
                                for _, e in entries("kidney", None)):
                            continue
                        self.err("invented_finding", f"{title} described as enlarged ('{short(text)}'); the findings "
                                 f"say {'not enlarged' if state == 'no' else 'nothing about its size'}",
                                 ("organ", name, "enlarged"))
                    elif neg and big:
                        if organ == "kidney" and side is None:
                            continue
                        self.err("wrong_organ_finding", f"{title} described as normal in size ('{short(text)}'); the "
                                 f"findings say {str(state).replace('_', ' ')}", ("organ", name, "normal"))
                elif claim == "steatosis":
                    entry = entry or {}
                    st, possible = entry.get("steatosis"), entry.get("possible_steatosis")
                    if not neg:
                        if st is True:
                            found.add((name, "steatosis"))
                        elif possible and st is None:
                            found.add((name, "possible_steatosis"))
                            if not hedged:
                                self.err("wrong_organ_finding", f"{title}: steatosis stated as certain "
                                         f"('{short(text)}'); the findings say only possible",
                                         ("organ", name, "steatosis"))
                        else:
                            self.err("invented_finding", f"{title}: steatosis/fatty infiltration stated "
                                     f"('{short(text)}'); the findings say "
                                     f"{'no steatosis' if st is False else 'nothing about it'}",
                                     ("organ", name, "steatosis"))
                    else:
                        if st is True:
                            self.err("wrong_organ_finding", f"{title}: steatosis denied ('{short(text)}'); the "
                                     "findings say steatosis", ("organ", name, "no steatosis"))
                        elif possible:
                            self.warnings.append(f"{title}: steatosis denied; the findings say possible steatosis")
        for name, entry in self.organs.items():
            title = name.replace("_", " ")
            enlarged = entry.get("enlarged")
            if enlarged in ("enlarged", "massively_enlarged"):
                if not self.fact(f"{name}: {enlarged.replace('_', ' ')}", (name, "enlarged") in found):
                    self.err("dropped_organ_finding", f"{title}: enlargement "
                             f"({enlarged.replace('_', ' ')}) is not stated")
            if entry.get("steatosis") is True:
                if not self.fact(f"{name}: steatosis", (name, "steatosis") in found):
                    self.err("dropped_organ_finding", f"{title}: steatosis / fatty infiltration is not stated")
            elif entry.get("possible_steatosis") and (name, "possible_steatosis") not in found:
                self.warnings.append(f"{title}: 'possible steatosis' (low attenuation) is not stated")

    # -- findings the engine never makes --------------------------------------
    def check_invented_terms(self) -> None:
        for sent in self.sentences:
            for label, pat in INVENTED_TERMS:
                for m in re.finditer(pat, sent.text, flags=re.I):
                    if is_negated(sent.text, m.start(), m.end()) or \
                            re.search(r"\b(?:not|no|without)\b", m.group(), re.I):
                        continue
                    if label == "lymph node" and re.search(r"\bnot (?:enlarged|pathologic\w*)|\bnormal|\bunremarkable",
                                                           sent.text[m.end():m.end() + 40], re.I):
                        continue
                    if label == "diagnosis" and re.match(r"^bosniak", m.group(), re.I) is None and \
                            re.search(r"\b(?:not|cannot|no)\b", sent.text[max(0, m.start() - 30):m.start()], re.I):
                        continue
                    self.err("invented_finding", f"{label}: '{m.group()}' ('{short(sent.text, m.start())}') is not "
                             "in the findings", ("term", label))

    # -- result --------------------------------------------------------------
    def run(self) -> CheckResult:
        self.check_lesions()
        self.check_numbers()
        self.check_staging()
        self.check_vessels()
        self.check_organs()
        self.check_invented_terms()
        errors, from_notes, seen = [], [], set()
        for kind, detail, key in self.errors:
            if (kind, detail) in seen:
                continue
            seen.add((kind, detail))
            if self.notes is not None and kind in ("invented_finding", "changed_number", "wrong_organ_finding") \
                    and self.notes.supports(key):
                from_notes.append({"kind": kind, "detail": detail, "tag": "from notes"})
                continue
            errors.append({"kind": kind, "detail": detail})
        return CheckResult(ok=not errors, errors=errors, facts_expected=self.expected,
                           facts_found=self.found, warnings=sorted(set(self.warnings)), from_notes=from_notes)


def _describe(lesion: LesionEntry) -> str:
    bits = [f"{_cm(lesion['longest_diameter_mm'])} x {_cm(lesion['perpendicular_diameter_mm'])} cm"]
    where = lesion_location_text(lesion)
    if where:
        bits.append(where)
    return ", ".join(bits)



def _after_verb(text: str, e: int, verbs: list, vessels: list):
    """A contact word right after the vessel ('portal vein encasement', 'CHA (abutment)', 'SMV is abutted')."""
    for v in verbs:
        if e <= v[0] <= e + 30:
            gap = text[e:v[0]]
            if not re.search(r"[,;)]|\band\b|\bor\b|\bwith\b", gap) and not any(e <= vs < v[0] for vs, _, _ in vessels):
                return v
    return None


def _verb_for(text: str, s: int, e: int, verbs: list, vessels: list):
    """The contact verb governing the vessel at text[s:e]: right after it, else the
    nearest one before it that is not itself the post-positioned word of another vessel."""
    v = _after_verb(text, e, verbs, vessels)
    if v is not None:
        return v[2]
    used = {id(_after_verb(text, ve, verbs, vessels)) for vs, ve, _ in vessels if ve <= s}
    before = [v for v in verbs if v[1] <= s and id(v) not in used]
    if before:
        return before[-1][2]
    return None


_DEG_AFTER_GAP = re.compile(
    r"^[\s(,:~=-]*(?:(?:by|over|of|for|at|measuring|spanning|approximately|approx\.?|about|with|solid|tumou?r"
    r"|contact|abutment|encasement|circumferential|involvement|the)\b[\s(,:~=-]*)*$", re.I)
_DEG_BEFORE_GAP = re.compile(
    r"^\s*(?:°|degrees?|deg)?[\s-]*(?:degrees?\s+)?(?:of\s+)?(?:(?:solid|tumou?r|circumferential|partial)\s+)*"
    r"(?:contact|abutment|encasement|involvement|abutting|encasing|contacting)?\s*(?:with|of|to|around|on)?\s*(?:the\s+)?$",
    re.I)


def _deg_for(text: str, s: int, e: int, degs: list, vessels: list):
    """A degree value written for the vessel at text[s:e]: right after it ('(231 degrees)',
    'by 102°') or right before it ('231° encasement of the portal vein')."""
    for n in degs:
        if e <= n.start <= e + 40 and _DEG_AFTER_GAP.match(text[e:n.start]):
            return n
    for n in reversed(degs):
        if n.end <= s and s - n.end <= 45 and _DEG_BEFORE_GAP.match(text[n.end:s]):
            return n
    return None


def check_narrative(narrative: str, findings: FindingsDict, notes: str | None = None) -> CheckResult:
    """Compare a free-text report with findings.json; see the module docstring."""
    return _Checker(narrative, findings, notes).run()
