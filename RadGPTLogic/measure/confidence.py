"""Segmentation confidence of one lesion component: how sure the model was of its voxels.

Inputs are a lesion component (a :class:`~RadGPTLogic.case.Crop`) and the model's
probability of that lesion class near the mask (a
:class:`~RadGPTLogic.case.ProbabilityCrop`), both in the canonical RAS frame.  Two
numbers, each over the component's voxels (see docs/CONTRACT.md, "Confidence"):

``mean_probability``
    mean tumor-class probability (0-1);
``share_below_0_5``
    share (0-1) of the voxels whose probability is below 0.5, the argmax boundary
    of two competing classes: voxels the model leaned against.

Voxels outside the stored probability crop count as probability 0: the crop is the
model's own mask grown by a margin (``io.probabilities.MARGIN_VOXELS``), so such a
voxel lies beyond anything the model called tumor (it was added by hand after the
model ran) and the model's probability there was near 0.  Counting it as 0 can
only lower the confidence, which sends the lesion to review rather than hiding an
edit.

Both numbers are rounded to :data:`DIGITS` decimals (probabilities are stored in
steps of 1/255, so a third decimal is already below their resolution), and the low
flag is judged on the rounded values, so that a reader can check it from
findings.json alone.
"""

from __future__ import annotations

import numpy as np

from ..case import Crop, ProbabilityCrop

#: Decimals of ``mean_probability`` and ``share_below_0_5`` in findings.json.
DIGITS = 3
#: A voxel below this probability is one the model leaned against (two-class argmax boundary).
BOUNDARY = 0.5


def probability_numbers(component: Crop, probability: ProbabilityCrop) -> dict:
    """``{"mean_probability", "share_below_0_5"}`` of one component, rounded to :data:`DIGITS` decimals.

    ``component`` and ``probability`` share the canonical frame; voxels of the
    component outside the probability crop count as 0.  An empty component gives 0 and 1.
    """
    if component.is_empty or not component.mask.any():
        return {"mean_probability": 0.0, "share_below_0_5": 1.0}
    values = probability.in_box(component.offset, component.shape)[component.mask].astype(np.float64)
    return {
        "mean_probability": round(float(values.mean()), DIGITS),
        "share_below_0_5": round(float(np.count_nonzero(values < BOUNDARY)) / values.size, DIGITS),
    }


def is_low(mean_probability: float, share_below_0_5: float, low_mean: float, low_share: float) -> bool:
    """Low confidence: mean below ``low_mean`` or share below 0.5 above ``low_share``
    (the thresholds of :class:`~RadGPTLogic.rules.Rules`, ``confidence_low_*``)."""
    return mean_probability < low_mean or share_below_0_5 > low_share


def lesion_confidence(numbers: dict, rules, model: str, mask_edited: bool) -> dict:
    """The ``confidence`` object of a lesion in findings.json.

    ``numbers`` from :func:`probability_numbers`; ``rules`` a :class:`~RadGPTLogic.rules.Rules`;
    ``model`` the name of the model that wrote the mask; ``mask_edited`` whether the mask
    file differs from what the model wrote (the probabilities then describe the model's
    version of the mask, yet are taken over the current component).
    """
    mean, share = float(numbers["mean_probability"]), float(numbers["share_below_0_5"])
    return {
        "mean_probability": mean,
        "share_below_0_5": share,
        "low": is_low(mean, share, rules.confidence_low_mean, rules.confidence_low_share_below_0_5),
        "model": str(model),
        "mask_edited": bool(mask_edited),
    }


def review_ranks(lesions: list) -> list:
    """1-based review rank of each lesion entry, in list order.

    Lesions whose ``confidence`` is low come first (lowest mean probability first,
    ties in list order), then all others in list order.
    """
    def low(entry) -> bool:
        conf = entry.get("confidence")
        return isinstance(conf, dict) and bool(conf.get("low"))

    first = sorted((n for n, e in enumerate(lesions) if low(e)),
                   key=lambda n: (lesions[n]["confidence"]["mean_probability"], n))
    order = first + [n for n in range(len(lesions)) if not low(lesions[n])]
    ranks = [0] * len(lesions)
    for rank, n in enumerate(order, start=1):
        ranks[n] = rank
    return ranks


__all__ = ["DIGITS", "BOUNDARY", "probability_numbers", "is_low", "lesion_confidence", "review_ranks"]
