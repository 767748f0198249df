"""Fact check of a free-text report (an LLM narrative) against findings.json.

Deterministic, rule based, no LLM.  The narrative is read sentence by sentence:

* lesion mentions (lesion nouns that are not negated, and size expressions such
  as ``3.1 x 2.2 cm``), each with its organ, size, location (Couinaud segment,
  pancreatic part, kidney side and pole), kind and attenuation words;
* every number with a unit (mm, cm, mL/cc/cm3/L/mm3, HU, degrees, %), counts of
  lesions ("two liver lesions") and image numbers;
* T stage, N/M stage, resectability category, vessel contact statements;
* organ statements (enlarged / normal size, steatosis / fatty infiltration);
* findings the engine never makes (metastasis, lymph nodes, ascites, duct
  dilatation, thrombosis, specific diagnoses ...).

Each mention is matched to the findings' lesions (size first, then side,
location, kind), and the result is compared with findings.json.  Negation
("no focal lesion", "without", "not enlarged", "is not seen") and hedging
("possible steatosis") are understood at clause level.  See
:data:`ERROR_KINDS` for what counts as an error and :func:`number_matches` for
the rounding tolerances.

``check_narrative(text, findings)`` returns a JSON-serialisable
:class:`CheckResult`.  With ``notes`` (a radiologist's free text, enhanced
mode), additions that the notes support are not errors: they are listed in
``from_notes``.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

# =============================================================================
# Result
# =============================================================================

ERROR_KINDS = {
    "dropped_lesion": "a lesion of the findings is not mentioned",
    "dropped_size": "a lesion is mentioned without its size (both diameters)",
    "dropped_location": "a lesion's location (segment, pancreatic part, kidney side or pole) is missing",
    "dropped_stage": "the T stage of a staged lesion is missing",
    "dropped_resectability": "the resectability category is missing",
    "dropped_vessel_contact": "a vessel the tumour touches is not mentioned",
    "dropped_organ_finding": "an organ finding (enlargement, steatosis) is missing",
    "changed_number": "a number that matches no value of the findings (after allowed rounding and unit conversion)",
    "wrong_location": "a lesion placed in a segment, pancreatic part or kidney pole it does not occupy",
    "swapped_side": "a kidney lesion given the other side",
    "wrong_stage": "a T stage other than the findings'",
    "wrong_resectability": "a resectability category other than the findings'",
    "wrong_vessel_contact": "abutment/encasement or degrees that contradict the measured contact",
    "wrong_organ_finding": "an organ statement that contradicts the findings (e.g. 'normal size' for an enlarged organ)",
    "wrong_kind": "a lesion called by a kind it is not (cyst vs solid, PDAC vs PNET) or with the wrong attenuation",
    "invented_finding": "a lesion, organ abnormality, metastasis, lymph node, stage or other finding the findings do not hold",
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


# =============================================================================
# Vocabulary
# =============================================================================

NUMBER_WORDS = {"two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
                "nine": 9, "ten": 10}
ROMAN = {"i": 1, "ii": 2, "iii": 3, "iv": 4, "v": 5, "vi": 6, "vii": 7, "viii": 8}

VESSEL_PATTERNS = {
    "SMA": r"\bSMA\b|\b[Ss]uperior mesenteric arter(?:y|ies)\b",
    "CA": r"\bCA\b|\b[Cc](?:o)?eliac(?: (?:trunk|axis|artery))?\b",
    "CHA": r"\bCHA\b|\b(?:[Cc]ommon |[Pp]roper )?[Hh]epatic arter(?:y|ies)\b",
    "SMV": r"\bSMV\b|\b[Ss]uperior mesenteric veins?\b",
    "PV": r"\bPV\b|\b(?:[Mm]ain )?[Pp]ortal veins?\b",
    "aorta": r"\b[Aa]ort(?:a|ic)\b",
    "IVC": r"\bIVC\b|\b(?:[Ii]nferior )?[Vv]ena cava\b",
}
VESSEL_WORDS = {"SMA": "SMA", "CA": "celiac axis", "CHA": "common hepatic artery", "SMV": "SMV",
                "PV": "portal vein", "aorta": "aorta", "IVC": "IVC"}
# Vessels named only so their words ("splenic", "renal", "hepatic") do not read as organs.
OTHER_VESSELS = (r"\b(?:splenic|renal|hepatic|gastroduodenal|mesenteric|gonadal|iliac|left gastric)"
                 r" (?:veins?|arter(?:y|ies)|vessels?)\b|\bsplenoportal\b|\bportomesenteric\b|\bGDA\b")

ORGAN_WORDS = [
    ("liver", r"\b(?:liver|hepatic|hepato\w*|couinaud|caudate)\b|\bsegments? (?:S?[1-8]|[IVX]{1,4})\b"),
    ("spleen", r"\b(?:spleen|splenic|splenomegaly|splenule)\b"),
    ("pancreas", r"\b(?:pancreas|pancreatic|pancreatico\w*|uncinate|PDAC|PNET|ampull\w*)\b"),
    ("kidney", r"\b(?:kidneys?|renal|nephro\w*|bosniak|interpolar)\b|\b(?:upper|lower|superior|inferior) poles?\b"),
    ("gall_bladder", r"\b(?:gall ?bladder|cholecyst\w*|biliary|bile ducts?|CBD)\b"),
    ("adrenal", r"\badrenals?(?: glands?)?\b"),
    ("stomach", r"\b(?:stomach|gastric)\b"),
    ("bowel", r"\b(?:bowel|colon|colonic|duoden\w*|intestin\w*|jejun\w*|ileum|ileal|appendix|rectum)\b"),
    ("lung", r"\b(?:lungs?|lung bases|pulmonary)\b"),
    ("bone", r"\b(?:bones?|osseous|vertebra\w*|spine|skeletal)\b"),
    ("bladder", r"\b(?:urinary bladder|bladder)\b"),
    ("peritoneum", r"\b(?:peritone\w*|omentum|omental|mesenter\w*|retroperitone\w*)\b"),
    ("lymph", r"\b(?:lymph ?nodes?|lymphadenopathy|adenopathy|nodal)\b"),
]
LESION_ORGANS = ("liver", "pancreas", "kidney")
FINDINGS_ORGAN_OF = {"kidney_left": "kidney", "kidney_right": "kidney"}

SECTION_HEADERS = {
    # meta sections: organ context cleared
    **{k: ("meta", None) for k in (
        "findings", "technique", "comparison", "history", "clinical history", "indication",
        "clinical indication", "exam", "examination", "procedure", "report", "recommendation",
        "recommendations", "note", "notes", "assessment", "staging", "clinical information",
        "narrative report", "structured report", "abdomen", "upper abdomen", "ct abdomen", "not assessable",
        "limitations", "radiologist notes", "additional findings")},
    **{k: ("impression", None) for k in ("impression", "conclusion", "conclusions", "summary", "opinion")},
    **{k: ("organ", "liver") for k in ("liver", "hepatic", "hepatobiliary", "liver and biliary", "liver/biliary")},
    **{k: ("organ", "spleen") for k in ("spleen",)},
    **{k: ("organ", "pancreas") for k in ("pancreas",)},
    **{k: ("organ", "kidney") for k in ("kidneys", "kidney", "renal", "kidneys and ureters",
                                         "genitourinary", "urinary tract", "kidneys/ureters")},
    "right kidney": ("organ", "kidney:right"),
    "left kidney": ("organ", "kidney:left"),
    **{k: ("organ", "gall_bladder") for k in ("gallbladder", "gall bladder", "biliary", "bile ducts",
                                               "gallbladder and bile ducts")},
    **{k: ("organ", "adrenal") for k in ("adrenals", "adrenal glands", "adrenal")},
    **{k: ("organ", "vessels") for k in ("vessels", "vasculature", "vascular", "vascular structures")},
    **{k: ("organ", "lymph") for k in ("lymph nodes", "nodes", "lymphatics")},
    **{k: ("organ", "other") for k in (
        "bowel", "gi tract", "gastrointestinal", "stomach and bowel", "stomach", "peritoneum",
        "bones", "osseous structures", "lung bases", "musculoskeletal", "other", "other findings",
        "pelvis", "bladder", "abdominal wall", "soft tissues", "ascites", "mesentery", "duodenum", "colon",
        "small intestine", "small bowel", "esophagus", "urinary bladder", "lungs")},
}

# Lesion nouns; the second field is the kind the word implies.
LESION_NOUN = re.compile(
    r"\b(lesions?|mass(?:es)?|tumou?rs?|cysts?|cystic|nodules?|foc(?:us|i)|hypodensit(?:y|ies)"
    r"|neoplasms?|carcinomas?|adenocarcinomas?|malignanc(?:y|ies)|cancers?|PDAC|PNET"
    r"|neuroendocrine|metastas[ie]s|metastatic|h(?:a)?emangiomas?|HCC|hepatomas?|cholangiocarcinomas?"
    r"|RCC|angiomyolipomas?|adenomas?|abscess(?:es)?|FNH)\b", re.I)
DIAGNOSIS_WORDS = re.compile(
    r"\b(h(?:a)?emangiomas?|HCC|hepatocellular carcinoma|hepatomas?"
    r"|cholangiocarcinomas?|RCC|renal cell carcinoma|angiomyolipomas?|adenomas?|abscess(?:es)?|FNH"
    r"|focal nodular hyperplasia|bosniak\s+\w+|lymphomas?|IPMN|mucinous)\b", re.I)
CYST_WORDS = re.compile(r"\bcyst(?:s|ic)?\b", re.I)
SOLID_WORDS = re.compile(r"\b(solid|carcinomas?|adenocarcinomas?|PDAC|PNET|neuroendocrine|malignan\w*|cancers?)\b", re.I)
PDAC_WORDS = re.compile(r"\b(PDAC|adenocarcinomas?|ductal)\b", re.I)
PNET_WORDS = re.compile(r"\b(PNET|neuroendocrine)\b", re.I)
ATTEN_WORDS = [
    ("hypo", re.compile(r"\b(hypo(?:-)?(?:dense|attenuat\w*|enhancing|density)|low[- ](?:attenuation|density))\b", re.I)),
    ("iso", re.compile(r"\b(iso(?:-)?(?:dense|attenuat\w*|enhancing|density))\b", re.I)),
    ("hyper", re.compile(r"\b(hyper(?:-)?(?:dense|attenuat\w*|enhancing|density)|high[- ](?:attenuation|density))\b", re.I)),
]

# Findings the engine never makes: a non-negated mention is invented (or from the notes).
INVENTED_TERMS = [
    ("metastasis", r"\bmetasta\w*"),
    ("lymph node", r"\blymph ?nodes?\b|\blymphadenopathy\b|\badenopathy\b|\bnodal (?:disease|involvement)\b"),
    ("ascites", r"\bascites\b|\bfree (?:intraperitoneal |abdominal )?fluid\b"),
    ("thrombosis", r"\bthromb\w*|\bocclu\w*|\bstenos\w*|\bnarrowing\b"),
    ("duct dilatation", r"\b(?:duct\w*|biliary|CBD|bile ducts?|pancreatic duct|wirsung)\s+(?:\w+\s+){0,2}?dilat\w*"
                        r"|\bdilat\w*\s+(?:of\s+)?(?:the\s+)?(?:\w+\s+){0,2}?(?:ducts?|CBD|biliary\w*)\b"
                        r"|\bdouble[- ]duct\b|\bhydronephrosis\b|\bhydroureter\w*"),
    ("cirrhosis", r"\bcirrho\w*|\bnodular (?:liver )?(?:contour|surface)\b"),
    ("calculus", r"\b(?:gall)?stones?\b|\bcalcul(?:us|i)\b|\b(?:nephro|chole)lithiasis\b"),
    ("carcinomatosis", r"\bcarcinomatosis\b|\bperitoneal (?:nodules?|implants?|deposits?)\b"),
    ("atrophy", r"\batroph\w*"),
    ("calcification", r"\bcalcifi\w*"),
    ("haemorrhage", r"\bh(?:a)?emorrhag\w*|\bhematoma\b|\bhaematoma\b"),
    ("free air", r"\bfree air\b|\bpneumoperitoneum\b"),
    ("diagnosis", DIAGNOSIS_WORDS.pattern),
]

PRE_NEG = re.compile(
    r"\b(no|not|without|negative for|free of|absence of|absent|nor|neither|none|rule[sd]? out|ruling out"
    r"|no evidence of|no sign of|no signs of|resolved)\b", re.I)
POST_NEG = re.compile(
    r"^\W*(?:(?:is|are|was|were|has|have been|had been|be)\s+)?(?:\w+\s+)?(?:not\s+(?:seen|identified|present|visuali[sz]ed|demonstrated|"
    r"evident|detected|enlarged|dilated|assess\w*|evaluat\w*|involved|appreciated|noted|shown)|absent|excluded|"
    r"negative|ruled out|none|free|spared|clear|uninvolved|cannot be (?:excluded|assessed|evaluated)|"
    r"could not be (?:assessed|evaluated)|not assessable)\b", re.I)
NEG_BOUNDARY = re.compile(
    r"[;.!?]|\b(?:but|however|although|though|except|apart from|aside from|besides|whereas|while|which|"
    r"other than|consistent with|with (?:a|an)|there is|there are)\b|,\s*(?:and\s+)?(?:a|an|the|it|there|its)\b"
    r"|\band\s+(?:\w+\s+)?(?:contains?|shows?|demonstrates?|has|have|is|are|reveals?|harbou?rs?|there)\b", re.I)
HEDGE = re.compile(
    r"\b(possible|possibly|probable|probably|may|might|could|suggest\w*|likely|questionable|equivocal"
    r"|query|concern for|suspicious for|raising the possibility|cannot be excluded|borderline low)\b", re.I)

# Numbers.  Units are matched case-insensitively except litres ("L").
_NUM = r"(\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?)"
_LEN_UNIT = r"(?:mm|millimet(?:er|re)s?|cm(?![3\w])|centimet(?:er|re)s?)"
_UNIT = (r"(?P<unit>mm3|mm(?!\w)|millimet(?:er|re)s?|cm3|cm(?![3\w])|centimet(?:er|re)s?|cubic centimet(?:er|re)s?"
         r"|ml|mls|millilit(?:er|re)s?|cc|(?-i:L)|lit(?:er|re)s?|hu|hounsfield units?|h\.u\.|°|degrees?|deg(?!\w)"
         r"|%|percent|per cent)")
SIZE_EXPR = re.compile(
    rf"(?<![\w.,]){_NUM}\s*(?:-\s*)?{_LEN_UNIT}?\s*(?:x|by|\*)\s*{_NUM}\s*(?:-\s*)?{_LEN_UNIT}?"
    rf"(?:\s*(?:x|by|\*)\s*{_NUM})?\s*(?:-\s*)?(?P<unit>{_LEN_UNIT})(?![\w])", re.I)
RANGE_EXPR = re.compile(rf"(?<![\w.,]){_NUM}\s*(?:-|to)\s*{_NUM}\s*(?:-\s*)?{_UNIT}(?![\w])", re.I)
SINGLE_EXPR = re.compile(rf"(?<![\w.,])(?P<sign>[-+])?{_NUM}\s*(?:-\s*)?{_UNIT}(?![\w])", re.I)
COMPARATOR = re.compile(
    r"(?:<=|>=|=<|=>|<|>|\bless than|\bmore than|\bgreater than|\blarger than|\bsmaller than|\bover|\bunder"
    r"|\bbelow|\babove|\bexceeding|\bat least|\bat most|\bup to|\bcut-?off(?: of)?|\bthreshold(?: of)?"
    r"|\bbeyond|\bwithin)\s*(?:\(|approximately\s+|about\s+)?$", re.I)
IMAGE_NO = re.compile(r"\b(?:image|img|slice|im)\s*(?:#|no\.?|number)?\s*(\d+)\b", re.I)
COUNT_EXPR = re.compile(
    r"\b(two|three|four|five|six|seven|eight|nine|ten|multiple|several|numerous|innumerable|\d{1,2})"
    r"\s+(?:[\w-]+\s+){0,3}?(lesions|masses|tumou?rs|cysts|nodules|foci|hypodensities)\b", re.I)
SINGLE_COUNT = re.compile(r"\b(single|solitary|only one|one)\s+(?:[\w-]+\s+){0,3}?(lesion|mass|tumou?r|cyst|nodule|focus)\b", re.I)

T_STAGE = re.compile(r"(?<![A-Za-z0-9])(?:[cpy]|yp)?T(is|x|[0-4][abc]?)(N(?:x|X|[0-3][abc]?))?(M(?:x|X|[01][abc]?))?"
                     r"(?![A-Za-z0-9])")
RULE_CLAUSE = re.compile(r"\bT[0-4][abc]?\s+(?:when|if)\b|\brule\b", re.I)
T_RULE_AFTER = re.compile(r"^\s*(?:when|if|would|requires?|=|is defined|criteri\w*|rule|applies|means|:\s*tumou?r)", re.I)
NM_STAGE = re.compile(r"(?<![A-Za-z0-9])[cpy]?(N[0-3][abc]?|M[01][abc]?)(?![A-Za-z0-9])")
OVERALL_STAGE = re.compile(r"\b(?:AJCC |clinical |overall )?stage\s+(?:I{1,3}|IV|[1-4])[ABC]?\b")
RESECT = re.compile(
    r"\b(borderline(?:[ -]resectab\w+)?|locally[ -]advanced|unresectable|non-?resectable|not resectable"
    r"|(?:potentially |upfront |primarily |technically )?resectable)\b", re.I)

SEGMENT_LIST = re.compile(
    r"\b(?:couinaud\s+)?segments?\s+(?P<list>(?:S)?(?:[1-8][ab]?|[IVX]{1,4}[ab]?)\b"
    r"(?:\s*(?:,|/|and|&|-|to|or|\+)\s*(?:(?:S)?(?:[1-8][ab]?|[IVX]{1,4}[ab]?)\b))*)", re.I)
S_LIST = re.compile(r"\bS(?P<list>[1-8][ab]?(?:\s*(?:,|/|and|&|-|to|or|\+)\s*S?[1-8][ab]?\b)*)")
CAUDATE = re.compile(r"\bcaudate\b", re.I)
LOBE = re.compile(r"\b(right|left)\s+(?:hepatic\s+|liver\s+)?lobe\b|\b(right|left)\s+lobe\s+of\s+the\s+liver\b", re.I)
PART_WORDS = re.compile(r"\b(head|neck|body|tail|uncinate)\b", re.I)
POLE_WORDS = [
    ("upper", re.compile(r"\b(?:upper|superior|cranial)[ -]?(?:pole|third|portion|part)\b|\bupper-pole\b", re.I)),
    ("lower", re.compile(r"\b(?:lower|inferior|caudal)[ -]?(?:pole|third|portion|part)\b", re.I)),
    ("interpolar", re.compile(r"\b(?:interpolar|mid[ -]?pole|midpole|mid[ -]?kidney|middle (?:third|portion|part)"
                              r"|mid(?:dle)? portion|mid[- ]?portion|mid[- ]?third)\b", re.I)),
]
SIDE_WORDS = re.compile(r"\b(right|left)(?:[- ]sided)?\b", re.I)
BILATERAL = re.compile(r"\bbilateral(?:ly)?\b|\bboth kidneys\b", re.I)

CONTACT_VERBS = [
    ("encase", re.compile(r"\b(encas\w*|surround\w*|circumferential\w*|wrap\w*)\b", re.I)),
    ("abut", re.compile(r"\b(abut\w*|touch\w*|partial(?:ly)? contact\w*)\b", re.I)),
    ("contact", re.compile(r"\b(contact\w*|involv\w*|invad\w*|invasion|infiltrat\w*|extend\w* (?:to|into|around))\b", re.I)),
]

ENLARGED = re.compile(r"\b(enlarged|enlargement|increased in (?:size|volume)|(hepato|spleno|nephro)megaly|massively)\b", re.I)
MEGALY_ORGAN = {"hepato": "liver", "spleno": "spleen", "nephro": "kidney"}
NORMAL_SIZE = re.compile(
    r"\b(normal[ -]sized?|normal in (?:size|volume)|normal (?:size|volume|dimensions)|within normal (?:size )?limits"
    r"|not enlarged|normal(?:ly)? sized)\b", re.I)
STEATOSIS = re.compile(
    r"\b(steatosis|steatotic|fatty (?:infiltration|liver|change|changes|pancreas|replacement|infiltrated|deposition)"
    r"|hepatic fat|fat(?:ty)? deposition|lipomatosis)\b", re.I)
NORMAL_ATTEN = re.compile(r"\bnormal (?:attenuation|density|parenchymal attenuation)\b", re.I)


# =============================================================================
# Text model
# =============================================================================

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


def _mask(text: str, pattern, flags=0) -> str:
    return re.sub(pattern, lambda m: "#" * len(m.group()), text, flags=flags)


@dataclass
class Sentence:
    text: str           # the sentence (header label removed)
    masked: str         # same, vessel names blanked (for organ words)
    section: str        # "findings", "impression", "meta" ...
    section_organ: str | None  # organ of the section header ("kidney:right" possible)
    para: int


ABBREVIATIONS = re.compile(r"\b(?:vs|e\.g|i\.e|approx|dr|fig|cf|resp|incl|ca)\.$", re.I)


def _split_sentences(text: str) -> list:
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
        for m in re.finditer(r"(?<=[.!?])\s+(?=[A-Z(\"\d])", line):
            if ABBREVIATIONS.search(line[start:m.start()]):
                continue
            pieces.append(line[start:m.start()])
            start = m.end()
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
            masked = _mask(piece, OTHER_VESSELS, re.I)
            for pat in VESSEL_PATTERNS.values():
                masked = _mask(masked, pat)
            out.append(Sentence(piece, masked, section, section_organ, para))
    return out


def _organ_hits(masked: str) -> list:
    """[(pos, organ)] for organ words in (vessel-masked) text."""
    hits = []
    for organ, pat in ORGAN_WORDS:
        for m in re.finditer(pat, masked, flags=re.I):
            hits.append((m.start(), organ))
    for m in re.finditer(r"\bS[1-8][ab]?\b", masked):  # "S7": case-sensitive
        hits.append((m.start(), "liver"))
    return sorted(set(hits))


def _negated(text: str, start: int, end: int, window: int = 14) -> bool:
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


def _hedged(text: str, start: int) -> bool:
    before = text[max(0, start - 80):start]
    cut = None
    for m in re.finditer(r"[;.]", before):
        cut = m
    if cut:
        before = before[cut.end():]
    return bool(HEDGE.search(before)) or bool(re.match(r"^\W{0,3}(?:is|are)?\s*(?:possible|suspected|likely|questioned)", text[start:start + 60], re.I))


# ---------------------------------------------------------------------------
# Numbers
# ---------------------------------------------------------------------------

@dataclass
class Num:
    value: float
    decimals: int
    dim: str        # length | volume | hu | deg | pct
    unit: str
    start: int
    end: int
    text: str
    comparator: bool = False


def _unit_dim(unit: str) -> tuple:
    """(dimension, factor to the base unit: mm, mL, HU, degree, percent)."""
    u = unit.lower()
    if u in ("mm", "millimeter", "millimeters", "millimetre", "millimetres"):
        return "length", 1.0
    if u in ("cm", "centimeter", "centimeters", "centimetre", "centimetres"):
        return "length", 10.0
    if u == "mm3":
        return "volume", 0.001
    if u in ("ml", "mls", "cc", "cm3") or u.startswith("millilit") or u.startswith("cubic"):
        return "volume", 1.0
    if unit == "L" or u.startswith("liter") or u.startswith("litre"):
        return "volume", 1000.0
    if u in ("hu", "h.u.") or u.startswith("hounsfield"):
        return "hu", 1.0
    if u in ("°", "degree", "degrees", "deg"):
        return "deg", 1.0
    return "pct", 1.0


def _parse_num(s: str) -> tuple:
    s = s.replace(",", "")
    return float(s), (len(s.split(".")[1]) if "." in s else 0)


def extract_numbers(text: str) -> tuple:
    """(numbers with units, size expressions) in ``text`` (normalised)."""
    nums, sizes, taken = [], [], []

    def free(a, b):
        return all(b <= s or a >= e for s, e in taken)

    def comparator_before(pos):
        return bool(COMPARATOR.search(text[max(0, pos - 30):pos]))

    for m in SIZE_EXPR.finditer(text):
        if not free(m.start(), m.end()):
            continue
        unit = m.group("unit")
        dim, factor = _unit_dim(unit)
        values = []
        for g in (1, 2, 3):
            if m.group(g) is None:
                continue
            v, d = _parse_num(m.group(g))
            gstart = m.start(g)
            nums.append(Num(v, d, dim, unit, gstart, m.end(g), m.group(g), comparator_before(gstart)))
            values.append((v * factor, d, unit))
        sizes.append({"start": m.start(), "end": m.end(), "values": values, "text": m.group()})
        taken.append((m.start(), m.end()))
    for m in RANGE_EXPR.finditer(text):
        if not free(m.start(), m.end()):
            continue
        unit = m.group("unit")
        dim, factor = _unit_dim(unit)
        for g in (1, 2):
            v, d = _parse_num(m.group(g))
            nums.append(Num(v, d, dim, unit, m.start(g), m.end(g), m.group(g), comparator_before(m.start(1))))
        taken.append((m.start(), m.end()))
    for m in SINGLE_EXPR.finditer(text):
        if not free(m.start(), m.end()):
            continue
        unit = m.group("unit")
        dim, factor = _unit_dim(unit)
        v, d = _parse_num(m.group(2))
        if m.group("sign") == "-":
            if dim != "hu":
                continue  # a hyphen, not a sign ("S7-8 mm" never happens; "2-3 cm" is a range)
            v = -v
        start = m.start(2) if m.group("sign") is None else m.start()
        nums.append(Num(v, d, dim, unit, start, m.end(2), m.group(), comparator_before(start)))
        if dim == "length":
            sizes.append({"start": start, "end": m.end(), "values": [(abs(v) * factor, d, unit)], "text": m.group()})
        taken.append((m.start(), m.end()))
    sizes.sort(key=lambda s: s["start"])
    nums.sort(key=lambda n: n.start)
    return nums, sizes


def number_matches(x: float, decimals: int, unit: str, value: float) -> bool:
    """Does the written number ``x`` (with ``decimals`` digits after the point, in
    ``unit``) state the findings value ``value`` (base unit: mm, mL, HU, degree, %)?

    Tolerances: half a unit of the last written digit, with at least one decimal
    for centimetres ("3 cm" states 29.5 mm, not 24 mm).  Lengths and volumes are
    also accepted as the re-rounding of the structured report's displayed value
    (cm with 1 decimal, mL with 1 decimal), so "21 mm" for 20.67 mm shown as 2.1 cm
    passes.
    """
    dim, factor = _unit_dim(unit)
    if dim == "length" and factor == 10.0:
        tol = 0.5 * 10 ** -max(decimals, 1) * 10.0
    else:
        tol = 0.5 * 10 ** -decimals * factor
    x_base = x * factor
    candidates = [value]
    if dim == "length":
        candidates.append(round(value / 10.0, 1) * 10.0)
    elif dim == "volume":
        candidates.append(round(value, 1))
    elif dim in ("hu", "deg", "pct"):
        candidates.append(float(round(value)))
    return any(abs(x_base - c) <= tol + 1e-6 * max(1.0, abs(c)) for c in candidates)


def _finding_values(findings: dict) -> dict:
    """Every value a number in the text may state, by dimension (base units)."""
    vals = {"length": [], "volume": [], "hu": [], "deg": [], "pct": []}
    organs = findings.get("organs") or {}
    for entry in organs.values():
        if entry.get("volume_ml") is not None:
            vals["volume"].append(entry["volume_ml"])
        for key in ("mean_hu", "sd_hu"):
            if entry.get(key) is not None:
                vals["hu"].append(entry[key])
    liver, spleen = organs.get("liver", {}), organs.get("spleen", {})
    if liver.get("mean_hu") is not None and spleen.get("mean_hu") is not None:
        d = liver["mean_hu"] - spleen["mean_hu"]
        vals["hu"] += [d, -d]
    for lesion in findings.get("lesions") or []:
        for key in ("longest_diameter_mm", "perpendicular_diameter_mm"):
            if lesion.get(key) is not None:
                vals["length"].append(lesion[key])
        if lesion.get("volume_ml") is not None:
            vals["volume"].append(lesion["volume_ml"])
        for key in ("mean_hu", "sd_hu"):
            if lesion.get(key) is not None:
                vals["hu"].append(lesion[key])
        for deg in (lesion.get("vessel_contact_deg") or {}).values():
            if deg is not None:
                vals["deg"].append(deg)
        if lesion.get("exophytic_fraction") is not None:
            vals["pct"].append(lesion["exophytic_fraction"] * 100)
        if lesion.get("in_organ_fraction") is not None:
            vals["pct"].append(lesion["in_organ_fraction"] * 100)
        for key in ("couinaud_shares", "pancreas_part_shares"):
            vals["pct"] += [v * 100 for v in (lesion.get(key) or {}).values() if v is not None]
    for sub in findings.get("sub_threshold_lesions") or []:
        if sub.get("total_volume_ml") is not None:
            vals["volume"].append(sub["total_volume_ml"])
    parts = ((findings.get("anatomy") or {}).get("pancreas_parts") or {}).get("volumes_ml") or {}
    vals["volume"] += [v for v in parts.values() if v is not None]
    return vals


def _threshold_values(findings: dict) -> dict:
    """Cut-offs a report may quote after a comparator ("> 180 degrees", "<= 2 cm")."""
    th = {"length": [5.0, 10.0, 20.0, 40.0], "volume": [], "hu": [], "deg": [180.0, 90.0, 0.0],
          "pct": [50.0, 70.0]}
    rules = ((findings.get("provenance") or {}).get("rules")) or {}
    for key, v in rules.items():
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            continue
        if key.endswith("_ml"):
            th["volume"].append(float(v))
        elif key.endswith("_mm3"):
            th["volume"].append(float(v) / 1000.0)
        elif key.endswith("_hu"):
            th["hu"] += [float(v), -float(v)]
        elif key.endswith("_mm"):
            th["length"].append(float(v))
        elif key.endswith("_ratio"):
            th["pct"].append(float(v) * 100)
    return th


# ---------------------------------------------------------------------------
# Locations
# ---------------------------------------------------------------------------

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


def _segment_ok(stated: str, allowed: list) -> bool:
    """S4 matches S4a/S4b and the other way round; S4a does not match S4b."""
    for a in allowed:
        if stated == a or stated[:2] == a or a[:2] == stated:
            return True
    return False


# =============================================================================
# Mentions
# =============================================================================

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


def _sentence_organ(sent: Sentence, anchor: int | None = None) -> str | None:
    hits = _live_organ_hits(sent.text, sent.masked)
    if not hits:
        return None
    if anchor is None:
        return hits[0][1]
    return min(hits, key=lambda h: (abs(h[0] - anchor), h[0] > anchor))[1]


def _lesion_nouns(text: str) -> list:
    """[(start, end, word, negated)] for lesion nouns."""
    out = []
    for m in LESION_NOUN.finditer(text):
        if re.match(r"\s*(?:-\s*)?(?:contact|involvement|abutment|encasement|vessel|interface)\b", text[m.end():], re.I):
            continue  # "solid tumour contact": a contact statement, not a lesion
        out.append((m.start(), m.end(), m.group(1), _negated(text, m.start(), m.end())))
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
        for rank, pat in _SPLIT_RANKS:
            for m in pat.finditer(text, lo, hi):
                if any(s <= m.start() < e for s, e in loc_spans):
                    continue
                best = m.start()
            if best is not None:
                break
        points.append(best if best is not None else hi)
    return points


def _live_organ_hits(text: str, masked: str) -> list:
    """Organ words that are not negated ("not assessed: colon" names no place)."""
    out = []
    for p, o in _organ_hits(masked):
        if o == "lymph":
            continue
        m = re.match(r"\w+", masked[p:])
        if m and _negated(text, p, p + len(m.group())):
            continue
        out.append((p, o))
    return out


def _mention_from(text: str, sent: Sentence, prev_organ: str | None, sizes: list, anchor: int) -> Mention:
    hits = _live_organ_hits(text, _mask_piece(text))
    organ = None
    if hits:
        organ = min(hits, key=lambda h: (abs(h[0] - anchor), h[0] > anchor))[1]
    if organ is None:
        organ = _sentence_organ(sent)
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


def _mask_piece(text: str) -> str:
    masked = _mask(text, OTHER_VESSELS, re.I)
    for pat in VESSEL_PATTERNS.values():
        masked = _mask(masked, pat)
    return masked


def _noun_anchors(text: str) -> list:
    """Non-negated lesion nouns, adjacent ones merged ("cystic lesion"): [(start, end)]."""
    anchors = []
    for start, end, _, neg in _lesion_nouns(text):
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
                if size:
                    m.size_text = size["text"]
                mentions.append(m)
                last = m
                if m.organ:
                    prev_organ = m.organ
        else:
            organ = _sentence_organ(sent) or (sent.section_organ or "").split(":")[0] or None
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

def _size_match(mention: Mention, lesion: dict) -> str:
    """'full', 'partial' or ''."""
    if not mention.sizes:
        return ""
    values = mention.sizes[0]["values"]
    L, P = lesion.get("longest_diameter_mm"), lesion.get("perpendicular_diameter_mm")
    if L is None:
        return ""

    def ok(v, target):
        x_mm, d, unit = v
        factor = _unit_dim(unit)[1]
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


def _kind_ok(mention: Mention, lesion: dict) -> bool:
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


def _score(mention: Mention, lesion: dict) -> float:
    s = 0.0
    sm = _size_match(mention, lesion)
    s += {"full": 10, "partial": 6, "": 0}[sm]
    if lesion["id"] in mention.ids:
        s += 8
    loc = lesion.get("location") or {}
    if mention.sides:
        s += 3 if lesion.get("side") in mention.sides else -3
    if mention.segments and loc.get("couinaud"):
        s += 2 if all(_segment_ok(x, loc["couinaud"]) for x in mention.segments) else -2
    if mention.parts and loc.get("pancreas_part"):
        allowed = set(lesion.get("pancreas_parts") or []) | {loc["pancreas_part"]}
        s += 2 if all(p in allowed for p in mention.parts) else -2
    if mention.poles and loc.get("kidney_pole"):
        s += 2 if loc["kidney_pole"] in mention.poles else -2
    if mention.kinds:
        s += 1 if _kind_ok(mention, lesion) else -1
    return s


def match_mentions(mentions: list, findings: dict) -> None:
    """Fill ``mention.lesions`` (ids) and ``mention.size_ok``."""
    lesions = findings.get("lesions") or []
    for m in mentions:
        cands = [l for l in lesions if m.organ in (None, "vessels") or l["organ"] == m.organ]
        if m.organ not in (None, "vessels") and m.organ not in LESION_ORGANS:
            cands = []
        if not cands:
            continue
        scored = sorted(((_score(m, l), l) for l in cands), key=lambda t: -t[0])
        if m.sizes:
            best_score, best = scored[0]
            if best_score > 0:
                m.lesions = [best["id"]]
                m.size_ok = _size_match(m, best) == "full"
        else:
            top = scored[0][0]
            if top > 0:
                m.lesions = [l["id"] for s, l in scored if s == top]
            elif top == 0:
                m.lesions = [l["id"] for s, l in scored if s == 0]


# =============================================================================
# The check
# =============================================================================

def _cm(mm: float) -> str:
    return f"{mm / 10.0:.1f}"


def lesion_location_text(lesion: dict) -> str:
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


def fact_checklist(findings: dict) -> list:
    """The facts a narrative must keep, as short lines (also shown to the LLM)."""
    lines = []
    for lesion in findings.get("lesions") or []:
        L, P = lesion.get("longest_diameter_mm"), lesion.get("perpendicular_diameter_mm")
        kind = {"pdac": "PDAC", "pnet": "PNET"}.get(lesion.get("kind"), lesion.get("kind"))
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
        if lesion.get("resectability"):
            lines.append(f"  resectability: {lesion['resectability'].replace('_', ' ')}")
    for name, entry in (findings.get("organs") or {}).items():
        title = name.replace("_", " ")
        if entry.get("enlarged") in ("enlarged", "massively_enlarged"):
            lines.append(f"{title}: {entry['enlarged'].replace('_', ' ')}")
        if entry.get("steatosis") is True:
            lines.append(f"{title}: steatosis (fatty infiltration)")
        elif entry.get("possible_steatosis"):
            lines.append(f"{title}: low attenuation, possible steatosis (not certain)")
    if not findings.get("lesions"):
        lines.append("no liver, pancreatic or kidney lesion")
    return lines


class _Checker:
    def __init__(self, text: str, findings: dict, notes: str | None):
        self.raw = text
        self.text = normalise(text)
        self.f = findings
        self.lesions = findings.get("lesions") or []
        self.organs = findings.get("organs") or {}
        self.errors: list = []       # (kind, detail, key)
        self.warnings: list = []
        self.expected: list = []
        self.found: list = []
        self.sentences = _split_sentences(self.text)
        self.notes = _NotesFacts(notes) if notes else None

    def err(self, kind: str, detail: str, key=None) -> None:
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
        by_id = {l["id"]: l for l in self.lesions}
        organs_with_lesions = {l["organ"] for l in self.lesions}
        organs_with_lesions |= {s.get("organ") for s in self.f.get("sub_threshold_lesions") or []}
        for m in mentions:
            if m.lesions:
                continue
            nouns = [n for n in _lesion_nouns(m.text) if not n[3]]
            if m.organ and m.organ not in LESION_ORGANS and m.organ not in ("vessels",):
                if nouns:
                    self.err("invented_finding", f"a lesion in the {m.organ.replace('_', ' ')} ('{_short(m.text)}'); "
                             "the findings hold no lesion there", ("lesion", m.organ))
                continue
            if m.organ in LESION_ORGANS and m.organ not in organs_with_lesions:
                if nouns or m.sizes:
                    self.err("invented_finding", f"a {m.organ} lesion ('{_short(m.text)}'); the findings hold "
                             f"no {m.organ} lesion", ("lesion", m.organ))
                continue
            if m.organ in (None, "vessels") and not self.lesions and nouns:
                self.err("invented_finding", f"a lesion ('{_short(m.text)}'); the findings hold no lesion",
                         ("lesion", None))
                continue
            if m.sizes and (nouns or m.organ in LESION_ORGANS):
                organ = m.organ or "any organ"
                self.err("invented_finding", f"a lesion of {m.size_text} in {organ} ('{_short(m.text)}') matches no "
                         "lesion of the findings", ("lesion", m.organ))
        for lesion in self.lesions:
            lid = lesion["id"]
            mine = [m for m in mentions if lid in m.lesions]
            if not self.fact(f"{lid}: mentioned", bool(mine)):
                self.err("dropped_lesion", f"{lid} ({_describe(lesion)}) is not mentioned")
                continue
            sized = [m for m in mine if m.sizes]
            size_label = f"{lid}: size {_cm(lesion['longest_diameter_mm'])} x {_cm(lesion['perpendicular_diameter_mm'])} cm"
            if not self.fact(size_label, any(m.size_ok for m in sized)):
                wrong = [m for m in sized if not _size_match(m, lesion)
                         or (_size_match(m, lesion) == "partial" and len(m.sizes[0]["values"]) >= 2)]
                partial = [m for m in sized if _size_match(m, lesion) == "partial"]
                if wrong:
                    for m in wrong:
                        self.err("changed_number", f"{lid}: size stated as {m.size_text}; findings "
                                 f"{_cm(lesion['longest_diameter_mm'])} x {_cm(lesion['perpendicular_diameter_mm'])} cm",
                                 ("size", lid))
                elif partial:
                    self.err("dropped_size", f"{lid}: only one diameter given ({partial[0].size_text}); findings "
                             f"{_cm(lesion['longest_diameter_mm'])} x {_cm(lesion['perpendicular_diameter_mm'])} cm")
                else:
                    self.err("dropped_size", f"{lid}: size {_cm(lesion['longest_diameter_mm'])} x "
                             f"{_cm(lesion['perpendicular_diameter_mm'])} cm is not stated")
            self._check_location(lesion, mine, by_id)
            for m in mine:
                if len(m.lesions) != 1:
                    continue
                if m.kinds and not _kind_ok(m, lesion):
                    said = ", ".join(sorted(m.kinds))
                    self.err("wrong_kind", f"{lid} is a {lesion.get('kind')} but is described as {said} "
                             f"('{_short(m.text)}')", ("kind", lid))
                att = lesion.get("attenuation")
                if m.atten and att and att not in m.atten and len(m.atten) == 1:
                    self.err("wrong_kind", f"{lid} is {att}attenuating but is described as "
                             f"{next(iter(m.atten))}attenuating ('{_short(m.text)}')", ("atten", lid))

    def _check_location(self, lesion: dict, mine: list, by_id: dict) -> None:
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
            stated = [s for m in mine for s in m.segments]
            for m in mine:
                allowed = list(allowed_union(m, lambda l: (l.get("location") or {}).get("couinaud")))
                bad = [s for s in m.segments if not _segment_ok(s, allowed)]
                if bad:
                    wrong = True
                    self.err("wrong_location", f"{lid} is in {'/'.join(segs)} but the text says "
                             f"{'/'.join(bad)} ('{_short(m.text)}')", ("location", lid))
                lobe_sets = {"right": {"S5", "S6", "S7", "S8"}, "left": {"S2", "S3", "S4", "S4a", "S4b"}}
                for lobe in m.lobes:
                    if not any(s in lobe_sets[lobe] or s[:2] in lobe_sets[lobe] for s in allowed):
                        wrong = True
                        self.err("wrong_location", f"{lid} is in {'/'.join(segs)} but the text says the {lobe} "
                                 f"lobe ('{_short(m.text)}')", ("location", lid))
            ok = any(_segment_ok(s, segs) for s in stated)
            if not self.fact(f"{lid}: location {'/'.join(segs)}", ok) and not wrong:
                self.err("dropped_location", f"{lid}: Couinaud segment {'/'.join(segs)} is not stated")
            elif ok:
                missing = [s for s in segs if not any(_segment_ok(x, [s]) for x in stated)]
                if missing:
                    self.warnings.append(f"{lid}: segment {'/'.join(missing)} not named (also occupied)")
        if loc.get("pancreas_part"):
            part = loc["pancreas_part"]
            stated = [p for m in mine for p in m.parts]
            for m in mine:
                allowed = allowed_union(m, lambda l: [(l.get("location") or {}).get("pancreas_part")]
                                        + list(l.get("pancreas_parts") or []))
                bad = sorted({p for p in m.parts if p not in allowed})
                if bad:
                    wrong = True
                    self.err("wrong_location", f"{lid} is in the pancreatic {part} but the text says "
                             f"{'/'.join(bad)} ('{_short(m.text)}')", ("location", lid))
            if not self.fact(f"{lid}: location pancreatic {part}", part in stated) and not wrong:
                self.err("dropped_location", f"{lid}: pancreatic part ({part}) is not stated")
        if lesion.get("organ") == "kidney" and lesion.get("side"):
            side = lesion["side"]
            stated = {s for m in mine for s in m.sides}
            swapped = False
            for m in mine:
                allowed = allowed_union(m, lambda l: [l.get("side")])
                bad = [s for s in m.sides if s not in allowed]
                if bad:
                    swapped = True
                    self.err("swapped_side", f"{lid} is in the {side} kidney but the text says {bad[0]} "
                             f"('{_short(m.text)}')", ("side", lid))
            if not self.fact(f"{lid}: side {side}", side in stated) and not swapped:
                self.err("dropped_location", f"{lid}: kidney side ({side}) is not stated")
        if loc.get("kidney_pole"):
            pole = loc["kidney_pole"]
            stated = {p for m in mine for p in m.poles}
            for m in mine:
                allowed = allowed_union(m, lambda l: [(l.get("location") or {}).get("kidney_pole")])
                bad = [p for p in m.poles if p not in allowed]
                if bad:
                    wrong = True
                    self.err("wrong_location", f"{lid} is {pole} pole but the text says {bad[0]} "
                             f"('{_short(m.text)}')", ("location", lid))
            if not self.fact(f"{lid}: {pole} pole", pole in stated) and not wrong:
                self.err("dropped_location", f"{lid}: kidney pole ({pole}) is not stated")

    # -- numbers -------------------------------------------------------------
    def check_numbers(self) -> None:
        values = _finding_values(self.f)
        thresholds = _threshold_values(self.f)
        for sent in self.sentences:
            nums, _ = extract_numbers(sent.text)
            for n in nums:
                pool = values.get(n.dim, [])
                if any(number_matches(n.value, n.decimals, n.unit, v) for v in pool):
                    continue
                if n.comparator and any(number_matches(n.value, n.decimals, n.unit, v) for v in thresholds[n.dim]):
                    continue
                dim, factor = _unit_dim(n.unit)
                self.err("changed_number", f"'{n.text.strip()}' ('{_short(sent.text, n.start)}') matches no "
                         f"{_DIM_WORDS[n.dim]} in the findings", ("number", n.dim, round(n.value * factor, 6)))
            slices = {l.get("slice_index") for l in self.lesions} | {l.get("canonical_slice") for l in self.lesions}
            for m in IMAGE_NO.finditer(sent.text):
                if int(m.group(1)) not in slices:
                    self.err("changed_number", f"image {m.group(1)} is no lesion's slice in the findings",
                             ("image", int(m.group(1))))
            self._check_counts(sent)

    def _check_counts(self, sent: Sentence) -> None:
        for m in COUNT_EXPR.finditer(sent.text):
            if _negated(sent.text, m.start(), m.end()):
                continue
            word, noun = m.group(1).lower(), m.group(2).lower()
            organ = _organ_near(sent, m.start(), m.end())
            pool = [l for l in self.lesions if organ in (None, l["organ"])] if organ in LESION_ORGANS + (None,) else []
            if noun.startswith("cyst"):
                pool = [l for l in pool if l.get("kind") == "cyst"]
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
            organ = _organ_near(sent, m.start(), m.end())
            pool = [l for l in self.lesions if organ in (None, l["organ"])]
            if m.group(2).lower().startswith("cyst"):
                pool = [l for l in pool if l.get("kind") == "cyst"]
            if len(pool) != 1:
                self.err("changed_number", f"'{m.group()}' but the findings hold {len(pool)}", ("count", organ))

    # -- staging -------------------------------------------------------------
    def check_staging(self) -> None:
        stages = {l["t_stage"] for l in self.lesions if l.get("t_stage")}
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
                if _negated(sent.text, m.start(), m.end()):
                    continue
                self.err("invented_finding", f"{m.group(1)} stated; the findings hold no N or M stage",
                         ("stage", m.group(1)))
            for m in OVERALL_STAGE.finditer(sent.text):
                self.err("invented_finding", f"'{m.group()}' stated; the findings hold only a T stage",
                         ("stage", m.group()))
        for lesion in self.lesions:
            if lesion.get("t_stage"):
                t = lesion["t_stage"]
                if not self.fact(f"{lesion['id']}: T stage {t}", t in stated):
                    coarse = [s for s in stated if t.startswith(s)]
                    self.err("dropped_stage", f"{lesion['id']}: T stage {t} is not stated"
                             + (f" (only {coarse[0]})" if coarse else ""))
        self._check_resectability()

    def _check_resectability(self) -> None:
        cats = {l["resectability"] for l in self.lesions if l.get("resectability")}
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
                    if _negated(sent.text, m.start(), m.end()):
                        cat = "locally_advanced"
                    else:
                        cat = "resectable"
                if re.search(r"\b(?:not assess\w*|cannot be assessed|not determined)\b", sent.text[m.end():m.end() + 40], re.I):
                    continue
                stated.add(cat)
                if cats and cat not in cats:
                    self.err("wrong_resectability", f"'{m.group()}' stated; the findings say "
                             f"{'/'.join(c.replace('_', ' ') for c in sorted(cats))}", ("resect", cat))
                elif not cats:
                    self.err("invented_finding", f"resectability '{m.group()}' stated; the findings give no category",
                             ("resect", cat))
        for lesion in self.lesions:
            if lesion.get("resectability"):
                r = lesion["resectability"]
                if not self.fact(f"{lesion['id']}: resectability {r.replace('_', ' ')}", r in stated):
                    self.err("dropped_resectability", f"{lesion['id']}: resectability "
                             f"({r.replace('_', ' ')}) is not stated")

    # -- vessels -------------------------------------------------------------
    def check_vessels(self) -> None:
        contact = {}
        # Every measured value per vessel: with several staged lesions a statement is
        # accepted when it fits any of them (mentions are not scoped to a lesion).
        values = {}
        for lesion in self.lesions:
            for key, deg in (lesion.get("vessel_contact_deg") or {}).items():
                if deg is None:
                    contact.setdefault(key, None)
                else:
                    contact[key] = max(deg, contact.get(key) or 0.0)
                    values.setdefault(key, []).append(deg)
        mentioned = set()
        thresholds = _threshold_values(self.f)["deg"]
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
            for name, pat in CONTACT_VERBS:
                for m in pat.finditer(sent.text):
                    verbs.append((m.start(), m.end(), name))
            verbs.sort()
            for i, (s, e, key) in enumerate(vessel_hits):
                negated = _negated(sent.text, s, e)
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
                    self.err("wrong_vessel_contact", f"{label}: contact stated ('{_short(sent.text, s)}') but the "
                             "findings " + ("could not assess it" if actual is None else "hold no measurement"),
                             ("vessel", key))
                    continue
                if actual == 0:
                    self.err("wrong_vessel_contact", f"{label}: contact stated ('{_short(sent.text, s)}') but the "
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
                    organs = _claim_organs(sent, m.start())
                neg = _negated(sent.text, m.start(), m.end())
                massive = bool(re.search(r"\bmassive(?:ly)?|\bmarked(?:ly)?", sent.text[max(0, m.start() - 20):m.end()], re.I))
                for organ, side in organs:
                    claims.append((organ, side, "massive" if massive and not neg else "enlarged", neg, False, sent.text))
            for m in NORMAL_SIZE.finditer(sent.text):
                if _negated(sent.text, m.start(), m.end()) and "not enlarged" not in m.group().lower():
                    continue
                for organ, side in _claim_organs(sent, m.start()):
                    claims.append((organ, side, "enlarged", True, False, sent.text))
            for m in STEATOSIS.finditer(sent.text):
                word = m.group().lower()
                if "pancrea" in word or re.search(r"pancrea", sent.masked[max(0, m.start() - 40):m.end() + 30], re.I):
                    organ = "pancreas"
                else:
                    organ = "liver"
                neg, hedged = _negated(sent.text, m.start(), m.end()), _hedged(sent.text, m.start())
                if re.match(r"^[\w\s]{0,30}?\b(?:cannot|can ?not|could not) be (?:excluded|ruled out)|^[\w\s]{0,30}?\bnot excluded",
                            sent.text[m.end():], re.I):
                    neg, hedged = False, True
                claims.append((organ, None, "steatosis", neg, hedged, sent.text))
            for m in NORMAL_ATTEN.finditer(sent.text):
                for organ, side in _claim_organs(sent, m.start()):
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
                        self.err("invented_finding", f"{title} described as enlarged ('{_short(text)}'); the findings "
                                 f"say {'not enlarged' if state == 'no' else 'nothing about its size'}",
                                 ("organ", name, "enlarged"))
                    elif neg and big:
                        if organ == "kidney" and side is None:
                            continue
                        self.err("wrong_organ_finding", f"{title} described as normal in size ('{_short(text)}'); the "
                                 f"findings say {state.replace('_', ' ')}", ("organ", name, "normal"))
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
                                         f"('{_short(text)}'); the findings say only possible", ("organ", name, "steatosis"))
                        else:
                            self.err("invented_finding", f"{title}: steatosis/fatty infiltration stated "
                                     f"('{_short(text)}'); the findings say "
                                     f"{'no steatosis' if st is False else 'nothing about it'}",
                                     ("organ", name, "steatosis"))
                    else:
                        if st is True:
                            self.err("wrong_organ_finding", f"{title}: steatosis denied ('{_short(text)}'); the "
                                     "findings say steatosis", ("organ", name, "no steatosis"))
                        elif possible:
                            self.warnings.append(f"{title}: steatosis denied; the findings say possible steatosis")
        for name, entry in self.organs.items():
            title = name.replace("_", " ")
            if entry.get("enlarged") in ("enlarged", "massively_enlarged"):
                if not self.fact(f"{name}: {entry['enlarged'].replace('_', ' ')}", (name, "enlarged") in found):
                    self.err("dropped_organ_finding", f"{title}: enlargement "
                             f"({entry['enlarged'].replace('_', ' ')}) is not stated")
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
                    if _negated(sent.text, m.start(), m.end()) or re.search(r"\b(?:not|no|without)\b", m.group(), re.I):
                        continue
                    if label == "lymph node" and re.search(r"\bnot (?:enlarged|pathologic\w*)|\bnormal|\bunremarkable",
                                                           sent.text[m.end():m.end() + 40], re.I):
                        continue
                    if label == "diagnosis" and re.match(r"^bosniak", m.group(), re.I) is None and \
                            re.search(r"\b(?:not|cannot|no)\b", sent.text[max(0, m.start() - 30):m.start()], re.I):
                        continue
                    self.err("invented_finding", f"{label}: '{m.group()}' ('{_short(sent.text, m.start())}') is not "
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


_DIM_WORDS = {"length": "length", "volume": "volume", "hu": "attenuation (HU)", "deg": "contact angle",
              "pct": "percentage"}


def _short(text: str, pos: int | None = None, width: int = 70) -> str:
    text = " ".join(text.split())
    if pos is None or len(text) <= width:
        return text if len(text) <= width else text[:width - 3] + "..."
    a = max(0, pos - width // 2)
    return ("..." if a else "") + text[a:a + width] + ("..." if a + width < len(text) else "")


def _describe(lesion: dict) -> str:
    bits = [f"{_cm(lesion['longest_diameter_mm'])} x {_cm(lesion['perpendicular_diameter_mm'])} cm"]
    where = lesion_location_text(lesion)
    if where:
        bits.append(where)
    return ", ".join(bits)


def _organ_near(sent: Sentence, start: int, end: int) -> str | None:
    hits = [(p, o) for p, o in _organ_hits(sent.masked) if o != "lymph"]
    inside = [o for p, o in hits if start <= p < end + 25]
    if inside:
        return inside[0]
    if hits:
        return min(hits, key=lambda h: abs(h[0] - start))[1]
    return (sent.section_organ or "").split(":")[0] or None


def _claim_organs(sent: Sentence, pos: int) -> list:
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
    hits = [(p + lo, o) for p, o in _organ_hits(clause) if o not in ("lymph",)]
    if re.search(r"\blymph|\bnod(?:es?|al)\b", clause, re.I):
        return []
    if not hits:
        organ = (sent.section_organ or "")
        if not organ or organ in ("vessels", "lymph", "other"):
            return []
        base, _, side = organ.partition(":")
        return [(base, side or None)]
    organs = []
    for p, o in hits:
        side = None
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


class _NotesFacts:
    """What a radiologist's notes state, to tag additions in the enhanced report."""

    def __init__(self, notes: str):
        self.text = normalise(notes)
        self.sentences = _split_sentences(self.text)
        self.terms, self.lesion_organs, self.numbers, self.organ_claims, self.stages = set(), set(), [], set(), set()
        for sent in self.sentences:
            for label, pat in INVENTED_TERMS:
                for m in re.finditer(pat, sent.text, flags=re.I):
                    if not _negated(sent.text, m.start(), m.end()):
                        self.terms.add(label)
            for n in extract_numbers(sent.text)[0]:
                self.numbers.append(n)
            for m in ENLARGED.finditer(sent.text):
                if not _negated(sent.text, m.start(), m.end()):
                    if m.group(2):
                        self.organ_claims.add((MEGALY_ORGAN[m.group(2).lower()], "enlarged"))
                    for organ, side in _claim_organs(sent, m.start()):
                        self.organ_claims.add((organ, "enlarged"))
                        if organ == "kidney":
                            self.organ_claims |= {("kidney_left", "enlarged"), ("kidney_right", "enlarged")}
            for m in STEATOSIS.finditer(sent.text):
                if not _negated(sent.text, m.start(), m.end()):
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
            for m in RESECT.finditer(sent.text):
                self.stages.add("resect")
        for m in find_mentions(self.sentences):
            if m.organ and (m.sizes or any(not n[3] for n in _lesion_nouns(m.text))):
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
                d, factor = _unit_dim(n.unit)
                if d == dim and abs(n.value * factor - value) <= 1e-6 * max(1.0, abs(value)):
                    return True
            return False
        if kind == "size":
            return any(_unit_dim(n.unit)[0] == "length" for n in self.numbers)
        if kind == "organ":
            name, claim = key[1], key[2]
            base = FINDINGS_ORGAN_OF.get(name, name)
            return (name, claim) in self.organ_claims or (base, claim) in self.organ_claims
        if kind in ("stage", "resect"):
            return bool(self.stages)
        if kind == "count":
            return bool(self.lesion_organs)
        return False


