"""``radgpt doctor``: what segmentation would run with on this machine, and what is missing.

:func:`doctor_report` collects versions, GPUs, the device ``auto`` picks, the model
environment variables and every model folder found; :func:`format_doctor` prints it.
Neither raises for a missing torch or a broken model folder: they are reported, one
problem per line with what to do.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
import sys

from ..errors import InputError
from .device import gpu_inventory, pick_device
from .models import PRESETS, find_model_folders, preset_places, resolve_models

ENV_VARS = ("nnUNet_results", "TOTALSEG_WEIGHTS_PATH", "TOTALSEG_HOME_DIR", "RADGPT_MODELS",
            "RADGPT_SUBSEGMENTER", "CUDA_VISIBLE_DEVICES")


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _torch_info() -> dict:
    try:
        import torch
    except ImportError as exc:
        return {"version": None, "cuda": None, "problem": f"not installed ({exc})"}
    except Exception as exc:  # a broken install (missing shared library ...): report, never raise
        return {"version": None, "cuda": None, "problem": f"cannot be imported ({' '.join(str(exc).split())})"}
    return {"version": torch.__version__, "cuda": getattr(torch.version, "cuda", None), "problem": None}


def _torchvision_info(timeout_s: float = 120.0) -> dict:
    """Whether ``import torchvision`` works, tried in a child process (a failed import can leave torch half-patched)."""
    version = _version("torchvision")
    if version is None:
        return {"version": None, "imports": False, "problem": "not installed (not needed)"}
    try:
        done = subprocess.run([sys.executable, "-c", "import torchvision"], capture_output=True, text=True,
                              timeout=timeout_s)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"version": version, "imports": False, "problem": f"import not checked ({exc}; not needed)"}
    if done.returncode == 0:
        return {"version": version, "imports": True, "problem": None}
    lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
    last = lines[-1].strip() if lines else f"exit status {done.returncode}"
    return {"version": version, "imports": False, "problem": f"does not import ({last}); not needed by radgpt"}


def _presets() -> list:
    out = []
    for name in PRESETS:
        entry = {"preset": name, "ok": False, "places": [str(p) for p in preset_places(name)], "problem": None,
                 "models": []}
        try:
            models = resolve_models(name)
        except InputError as exc:
            entry["problem"] = exc.one_line()
        except OSError as exc:
            entry["problem"] = f"cannot be read ({exc})"
        else:
            entry["ok"] = True
            entry["models"] = [str(m.path) for m in models]
        out.append(entry)
    return out


def doctor_report(extra_roots=(), check_torchvision: bool = True) -> dict:
    """Everything ``radgpt doctor`` shows, as a JSON-ready dict.

    Keys: ``python`` (version, executable), ``platform``, ``numpy``, ``torch`` (version,
    cuda = the CUDA version torch was built with, problem), ``nnunetv2``,
    ``torchvision`` (imports: bool; not needed), ``gpus`` (see
    :func:`~RadGPTLogic.segment.device.gpu_inventory`), ``auto_device`` (or None, with
    ``auto_device_problem``), ``env`` (the model variables, None when unset),
    ``presets`` (each preset: ok, places looked in, problem), ``models`` (see
    :func:`~RadGPTLogic.segment.models.find_model_folders`; ``extra_roots`` adds places)
    and ``problems`` (one line each, with what to do).
    """
    problems: list[str] = []
    torch_info = _torch_info()
    nnunet = _version("nnunetv2")
    if torch_info["problem"]:
        problems.append(f"torch {torch_info['problem']}: install PyTorch (https://pytorch.org) to segment")
    if nnunet is None:
        problems.append("nnunetv2 not installed: pip install nnunetv2 to segment")
    auto_device, auto_problem = None, None
    if torch_info["problem"] is None:
        try:
            auto_device = pick_device("auto")
        except InputError as exc:
            auto_problem = exc.one_line()
    else:
        auto_problem = "torch not installed"
    gpus = gpu_inventory() if torch_info["problem"] is None else []
    if torch_info["problem"] is None and not gpus:
        build = f"torch {torch_info['version']} " + (f"(CUDA {torch_info['cuda']})" if torch_info["cuda"]
                                                     else "(CPU-only build)")
        problems.append(f"no CUDA GPU usable ({build}): segmentation runs on the CPU, slowly; for a GPU install "
                        "a CUDA build of torch and check the driver")
    for gpu in gpus:
        if gpu.get("problem"):
            problems.append(f"GPU cuda:{gpu['index']}: {gpu['problem']}")
    presets = _presets()
    models = find_model_folders(extra_roots)
    if not any(p["ok"] for p in presets) and not any(m["complete"] for m in models):
        problems.extend(p["problem"] for p in presets if p["problem"])
    problems.extend(f"incomplete model folder: {m['problem']}" for m in models if not m["complete"])
    try:
        import numpy
        numpy_version: str | None = numpy.__version__
    except ImportError:
        numpy_version = None
        problems.append("numpy not installed: pip install numpy")
    return {
        "python": {"version": platform.python_version(), "executable": sys.executable},
        "platform": platform.platform(),
        "numpy": numpy_version,
        "torch": torch_info,
        "nnunetv2": nnunet,
        "torchvision": _torchvision_info() if check_torchvision else {"version": _version("torchvision"),
                                                                      "imports": None, "problem": "not checked"},
        "gpus": gpus,
        "auto_device": auto_device,
        "auto_device_problem": auto_problem,
        "env": {name: os.environ.get(name) for name in ENV_VARS},
        "presets": presets,
        "models": models,
        "problems": problems,
    }


def format_doctor(report: dict) -> str:
    """``report`` as readable lines: versions, GPUs, device, environment, models, then problems."""
    py = report["python"]
    torch_info = report["torch"]
    lines = [f"python      {py['version']} ({py['executable']})", f"platform    {report['platform']}",
             f"numpy       {report['numpy'] or 'not installed'}"]
    if torch_info["version"]:
        lines.append(f"torch       {torch_info['version']} "
                     + (f"(built with CUDA {torch_info['cuda']})" if torch_info["cuda"] else "(CPU-only build)"))
    else:
        lines.append(f"torch       {torch_info['problem']}")
    lines.append(f"nnunetv2    {report['nnunetv2'] or 'not installed'}")
    tv = report["torchvision"]
    if tv.get("imports"):
        lines.append(f"torchvision {tv['version']} (imports; not needed)")
    else:
        lines.append(f"torchvision {tv['version'] + ' ' if tv.get('version') else ''}{tv['problem']}")
    if report["gpus"]:
        for gpu in report["gpus"]:
            memory = (f"{gpu['free_mib']} MiB free of {gpu['total_mib']} MiB" if gpu["free_mib"] is not None
                      else f"memory unknown ({gpu['problem']})")
            lines.append(f"gpu         cuda:{gpu['index']} {gpu['name']}: {memory}")
    else:
        lines.append("gpu         none")
    lines.append(f"device auto {report['auto_device'] or report['auto_device_problem']}")
    for name, value in report["env"].items():
        lines.append(f"env         {name}={value if value is not None else '(unset)'}")
    for preset in report["presets"]:
        state = ("found: " + ", ".join(preset["models"]) if preset["ok"]
                 else f"not installed ({PRESETS[preset['preset']]['install']})")
        lines.append(f"preset      {preset['preset']}: {state}")
    if report["models"]:
        for model in report["models"]:
            lines.append(f"model       {model['name']}: {'complete' if model['complete'] else 'INCOMPLETE'} "
                         f"({model['path']})")
    else:
        lines.append("model       no model folders found")
    if report["problems"]:
        lines.append("problems:")
        lines.extend(f"  - {problem}" for problem in report["problems"])
    else:
        lines.append("no problems found")
    return "\n".join(lines)
