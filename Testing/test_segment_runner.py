"""The segmentation runner: a real worker process running the real tiny model.

Streamed progress, several CTs with the models loaded once, cancel that ends the
whole process tree within 2 s and leaves nothing, timeout, and one-line errors
(broken model folder, unreadable CT, missing CUDA, out of memory).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path

import pytest
from segment_helpers import TINY_MODEL, needs_model, small_fov_ct, write_nifti

from RadGPTLogic import cli
from RadGPTLogic.phantom import build_phantom
from RadGPTLogic.segment.runner import SegmentationRunner
from RadGPTLogic.segment.worker import is_out_of_memory, out_of_memory_advice

pytestmark = needs_model


def _run(runner, timeout=600):
    events = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runner.wait(timeout=0.05)
        events.extend(runner.poll())
        if events and events[-1].kind in ("done", "error", "cancelled"):
            return events
    raise AssertionError("the run did not end")


def _group_gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


def _leftovers(folder: Path) -> list:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_several_cts_load_the_model_once_and_stream_progress(tmp_path):
    cts = [small_fov_ct(tmp_path / f"ct{n}.nii.gz", seed=n) for n in range(2)]
    runner = SegmentationRunner([str(TINY_MODEL)], device="cpu")
    runner.start_many([(ct, tmp_path / "out" / ct.name.split(".")[0]) for ct in cts])
    events = _run(runner)
    assert events[-1].kind == "done", events[-1]
    progress = [e for e in events if e.kind == "progress"]
    loads = [n for n, e in enumerate(progress) if e.stage == "load"]
    tiles = [n for n, e in enumerate(progress) if e.stage == "predict"]
    assert loads and tiles and max(loads) < min(tiles)  # loaded once, before the first CT
    for case in (0, 1):
        case_tiles = [e for e in progress if e.stage == "predict" and e.case == case]
        assert case_tiles[-1].done == case_tiles[-1].total > 0
        assert [e.done for e in case_tiles] == list(range(1, case_tiles[-1].total + 1))
        assert {e.model for e in case_tiles} == {"Dataset987_RadGPTTinyPhantom"} and case_tiles[0].fold == "all"
    assert [e.case for e in events if e.kind == "case_done"] == [0, 1]
    for n in range(2):
        case = tmp_path / "out" / f"ct{n}"
        assert json.loads((case / "segmentation.json").read_text(encoding="utf-8"))["structures"]["liver"]["voxels"] > 0
    assert runner.returncode == 0


def test_cancel_ends_the_process_tree_within_two_seconds_and_leaves_nothing(tmp_path):
    # the whole small phantom: dozens of tiles, so the run is surely still predicting at the cancel
    phantom = build_phantom(size="small", lesions=[], seed=11)
    ct = write_nifti(tmp_path / "ct.nii.gz", phantom.ct, phantom.affine)
    out = tmp_path / "runs" / "case"
    runner = SegmentationRunner([str(TINY_MODEL)], device="cpu")
    runner.start(ct, out)
    pid = runner.pid
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:  # wait until the model is loaded and predicting
        if any(e.kind == "progress" and e.stage == "predict" for e in runner.poll()):
            break
        time.sleep(0.02)
    started = time.monotonic()
    runner.cancel()
    assert time.monotonic() - started < 2.0
    assert _group_gone(pid)
    final = runner.wait(timeout=5)
    assert final is not None and final.kind == "cancelled"
    assert not out.exists() and (not out.parent.exists() or _leftovers(out.parent) == [])


def test_timeout_stops_the_run_and_says_so(tmp_path):
    ct = small_fov_ct(tmp_path / "ct.nii.gz")
    out = tmp_path / "case"
    runner = SegmentationRunner([str(TINY_MODEL)], device="cpu", timeout_s=1.0)
    runner.start(ct, out)
    pid = runner.pid
    final = _run(runner)[-1]
    assert final.kind == "error" and "timed out after 1 s" in final.message
    assert _group_gone(pid) and not out.exists()


def _cli(capsys, *args):
    code = cli.main(list(map(str, args)))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_segment_cli_progress_lines_and_case_folder(tmp_path, capsys):
    ct = small_fov_ct(tmp_path / "ct.nii.gz")
    code, out, err = _cli(capsys, "segment", ct, "--model", TINY_MODEL, "--out", tmp_path / "case", "--device", "cpu")
    assert code == 0, err
    assert "predict Dataset987_RadGPTTinyPhantom fold all: 1/" in err  # plain lines: stderr is not a terminal
    assert "segmented 1 of 1 CT(s)" in out
    assert (tmp_path / "case" / "segmentations" / "liver.nii.gz").is_file()


def test_segment_cli_draws_a_progress_bar_on_a_terminal(tmp_path):
    """stderr a pseudo-terminal: tqdm's bar (carriage returns, rates), not the plain lines."""
    import fcntl
    import pty
    import struct
    import subprocess
    import termios

    ct = small_fov_ct(tmp_path / "ct.nii.gz")
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a 100-column terminal
    proc = subprocess.Popen([sys.executable, "-m", "RadGPTLogic.cli", "segment", str(ct), "--model", str(TINY_MODEL),
                             "--out", str(tmp_path / "case"), "--device", "cpu"],
                            stdout=subprocess.PIPE, stderr=slave, cwd=Path(__file__).resolve().parents[1])
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # the terminal's other end closed: the process ended
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(timeout=300)
    os.close(master)
    shown = b"".join(chunks).decode("utf-8", "replace")
    assert proc.returncode == 0
    assert "\r" in shown and "predict Dataset987_RadGPTTinyPhantom fold all" in shown and "tiles" not in shown