def check_narrative(narrative: str, findings: dict, notes: str | None = None) -> CheckResult:
    """Compare a free-text report with findings.json; see the module docstring."""
    return _Checker(narrative, findings, notes).run()


def describe_text(text: str) -> dict:
    """What a free-text report asserts, coarsely: for labelling example reports.

    ``{"lesions": [(organ, kind)], "enlarged": {organ}, "steatosis": {organ},
    "vascular": bool}``; ``kind`` is ``cyst``, ``pdac``, ``pnet`` or ``tumor``
    (any other lesion).  Negated statements are left out.
    """
    sentences = _split_sentences(normalise(text))
    lesions = []
    for m in find_mentions(sentences):
        nouns = [n for n in _lesion_nouns(m.text) if not n[3]]
        if not (nouns or m.sizes) or m.organ not in LESION_ORGANS:
            continue
        kind = "pdac" if "pdac" in m.kinds else "pnet" if "pnet" in m.kinds else \
            "cyst" if "cyst" in m.kinds else "tumor"
        lesions.append((m.organ, kind))
    enlarged, steatosis, vascular = set(), set(), False
    for sent in sentences:
        for m in ENLARGED.finditer(sent.text):
            if _negated(sent.text, m.start(), m.end()):
                continue
            organs = [MEGALY_ORGAN[m.group(2).lower()]] if m.group(2) else [o for o, _ in _claim_organs(sent, m.start())]
            enlarged |= {o for o in organs if o in ("liver", "spleen", "pancreas", "kidney")}
        for m in STEATOSIS.finditer(sent.text):
            if not _negated(sent.text, m.start(), m.end()):
                steatosis.add("pancreas" if re.search(r"pancrea", sent.text, re.I) else "liver")
        for key, pat in VESSEL_PATTERNS.items():
            for v in re.finditer(pat, sent.text):
                if _negated(sent.text, v.start(), v.end()):
                    continue
                if any(p.search(sent.text) for _, p in CONTACT_VERBS):
                    vascular = True
    return {"lesions": lesions, "enlarged": enlarged, "steatosis": steatosis, "vascular": vascular}
