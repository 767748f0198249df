"""Model label values -> RadGPT structure names: plain, region-based, user mapping, unknown labels."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from segment_helpers import TINY_DATASET_LABELS as TINY_LABELS

from RadGPTLogic import vocabulary as vocab
from RadGPTLogic.errors import InputError
from RadGPTLogic.io.label_tables import ABDOMENATLAS_3_0, TOTALSEGMENTATOR_TOTAL
from RadGPTLogic.io.labelmaps import case_from_labelmap
from RadGPTLogic.segment.labels import (
    label_table,
    load_user_map,
    map_labels,
    output_labels,
    output_regions,
)
from RadGPTLogic.segment.models import ModelFolder

# Nested regions, as nnU-Net region-based training writes them; written values deliberately
# not 1..3 so that region order and written value cannot be confused.
REGION_JSON = {"labels": {"background": 0, "left kidney": [1, 2], "kidney tumor": [2], "liver": 3},
               "regions_class_order": [4, 7, 9]}


def model(tmp_path: Path, dataset_json: dict, name="Dataset555_Test") -> ModelFolder:
    """A ModelFolder over a hand-written dataset.json (the label functions read nothing else)."""
    folder = tmp_path / name / "nnUNetTrainer__nnUNetPlans__3d_fullres"
    folder.mkdir(parents=True)
    (folder / "dataset.json").write_text(json.dumps(dataset_json))
    return ModelFolder(path=folder, name=name, dataset_json=dataset_json, plans={"configurations": {}},
                       configuration="3d_fullres", trainer="nnUNetTrainer", folds=("all",),
                       checkpoint="checkpoint_final.pth")


def _error(call, *args, **kwargs) -> InputError:
    with pytest.raises(InputError) as info:
        call(*args, **kwargs)
    return info.value


def test_tiny_model_labels_are_canonical(tmp_path):
    m = model(tmp_path, {"labels": TINY_LABELS})
    assert vocab.LESION_ORGAN_KIND["pancreatic_lesion"] == ("pancreas", "lesion")
    expected = {v: n for n, v in TINY_LABELS.items() if v}
    assert output_labels(m.dataset_json) == expected
    assert map_labels(m) == expected
    table = label_table(m)
    assert table.names == expected and table.unions == {} and table.complete
    assert table.source == str(m.path / "dataset.json")


def test_totalsegmentator_names_map_without_error(tmp_path):
    labels = {"background": 0, **{name: value for value, name in TOTALSEGMENTATOR_TOTAL.items()}}
    mapped = map_labels(model(tmp_path, {"labels": labels}))
    assert len(mapped) == 117
    assert mapped[63] == "postcava"             # inferior_vena_cava
    assert mapped[4] == "gall_bladder"          # gallbladder
    assert mapped[18] == "intestine"            # small_bowel
    assert mapped[23] == mapped[24] == "kidney_cyst"
    assert mapped[64] == "portal_vein_and_splenic_vein"
    assert mapped[31] == "vertebrae_L1"         # known but unused: kept in its own spelling
    assert mapped[10] == "lung_upper_lobe_left"
    assert all(vocab.canonical_name(n) or vocab.is_known_unused(n) for n in mapped.values())


def test_abdomenatlas_subsegmenter_names(tmp_path):
    labels = {"background": 0, **{name: value for value, name in ABDOMENATLAS_3_0.items()}}
    mapped = map_labels(model(tmp_path, {"labels": labels}))
    assert [mapped[v] for v in range(24, 32)] == [f"liver_segment_{k}" for k in range(1, 9)]
    assert (mapped[32], mapped[33], mapped[34]) == ("pancreas_head", "pancreas_body", "pancreas_tail")


def test_unknown_labels_are_one_error_naming_them(tmp_path):
    m = model(tmp_path, {"labels": {"background": 0, "liver": 1, "blob": 2, "thing two": 3}})
    err = _error(map_labels, m)
    assert err.path == str(m.path / "dataset.json")
    assert "'blob'" in err.problem and "'thing two'" in err.problem and "'liver'" not in err.problem
    assert "mapping file" in err.problem
    assert "\n" not in err.one_line()


def test_user_map_wins_and_null_skips(tmp_path):
    m = model(tmp_path, {"labels": {"background": 0, "Leber": 1, "blob": 2, "spleen": 3, "kidney_left": 4}})
    path = tmp_path / "map.json"
    path.write_text(json.dumps({"Leber": "liver", "blob": None, "spleen": "kidney right", "unused key": "aorta"}))
    user = load_user_map(path)
    assert user == {"Leber": "liver", "blob": None, "spleen": "kidney_right", "unused key": "aorta"}
    assert map_labels(m, user) == {1: "liver", 3: "kidney_right", 4: "kidney_left"}
    table = label_table(m, user)
    assert table.names == {1: "liver", 3: "kidney_right", 4: "kidney_left"}
    assert not table.complete  # value 2 is skipped on purpose: present voxels are ignored, not an error
    # a plain dict works too, keys matched by normalised spelling
    assert map_labels(m, {"leber": "liver", "BLOB": ""})[1] == "liver"


@pytest.mark.parametrize("content, words", [
    (None, "not found"), ("{oops", "not a readable JSON"), ("[1, 2]", "JSON object"),
    ('{"a": "not_a_structure"}', "'not_a_structure' is not a structure name"), ('{"a": 5}', "structure name or null"),
])
def test_user_map_errors(tmp_path, content, words):
    path = tmp_path / "map.json"
    if content is not None:
        path.write_text(content)
    err = _error(load_user_map, path)
    assert err.path == str(path) and words in err.problem


def test_region_labels_match_nnunet_label_manager(tmp_path):
    torch = pytest.importorskip("torch")
    label_handling = pytest.importorskip("nnunetv2.utilities.label_handling.label_handling")
    manager = label_handling.LabelManager(REGION_JSON["labels"], REGION_JSON["regions_class_order"])
    assert manager.has_regions
    # four voxels: kidney only; kidney + tumor; liver; nothing
    probabilities = np.array([[0.9, 0.9, 0.1, 0.1],   # left kidney
                              [0.1, 0.8, 0.1, 0.1],   # kidney tumor
                              [0.1, 0.1, 0.7, 0.1]],  # liver
                             dtype=np.float32)
    segmentation = np.asarray(manager.convert_probabilities_to_segmentation(torch.from_numpy(probabilities)))
    assert segmentation.tolist() == [4, 7, 9, 0]
    assert output_labels(REGION_JSON) == {4: "left kidney", 7: "kidney tumor", 9: "liver"}
    regions = output_regions(REGION_JSON)
    assert regions == {"left kidney": [4, 7], "kidney tumor": [7], "liver": [9]}
    # each region's voxels recovered from the exported segmentation alone
    for i, name in enumerate(["left kidney", "kidney tumor", "liver"]):
        assert np.isin(segmentation, regions[name]).tolist() == (probabilities[i] > 0.5).tolist()


def test_region_label_table_through_case_loader(tmp_path):
    m = model(tmp_path, REGION_JSON)
    assert map_labels(m) == {4: "kidney_left", 7: "kidney_tumor", 9: "liver"}
    table = label_table(m)
    assert table.names == {} and table.unions == {"kidney_left": [4, 7], "kidney_tumor": [7], "liver": [9]}
    seg = np.zeros((6, 5, 4), np.uint8)
    seg[0:2] = 4   # 40 kidney voxels
    seg[2] = 7     # 20 tumour voxels, inside the kidney
    seg[4:6] = 9   # 40 liver voxels
    path = tmp_path / "seg.nii.gz"
    nib.save(nib.Nifti1Image(seg, np.eye(4)), str(path))
    case = case_from_labelmap(path, table)
    counts = {name: int(np.count_nonzero(crop.in_box((0, 0, 0), case.shape))) for name, crop in case.structures.items()}
    assert counts["kidney_left"] == 60 and counts["kidney_tumor"] == 20 and counts["liver"] == 40


def test_region_errors(tmp_path):
    bad = {"labels": REGION_JSON["labels"], "regions_class_order": [1, 2]}
    err = _error(output_labels, bad, "x/dataset.json")
    assert err.path == "x/dataset.json" and "regions_class_order" in err.problem
    err = _error(output_labels, {"labels": REGION_JSON["labels"]})
    assert "regions_class_order" in err.problem
    err = _error(output_labels, {"labels": {"background": 0, "a": 1, "b": 1}})
    assert "given twice" in err.problem
