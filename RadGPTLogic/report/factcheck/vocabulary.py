"""The fact checker's vocabulary: lesion, organ, vessel, location, stage, negation and unit words.

Regular expressions and word lists only, no logic; every other module of the package reads them from here.
"""

from __future__ import annotations

import re

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
    ("liver", r"\b(?:liver|hepatic|hepato\w*|couinaud|caudate|HCC)\b|\bsegments? (?:S?[1-8]|[IVX]{1,4})\b"),
    ("spleen", r"\b(?:spleen|splenic|splenomegaly|splenule)\b"),
    ("pancreas", r"\b(?:pancreas|pancreatic|pancreatitis|pancreatico\w*|uncinate|PDAC|PNET|IPMN|insulinoma"
                 r"|ampull\w*)\b"),
    ("kidney", r"\b(?:kidneys?|renal|nephr\w*|bosniak|interpolar|RCC|angiomyolipoma|oncocytoma|(?:para|peri)pelvic)\b"
               r"|\b(?:upper|lower|superior|inferior) poles?\b|\b(?-i:AML|ANL)\b"),
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
    r"|RCC|angiomyolipomas?|(?-i:AMLs?|ANLs?)|adenomas?|abscess(?:es)?|FNH)\b", re.I)
DIAGNOSIS_WORDS = re.compile(
    r"\b(h(?:a)?emangiomas?|HCC|hepatocellular carcinoma|hepatomas?"
    r"|cholangiocarcinomas?|RCC|renal cell carcinoma|angiomyolipomas?|adenomas?|abscess(?:es)?|FNH"
    r"|focal nodular hyperplasia|bosniak\s+\w+|lymphomas?|IPMN|mucinous)\b", re.I)
CYST_WORDS = re.compile(r"\bcyst(?:s|ic)?\b", re.I)
SOLID_WORDS = re.compile(
    r"\b(solid|carcinomas?|adenocarcinomas?|PDAC|PNET|neuroendocrine|malignan\w*|cancers?)\b", re.I)
PDAC_WORDS = re.compile(r"\b(PDAC|adenocarcinomas?|ductal)\b", re.I)
PNET_WORDS = re.compile(r"\b(PNET|neuroendocrine)\b", re.I)
ATTEN_WORDS = [
    ("hypo", re.compile(r"\b(hypo(?:-)?(?:dense|attenuat\w*|enhancing|density)|low[- ](?:attenuation|density))\b",
                        re.I)),
    ("iso", re.compile(r"\b(iso(?:-)?(?:dense|attenuat\w*|enhancing|density))\b", re.I)),
    ("hyper", re.compile(r"\b(hyper(?:-)?(?:dense|attenuat\w*|enhancing|density)|high[- ](?:attenuation|density))\b",
                         re.I)),
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
    r"^\W*(?:(?:is|are|was|were|has|have been|had been|be)\s+)?(?:\w+\s+)?"
    r"(?:not\s+(?:seen|identified|present|visuali[sz]ed|demonstrated|"
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
# A unitless attenuation ratio ("pancreas-to-spleen attenuation ratio 0.90"): the first decimal after "ratio".
RATIO_EXPR = re.compile(r"\bratio\b(?:\s+(?:of|is|was|=|:))?\s*\(?\s*(\d+\.\d+)(?![\d.])", re.I)
IMAGE_NO = re.compile(r"\b(?:image|img|slice|im)\s*(?:#|no\.?|number)?\s*(\d+)\b", re.I)
COUNT_EXPR = re.compile(
    r"\b(two|three|four|five|six|seven|eight|nine|ten|multiple|several|numerous|innumerable|\d{1,2})"
    r"\s+(?:[\w-]+\s+){0,3}?(lesions|masses|tumou?rs|cysts|nodules|foci|hypodensities)\b", re.I)
SINGLE_COUNT = re.compile(
    r"\b(single|solitary|only one|one)\s+(?:[\w-]+\s+){0,3}?(lesion|mass|tumou?r|cyst|nodule|focus)\b", re.I)

T_STAGE = re.compile(r"(?<![A-Za-z0-9])(?:[cpy]|yp)?T(is|x|[0-4][abc]?)(N(?:x|X|[0-3][abc]?))?(M(?:x|X|[01][abc]?))?"
                     r"(?![A-Za-z0-9])")
RULE_CLAUSE = re.compile(r"\bT[0-4][abc]?\s+(?:when|if)\b|\brule\b", re.I)
T_RULE_AFTER = re.compile(
    r"^\s*(?:when|if|would|requires?|=|is defined|criteri\w*|rule|applies|means|:\s*tumou?r)", re.I)
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
    ("contact", re.compile(
        r"\b(contact\w*|involv\w*|invad\w*|invasion|infiltrat\w*|extend\w* (?:to|into|around))\b", re.I)),
]

ENLARGED = re.compile(
    r"\b(enlarged|enlargement|increased in (?:size|volume)|(hepato|spleno|nephro)megaly|massively)\b", re.I)
MEGALY_ORGAN = {"hepato": "liver", "spleno": "spleen", "nephro": "kidney"}
NORMAL_SIZE = re.compile(
    r"\b(normal[ -]sized?|normal in (?:size|volume)|normal (?:size|volume|dimensions)|within normal (?:size )?limits"
    r"|not enlarged|normal(?:ly)? sized)\b", re.I)
STEATOSIS = re.compile(
    r"\b(steatosis|steatotic|fatty (?:infiltration|liver|change|changes|pancreas|replacement|infiltrated|deposition)"
    r"|hepatic fat|fat(?:ty)? deposition|lipomatosis)\b", re.I)
NORMAL_ATTEN = re.compile(r"\bnormal (?:attenuation|density|parenchymal attenuation)\b", re.I)

DIM_WORDS = {"length": "length", "volume": "volume", "hu": "attenuation (HU)", "deg": "contact angle",
              "pct": "percentage", "ratio": "ratio"}
