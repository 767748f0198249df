"""Device choice and `radgpt doctor`'s report, on this machine and with torch hidden."""

from __future__ import annotations

import importlib.metadata
import sys

import pytest
from test_segment_models import TOTAL_PARTS, TOTAL_TRAINER, write_model

from RadGPTLogic.errors import InputError
from RadGPTLogic.segment.device import gpu_inventory, pick_device
from RadGPTLogic.segment.doctor import doctor_report, format_doctor


@pytest.fixture
def isolated_env(tmp_path, monkeypatch):
    """Model places pointed at empty folders under tmp_path (never the user's real ones)."""
    monkeypatch.setenv("TOTALSEG_WEIGHTS_PATH", str(tmp_path / "totalseg"))
    monkeypatch.setenv("RADGPT_MODELS", str(tmp_path / "radgpt_models"))
    monkeypatch.delenv("RADGPT_SUBSEGMENTER", raising=False)
    monkeypatch.delenv("nnUNet_results", raising=False)
    return tmp_path


def _no_cuda():
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    return torch


# ------------------------------------------------------------------------------ device

def test_pick_device_without_cuda():
    torch = _no_cuda()
    assert pick_device("auto") == "cpu"
    assert pick_device() == "cpu"
    assert pick_device(" CPU ") == "cpu"
    for asked in ("cuda", "cuda:0"):
        with pytest.raises(InputError) as info:
            pick_device(asked)
        assert info.value.path is None
        assert "CUDA is not available" in info.value.problem and "--device cpu" in info.value.problem
        assert f"torch {torch.__version__}" in info.value.problem
    assert gpu_inventory() == []


def test_pick_device_unknown_choice():
    with pytest.raises(InputError) as info:
        pick_device("tpu")
    assert "'tpu'" in info.value.problem and "auto, cpu, cuda, cuda:N" in info.value.problem


def test_pick_device_index_beyond_count(monkeypatch):
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert pick_device("auto") == "cuda"
    assert pick_device("cuda:1") == "cuda:1"
    with pytest.raises(InputError) as info:
        pick_device("cuda:2")
    assert "cuda:2 does not exist: 2 CUDA devices present (cuda:0, cuda:1)" in info.value.problem


def test_pick_device_without_torch(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch now raises ImportError
    with pytest.raises(InputError) as info:
        pick_device("auto")
    assert "PyTorch is not installed" in info.value.problem
    assert gpu_inventory() == []


# ------------------------------------------------------------------------------ doctor

def test_doctor_on_this_machine(isolated_env):
    torch = _no_cuda()
    tmp_path = isolated_env
    good = write_model(tmp_path / "extra", dataset="Dataset987_RadGPTTinyPhantom")
    broken = write_model(tmp_path / "extra", dataset="Dataset988_Broken")
    (broken / "fold_all" / "checkpoint_final.pth").write_bytes(b"PK\x03\x04 truncated")
    report = doctor_report(extra_roots=[tmp_path / "extra"], check_torchvision=False)
    assert report["python"]["executable"] == sys.executable
    assert report["torch"] == {"version": torch.__version__, "cuda": torch.version.cuda, "problem": None}
    assert report["nnunetv2"] == importlib.metadata.version("nnunetv2")
    assert report["gpus"] == [] and report["auto_device"] == "cpu"
    assert report["env"]["TOTALSEG_WEIGHTS_PATH"] == str(tmp_path / "totalseg")
    models = {m["path"]: m for m in report["models"]}
    assert models[str(good)]["complete"] and models[str(good)]["name"] == "Dataset987_RadGPTTinyPhantom"
    assert not models[str(broken)]["complete"]
    assert str(broken / "fold_all" / "checkpoint_final.pth") in models[str(broken)]["problem"]
    assert any("incomplete model folder" in p and "Dataset988_Broken" in p for p in report["problems"])
    assert any(p.startswith("no CUDA GPU usable") for p in report["problems"])
    assert {p["preset"]: p["ok"] for p in report["presets"]} == {
        "total": False, "total_fast": False, "organ_subsegmenter": False}
    text = format_doctor(report)
    assert f"torch       {torch.__version__}" in text
    assert "device auto cpu" in text and "gpu         none" in text
    assert "Dataset987_RadGPTTinyPhantom: complete" in text and "Dataset988_Broken: INCOMPLETE" in text
    assert "totalseg_download_weights -t total" in text


def test_doctor_finds_total_preset(isolated_env):
    tmp_path = isolated_env
    for part in TOTAL_PARTS:
        write_model(tmp_path / "totalseg", dataset=part, results=TOTAL_TRAINER, folds=("0",))
    report = doctor_report(check_torchvision=False)
    total = next(p for p in report["presets"] if p["preset"] == "total")
    assert total["ok"] and total["models"] == [str(tmp_path / "totalseg" / p / TOTAL_TRAINER) for p in TOTAL_PARTS]
    assert all(m["complete"] for m in report["models"]) and len(report["models"]) == 5
    assert not any("weights not found" in p for p in report["problems"])  # a usable model exists


def test_doctor_without_torch(isolated_env, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    report = doctor_report(check_torchvision=False)
    assert report["torch"]["version"] is None and "not installed" in report["torch"]["problem"]
    assert report["auto_device"] is None and report["gpus"] == []
    assert any(p.startswith("torch not installed") for p in report["problems"])
    text = format_doctor(report)
    assert "torch       not installed" in text


def test_doctor_torchvision_is_reported_not_required(isolated_env):
    report = doctor_report()
    tv = report["torchvision"]
    assert tv["imports"] is True or "not needed" in tv["problem"]
    assert "torchvision" in format_doctor(report)
