"""nnU-Net v2 model folders: opening, every way one can be broken, and the presets' places."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from segment_helpers import TINY_DATASET_LABELS as TINY_LABELS

from RadGPTLogic.errors import InputError
from RadGPTLogic.segment.models import (
    PRESETS,
    checkpoint_problem,
    find_model_folders,
    open_model_folder,
    preset_places,
    resolve_models,
)

REPO = Path(__file__).resolve().parents[1]

TOTAL_PARTS = [
    "Dataset291_TotalSegmentator_part1_organs_1559subj",
    "Dataset292_TotalSegmentator_part2_vertebrae_1532subj",
    "Dataset293_TotalSegmentator_part3_cardiac_1559subj",
    "Dataset294_TotalSegmentator_part4_muscles_1559subj",
    "Dataset295_TotalSegmentator_part5_ribs_1559subj",
]
TOTAL_TRAINER = "nnUNetTrainerNoMirroring__nnUNetPlans__3d_fullres"


def write_model(root: Path, dataset="Dataset123_Test", results="nnUNetTrainer__nnUNetPlans__3d_fullres",
                labels=None, folds=("all",), checkpoint="checkpoint_final.pth", configurations=("3d_fullres",),
                dataset_extra=None) -> Path:
    """An nnU-Net v2 results folder as training writes it; checkpoints by ``torch.save``."""
    torch = pytest.importorskip("torch")
    folder = root / dataset / results
    folder.mkdir(parents=True)
    trainer, plans_name, configuration = results.split("__")
    dataset_json = {"name": dataset, "channel_names": {"0": "CT"}, "labels": labels or TINY_LABELS,
                    "numTraining": 1, "file_ending": ".nii.gz", **(dataset_extra or {})}
    (folder / "dataset.json").write_text(json.dumps(dataset_json))
    plans = {"dataset_name": dataset, "plans_name": plans_name, "transpose_forward": [0, 1, 2],
             "transpose_backward": [0, 1, 2], "label_manager": "LabelManager",
             "configurations": {c: {"data_identifier": f"{plans_name}_{c}", "batch_size": 2,
                                    "patch_size": [32, 32, 32], "spacing": [1.5, 1.5, 1.5]}
                                for c in configurations}}
    (folder / "plans.json").write_text(json.dumps(plans))
    for fold in folds:
        (folder / f"fold_{fold}").mkdir()
        torch.save({"network_weights": {"w": torch.zeros(2)}, "trainer_name": trainer,
                    "init_args": {"configuration": configuration}}, folder / f"fold_{fold}" / checkpoint)
    return folder


def _error(call, *args, **kwargs) -> InputError:
    with pytest.raises(InputError) as info:
        call(*args, **kwargs)
    return info.value


# ---------------------------------------------------------------------------- opening

def test_open_results_folder_and_dataset_folder(tmp_path):
    folder = write_model(tmp_path, dataset="Dataset987_RadGPTTinyPhantom",
                         results="nnUNetTrainer__nnUNetPlans__3d_tiny", configurations=("2d", "3d_fullres", "3d_tiny"))
    for given in (folder, folder.parent):
        model = open_model_folder(given)
        assert model.path == folder
        assert model.name == "Dataset987_RadGPTTinyPhantom"
        assert (model.trainer, model.plans_name, model.configuration) == ("nnUNetTrainer", "nnUNetPlans", "3d_tiny")
        assert model.folds == ("all",) and model.use_folds == ("all",)
        assert model.checkpoint == "checkpoint_final.pth"
        assert model.checkpoint_paths() == [folder / "fold_all" / "checkpoint_final.pth"]
        assert model.dataset_json["labels"] == TINY_LABELS


def test_numbered_folds_default_and_selection(tmp_path):
    folder = write_model(tmp_path, folds=("3", "0", "1", "all"))
    assert open_model_folder(folder).folds == ("0", "1", "3")  # numbered folds first, in order; fold_all not mixed in
    assert open_model_folder(folder).use_folds == (0, 1, 3)
    assert open_model_folder(folder, folds="all").folds == ("all",)
    assert open_model_folder(folder, folds="1,0").folds == ("1", "0")
    assert open_model_folder(folder, folds=[3, "fold_1"]).checkpoint_paths() == [
        folder / "fold_3" / "checkpoint_final.pth", folder / "fold_1" / "checkpoint_final.pth"]


def test_checkpoint_best_is_the_fallback(tmp_path):
    folder = write_model(tmp_path, checkpoint="checkpoint_best.pth")
    assert open_model_folder(folder).checkpoint == "checkpoint_best.pth"
    err = _error(open_model_folder, folder, checkpoint="final")
    assert err.path == str(folder / "fold_all")
    assert "checkpoint_final.pth" in err.problem


def test_committed_tiny_model_opens():
    folder = REPO / "Testing" / "models" / "Dataset987_RadGPTTinyPhantom" / "nnUNetTrainer__nnUNetPlans__3d_tiny"
    if not (folder / "fold_all" / "checkpoint_final.pth").exists():
        pytest.skip("tiny model not committed yet")
    model = open_model_folder(folder)
    assert (model.name, model.configuration, model.folds) == ("Dataset987_RadGPTTinyPhantom", "3d_tiny", ("all",))
    assert checkpoint_problem(model.checkpoint_paths()[0]) is None


# ---------------------------------------------------------------------- broken folders

def test_folder_missing(tmp_path):
    err = _error(open_model_folder, tmp_path / "nope")
    assert err.path == str(tmp_path / "nope") and "not found" in err.problem


def test_not_a_results_folder_and_several_models(tmp_path):
    (tmp_path / "empty").mkdir()
    err = _error(open_model_folder, tmp_path / "empty")
    assert err.path == str(tmp_path / "empty") and "no dataset.json" in err.problem
    write_model(tmp_path, results="nnUNetTrainer__nnUNetPlans__3d_fullres")
    write_model(tmp_path, results="nnUNetTrainer__nnUNetPlans__2d", configurations=("2d",))
    err = _error(open_model_folder, tmp_path / "Dataset123_Test")
    assert "several trained models" in err.problem
    assert "nnUNetTrainer__nnUNetPlans__2d" in err.problem and "nnUNetTrainer__nnUNetPlans__3d_fullres" in err.problem


@pytest.mark.parametrize("name", ["dataset.json", "plans.json"])
def test_json_missing_or_invalid(tmp_path, name):
    folder = write_model(tmp_path)
    (folder / name).write_text("{not json")
    err = _error(open_model_folder, folder)
    assert err.path == str(folder / name) and "not valid JSON" in err.problem
    (folder / name).unlink()
    err = _error(open_model_folder, folder)
    assert err.path == str(folder / name) and "missing" in err.problem


def test_labels_missing(tmp_path):
    folder = write_model(tmp_path)
    data = json.loads((folder / "dataset.json").read_text(encoding="utf-8"))
    del data["labels"]
    (folder / "dataset.json").write_text(json.dumps(data))
    err = _error(open_model_folder, folder)
    assert err.path == str(folder / "dataset.json") and '"labels"' in err.problem


def test_configuration_not_in_plans(tmp_path):
    folder = write_model(tmp_path, results="nnUNetTrainer__nnUNetPlans__3d_lowres", configurations=("3d_fullres",))
    err = _error(open_model_folder, folder)
    assert err.path == str(folder / "plans.json")
    assert "'3d_lowres'" in err.problem and "3d_fullres" in err.problem


def test_bad_folder_name(tmp_path):
    folder = write_model(tmp_path)
    renamed = folder.parent / "my_model"
    folder.rename(renamed)
    err = _error(open_model_folder, renamed)
    assert err.path == str(renamed) and "<trainer>__<plans>__<configuration>" in err.problem


def test_no_fold_and_missing_fold(tmp_path):
    folder = write_model(tmp_path, folds=("0", "2"))
    err = _error(open_model_folder, folder, folds=(0, 1))
    assert err.path == str(folder / "fold_1")
    assert "fold 1 not found (present: 0, 2)" in err.problem
    assert "'x'" in _error(open_model_folder, folder, folds="x").problem
    for fold in ("0", "2"):
        for f in (folder / f"fold_{fold}").iterdir():
            f.unlink()
        (folder / f"fold_{fold}").rmdir()
    err = _error(open_model_folder, folder)
    assert err.path == str(folder) and "no fold_* folder" in err.problem


def test_fold_without_checkpoint(tmp_path):
    folder = write_model(tmp_path, folds=("0", "1"))
    (folder / "fold_1" / "checkpoint_final.pth").unlink()
    err = _error(open_model_folder, folder)
    assert err.path == str(folder / "fold_1")
    assert "checkpoint_final.pth or checkpoint_best.pth" in err.problem
    assert open_model_folder(folder, folds=0).folds == ("0",)


@pytest.mark.parametrize("damage", ["empty", "truncated", "text"])
def test_damaged_checkpoint(tmp_path, damage):
    folder = write_model(tmp_path)
    ckpt = folder / "fold_all" / "checkpoint_final.pth"
    data = ckpt.read_bytes()
    ckpt.write_bytes({"empty": b"", "truncated": data[: len(data) // 2], "text": b"<html>404</html>"}[damage])
    err = _error(open_model_folder, folder)
    assert err.path == str(ckpt)
    assert ("empty (0 bytes)" if damage == "empty" else "truncated or damaged") in err.problem


def test_checkpoint_problem_accepts_torch_formats(tmp_path):
    torch = pytest.importorskip("torch")
    new, legacy = tmp_path / "new.pth", tmp_path / "legacy.pth"
    torch.save({"a": 1}, new)
    torch.save({"a": 1}, legacy, _use_new_zipfile_serialization=False)
    assert checkpoint_problem(new) is None
    assert checkpoint_problem(legacy) is None
    assert checkpoint_problem(tmp_path / "none.pth") == "missing"


# ------------------------------------------------------------------------------ presets

def _total_weights(root: Path, parts=TOTAL_PARTS):
    for part in parts:
        write_model(root, dataset=part, results=TOTAL_TRAINER, labels={"background": 0, "spleen": 1}, folds=("0",))


def test_total_preset_via_totalseg_weights_path(tmp_path, monkeypatch):
    monkeypatch.setenv("TOTALSEG_WEIGHTS_PATH", str(tmp_path))
    monkeypatch.delenv("nnUNet_results", raising=False)
    _total_weights(tmp_path)
    models = resolve_models("total")
    assert [m.name for m in models] == TOTAL_PARTS
    assert all(m.folds == ("0",) and m.configuration == "3d_fullres" for m in models)
    assert [m.path for m in models] == [tmp_path / p / TOTAL_TRAINER for p in TOTAL_PARTS]
    assert resolve_models("TOTAL")[0].path == models[0].path


def test_total_preset_missing_weights_lists_places(tmp_path, monkeypatch):
    monkeypatch.delenv("TOTALSEG_WEIGHTS_PATH", raising=False)
    monkeypatch.setenv("TOTALSEG_HOME_DIR", str(tmp_path / "tshome"))
    monkeypatch.setenv("nnUNet_results", str(tmp_path / "results"))
    assert preset_places("total") == [tmp_path / "tshome" / "nnunet" / "results", tmp_path / "results"]
    err = _error(resolve_models, "total")
    text = err.one_line()
    assert str(tmp_path / "tshome" / "nnunet" / "results") in text and str(tmp_path / "results") in text
    assert "totalseg_download_weights -t total" in text
    assert all(part in text for part in TOTAL_PARTS)
    # four of five parts: the missing one is named
    _total_weights(tmp_path / "results", TOTAL_PARTS[:2] + TOTAL_PARTS[3:])
    err = _error(resolve_models, "total")
    assert re.search(r"has only 4 of the 5 part models, missing Dataset293_", err.one_line())


def test_total_preset_broken_part_names_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TOTALSEG_WEIGHTS_PATH", str(tmp_path))
    _total_weights(tmp_path)
    ckpt = tmp_path / TOTAL_PARTS[4] / TOTAL_TRAINER / "fold_0" / "checkpoint_final.pth"
    ckpt.write_bytes(b"")
    err = _error(resolve_models, "total")
    assert err.path == str(ckpt) and "empty" in err.problem


def test_subsegmenter_preset(tmp_path, monkeypatch):
    monkeypatch.delenv("RADGPT_SUBSEGMENTER", raising=False)
    monkeypatch.delenv("nnUNet_results", raising=False)
    monkeypatch.setenv("RADGPT_MODELS", str(tmp_path))
    err = _error(resolve_models, "organ_subsegmenter")
    assert str(tmp_path) in err.one_line() and "huggingface.co/prasb/OrganSubSegmenter" in err.one_line()
    results = "nnUNetTrainer__nnUNetPlannerResEncL_torchres_isotropic__3d_fullres"
    # a model of the same folder name without sub-segment labels (AtlasNet organs) is not taken
    write_model(tmp_path, dataset="Dataset224_AbdomenAtlas1.1", results=results, labels={"background": 0, "liver": 1})
    assert "not found" in _error(resolve_models, "organ_subsegmenter").problem
    labels = {"background": 0, "aorta": 1, **{f"liver_segment_{k}": 23 + k for k in range(1, 9)},
              "pancreas_head": 32, "pancreas_body": 33, "pancreas_tail": 34}
    folder = write_model(tmp_path, dataset="Dataset300_smallAtlas", results=results, labels=labels)
    (model,) = resolve_models("organ_subsegmenter")
    assert model.path == folder and model.folds == ("all",)
    monkeypatch.setenv("RADGPT_SUBSEGMENTER", str(folder))
    assert resolve_models("organ_subsegmenter")[0].path == folder


def test_resolve_unknown_spec(tmp_path):
    err = _error(resolve_models, tmp_path / "no_such_model")
    assert err.path == str(tmp_path / "no_such_model")
    assert all(name in err.problem for name in PRESETS)


def test_find_model_folders(tmp_path, monkeypatch):
    for name in ("TOTALSEG_WEIGHTS_PATH", "RADGPT_SUBSEGMENTER"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TOTALSEG_HOME_DIR", str(tmp_path / "none"))
    monkeypatch.setenv("RADGPT_MODELS", str(tmp_path / "none"))
    monkeypatch.setenv("nnUNet_results", str(tmp_path / "results"))
    good = write_model(tmp_path / "results", dataset="Dataset001_Good")
    bad = write_model(tmp_path / "results", dataset="Dataset002_Bad")
    (bad / "plans.json").unlink()
    (tmp_path / "results" / "Dataset003_Empty").mkdir()
    extra = write_model(tmp_path / "extra", dataset="Dataset004_Extra")
    found = {Path(f["path"]): f for f in find_model_folders(extra_roots=[tmp_path / "extra"])}
    assert set(found) == {good, bad, tmp_path / "results" / "Dataset003_Empty", extra}
    assert found[good]["complete"] and found[good]["problem"] is None and found[good]["name"] == "Dataset001_Good"
    assert not found[bad]["complete"] and str(bad / "plans.json") in found[bad]["problem"]
    assert not found[tmp_path / "results" / "Dataset003_Empty"]["complete"]
    assert found[extra]["complete"]