def test_a_broken_model_folder_is_one_line_naming_what_is_missing(tmp_path, capsys):
    broken = tmp_path / "models" / TINY_MODEL.name  # nnU-Net's folder name kept
    shutil.copytree(TINY_MODEL, broken)
    (broken / "fold_all" / "checkpoint_final.pth").write_bytes(b"not a checkpoint")
    code, _out, err = _cli(capsys, "segment", small_fov_ct(tmp_path / "ct.nii.gz"), "--model", broken,
                           "--out", tmp_path / "case", "--device", "cpu", "--no-progress")
    assert code == 2
    lines = [line for line in err.splitlines() if line.startswith("radgpt: error:")]
    assert len(lines) == 1 and str(broken / "fold_all" / "checkpoint_final.pth") in lines[0]
    assert not (tmp_path / "case").exists()


def test_an_unreadable_ct_is_one_line_naming_it(tmp_path, capsys):
    bad = tmp_path / "ct.nii.gz"
    bad.write_bytes(b"\x1f\x8b not really gzip")
    code, _out, err = _cli(capsys, "segment", bad, "--model", TINY_MODEL, "--out", tmp_path / "case",
                           "--device", "cpu", "--no-progress")
    assert code == 2 and err.strip().splitlines()[-1].startswith(f"radgpt: error: {bad}:")
    assert not (tmp_path / "case").exists()


def test_one_bad_ct_of_several_fails_alone(tmp_path, capsys):
    folder = tmp_path / "cts"
    small_fov_ct(folder / "good.nii.gz")
    (folder / "bad.nii.gz").write_bytes(b"\x1f\x8b broken")
    code, out, err = _cli(capsys, "segment", folder, "--model", TINY_MODEL, "--out", tmp_path / "cases",
                          "--device", "cpu", "--no-progress")
    assert code == 1
    assert "segmented 1 of 2 CT(s); 1 failed" in out
    assert (tmp_path / "cases" / "good" / "segmentation.json").is_file() and not (tmp_path / "cases" / "bad").exists()


def test_cuda_asked_for_on_a_machine_without_it(tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    code, _out, err = _cli(capsys, "segment", small_fov_ct(tmp_path / "ct.nii.gz"), "--model", TINY_MODEL,
                           "--out", tmp_path / "case", "--device", "cuda", "--no-progress")
    assert code == 2 and "CUDA is not available" in err and "--device cpu" in err


def test_out_of_memory_is_recognised_and_advised():
    import torch

    assert is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert is_out_of_memory(MemoryError())
    assert is_out_of_memory(RuntimeError("[enforce fail at alloc_cpu.cpp:121] DefaultCPUAllocator: can't allocate "
                                         "memory: you tried to allocate 12345 bytes"))
    assert not is_out_of_memory(RuntimeError("shape mismatch"))
    assert "--device cpu" in out_of_memory_advice("cuda:0") and "--folds" in out_of_memory_advice("cuda:0")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="address-space limit via resource (Linux)")
def test_running_out_of_memory_for_real_is_exit_3_with_advice(tmp_path, capsys):
    """The worker under an address-space limit (a Python wrapper sets RLIMIT_AS, then execs
    this interpreter): nnunetv2 fails to allocate the CT's arrays, the run ends with code 3."""
    wrapper = tmp_path / "limited_python"
    wrapper.write_text(f"#!{sys.executable}\nimport os, resource, sys\n"
                       f"resource.setrlimit(resource.RLIMIT_AS, (3_500_000_000, 3_500_000_000))\n"
                       f"os.execv({sys.executable!r}, [{sys.executable!r}] + sys.argv[1:])\n")
    wrapper.chmod(0o755)
    import nibabel as nib
    import numpy as np

    huge = tmp_path / "huge.nii.gz"  # 900 x 900 x 600 voxels of 0.5 mm: float32 copies alone exceed the limit
    nib.save(nib.Nifti1Image(np.zeros((900, 900, 600), np.int16), np.diag([0.5, 0.5, 0.5, 1.0])), str(huge))
    runner = SegmentationRunner([str(TINY_MODEL)], device="cpu", python_executable=str(wrapper))
    runner.start(huge, tmp_path / "case")
    final = _run(runner)[-1]
    assert final.kind == "error" and final.message.startswith("out of memory on cpu"), final.message
    assert runner.returncode == 3 and not (tmp_path / "case").exists()


def test_sigterm_to_the_worker_is_an_error_not_a_hang(tmp_path):
    """A worker killed from outside (not by cancel) ends the run with one error event."""
    ct = small_fov_ct(tmp_path / "ct.nii.gz")
    runner = SegmentationRunner([str(TINY_MODEL)], device="cpu")
    runner.start(ct, tmp_path / "case")
    time.sleep(0.5)
    os.killpg(runner.pid, signal.SIGKILL)
    final = _run(runner, timeout=30)[-1]
    assert final.kind == "error" and "ended with code -9" in final.message
    assert not (tmp_path / "case").exists()
