"""nnU-Net v2 model folders: open and check one, resolve presets, list what is installed.

A *results folder* is what nnU-Net v2 training writes (and what model downloads unpack to)::

    <Dataset123_Name>/<trainer>__<plans>__<configuration>/
        dataset.json            label names and values
        plans.json              the "configurations" the network was planned with
        fold_0/ ... fold_4/     or fold_all/, each with checkpoint_final.pth (or checkpoint_best.pth)

:func:`open_model_folder` checks every piece without loading torch (a checkpoint is
checked to be a readable zip archive, which is what ``torch.save`` writes), so a broken
download is a one-line :class:`~RadGPTLogic.errors.InputError` naming the exact file,
before any inference starts.  :func:`resolve_models` also knows the published layouts
of the presets in :data:`PRESETS`; :func:`find_model_folders` lists every results folder
it can find, for ``radgpt doctor``.
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from ..errors import InputError

CHECKPOINT_NAMES = ("checkpoint_final.pth", "checkpoint_best.pth")

# ------------------------------------------------------------------------- presets

_TOTALSEG_TRAINER = "nnUNetTrainerNoMirroring__nnUNetPlans__3d_fullres"
_TOTALSEG_FAST_TRAINER = "nnUNetTrainer_4000epochs_NoMirroring__nnUNetPlans__3d_fullres"
_TOTALSEG_WHERE = ("$TOTALSEG_WEIGHTS_PATH, else $TOTALSEG_HOME_DIR/nnunet/results, else "
                   "~/.totalsegmentator/nnunet/results (TotalSegmentator's own places), then $nnUNet_results")
_SUBSEG_TRAINER = "nnUNetTrainer__nnUNetPlannerResEncL_torchres_isotropic__3d_fullres"
_SUBSEG_URL = ("https://huggingface.co/prasb/OrganSubSegmenter/resolve/main/"
               f"{_SUBSEG_TRAINER}.zip")

PRESETS = {
    "total": {
        "description": "TotalSegmentator v2 'total' (117 structures, 1.5 mm): its five part models, "
                       "run one after the other and composed into one label map",
        "where": _TOTALSEG_WHERE,
        "folders": (
            f"Dataset291_TotalSegmentator_part1_organs_1559subj/{_TOTALSEG_TRAINER}/fold_0",
            f"Dataset292_TotalSegmentator_part2_vertebrae_1532subj/{_TOTALSEG_TRAINER}/fold_0",
            f"Dataset293_TotalSegmentator_part3_cardiac_1559subj/{_TOTALSEG_TRAINER}/fold_0",
            f"Dataset294_TotalSegmentator_part4_muscles_1559subj/{_TOTALSEG_TRAINER}/fold_0",
            f"Dataset295_TotalSegmentator_part5_ribs_1559subj/{_TOTALSEG_TRAINER}/fold_0",
        ),
        "install": "run `totalseg_download_weights -t total` (pip install TotalSegmentator), or unpack the "
                   "five Dataset291-295 folders into ~/.totalsegmentator/nnunet/results (or a folder named "
                   "by $TOTALSEG_WEIGHTS_PATH)",
    },
    "total_fast": {
        "description": "TotalSegmentator v2 'total --fast' (117 structures, one 3 mm model)",
        "where": _TOTALSEG_WHERE,
        "folders": (f"Dataset297_TotalSegmentator_total_3mm_1559subj/{_TOTALSEG_FAST_TRAINER}/fold_0",),
        "install": "run `totalseg_download_weights -t total_fast` (pip install TotalSegmentator), or unpack "
                   "the Dataset297 folder into ~/.totalsegmentator/nnunet/results (or a folder named by "
                   "$TOTALSEG_WEIGHTS_PATH)",
    },
    "organ_subsegmenter": {
        "description": "RadGPT / AbdomenAtlas OrganSubSegmenter (nnU-Net ResEncL, 1 mm): abdominal organs, "
                       "liver segments 1-8 and pancreas head/body/tail",
        "where": "$RADGPT_SUBSEGMENTER (the unzipped folder itself), else $RADGPT_MODELS (default "
                 "~/.radgpt/models), then $nnUNet_results; in a folder of models it is the "
                 f"{_SUBSEG_TRAINER} folder whose dataset.json names liver segments or pancreas parts",
        "folders": (f"{_SUBSEG_TRAINER}/fold_all",),
        "install": f"download {_SUBSEG_URL} and unzip it into ~/.radgpt/models (or set $RADGPT_SUBSEGMENTER "
                   "to the unzipped folder)",
    },
}
# Preset -> the dataset folders (matched by their "DatasetNNN_" prefix) and trainer folder.
_PRESET_PARTS = {
    "total": [(f.split("/")[0], _TOTALSEG_TRAINER) for f in PRESETS["total"]["folders"]],
    "total_fast": [("Dataset297_TotalSegmentator_total_3mm_1559subj", _TOTALSEG_FAST_TRAINER)],
}
_PRESET_FOLDS = {"total": ("0",), "total_fast": ("0",), "organ_subsegmenter": ("all",)}


# ---------------------------------------------------------------------- ModelFolder

@dataclass(frozen=True)
class ModelFolder:
    """One checked nnU-Net v2 results folder, ready for ``nnUNetPredictor``.

    Attributes
    ----------
    path : Path
        The results folder holding ``dataset.json``, ``plans.json`` and ``fold_*/``.
    name : str
        Display name: the dataset folder's name (``Dataset987_RadGPTTinyPhantom``) when
        the results folder sits in one, else the results folder's own name.
    dataset_json, plans : dict
        The parsed ``dataset.json`` and ``plans.json``.
    configuration, trainer : str
        From the folder name ``<trainer>__<plans>__<configuration>``; the configuration
        is one of ``plans["configurations"]``.
    folds : tuple of str
        The folds to ensemble, e.g. ``("all",)`` or ``("0", "1", "2", "3", "4")``.
    checkpoint : str
        The checkpoint file name used in every fold (``checkpoint_final.pth`` preferred).

    Hashable (the dicts are left out of the hash), so it can key a dict.
    """

    path: Path
    name: str
    dataset_json: dict = field(hash=False)
    plans: dict = field(hash=False)
    configuration: str
    trainer: str
    folds: tuple
    checkpoint: str

    def checkpoint_paths(self) -> list[Path]:
        """The checkpoint file of each fold, in :attr:`folds` order."""
        return [self.path / f"fold_{fold}" / self.checkpoint for fold in self.folds]

    @property
    def plans_name(self) -> str:
        """The middle part of the folder name (``nnUNetPlans``)."""
        return self.path.name.split("__")[1]

    @property
    def use_folds(self) -> tuple:
        """:attr:`folds` as ``nnUNetPredictor.initialize_from_trained_model_folder`` takes them."""
        return tuple(f if f == "all" else int(f) for f in self.folds)


# -------------------------------------------------------------------------- opening

def _split_name(name: str):
    """(trainer, plans, configuration) of a ``<trainer>__<plans>__<configuration>`` name, else None."""
    parts = name.split("__")
    if len(parts) != 3 or not all(parts):
        return None
    return parts[0], parts[1], parts[2]


def _results_subfolders(folder: Path) -> list:
    try:
        return sorted(d for d in folder.iterdir() if d.is_dir() and _split_name(d.name))
    except OSError:
        return []


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise InputError(path, f"missing: an nnU-Net v2 results folder has {path.name} next to its fold_* folders")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(path, f"not valid JSON ({exc}); copy or download the model again") from None
    if not isinstance(data, dict):
        raise InputError(path, "must hold a JSON object")
    return data


def checkpoint_problem(path: Path) -> str | None:
    """Why ``path`` is not a usable PyTorch checkpoint, or None when it looks fine.

    Checked without torch: ``torch.save`` writes a zip archive holding ``<name>/data.pkl``
    (a truncated download loses the zip's central directory at the end); files of the
    pre-1.6 format are pickles and are accepted by their first byte.
    """
    if not path.is_file():
        return "missing"
    try:
        size = path.stat().st_size
        if size == 0:
            return "empty (0 bytes)"
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                if not any(n.endswith("data.pkl") for n in archive.namelist()):
                    return "a zip archive but not a PyTorch checkpoint (no data.pkl inside)"
            return None
        with open(path, "rb") as stream:
            head = stream.read(2)
    except (OSError, zipfile.BadZipFile) as exc:
        return f"unreadable ({exc})"
    if len(head) == 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return None  # legacy (pre-zip) torch.save pickle
    return f"truncated or damaged ({size} bytes, not the zip archive torch.save writes)"


def _normalise_folds(folds, where: Path) -> tuple | None:
    if folds is None:
        return None
    if isinstance(folds, (str, int)):
        items = [folds] if isinstance(folds, int) else folds.replace(",", " ").split()
    else:
        items = list(folds)
    out = []
    for item in items:
        text = str(item).strip().lower()
        if text.startswith("fold_"):
            text = text[5:]
        if text != "all" and not text.isdigit():
            raise InputError(where, f"fold '{item}' is not a fold number or 'all'")
        if text not in out:
            out.append(text if text == "all" else str(int(text)))
    if not out:
        raise InputError(where, "no folds given")
    return tuple(out)


def _fold_sort_key(fold: str):
    return (1, 0) if fold == "all" else (0, int(fold))


def _present_folds(folder: Path) -> list:
    folds = []
    for d in folder.iterdir():
        if d.is_dir() and d.name.startswith("fold_"):
            fold = d.name[5:]
            if fold == "all" or fold.isdigit():
                folds.append(fold)
    return sorted(folds, key=_fold_sort_key)


def _choose_checkpoint(folder: Path, folds: tuple, checkpoint) -> str:
    if checkpoint is not None:
        name = {"final": "checkpoint_final.pth", "best": "checkpoint_best.pth"}.get(str(checkpoint), str(checkpoint))
        candidates: tuple = (name,)
    else:
        candidates = CHECKPOINT_NAMES
    for name in candidates:
        if all((folder / f"fold_{f}" / name).exists() for f in folds):
            for f in folds:
                problem = checkpoint_problem(folder / f"fold_{f}" / name)
                if problem:
                    raise InputError(folder / f"fold_{f}" / name,
                                     f"checkpoint {problem}; copy or download the model again")
            return name
    for f in folds:
        if not any((folder / f"fold_{f}" / name).exists() for name in candidates):
            missing = " or ".join(candidates)
            raise InputError(folder / f"fold_{f}",
                             f"no {missing} in this fold (training unfinished or download incomplete?)")
    # each fold has one of them, but no single name is in every fold
    raise InputError(folder, f"the folds {', '.join(folds)} do not all have the same checkpoint "
                             f"({' or '.join(candidates)}); choose the folds or the checkpoint explicitly")


def open_model_folder(path, folds=None, checkpoint=None) -> ModelFolder:
    """Open and check an nnU-Net v2 results folder.

    Parameters
    ----------
    path : path
        The results folder (``<trainer>__<plans>__<configuration>``), or a dataset
        folder holding exactly one such folder.
    folds : None, int, str or iterable
        Folds to use: ``"all"``, ``0``, ``"0,1"``, ``["0", 1]``.  None uses every
        numbered fold present (``fold_0`` ... ), else ``fold_all``; every one of them
        must have a checkpoint.
    checkpoint : None or str
        ``"checkpoint_final.pth"`` / ``"final"``, ``"checkpoint_best.pth"`` / ``"best"``
        or another file name; None prefers ``checkpoint_final.pth`` and falls back to
        ``checkpoint_best.pth`` when every fold has that instead.

    Raises
    ------
    InputError
        Naming the exact missing or broken piece: folder, ``dataset.json``/``plans.json``
        (missing, invalid JSON, no labels), configuration not in ``plans.json``, no
        ``fold_*``, a requested fold absent (the present ones listed), a checkpoint
        missing, empty or truncated.
    """
    folder = Path(path).expanduser()
    if not folder.exists():
        raise InputError(folder, "model folder not found")
    if not folder.is_dir():
        raise InputError(folder, "not a folder; give an nnU-Net v2 results folder "
                                 "(<trainer>__<plans>__<configuration> with dataset.json, plans.json, fold_*)")
    if not (folder / "dataset.json").exists() and not (folder / "plans.json").exists():
        subs = _results_subfolders(folder)
        if len(subs) == 1:
            folder = subs[0]
        elif len(subs) > 1:
            raise InputError(folder, "holds several trained models ("
                             + ", ".join(d.name for d in subs) + "); give one of them")
        else:
            raise InputError(folder, "not an nnU-Net v2 results folder: no dataset.json, no plans.json and no "
                                     "<trainer>__<plans>__<configuration> folder inside")
    dataset_json = _read_json(folder / "dataset.json")
    labels = dataset_json.get("labels")
    if not isinstance(labels, dict) or not labels:
        raise InputError(folder / "dataset.json", 'no "labels" (name -> value) in it; the model cannot be mapped')
    plans = _read_json(folder / "plans.json")
    parsed = _split_name(folder.name)
    if parsed is None:
        raise InputError(folder, f"folder name '{folder.name}' is not <trainer>__<plans>__<configuration> "
                                 "as nnU-Net v2 writes it; keep the name the model was trained under")
    trainer, _plans_name, configuration = parsed
    configurations = plans.get("configurations")
    if not isinstance(configurations, dict) or not configurations:
        raise InputError(folder / "plans.json", 'no "configurations" in it')
    if configuration not in configurations:
        raise InputError(folder / "plans.json", f"configuration '{configuration}' (from the folder name) is not "
                                                f"in it (it has: {', '.join(configurations)})")
    present = _present_folds(folder)
    if not present:
        raise InputError(folder, "no fold_* folder (expected fold_0 ... fold_4 or fold_all, each with "
                                 "checkpoint_final.pth)")
    wanted = _normalise_folds(folds, folder)
    if wanted is None:
        numbered = tuple(f for f in present if f != "all")
        wanted = numbered or ("all",)
    else:
        missing = [f for f in wanted if f not in present]
        if missing:
            raise InputError(folder / f"fold_{missing[0]}",
                             f"fold {missing[0]} not found (present: {', '.join(present)})")
    chosen = _choose_checkpoint(folder, wanted, checkpoint)
    name = folder.parent.name if folder.parent.name.startswith("Dataset") else folder.name
    return ModelFolder(path=folder, name=name, dataset_json=dataset_json, plans=plans,
                       configuration=configuration, trainer=trainer, folds=wanted, checkpoint=chosen)


# -------------------------------------------------------------------------- presets

def _env_path(name: str):
    value = os.environ.get(name, "").strip()
    return Path(value).expanduser() if value else None


def _home() -> Path:
    # TotalSegmentator maps a home of "/" (docker) to /tmp; do the same.
    home = Path.home()
    return Path("/tmp") if str(home) == "/" else home


def preset_places(preset: str) -> list[Path]:
    """The folders a preset's weights are looked for in, in order (they need not exist)."""
    places: list[Path] = []
    if preset in ("total", "total_fast"):
        weights = _env_path("TOTALSEG_WEIGHTS_PATH")
        if weights is not None:
            places.append(weights)
        else:
            home_dir = _env_path("TOTALSEG_HOME_DIR") or (_home() / ".totalsegmentator")
            places.append(home_dir / "nnunet" / "results")
    elif preset == "organ_subsegmenter":
        explicit = _env_path("RADGPT_SUBSEGMENTER")
        if explicit is not None:
            places.append(explicit)
        places.append(_env_path("RADGPT_MODELS") or (_home() / ".radgpt" / "models"))
    else:
        raise KeyError(preset)
    results = _env_path("nnUNet_results")
    if results is not None and results not in places:
        places.append(results)
    return places


def _dataset_dir(root: Path, dataset_name: str):
    """``root/<dataset_name>``, or the one folder ``root/DatasetNNN_*`` of the same number."""
    exact = root / dataset_name
    if exact.is_dir():
        return exact
    prefix = dataset_name.split("_")[0] + "_"
    try:
        matches = sorted(d for d in root.iterdir() if d.is_dir() and d.name.startswith(prefix))
    except OSError:
        return None
    return matches[0] if matches else None


def _expected(preset: str) -> str:
    """The folders a preset needs, compactly: dataset folders, then the common results/fold path."""
    folders = PRESETS[preset]["folders"]
    heads = [f.split("/")[0] for f in folders]
    tails = {"/".join(f.split("/")[1:]) for f in folders}
    if len(folders) > 1 and len(tails) == 1:
        return f"{', '.join(heads)} (each with {tails.pop()}/checkpoint_final.pth)"
    return ", ".join(f"{f}/checkpoint_final.pth" for f in folders)


def _missing_weights(preset: str, detail: str) -> InputError:
    looked = "; ".join(str(p) for p in preset_places(preset))
    return InputError(None, f"{preset} model weights not found ({detail}); looked in: {looked}; "
                            f"expected {_expected(preset)}; to install: {PRESETS[preset]['install']}")


def _resolve_parts(preset: str, folds) -> list[ModelFolder]:
    parts = _PRESET_PARTS[preset]
    use_folds = folds if folds is not None else _PRESET_FOLDS[preset]
    partial = None  # (root, names of the missing dataset folders) of the fullest incomplete place
    for root in preset_places(preset):
        if not root.is_dir():
            continue
        found = [(_dataset_dir(root, dataset), trainer) for dataset, trainer in parts]
        missing = [dataset for (dataset, _), (d, _) in zip(parts, found) if d is None]
        if not missing:
            models = []
            for dataset_dir, trainer in found:
                target = dataset_dir / trainer if (dataset_dir / trainer).is_dir() else dataset_dir
                models.append(open_model_folder(target, folds=use_folds))
            return models
        if len(missing) < len(parts) and (partial is None or len(missing) < len(partial[1])):
            partial = (root, missing)
    if partial is not None:
        root, missing = partial
        raise _missing_weights(preset, f"{root} has only {len(parts) - len(missing)} of the {len(parts)} "
                                       f"part models, missing {', '.join(missing)}")
    raise _missing_weights(preset, "no Dataset folder of it in any place")


def _looks_like_subsegmenter(folder: Path) -> bool:
    try:
        labels = json.loads((folder / "dataset.json").read_text(encoding="utf-8")).get("labels", {})
    except (OSError, UnicodeDecodeError, ValueError, AttributeError):
        return False
    from ..vocabulary import ORGAN_PARTS, canonical_name
    return any(canonical_name(str(name)) in ORGAN_PARTS for name in labels)


def _resolve_subsegmenter(folds) -> list[ModelFolder]:
    use_folds = folds if folds is not None else _PRESET_FOLDS["organ_subsegmenter"]
    explicit = _env_path("RADGPT_SUBSEGMENTER")
    if explicit is not None and explicit.exists():
        return [open_model_folder(explicit, folds=use_folds)]
    for root in preset_places("organ_subsegmenter"):
        if not root.is_dir() or root == explicit:
            continue
        candidates = [root / _SUBSEG_TRAINER] + [d / _SUBSEG_TRAINER for d in sorted(root.iterdir()) if d.is_dir()]
        for candidate in candidates:
            if candidate.is_dir() and _looks_like_subsegmenter(candidate):
                return [open_model_folder(candidate, folds=use_folds)]
        # a folder of that name whose dataset.json is missing or broken: report it
        for candidate in candidates:
            if candidate.is_dir() and not (candidate / "dataset.json").is_file():
                return [open_model_folder(candidate, folds=use_folds)]
    raise _missing_weights("organ_subsegmenter", f"no {_SUBSEG_TRAINER} folder whose dataset.json names "
                                                 "liver segments or pancreas parts")


def resolve_models(spec, folds=None) -> list[ModelFolder]:
    """The model folders to run for ``spec``: a preset name (see :data:`PRESETS`) or a folder.

    Presets: ``total`` (TotalSegmentator's five part models, fold 0 each, in order),
    ``total_fast`` (its 3 mm model), ``organ_subsegmenter`` (the RadGPT / AbdomenAtlas
    sub-segmenter, fold ``all``).  Anything else is opened with :func:`open_model_folder`.

    Raises
    ------
    InputError
        For a broken folder (see :func:`open_model_folder`); for missing preset weights,
        listing every place looked in and how to install them; for a spec that is
        neither a preset nor an existing folder, listing the presets.
    """
    text = os.fspath(spec).strip()
    key = text.lower()
    if key in _PRESET_PARTS:
        return _resolve_parts(key, folds)
    if key == "organ_subsegmenter":
        return _resolve_subsegmenter(folds)
    path = Path(text).expanduser()
    if not path.exists():
        raise InputError(path, "no such model folder, and not a preset name (presets: "
                               + ", ".join(PRESETS) + ")")
    return [open_model_folder(path, folds=folds)]


# -------------------------------------------------------------------------- listing

def _roots(extra_roots: Iterable) -> list:
    roots: list[Path] = []
    results = _env_path("nnUNet_results")
    if results is not None:
        roots.append(results)
    for preset in PRESETS:
        roots.extend(preset_places(preset))
    roots.extend(Path(r).expanduser() for r in extra_roots)
    out: list[Path] = []
    for root in roots:
        if root not in out:
            out.append(root)
    return out


def _candidates(root: Path) -> list:
    """Results folders (or dataset folders lacking one) at most two levels under ``root``."""
    if (root / "dataset.json").exists() or (root / "plans.json").exists():
        return [root]
    out = []
    try:
        children = sorted(d for d in root.iterdir() if d.is_dir())
    except OSError:
        return []
    for child in children:
        if _split_name(child.name):
            out.append(child)
        elif child.name.startswith("Dataset"):
            subs = _results_subfolders(child)
            out.extend(subs if subs else [child])
    return out


def find_model_folders(extra_roots=()) -> list[dict]:
    """Every nnU-Net v2 results folder under ``$nnUNet_results``, the presets' places and ``extra_roots``.

    Returns one dict per folder: ``path`` (str), ``name``, ``complete`` (True when
    :func:`open_model_folder` accepts it) and ``problem`` (its one-line error, else None).
    A dataset folder with no results folder inside is listed as incomplete.  Never raises
    for a broken folder; folders that do not exist are skipped.
    """
    found: list[dict] = []
    seen: set = set()
    for root in _roots(extra_roots):
        if not root.is_dir():
            continue
        for folder in _candidates(root):
            key = os.path.realpath(folder)
            if key in seen:
                continue
            seen.add(key)
            name = folder.parent.name if folder.parent.name.startswith("Dataset") else folder.name
            entry = {"path": str(folder), "name": name, "complete": False, "problem": None}
            if folder.name.startswith("Dataset") and not _split_name(folder.name) \
                    and not (folder / "dataset.json").exists():
                entry["problem"] = (f"{folder}: no <trainer>__<plans>__<configuration> folder inside "
                                    "(unpacked only partly?)")
            else:
                try:
                    model = open_model_folder(folder)
                except InputError as exc:
                    entry["problem"] = exc.one_line()
                except OSError as exc:
                    entry["problem"] = f"{folder}: cannot be read ({exc})"
                else:
                    entry.update(name=model.name, complete=True)
            found.append(entry)
    return found
