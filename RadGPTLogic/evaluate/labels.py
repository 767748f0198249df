"""Rule-based, negation-aware tumour labels from report text (English, AI or human).

``extract_labels(text)`` returns, for each organ of :data:`ORGANS` (liver, pancreas,
kidney), ``{"tumor": "yes" | "no" | "uncertain", "largest_mm": float | None}``.
``extract_mentions(text)`` returns the evidence (every lesion mention with its organs,
status and sizes) for debugging a label.  Deterministic, pure Python, no network.

**Independent of the fact checker, on purpose.**  This labeller has its own text
parser (sentences, clauses, negation, sizes) instead of sharing the fact checker's
(:mod:`RadGPTLogic.report.factcheck`): it grades narratives that the checker has
accepted, and an evaluator that shares the generator's parser would share its blind
spots, so a misreading in one would be invisible to the other.  What they must share
is vocabulary (which words are lesions and which name an organ):
``Testing/test_vocabulary_drift.py`` keeps the two vocabularies from drifting apart
and lists the deliberate differences.  Measured accuracy: ``docs/EVALUATION.md``.

The rules
=========

**Sections.**  A header is a label made only of section words followed by a colon,
at the start of a line or after ``.``/``:``/``;`` ("Liver:", "PANCREAS:",
"Kidneys and ureters:", "Hepatobiliary:", "FINDINGS:", "IMPRESSION:").  An organ
header (liver / pancreas / kidney words; a header naming one of them wins over other
organs it names) makes that organ the default for the sentences that follow; a
header of another organ ("Spleen:", "Adrenals:") makes them default to "other"
(not counted); a generic header ("Findings:", "Impression:") has no default.  Text
under history, indication, reason, technique, comparison, procedure and protocol
headers is skipped (an indication such as "evaluate for pancreatic mass" is not a
finding).  "Liver lesion 1:" or "Size:" are not headers (they hold non-section words);
an unknown all-capitals label at a line start ("BILIARY TREE:") is a generic header.

**Sentences and clauses.**  Text is split into paragraphs (blank lines), sentences
(line breaks; ``.``/``!``/``?`` followed by a capital, digit or bracket, except
after abbreviations such as "approx." or "vs."), then clauses at ``;``, "but",
"however", "although", "though", "whereas", "while", "except (for)", "apart from",
"aside from", "other than", "besides", "with the exception of", "which", ", now",
", and"/"and" when a new phrase starts (a/an/the/there or a size), and a comma
followed by a/an/there/this/these/it or by a size.  Negation and uncertainty never
cross a clause boundary.

**Lesion mentions (tumour).**  mass, lesion, tumor/tumour, nodule, cyst,
neoplasm/neoplasia, metastasis/metastases/metastatic disease/mets, malignancy,
cancer, any "...carcinoma" (HCC, RCC, PDAC, adenocarcinoma, cholangiocarcinoma),
"...adenoma" (cystadenoma), "...sarcoma", lymphoma, hemangioma, focal nodular
hyperplasia/FNH, angiomyolipoma, oncocytoma, IPMN, PNET, insulinoma, gastrinoma,
hepatoma, Bosniak, AML/ANL (angiomyolipoma), "cystic disease", "cystic" as a head word
("left kidney cystic, 2 cm"), and hypodensity/hyperdensity or a hypo-/hyper-/low-attenuating,
-dense or -enhancing focus/area/region/shadow ("low-density shadow").  Cysts count as tumour (as in RadGPT's
evaluation).  Not mentions: "mass effect", pseudocyst, regenerative/siderotic
nodules.  Conditions that are not tumours (steatosis, cirrhosis, hydronephrosis,
calculi/stones, pancreatitis, atrophy, enlargement) contain no lesion word, so they
never make a "yes".  A *generic* mention (lesion, nodule, hypodensity, focus, area)
is dropped when its clause explains it as a non-tumour (focal fat, fatty
infiltration/sparing, perfusion anomaly, THAD, shunt, artifact, partial volume,
abscess, hematoma, infarct, scar, granuloma, biloma, seroma, lymphocele, fluid
collection, calcification, calculus/stone/nephrolithiasis, bone island), in its clause
or in an apposition that follows ("hypodensity in the liver, a perfusion anomaly");
any mention is dropped in a clause about polycystic kidney disease / PKD.

**Status of a mention** (first that applies):

1. *historical*: a cue (history of, h/o, status post, s/p, resected, resection,
   post-operative/post-surgical) precedes it in its clause with nothing current in
   between ("with a", "new", "now", "recurrent", "residual", "there is"), or "was
   resected/removed" follows it (not a current tumour; ignored).  "Status post right
   hepatectomy with a new 2 cm lesion" is a current lesion;
2. *negated*: after a pre-negation in the same clause ("no", "not", "without",
   "negative for", "free of", "absence of", "neither", "nor", "none of", "no evidence
   of"; a list such as "no mass, cyst or stone" stays negated) unless a scope stop
   comes between ("with a", "with an", "there is/are", or a comma or "and" followed by
   a verb of having: "not enlarged and contains a cyst", "Without hydronephrosis, the
   kidney has a cyst"), or before a post-negation
   ("ruled out", "excluded", "resolved", "absent", "none", "not seen/identified/
   visualized/present/...", "no longer seen/visible").  Pseudo-negations are not
   negations: they deny a property of a lesion that is there: "no/without (significant/
   interval/internal) change/increase/decrease/growth/progression/enhancement/septation/
   calcification/wall thickening/solid component" ("no enhancement of the renal cyst"
   is a cyst); "not excluded", "cannot be ruled out" and "not excluding" are
   uncertainty, not negation;
3. *uncertain*: its clause holds an uncertainty cue: indeterminate, too small to
   characterize (TSTC), cannot be characterized, possible/possibly, questionable,
   equivocal, uncertain, unclear, suspected, cannot exclude / cannot be excluded /
   cannot rule out / not excluded / not excluding / difficult to exclude, may/might/could
   represent/be/reflect.  "likely", "probable", "consistent with", "suspicious
   for", "concerning for" are *not* uncertainty (radiology usage: a positive call);
   "no definite mass" is a negation;
4. *affirmed* otherwise.

**Organ of a mention** (liver: liver, hepatic (not hepatic artery/vein/duct/flexure),
intrahepatic, hepato-, HCC/hepatoma, Couinaud segment N / S7, caudate or right/left
(hepatic) lobe; pancreas: pancreas, pancreatic, pancreatitis, PDAC, PNET, IPMN,
uncinate, head, tail; kidney: kidney(s), renal (not renal artery/vein), nephr-, RCC,
Bosniak, angiomyolipoma, oncocytoma, upper/lower/mid pole, interpolar; "other":
spleen, adrenal, gallbladder, biliary, bowel, stomach, lung, bone, lymph node,
ovary, bladder, peritoneum, thyroid, testis, epididymis, groin, ...).
Segment/lobe/head/tail/pole are *location* words, weaker than explicit organ words; a
location word followed by "of (the) <another organ>" ("the left lobe of the lung", "the
head of the epididymis", "the upper pole of the testis") belongs to that organ.  In order:

1. a tumour type that names its organ (HCC -> liver, PDAC -> pancreas, RCC -> kidney);
   AML/ANL name the kidney only when no explicit organ word does (after step 3);
2. the nearest following explicit organ word introduced by a locative preposition
   ("mass *in the* pancreatic tail", "lesion *of the* liver");
3. the nearest preceding explicit organ word ("pancreatic head mass", "the liver
   contains a lesion");
4. the section's organ (target or other);
5. location words (following with a preposition, else preceding: "segment 7 lesion");
6. the context: the organs named last in the same paragraph (previous clauses or
   sentences), so "The pancreas is atrophic. A 2 cm cyst is seen." is pancreatic, unless
   the mention names a site of its own that is no place in an organ ("The liver is
   normal. Fatty density lesions in the right inguinal canal." is not hepatic);
7. any following explicit organ word.

An organ word in a coordinated list ("liver, pancreas or kidneys", "liver or
pancreatic") brings the whole list: "No masses in the liver, pancreas or kidneys"
negates all three.  Mentions attributed to "other" organs or to nothing are ignored.

**Sizes.**  Numbers with mm/cm units (also millimetre/centimetre): "31 mm", "3.1 x
2.2 cm", "3.1 cm x 2.2 cm", "2.1 x 1.9 x 1.5 cm", "1.5-cm", "1.5-2.0 cm" (range: the
upper end), "up to 2 cm"; unit-less numbers take the next unit of the expression.
Volumes and areas (cm3, cm^3, cm², mL) are not sizes; a size directly preceded by
previously / prior / from / was / baseline (a past measurement) or followed by
from / below / above / away (a distance) or slice / section / thickness is ignored.
The size of a dimension set is its largest dimension.  Each size in a clause goes
to the nearest lesion mention of that clause; a clause with sizes but no mention
(the "Size: 3.1 x 3.0 cm" line of a lesion block, "the largest measures 3 cm")
passes its sizes to the last affirmed or uncertain mention of the paragraph,
unless the clause names an organ as a noun (the liver measures 18 cm), another
organ, or a duct/vessel/node.

**Organ label.**  "yes" when any mention attributed to the organ is affirmed;
otherwise "uncertain" when any is uncertain; otherwise "no" (negated only, or not
mentioned: organs not mentioned are "no").  ``largest_mm`` is the largest size of
the mentions that made the label (affirmed ones for "yes", uncertain ones for
"uncertain"); ``None`` when no size is stated ("subcentimetre" gives no number) and
always ``None`` for "no".  Left and right kidney are one organ, "kidney".
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from . import ORGANS

_I = re.I

# --------------------------------------------------------------------------- vocab

# (pattern, organ, kind): kind "explicit" (organ word), "loc" (location word, weaker).
_ORGAN_PATTERNS = [
    # liver
    (r"\blivers?\b", "liver", "noun"),
    (r"\b(?:intra)?hepat(?:ic|o[a-z]*)\b(?!\s+(?:arter|veins?\b|flexure|ducts?\b|portal))", "liver", "adj"),
    (r"\b(?:HCCs?|hepatomas?)\b", "liver", "adj"),
    (r"\b(?:couinaud\s+)?segments?\s+(?:(?-i:S)?[1-8][ab]?|iv[ab]?|vi{0,3}|i{1,3})\b(?:\s*(?:/|,|and|-)\s*(?:(?-i:S)?[1-8][ab]?))*",
     "liver", "loc"),
    (r"(?<![-\w])(?-i:S)[1-8][ab]?\b", "liver", "loc"),
    (r"\b(?:caudate|quadrate)\s+lobe\b", "liver", "loc"),
    (r"\b(?:right|left)\s+(?:hepatic\s+)?lobe\b", "liver", "loc"),
    # pancreas
    (r"\bpancreas\b", "pancreas", "noun"),
    (r"\bpancreat(?:ic|itis|ico[a-z]*|o[a-z]*)\b", "pancreas", "adj"),
    (r"\b(?:PDACs?|PNETs?|IPMNs?|insulinomas?|gastrinomas?)\b", "pancreas", "adj"),
    (r"\buncinate(?:\s+process)?\b", "pancreas", "loc"),
    (r"(?<!femoral )(?<!humeral )\bhead\b", "pancreas", "loc"),
    (r"\btail\b", "pancreas", "loc"),
    # kidney
    (r"\bkidneys?\b", "kidney", "noun"),
    (r"\brenal\b(?!\s+(?:arter|veins?\b))", "kidney", "adj"),
    (r"\bnephr[a-z]*\b", "kidney", "adj"),
    (r"\b(?:[a-z]*RCCs?|bosniak|angiomyolipomas?|oncocytomas?)\b", "kidney", "adj"),
    (r"\b(?:upper|lower|mid|inter)[- ]?pol(?:e|ar)\b", "kidney", "loc"),
    (r"\b(?:para|peri)-?pelvic\b", "kidney", "adj"),
    # other organs: a mention attributed to them is ignored
    (r"\b(?:hepatic|splenic)\s+flexure\b", "other", "adj"),
    (r"\bsplen(?:ic|omegaly|ule|ules)?\b(?!\s+(?:arter|veins?\b|flexure))|\bspleen\b", "other", "noun"),
    (r"\badrenals?(?:\s+glands?)?\b", "other", "noun"),
    (r"\bgall\s?bladder\b|\bcholecyst[a-z]*\b|\bbiliary\b|\bbile\s+ducts?\b|\bCBD\b|\bcommon\s+duct\b", "other",
     "noun"),
    (r"\bstomach\b|\bgastric\b|\bbowel\b|\bcolon(?:ic)?\b|\bduoden[a-z]*\b|\bjejun[a-z]*\b|\bile(?:um|al)\b"
     r"|\bc(?:a)?ecum\b|\brect(?:um|al)\b|\bsigmoid\b|\bappend[a-z]*\b|\b(?:o)?esophag[a-z]*\b", "other", "noun"),
    (r"\blungs?\b|\bpulmonary\b|\bpleura[a-z]*\b|\bbones?\b|\bosseous\b|\bskelet[a-z]*\b|\bvertebra[a-z]*\b"
     r"|\bspine\b|\bspinal\b|\bribs?\b|\bsacrum\b", "other", "noun"),
    (r"\blymph\s+nodes?\b|\bnodes?\b|\bnodal\b|\b(?:lymph)?adenopathy\b", "other", "noun"),
    (r"\bovar[a-z]*\b|\badnex[a-z]*\b|\buter(?:us|ine)\b|\b(?:urinary\s+)?bladder\b|\bprostat[a-z]*\b", "other",
     "noun"),
    (r"\bperitone[a-z]*\b|\bomentum\b|\bomental\b|\bmesenter[a-z]*\b|\bretroperitone[a-z]*\b|\babdominal\s+wall\b"
     r"|\bskin\b|\bsubcutaneous\b|\bbreasts?\b|\bthyroid\b|\bheart\b|\bcardiac\b|\bpericardi[a-z]*\b"
     r"|\bmuscles?\b|\bpsoas\b|\bureters?\b|\bureter(?:al|ic)\b", "other", "noun"),
    (r"\binguinal\b|\bgroin\b|\bflank\b|\bscrot(?:um|al)\b|\btest(?:is|es|icles?|icular)\b|\bepididym[a-z]*\b"
     r"|\bthyroid\b|\bbrain\b|\bnucleus\b|\bbuttocks?\b|\bgluteal\b|\bthighs?\b|\baxill(?:a|ary)\b"
     r"|\bchest\s+wall\b|\bparaspinal\b|\bfemoral\b|\bfemur\b|\bhumer(?:us|al)\b|\bpelvic\s+(?:wall|side)", "other",
     "noun"),
]
_ORGAN_RES = [(re.compile(p, _I), organ, kind) for p, organ, kind in _ORGAN_PATTERNS]

# Ducts, vessels, nodes: not places where a tumour is attributed, but a clause naming
# them does not pass sizes to the previous lesion ("the pancreatic duct measures 4 mm").
_STRUCTURE_RE = re.compile(
    r"\b(?:ducts?|ductal|CBD|veins?|arter(?:y|ies)|aorta|aortic|IVC|vena\s+cava|SMA|SMV|celiac|coeliac|"
    r"vessels?|nodes?|lymph)\b", _I)

# Lesion mentions.  "generic" ones may be explained away as non-tumour.
_GENERIC_LESION = (
    r"\blesions?\b|\bnodules?\b|\bhyper-?densit(?:y|ies)\b|\bhypo-?densit(?:y|ies)\b"
    r"|\b(?:hypo|hyper|low|high)[- ]?(?:dense|density|attenuating|attenuation|enhancing)\s+"
    r"(?:focus|foci|areas?|regions?|lesions?|nodules?|shadows?)\b"
    r"|\benhancing\s+(?:focus|foci)\b"
)
_SPECIFIC_LESION = (
    r"\bmass(?:es)?\b(?!\s+effect)|\btum(?:o|ou)rs?\b|\bcysts?\b|\bneoplas(?:m|ms|ia)\b|\bneoplastic\b"
    r"|\bmetastas[ie]s\b|\bmetastatic\s+(?:disease|deposits?|foci|focus|lesions?)\b|\bmets\b"
    r"|\bmalignan(?:cy|cies)\b|\bcancers?\b|\b[a-z]*carcinomas?\b|\b[a-z]*adenomas?\b|\b[a-z]*sarcomas?\b"
    r"|\blymphomas?\b|\bh(?:a)?emangiomas?\b|\bfocal\s+nodular\s+hyperplasia\b|\bFNH\b|\bangiomyolipomas?\b"
    r"|\boncocytomas?\b|\bIPMNs?\b|\bPNETs?\b|\bPDACs?\b|\bHCCs?\b|\b[a-z]*RCCs?\b|\bhepatomas?\b"
    r"|\binsulinomas?\b|\bgastrinomas?\b|\bbosniak\b|\b(?-i:AMLs?|ANLs?)\b"
    r"|\bcystic\s+(?:kidney\s+|renal\s+)?disease\b"
    # "cystic" as the head word ("left kidney cystic, 2 cm"), not an adjective of a noun that follows
    r"|\bcystics?\b(?!\s*-?\s*(?:lesions?|mass(?:es)?|tumou?rs?|neoplasms?|nodules?|foc(?:us|i)|areas?|components?"
    r"|changes?|ducts?|arter(?:y|ies)|fibrosis|appearance|structures?|spaces?|degeneration|kidney|renal|disease"
    r"|pancreatic|hepatic|liver|and|or|/))"
)
_LESION_RE = re.compile(rf"(?P<generic>{_GENERIC_LESION})|(?P<specific>{_SPECIFIC_LESION})", _I)
_NOT_LESION_BEFORE = re.compile(r"\b(?:regenerative|siderotic|dysplastic)\s+$", _I)
# Tumour types that name their organ.
_IMPLIED_ORGAN = [
    (re.compile(r"\b(?:HCCs?|hepatomas?|hepatocellular|cholangiocarcinomas?)\b", _I), "liver"),
    (re.compile(r"\b(?:PDACs?|PNETs?|IPMNs?|insulinomas?|gastrinomas?)\b", _I), "pancreas"),
    (re.compile(r"\b(?:[a-z]*RCCs?|angiomyolipomas?|oncocytomas?|bosniak)\b", _I), "kidney"),
]

# Words that name their organ only when nothing else in the clause does ("hepatic AML" is hepatic).
_WEAK_IMPLIED = [(re.compile(r"\b(?-i:AMLs?|ANLs?)\b"), "kidney")]

_EXPLAINS_GENERIC = re.compile(
    r"\bfocal\s+(?:fat|fatty|sparing)\b|\bfatty\s+(?:infiltration|sparing|deposition|change)\b|\bperfusion\b"
    r"|\bTHADs?\b|\btransient\s+hepatic\b|\bshunts?\b|\bartifacts?\b|\bartefacts?\b|\bpartial\s+volume\b"
    r"|\babscess(?:es)?\b|\bha?ematomas?\b|\binfarcts?\b|\binfarction\b|\bscars?\b|\bscarring\b|\bgranulomas?\b"
    r"|\bbilomas?\b|\bseromas?\b|\blymphoceles?\b|\bfluid\s+collections?\b|\bcalcifications?\b|\bcalcified\b"
    r"|\bcalcul(?:us|i)\b|\bstones?\b|\b(?:nephro|uro|cholecysto|chole)?lithiasis\b|\bnephrocalcinosis\b"
    r"|\bbone\s+islands?\b",
    _I)
_EXPLAINS_ALL = re.compile(r"\bpolycystic\b|\bPKD\b|\bADPKD\b", _I)

_HISTORICAL = re.compile(
    r"\bhistory\s+of\b|\bh/o\b|\bstatus\s+post\b|\bs/p\b|\bresected\b|\bresection\b|\bpost-?\s?(?:operative|surgical)\b",
    _I)
# A historical cue covers the mentions after it up to one of these: what follows is current ("status post
# hepatectomy with a new 2 cm lesion").
_HISTORY_STOP = re.compile(r"\bwith\s+(?:a|an)\b|\bnew\b|\bnow\b|\brecurren\w*|\bresidual\b|\bremaining\b"
                           r"|\bthere\s+(?:is|are)\b|\bcurrently\b|\bdeveloped\b", _I)
# A historical cue after the mention: "the lesion was resected".
_HISTORY_AFTER = re.compile(r"^[^,;]{0,40}?\b(?:(?:was|were|has\s+been|have\s+been)\s+(?:resected|removed|excised)"
                            r"|(?:resected|removed|excised)\s+in\s+\d{4})\b", _I)

_UNCERTAIN = re.compile(
    r"\bindeterminate\b|\btoo\s+small\s+to\s+(?:\w+\s+)?characteri[sz]e\b|\bTSTC\b"
    r"|\bcan(?:not|'t|\s+not)\s+be\s+(?:further\s+|definitely\s+|definitively\s+)?characteri[sz]ed\b"
    r"|\bpossibl[ey]\b|\bquestionabl[ey]\b|\bequivocal\b|\buncertain\b|\bunclear\b|\bsuspected\b"
    r"|\b(?:can(?:not|'t|\s+not)|could\s+not|difficult\s+to)\s+(?:be\s+)?(?:entirely\s+|completely\s+|definitely\s+"
    r"|definitively\s+|reliably\s+)?(?:exclude[ds]?|rule[ds]?\s+out)\b"
    r"|\bnot\s+(?:be\s+)?(?:entirely\s+|completely\s+|definitely\s+|definitively\s+)?(?:excluded|ruled\s+out)\b"
    r"|\b(?:not|without)\s+excluding\b"
    r"|\b(?:may|might|could)\s+(?:also\s+)?(?:represent|be|reflect)\b",
    _I)

# "no change", "without enhancement", "no septations", "not excluding": the lesion is not negated, a property is.
_PSEUDO_NEG = (r"(?!\s+(?:significant\s+|interval\s+|appreciable\s+|definite\s+|internal\s+|suspicious\s+"
               r"|evidence\s+of\s+(?:interval\s+)?|(?:any\s+)?)"
               r"(?:change|changes|increase|decrease|growth|enlargement|progression|enhancement|septations?"
               r"|septal|calcifications?|wall\s+thickening|thickened\s+wall|solid\s+components?|excluding)\b)")
_PRE_NEG = re.compile(
    rf"\bno\b(?!\s+longer\b){_PSEUDO_NEG}|\bnot\b{_PSEUDO_NEG}|\bwithout\b{_PSEUDO_NEG}|\bnegative\s+for\b"
    r"|\bfree\s+of\b|\babsence\s+of\b|\bneither\b|\bnor\b|\bnone\s+of\b",
    _I)
_POST_NEG = re.compile(
    r"\b(?:not|no\s+longer)\s+(?:been\s+)?(?:seen|identified|visuali[sz]ed|visible|present|demonstrated|detected"
    r"|appreciated|evident|apparent|noted)\b|\bresolved\b|\bruled\s+out\b|\bexcluded\b|\babsent\b|\bnone\b",
    _I)
_NEG_STOP = re.compile(r"\bwith\s+(?:a|an)\b|\bwith\s+(?=\d)|\bthere\s+(?:is|are)\b"
                       r"|(?:,|\band\b)[^,;]*?\b(?:has|have|contains?|shows?|demonstrates?|reveals?|harbou?rs?)\b", _I)

# --------------------------------------------------------------------------- sizes

_NUM = r"\d+(?:\.\d+)?"
_UNIT = r"(?:mm|cm|millimet(?:er|re)s?|centimet(?:er|re)s?)(?![A-Za-z0-9^\u00b3\u00b2])"
_SIZE_RE = re.compile(
    rf"(?<![\w.])(?P<expr>{_NUM}(?:\s*-?\s*{_UNIT})?(?:(?:\s*(?:x|\*|by|to)\s*|-){_NUM}(?:\s*-?\s*{_UNIT})?){{0,3}})",
    _I)
_SIZE_TOKEN = re.compile(rf"(?P<num>{_NUM})|(?P<unit>{_UNIT})", _I)
_PAST_BEFORE = re.compile(
    r"\b(?:previously|prior|formerly|from|was|were|baseline|compared\s+(?:to|with))\s*[:,(]?\s*"
    r"(?:(?:measuring|measured|of|at)\s+)?(?:up\s+to\s+)?$", _I)
_NOT_SIZE_AFTER = re.compile(r"^\s*(?:from|below|above|away|beyond|deep|proximal|distal|slices?|sections?|"
                             r"thick|thickness|collimation|intervals?|increments?|reconstructions?)\b", _I)

# --------------------------------------------------------------------------- sections

_SECTION_TARGET = {
    "liver": "liver", "hepatic": "liver", "hepatobiliary": "liver",
    "pancreas": "pancreas", "pancreatic": "pancreas",
    "kidney": "kidney", "kidneys": "kidney", "renal": "kidney", "genitourinary": "kidney",
}
_SECTION_OTHER = {
    "spleen", "splenic", "adrenal", "adrenals", "gallbladder", "biliary", "bile", "ducts", "bladder", "ureters",
    "stomach", "bowel", "bowels", "gastrointestinal", "gi", "colon", "lungs", "lung", "chest", "bones", "bone",
    "osseous", "musculoskeletal", "msk", "lymph", "nodes", "vessels", "vasculature", "vascular", "peritoneum",
    "peritoneal", "mesentery", "retroperitoneum", "pelvis", "pelvic", "reproductive", "organs", "soft", "tissues",
    "body", "wall", "abdominal", "lower", "upper", "thorax", "heart", "bases", "appendix", "urinary", "tract",
    "duodenum", "jejunum", "ileum", "esophagus", "uterus", "ovaries", "adnexa", "prostate", "aorta", "ivc",
    "spine", "pleura", "lines", "tubes", "hernia", "hernias", "ascites", "fluid", "mesenteric", "gallbladder/biliary",
}
_SECTION_GENERIC = {"findings", "finding", "impression", "impressions", "conclusion", "conclusions", "summary",
                    "report", "abdomen", "result", "results", "opinion", "diagnosis", "other", "additional",
                    "comment", "comments", "ct"}
_SECTION_SKIP = {"history", "indication", "indications", "reason", "technique", "comparison", "comparisons",
                 "procedure", "protocol", "contrast", "dose", "exam", "examination", "study", "information",
                 "clinical", "request", "priors"}
_SECTION_FILLER = {"and", "the", "of", "right", "left", "for", "glands", "gland", "&", "or", "to", "with", "ureter",
                   "collecting", "system", "systems", "structures", "genitourinary", "partially", "visualized",
                   "imaged", "included", "exam", "examination", "a"}
_HEADER_RE = re.compile(
    r"(?:^|(?<=[.:;\n]))[ \t]*(?:[-*\u2022]\s*|\d+[.)]\s+)?(?P<label>[A-Za-z][A-Za-z /,&()-]{0,48}?)\s*:", re.M)


@dataclass
class Mention:
    """One lesion word and what the rules made of it."""

    text: str
    status: str  # "affirmed" | "negated" | "uncertain" | "historical" | "not_tumour"
    organs: tuple  # target organs it is attributed to (may be empty)
    sizes_mm: list = field(default_factory=list)
    clause: str = ""


@dataclass
class _Word:
    start: int
    end: int
    organ: str  # liver | pancreas | kidney | other
    kind: str  # noun | adj | loc


def _normalize(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    for a, b in (("\u00d7", " x "), ("\u2013", "-"), ("\u2014", " - "), ("\u2212", "-"), ("\u00a0", " "),
                 ("\u2009", " "), ("\t", " "), ("\u2019", "'")):
        text = text.replace(a, b)
    return text


def _classify_header(label: str, at_line_start: bool = True):
    """('target', organ) | ('other', None) | ('generic', None) | ('skip', None) | None (not a header)."""
    words = [w for w in re.split(r"[\s/,&()-]+", label.lower()) if w]
    if not words or len(words) > 6:
        return None
    known = set(_SECTION_TARGET) | _SECTION_OTHER | _SECTION_GENERIC | _SECTION_SKIP | _SECTION_FILLER
    if any(w not in known for w in words):
        # An unknown all-capitals label at a line start ("BILIARY TREE:") still ends the section before it.
        if at_line_start and label.isupper() and len(words) <= 5 and re.fullmatch(r"[A-Z][A-Z /&-]*", label.strip()):
            return ("generic", None)
        return None
    if (any(w in _SECTION_SKIP for w in words) and not any(w in _SECTION_TARGET for w in words)
            and not any(w in _SECTION_GENERIC for w in words)):
        return ("skip", None)
    targets = [_SECTION_TARGET[w] for w in words if w in _SECTION_TARGET]
    if targets:
        return ("target", targets[0])
    if any(w in _SECTION_OTHER for w in words):
        return ("other", None)
    if any(w in _SECTION_GENERIC for w in words):
        return ("generic", None)
    return None


def _sections(text: str):
    """[(kind, organ, body)]: kind target/other/generic/none; skipped sections left out."""
    out = []
    pos = 0
    kind, organ = "none", None
    for m in _HEADER_RE.finditer(text):
        line_start = m.start() == 0 or text[m.start() - 1] == "\n"
        cls = _classify_header(m.group("label"), line_start)
        if cls is None:
            continue
        out.append((kind, organ, text[pos:m.start()]))
        kind, organ = cls
        pos = m.end()
    out.append((kind, organ, text[pos:]))
    return [(k, o, body) for k, o, body in out if k != "skip" and body.strip()]


_ABBREV = {"approx", "appr", "vs", "e.g", "i.e", "eg", "ie", "cf", "dr", "fig", "seg", "no", "nos", "mr", "ca",
           "incl", "est"}


def _sentences(paragraph: str):
    out = []
    for line in paragraph.split("\n"):
        start = 0
        for m in re.finditer(r"[.!?]+\s+(?=[A-Z0-9(\[\"'])", line):
            before = line[start:m.start()]
            last = re.search(r"([A-Za-z.]+)$", before)
            if last and last.group(1).lower().rstrip(".") in _ABBREV:
                continue
            out.append(line[start:m.end()])
            start = m.end()
        out.append(line[start:])
    return [s.strip() for s in out if s.strip()]


_SIZE_AHEAD = r"(?=\d+(?:\.\d+)?\s*-?\s*(?:mm|cm|x\b|by\b|millim|centim))"
_CLAUSE_SPLIT = re.compile(
    r";|\s+but\s+|,?\s+however,?\s+|\s+although\s+|\s+though\s+|\s+whereas\s+|\s+while\s+"
    r"|\s+except(?:\s+for)?\s+|\s+apart\s+from\s+|\s+aside\s+from\s+|\s+other\s+than\s+|\s+besides\s+"
    r"|,?\s+with\s+the\s+exception\s+of\s+|,?\s+which\s+|,\s+now\s+"
    r"|,?\s+and\s+(?=(?:a|an|there)\b)|,\s+and\s+(?=the\b)|,?\s+and\s+" + _SIZE_AHEAD +
    r"|,\s+(?=(?:a|an|there|this|these|it)\b)|,\s+" + _SIZE_AHEAD,
    _I)


def _clauses(sentence: str):
    return [c for c in _CLAUSE_SPLIT.split(sentence) if c and c.strip()]


# --------------------------------------------------------------------------- per clause


_OF_WHAT = re.compile(
    r"^\s+of\s+(?:the\s+|a\s+|an\s+)?(?:(?:left|right|upper|lower|middle|mid)\s+)*([a-z]+)(\s+[a-z]+)?", _I)


def _organ_words(clause: str):
    words = []
    for rx, organ, kind in _ORGAN_RES:
        for m in rx.finditer(clause):
            if kind == "loc":
                # "the left lobe of the lung", "the head of the epididymis": a location of another organ
                # (only a named organ: "segment 8 of uncertain significance" stays hepatic)
                of = _OF_WHAT.match(clause[m.end():])
                if of and any(o == "other" and r.search(of.group(0)) for r, o, _ in _ORGAN_RES):
                    organ, kind = "other", "noun"
            words.append(_Word(m.start(), m.end(), organ, kind))
            organ, kind = next((o, k) for r, o, k in _ORGAN_RES if r is rx)
    # Overlaps: keep the longest (e.g. "hepatic flexure" over "hepatic"), then the earliest.
    words.sort(key=lambda w: (-(w.end - w.start), w.start))
    kept: list = []
    for w in words:
        if all(w.end <= k.start or w.start >= k.end for k in kept):
            kept.append(w)
    return sorted(kept, key=lambda w: w.start)


def _lesions(clause: str):
    out = []
    for m in _LESION_RE.finditer(clause):
        if _NOT_LESION_BEFORE.search(clause[:m.start()]):
            continue
        implied = next((organ for rx, organ in _IMPLIED_ORGAN if rx.fullmatch(m.group(0))), None)
        weak = next((organ for rx, organ in _WEAK_IMPLIED if rx.fullmatch(m.group(0))), None)
        out.append((m.start(), m.end(), m.group(0), m.group("generic") is not None, implied, weak))
    return out


def _sizes(clause: str):
    """[(start, end, mm)] for each size expression (largest dimension)."""
    out = []
    for m in _SIZE_RE.finditer(clause):
        expr = m.group("expr")
        tokens = [(t.group("num"), t.group("unit")) for t in _SIZE_TOKEN.finditer(expr)]
        if not any(u for _, u in tokens):
            continue
        if _PAST_BEFORE.search(clause[:m.start()]) or _NOT_SIZE_AFTER.search(clause[m.end():]):
            continue
        values, pending, last_unit = [], [], None
        for num, unit in tokens:
            if num is not None:
                pending.append(float(num))
            elif unit is not None:
                last_unit = 10.0 if unit.lower().startswith("c") else 1.0
                values += [v * last_unit for v in pending]
                pending = []
        if pending and last_unit is not None:
            values += [v * last_unit for v in pending]
        if values:
            out.append((m.start(), m.end(), round(max(values), 1)))
    return out


def _historical(clause: str, start: int, end: int) -> bool:
    """Is the mention at ``clause[start:end]`` a past tumour ("history of RCC", "the resected metastasis",
    "the lesion was resected"), and not a current one named after the cue ("s/p hepatectomy with a new lesion")?"""
    for m in _HISTORICAL.finditer(clause):
        if m.end() <= start and not _HISTORY_STOP.search(clause[m.end():start]):
            return True
    return bool(_HISTORY_AFTER.match(clause[end:]))


def _in_spans(pos: int, spans) -> bool:
    return any(a <= pos < b for a, b in spans)


def _negated(clause: str, start: int, end: int, masked) -> bool:
    for m in _PRE_NEG.finditer(clause):
        if _in_spans(m.start(), masked) or m.end() > start:
            continue
        between = clause[m.end():start]
        if not _NEG_STOP.search(between):
            return True
    for m in _POST_NEG.finditer(clause):
        if _in_spans(m.start(), masked) or m.start() < end:
            continue
        return True
    return False


_LOCATIVE_END = re.compile(
    r"\b(?:in|within|of|at|involving|from|on|throughout|inside)\s+(?:the\s+|a\s+|an\s+|both\s+|either\s+|each\s+)?"
    r"(?:(?:right|left|upper|lower|mid|posterior|anterior|medial|lateral|inferior|superior|distal|proximal)\s+)*$",
    _I)
_GROUP_GAP = re.compile(r"^(?:\s|,|/|&|\band\b|\bor\b|\bnor\b|\bthe\b|\bboth\b|\beither\b|\bof\b|\bin\b)*$", _I)


def _group(clause, words, index):
    """Organs of the coordinated list around words[index] ("liver, pancreas or kidneys")."""
    lo = hi = index
    while lo > 0 and _GROUP_GAP.match(clause[words[lo - 1].end:words[lo].start]):
        lo -= 1
    while hi < len(words) - 1 and _GROUP_GAP.match(clause[words[hi].end:words[hi + 1].start]):
        hi += 1
    return {w.organ for w in words[lo:hi + 1]}


# Words after "lesion in the ..." that keep the sentence on the organ being described (no other site).
_SAME_ORGAN_PLACES = {
    "segment", "segments", "lobe", "lobes", "dome", "hilum", "hilar", "sinus", "cortex", "medulla", "parenchyma",
    "pole", "poles", "head", "neck", "body", "tail", "uncinate", "process", "region", "portion", "aspect", "margin",
    "periphery", "capsule", "surface", "side", "part", "area", "interpolar", "midpole", "subcapsular", "collecting",
    "pelvis", "bed", "duct", "ducts", "same", "other", "phase", "image", "images", "series", "slice", "study",
    "setting", "interval", "arterial", "portal", "venous", "delayed", "size", "range", "centre", "center",
    "junction", "vicinity", "location", "site", "organ", "gland", "caudate", "quadrate", "bare", "porta",
    "gallbladder", "fossa", "ligament", "falciform", "cyst", "lesion", "mass",
}
_PLACE_AFTER = re.compile(
    r"^[\s,]*(?:is\s+|are\s+)?(?:(?:seen|noted|present|identified|located)\s+)?(?:in|within|at|involving|inside|on)\s+"
    r"(?:the\s+|a\s+|an\s+)?(?:(?:right|left|upper|lower|mid|posterior|anterior|medial|lateral|inferior|superior"
    r"|distal|proximal|central|deep|superficial|small|large)\s+)*([a-z]+)", _I)


def _unlisted_site(clause: str, end: int) -> bool:
    """Does the mention at ``clause[:end]`` name a site of its own that no organ word covers
    ("lesions in the right inguinal canal")?  Then context from earlier sentences does not apply."""
    m = _PLACE_AFTER.match(clause[end:])
    return m is not None and m.group(1).lower() not in _SAME_ORGAN_PLACES


def _attribute(clause, start, end, implied, words, section_organs, context, weak=None):
    if implied:
        return {implied}
    explicit = [i for i, w in enumerate(words) if w.kind != "loc"]
    loc = [i for i, w in enumerate(words) if w.kind == "loc"]

    def following_locative(indices):
        for i in indices:
            w = words[i]
            if w.start >= end:
                gap = clause[end:w.start]
                if len(gap) <= 60 and _LOCATIVE_END.search(gap):
                    return i
        return None

    def preceding(indices):
        before = [i for i in indices if words[i].end <= start]
        return before[-1] if before else None

    i = following_locative(explicit)
    if i is None:
        i = preceding(explicit)
    if i is not None:
        return _group(clause, words, i)
    if weak:
        return {weak}
    if section_organs:
        return set(section_organs)
    i = following_locative(loc)
    if i is None:
        i = preceding(loc)
    if i is not None:
        return {words[i].organ}
    if context and not _unlisted_site(clause, end):
        return set(context)
    after = [i for i in explicit if words[i].start >= end]
    if after:
        return _group(clause, words, after[0])
    return set()


def extract_mentions(text: str) -> list:
    """Every lesion mention of ``text`` with its status, organs and sizes (see the module doc)."""
    mentions = []
    text = _normalize(text or "")
    for kind, organ, body in _sections(text):
        section_organs = {organ} if kind == "target" else ({"other"} if kind == "other" else set())
        for paragraph in re.split(r"\n\s*\n", body):
            context = set(section_organs)
            carry = []  # mentions that a following size-only clause belongs to
            for sentence in _sentences(paragraph):
                clauses = _clauses(sentence)
                for ci, clause in enumerate(clauses):
                    words = _organ_words(clause)
                    lesions = _lesions(clause)
                    sizes = _sizes(clause)
                    masked = [(m.start(), m.end()) for m in _UNCERTAIN.finditer(clause)]
                    uncertain = bool(masked)
                    explains_all = bool(_EXPLAINS_ALL.search(clause))
                    # An explanation may follow as an apposition: "hypodensity in the liver, a perfusion anomaly".
                    follower = clauses[ci + 1] if ci + 1 < len(clauses) else ""
                    explains_generic = bool(_EXPLAINS_GENERIC.search(clause)) or (
                        bool(_EXPLAINS_GENERIC.search(follower)) and not _lesions(follower))
                    here = []
                    for start, end, word, generic, implied, weak in lesions:
                        organs = _attribute(clause, start, end, implied, words, section_organs, context, weak)
                        if explains_all or (generic and explains_generic):
                            status = "not_tumour"
                        elif _historical(clause, start, end):
                            status = "historical"
                        elif _negated(clause, start, end, masked):
                            status = "negated"
                        elif uncertain:
                            status = "uncertain"
                        else:
                            status = "affirmed"
                        m = Mention(word, status, tuple(o for o in ORGANS if o in organs), [], clause.strip())
                        here.append((start, end, m))
                        mentions.append(m)
                    live = [(s, e, m) for s, e, m in here if m.status in ("affirmed", "uncertain") and m.organs]
                    if lesions:
                        for s0, e0, mm in sizes:
                            if live:
                                dist = [max(s - e0, s0 - e, 0) for s, e, _ in live]
                                live[dist.index(min(dist))][2].sizes_mm.append(mm)
                        carry = [m for _, _, m in live]
                    elif sizes and carry:
                        blocks = (any(w.kind == "noun" or w.organ == "other" for w in words)
                                  or _STRUCTURE_RE.search(clause))
                        if blocks:
                            carry = []
                        else:
                            for m in carry:
                                m.sizes_mm.extend(mm for _, _, mm in sizes)
                    elif any(w.kind == "noun" or w.organ == "other" for w in words) or _STRUCTURE_RE.search(clause):
                        carry = []
                    # Context for the next clauses: the organs named last here.
                    explicit = [i for i, w in enumerate(words) if w.kind != "loc"]
                    if explicit:
                        context = _group(clause, words, explicit[-1])
                    elif words:
                        context = {words[-1].organ}
    return mentions


def labels_from_mentions(mentions) -> dict:
    labels = {}
    for organ in ORGANS:
        mine = [m for m in mentions if organ in m.organs]
        affirmed = [m for m in mine if m.status == "affirmed"]
        uncertain = [m for m in mine if m.status == "uncertain"]
        chosen = affirmed or uncertain
        tumor = "yes" if affirmed else ("uncertain" if uncertain else "no")
        sizes = [s for m in chosen for s in m.sizes_mm]
        labels[organ] = {"tumor": tumor, "largest_mm": max(sizes) if sizes else None}
    return labels


def extract_labels(text: str) -> dict:
    """``{organ: {"tumor": "yes"|"no"|"uncertain", "largest_mm": float|None}}`` for liver, pancreas, kidney."""
    return labels_from_mentions(extract_mentions(text))


def parse_size_mm(text) -> float | None:
    """The largest size in ``text`` ("3.1 x 2.2 cm" -> 31.0), or None; a bare number is taken as mm."""
    if text is None:
        return None
    if isinstance(text, (int, float)):
        return float(text)
    s = str(text).strip()
    if re.fullmatch(_NUM, s):
        return float(s)
    sizes = _sizes(_normalize(s))
    return max(mm for _, _, mm in sizes) if sizes else None
