"""Composition of several models' label maps: precedence, overlaps, organs holding their lesions."""

from __future__ import annotations

import numpy as np

from RadGPTLogic.segment.compose import ModelOutput, compose, may_share_voxels


def _labels(shape=(12, 10, 8)):
    return np.zeros(shape, np.uint8)


def test_same_structure_from_two_models_the_first_wins_and_the_other_is_recorded():
    a, b = _labels(), _labels()
    a[1:4, 1:4, 1:4] = 1
    b[5:9, 5:9, 2:6] = 3
    out = compose([ModelOutput("organs", a, {1: "liver"}, {1: "liver"}),
                   ModelOutput("other", b, {3: "liver"}, {3: "Liver"})])
    assert np.array_equal(out.masks["liver"], a == 1)
    assert out.provenance["liver"]["model"] == "organs"
    assert out.provenance["liver"]["overridden"] == [{"model": "other", "label": 3, "label_name": "Liver"}]


def test_exclusive_structures_never_share_voxels_the_earlier_model_keeps_them():
    a, b = _labels(), _labels()
    a[0:6, :, :] = 1          # liver from model A
    b[4:10, :, :] = 2         # spleen from model B overlaps rows 4-5
    out = compose([ModelOutput("A", a, {1: "liver"}, {1: "liver"}),
                   ModelOutput("B", b, {2: "spleen"}, {2: "spleen"})])
    assert out.masks["liver"][4:6].all()
    assert not out.masks["spleen"][4:6].any() and out.masks["spleen"][6:10].all()
    assert not (out.masks["liver"] & out.masks["spleen"]).any()


def test_organ_parts_and_lesions_may_overlap_their_organ():
    assert may_share_voxels("liver", "liver_segment_4") and may_share_voxels("pancreas_head", "pancreas")
    assert may_share_voxels("kidney_left", "kidney_cyst") and may_share_voxels("liver_lesion", "liver")
    assert not may_share_voxels("liver", "spleen") and not may_share_voxels("liver", "pancreatic_lesion")
    organs, segments = _labels(), _labels()
    organs[0:8] = 1
    segments[0:4] = 1
    segments[4:8] = 2
    out = compose([ModelOutput("organs", organs, {1: "liver"}, {1: "liver"}),
                   ModelOutput("segments", segments, {1: "liver_segment_1", 2: "liver_segment_2"},
                               {1: "s1", 2: "s2"})])
    assert out.masks["liver"].sum() == 8 * 10 * 8  # untouched by the later parts model
    assert out.masks["liver_segment_1"].sum() + out.masks["liver_segment_2"].sum() == 8 * 10 * 8


def test_lesion_voxels_join_their_organ_and_kidney_lesions_the_kidney_they_touch():
    labels = _labels((20, 10, 10))
    labels[0:8] = 1            # kidney_right at low i
    labels[12:20] = 2          # kidney_left at high i
    labels[6:8, 3:6, 3:6] = 3  # lesion inside the right kidney's edge (touches it only)
    labels[12:14, 3:6, 3:6] = 3  # a second lesion component in the left kidney
    probability = np.where(labels == 3, 0.8, 0.1).astype(np.float32)
    out = compose([ModelOutput("m", labels, {1: "kidney_right", 2: "kidney_left", 3: "kidney_lesion"},
                               {1: "kr", 2: "kl", 3: "tumor"}, {3: probability})])
    right, left = out.masks["kidney_right"], out.masks["kidney_left"]
    assert right[6:8, 3:6, 3:6].all() and not left[6:8, 3:6, 3:6].any()
    assert left[12:14, 3:6, 3:6].all() and not right[12:14, 3:6, 3:6].any()
    assert out.provenance["kidney_right"]["includes_lesions"] == ["kidney_lesion"]
    assert np.array_equal(out.probabilities["kidney_lesion"], probability)
    assert "kidney_right" not in out.probabilities  # probabilities are kept for tumor classes only


def test_a_label_mapped_to_nothing_is_skipped():
    labels = _labels()
    labels[2:5] = 1
    labels[6:9] = 2
    out = compose([ModelOutput("m", labels, {1: "liver", 2: None}, {1: "liver", 2: "skipped"})])
    assert set(out.masks) == {"liver"}
