"""Detection metrics of predicted tumour labels against ground truth, per organ and size.

Inputs: two mappings ``case_id -> labels`` (``labels`` as in :mod:`RadGPTLogic.evaluate`,
or ``None`` for a report that could not be labelled; a single organ may also be
``None``).  Only cases present on both sides are compared (the caller warns about
the others).

Definitions
===========

**Binary label.**  Per case and organ, "yes" -> positive, "no" -> negative.
"uncertain" is handled by ``uncertain`` (``--uncertain``), on *both* sides, predicted
and ground truth:

* ``exclude`` (default, as RadGPT's evaluation, which drops unparsed labels): a case
  whose predicted or true label for that organ is "uncertain" is left out of that
  organ's metrics and counted in ``excluded``;
* ``positive``: "uncertain" counts as "yes" (the largest size, if stated, is kept);
* ``negative``: "uncertain" counts as "no".

Missing labels (``None``: an unreadable LLM answer, an empty CSV cell) are always
excluded (counted in ``missing``).

**Strata** (``threshold_mm`` T, default 20 mm): ``all``, ``<= T mm`` and ``> T mm``.
A truly positive case belongs to the stratum of its *ground-truth* largest size; a
positive case without a ground-truth size is counted in ``all`` only
(``pos_size_unknown``).  As in a detection study, **every truly negative case belongs
to every stratum**: each stratum is the population "positives of that size + all
negatives".  Hence, within a stratum:

* sensitivity = TP / (TP + FN) over the stratum's positives (detection only: a
  predicted "yes" is a TP whatever size it states);
* **specificity = TN / (TN + FP) over all negatives, so it is the same in every
  stratum of an organ** (size is undefined for a case without tumour; the predicted
  size of a false positive is not used to stratify it);
* PPV = TP / (TP + FP), with the stratum's TP and all FP: the precision a reader would
  see in a population with only tumours of that size.

``size_mae_mm``: the mean absolute difference between predicted and true largest
size over the stratum's TP with both sizes (``size_pairs`` of them).

**Intervals.**  95 % Wilson score intervals: with p = x/n and z = 1.959964,
centre = (p + z^2/2n) / (1 + z^2/n), half-width = z / (1 + z^2/n) * sqrt(p(1-p)/n +
z^2/4n^2).  0/n gives [0, z^2/(n+z^2)], n/n gives [n/(n+z^2), 1]; n = 0 gives no value
(empty cell, "n/a").
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import asdict, dataclass

from . import ORGANS

Z95 = 1.959963984540054
UNCERTAIN_MODES = ("exclude", "positive", "negative")


def wilson_interval(x: int, n: int, z: float = Z95) -> tuple:
    """(low, high) Wilson score interval for x successes in n trials; (None, None) when n = 0."""
    if n <= 0:
        return (None, None)
    if not 0 <= x <= n:
        raise ValueError(f"successes {x} not in 0..{n}")
    p = x / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    low, high = max(0.0, centre - half), min(1.0, centre + half)
    if x == 0:
        low = 0.0
    if x == n:
        high = 1.0
    return (low, high)


@dataclass
class MetricRow:
    organ: str
    stratum: str
    n: int
    n_pos: int
    n_neg: int
    tp: int
    fn: int
    tn: int
    fp: int
    sensitivity: float | None
    sensitivity_low: float | None
    sensitivity_high: float | None
    specificity: float | None
    specificity_low: float | None
    specificity_high: float | None
    ppv: float | None
    ppv_low: float | None
    ppv_high: float | None
    size_mae_mm: float | None
    size_pairs: int
    excluded: int  # organ level: uncertain labels left out (mode "exclude")
    missing: int  # organ level: no label on one side
    pos_size_unknown: int  # organ level: true positives (cases) without a true size: only in "all"


def _ratio(x, n):
    low, high = wilson_interval(x, n)
    return (x / n if n else None), low, high


def binarize(entry, uncertain: str = "exclude"):
    """``(1 | 0 | None, largest_mm)`` for one organ entry; None = left out."""
    if entry is None:
        return None, None
    tumor = entry.get("tumor")
    if tumor == "uncertain":
        if uncertain == "positive":
            tumor = "yes"
        elif uncertain == "negative":
            tumor = "no"
        else:
            return None, None
    if tumor == "yes":
        return 1, entry.get("largest_mm")
    if tumor == "no":
        return 0, None
    return None, None


def strata_names(threshold_mm: float = 20.0) -> tuple:
    t = f"{threshold_mm:g}"
    return ("all", f"<= {t} mm", f"> {t} mm")


def compute_metrics(pred: dict, truth: dict, uncertain: str = "exclude", threshold_mm: float = 20.0) -> list:
    """A :class:`MetricRow` per organ and stratum (``all``, ``<= T mm``, ``> T mm``), on the common cases."""
    if uncertain not in UNCERTAIN_MODES:
        raise ValueError(f"uncertain must be one of {UNCERTAIN_MODES}")
    cases = sorted(set(pred) & set(truth))
    names = strata_names(threshold_mm)
    rows = []
    for organ in ORGANS:
        pairs = []  # (true 0/1, true mm, pred 0/1, pred mm)
        excluded = missing = 0
        for case in cases:
            p_entry = (pred[case] or {}).get(organ) if pred[case] is not None else None
            t_entry = (truth[case] or {}).get(organ) if truth[case] is not None else None
            if p_entry is None or t_entry is None:
                missing += 1
                continue
            t, t_mm = binarize(t_entry, uncertain)
            p, p_mm = binarize(p_entry, uncertain)
            if t is None or p is None:
                excluded += 1
                continue
            pairs.append((t, t_mm, p, p_mm))
        negatives = [x for x in pairs if x[0] == 0]
        tn = sum(1 for x in negatives if x[2] == 0)
        fp = len(negatives) - tn
        unknown = sum(1 for x in pairs if x[0] == 1 and x[1] is None)
        for name in names:
            if name == "all":
                pos = [x for x in pairs if x[0] == 1]
            elif name.startswith("<="):
                pos = [x for x in pairs if x[0] == 1 and x[1] is not None and x[1] <= threshold_mm]
            else:
                pos = [x for x in pairs if x[0] == 1 and x[1] is not None and x[1] > threshold_mm]
            tp = sum(1 for x in pos if x[2] == 1)
            fn = len(pos) - tp
            sens = _ratio(tp, tp + fn)
            spec = _ratio(tn, tn + fp)
            ppv = _ratio(tp, tp + fp)
            diffs = [abs(x[3] - x[1]) for x in pos if x[2] == 1 and x[1] is not None and x[3] is not None]
            rows.append(MetricRow(
                organ, name, len(pos) + len(negatives), len(pos), len(negatives), tp, fn, tn, fp,
                sens[0], sens[1], sens[2], spec[0], spec[1], spec[2], ppv[0], ppv[1], ppv[2],
                round(sum(diffs) / len(diffs), 2) if diffs else None, len(diffs),
                excluded, missing, unknown,
            ))
    return rows


CSV_FIELDS = list(MetricRow.__dataclass_fields__)


def _fmt(value):
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def metrics_csv(rows) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_FIELDS)
    for row in rows:
        d = asdict(row)
        w.writerow([_fmt(d[k]) for k in CSV_FIELDS])
    return buf.getvalue()


def _cell(value, low, high, x, n):
    if value is None:
        return "n/a (0/0)"
    return f"{100 * value:.1f}% ({100 * low:.1f}-{100 * high:.1f}) [{x}/{n}]"


def metrics_markdown(rows, uncertain: str = "exclude", threshold_mm: float = 20.0, title: str | None = None) -> str:
    """The table (organs x size strata; sensitivity, specificity, PPV with 95 % CI and n) and its notes."""
    lines = []
    if title:
        lines += [f"### {title}", ""]
    lines += ["| Organ | Tumour size | n (tumour / no tumour) | Sensitivity (95% CI) | Specificity (95% CI) "
              "| PPV (95% CI) |",
              "|---|---|---|---|---|---|"]
    previous = None
    for r in rows:
        organ = r.organ.capitalize() if r.organ != previous else ""
        previous = r.organ
        lines.append(
            f"| {organ} | {r.stratum} | {r.n_pos} / {r.n_neg} "
            f"| {_cell(r.sensitivity, r.sensitivity_low, r.sensitivity_high, r.tp, r.tp + r.fn)} "
            f"| {_cell(r.specificity, r.specificity_low, r.specificity_high, r.tn, r.tn + r.fp)} "
            f"| {_cell(r.ppv, r.ppv_low, r.ppv_high, r.tp, r.tp + r.fp)} |")
    t = f"{threshold_mm:g}"
    notes = [
        "",
        f"Strata by the ground-truth largest tumour size (<= {t} mm, > {t} mm); every case without tumour is "
        "counted in every stratum, so specificity is the same in each stratum of an organ and PPV uses all "
        "false positives. 95% Wilson score intervals; [x/n] = numerator/denominator.",
        {"exclude": "Uncertain labels (predicted or ground truth): case left out for that organ.",
         "positive": "Uncertain labels (predicted and ground truth) counted as tumour.",
         "negative": "Uncertain labels (predicted and ground truth) counted as no tumour."}[uncertain],
    ]
    for organ in ORGANS:
        first = next((r for r in rows if r.organ == organ), None)
        if first is None:
            continue
        bits = []
        if first.excluded:
            bits.append(f"{first.excluded} excluded as uncertain")
        if first.missing:
            bits.append(f"{first.missing} without a label")
        if first.pos_size_unknown:
            bits.append(f"{first.pos_size_unknown} tumour case(s) without a size (in 'all' only)")
        if bits:
            notes.append(f"{organ.capitalize()}: " + "; ".join(bits) + ".")
    return "\n".join(lines + notes) + "\n"


PAPER_ORGAN_ORDER = ("liver", "kidney", "pancreas")  # as in the RadGPT paper's detection results


def _size_words(threshold_mm: float) -> tuple:
    """("<= 2 cm", "> 2 cm") for 20 mm; millimetres when the threshold is not whole centimetres."""
    t = f"{threshold_mm / 10:g} cm" if threshold_mm % 10 == 0 else f"{threshold_mm:g} mm"
    return f"<= {t}", f"> {t}"


def paper_table(rows, threshold_mm: float = 20.0) -> str:
    """Per-organ sensitivity and specificity with 95 % CIs by tumour size, in the RadGPT paper's layout:
    one row per organ, a column pair (sensitivity, specificity) per size stratum.

    The specificity cells say in the table itself that they are the same in both strata (every case without
    tumour belongs to every stratum).
    """
    small, large = strata_names(threshold_mm)[1:]
    small_words, large_words = _size_words(threshold_mm)
    note = "all tumour-free cases, the same in both sizes"
    lines = [
        f"| Organ | Tumour {small_words}: sensitivity (95% CI) | Tumour {small_words}: specificity (95% CI; {note}) "
        f"| Tumour {large_words}: sensitivity (95% CI) | Tumour {large_words}: specificity (95% CI; {note}) |",
        "|---|---|---|---|---|",
    ]
    by = {(r.organ, r.stratum): r for r in rows}
    for organ in PAPER_ORGAN_ORDER:
        if (organ, small) not in by:
            continue
        cells = []
        for stratum in (small, large):
            r = by[(organ, stratum)]
            cells.append(_cell(r.sensitivity, r.sensitivity_low, r.sensitivity_high, r.tp, r.tp + r.fn))
            cells.append(_cell(r.specificity, r.specificity_low, r.specificity_high, r.tn, r.tn + r.fp))
        lines.append(f"| {organ.capitalize()} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- label tables

LABEL_FIELDS = ["case_id"] + [c for o in ORGANS for c in (o, f"{o}_mm")]


def labels_csv(labels_by_case: dict, notes: dict | None = None) -> str:
    """``case_id,liver,liver_mm,pancreas,pancreas_mm,kidney,kidney_mm[,note]`` (empty cells = no label / no size)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(LABEL_FIELDS + (["note"] if notes is not None else []))
    for case in sorted(labels_by_case):
        labels = labels_by_case[case]
        row = [case]
        for organ in ORGANS:
            entry = labels.get(organ) if labels else None
            if entry is None:
                row += ["", ""]
            else:
                mm = entry.get("largest_mm")
                row += [entry["tumor"], "" if mm is None else f"{mm:g}"]
        if notes is not None:
            row.append(" ".join(str(notes.get(case) or "").split()))
        w.writerow(row)
    return buf.getvalue()
