"""The segmentation stage: CT in, case folder out (``radgpt segment``; the runner's worker calls this).

:class:`Segmenter` loads its models once (:class:`~.predict.LoadedModel`) and
segments any number of CTs with them (:meth:`Segmenter.segment`).  For each CT:

1. read it: a NIfTI file or a DICOM series folder (the package's readers: exact
   reorientation to the canonical RAS frame, one-line errors);
2. predict with every model, in precedence order (nnunetv2's predictor on the
   canonical array: TotalSegmentator's models, like ours, were trained on CTs in
   RAS orientation, and TotalSegmentator too reorients before predicting);
3. map each model's labels onto RadGPT's names (:mod:`.labels`) and compose
   them (:mod:`.compose`);
4. write the case folder in one step (:func:`RadGPTLogic.io.atomic.publish`):
   ``ct.nii.gz`` (the input file's own bytes for a NIfTI CT; the series as NIfTI
   for DICOM), ``segmentations/<name>.nii.gz`` on the CT's own grid and
   orientation, ``probabilities/<lesion>.npz`` (:mod:`RadGPTLogic.io.probabilities`)
   and ``segmentation.json`` (models, precedence, and per structure the model,
   label and the sha256 of the mask as written).  Earlier outputs of the stage in
   that folder that this run does not write again are removed; other files stay.

A model's every structure is written, also when empty: an empty ``liver_lesion``
mask from a model with a liver-tumor class means "looked, found none", which the
report may then say; a structure no model makes has no file, and the report says
nothing about it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from .. import __version__
from .. import vocabulary as vocab
from ..errors import InputError
from ..geometry import from_canonical
from ..io.atomic import publish, read_manifest
from ..io.probabilities import PROBABILITIES, probability_npz_bytes
from .compose import ModelOutput, compose

SEGMENTATION_FORMAT = "radgpt-segmentation/1"
#: Files and folders of a case folder that the stage owns (removed when not written again).
STAGE_OUTPUTS = ("ct.nii.gz", "ct.nii", "segmentation.json")
STAGE_FOLDERS = ("segmentations/", f"{PROBABILITIES}/")

#: event(kind, **fields): kind "progress" (stage, model, fold, done, total) or "log" (message).
Events = Callable[..., None]


def _quiet(kind: str, **fields) -> None:
    return None


def read_ct(path):
    """``(Volume, HU array float32 canonical, original bytes or None, file name)`` of a NIfTI file or DICOM folder."""
    from ..io.nifti import read_nifti

    path = Path(path)
    if path.is_dir():
        from ..io.dicom import read_dicom_series

        volume = read_dicom_series(path)
        return volume, _hu(volume), None, "ct.nii.gz"
    if not path.exists():
        raise InputError(path, "CT not found")
    volume = read_nifti(path)
    name = "ct.nii.gz" if path.name.endswith(".gz") else "ct.nii"
    return volume, _hu(volume), path.read_bytes(), name


def _hu(volume) -> np.ndarray:
    array = np.asarray(volume.array)
    if volume.slope == 1.0 and volume.inter == 0.0:
        return array.astype(np.float32, copy=False)
    return (array.astype(np.float32) * np.float32(volume.slope) + np.float32(volume.inter))


def _peak_gpu_mib(device: str):
    """Peak GPU memory torch allocated so far in this process (MiB), None off the GPU."""
    if not device.startswith("cuda"):
        return None
    import torch

    return round(torch.cuda.max_memory_allocated(torch.device(device)) / 2**20, 1)


class Segmenter:
    """Models loaded once, for many CTs.

    Parameters
    ----------
    models : list of str or ModelFolder
        Model folders or preset names, in precedence order (a preset may expand to
        several folders, e.g. TotalSegmentator's five parts).
    device : "auto", "cpu", "cuda" or "cuda:N"
    folds : list of str, optional
        Folds to use (default: the folder's, ``all`` or every ``fold_k``).
    mirroring : None (as the checkpoint allows) or False (``--no-mirroring``)
    tile_step : float
        Sliding-window step as a fraction of the patch (nnU-Net's default 0.5).
    label_map : dict, optional
        The user's ``{model label name: canonical name}`` for labels the vocabulary
        does not know.
    events : callable
        ``events(kind, **fields)`` for progress and log lines.
    """

    def __init__(self, models, *, device: str = "auto", folds=None, mirroring: Optional[bool] = None,
                 tile_step: float = 0.5, label_map: Optional[dict] = None, events: Events = _quiet):
        from .device import pick_device
        from .labels import is_region_based, map_labels, output_labels, output_regions
        from .models import ModelFolder, resolve_models

        self.events = events
        self.device = pick_device(device)
        folders = []
        for spec in models:
            folders.extend([spec] if isinstance(spec, ModelFolder) else resolve_models(str(spec), folds=folds))
        if not folders:
            raise InputError(None, "no segmentation model given (--model)")
        self.names = {}     # model name -> {value: canonical}
        self.own_names = {}
        self.unions: dict = {}  # model name -> {value: values whose union is the structure} (region-based)
        for folder in folders:  # every label is checked before any weights are loaded
            self.names[folder.name] = map_labels(folder, label_map)
            self.own_names[folder.name] = own = output_labels(folder.dataset_json)
            if is_region_based(folder.dataset_json):
                regions = output_regions(folder.dataset_json)
                self.unions[folder.name] = {v: regions[name] for v, name in own.items() if name in regions}
        self.loaded = []
        for n, folder in enumerate(folders):
            events("progress", stage="load", model=folder.name, done=n, total=len(folders))
            self.loaded.append(self._load(folder, mirroring, tile_step))
        events("progress", stage="load", model="", done=len(folders), total=len(folders))

    def _load(self, folder, mirroring, tile_step):
        from .predict import LoadedModel

        def progress(stage, done, total, fold, _name=folder.name):
            self.events("progress", stage=stage, model=_name, fold=fold, done=done, total=total)

        return LoadedModel(folder, device=self.device, mirroring=mirroring, tile_step=tile_step,
                           progress=progress)

    # ------------------------------------------------------------------ one CT
    def segment(self, ct_path, out_dir) -> Path:
        """Segment one CT into the case folder ``out_dir`` (see the module doc); returns ``out_dir``."""
        started = time.monotonic()
        volume, hu, ct_bytes, ct_name = read_ct(ct_path)
        spacing = tuple(float(s) for s in np.linalg.norm(volume.affine[:3, :3], axis=0))
        outputs, model_records = [], []
        for loaded in self.loaded:
            folder = loaded.model
            names = self.names[folder.name]
            tumor_values = [v for v, n in names.items() if n in vocab.LESION_ORGAN_KIND]
            self.events("log", message=f"{folder.name}: predicting on {self.device}")
            prediction = loaded.predict(hu, spacing, probability_labels=tumor_values)
            peak_gpu_mib = _peak_gpu_mib(self.device)
            outputs.append(ModelOutput(folder.name, prediction.labels, names, self.own_names[folder.name],
                                       prediction.probabilities, self.unions.get(folder.name, {})))
            model_records.append({
                "name": folder.name, "folder": str(folder.path), "configuration": folder.configuration,
                "trainer": folder.trainer, "folds": list(folder.folds), "checkpoint": folder.checkpoint,
                "device": self.device, "mirroring": loaded.mirroring_axes is not None,
                "tile_step": loaded.tile_step, "seconds": round(prediction.seconds, 2),
                "peak_gpu_mib": peak_gpu_mib})
        del hu
        self.events("progress", stage="write", model="", done=0, total=1)
        composed = compose(outputs)
        files = self._files(volume, ct_bytes, ct_name, composed, model_records, started)
        old = read_manifest(out_dir) if Path(out_dir).is_dir() else {}
        stale = [n for n in old if n not in files and (n in STAGE_OUTPUTS or n.startswith(STAGE_FOLDERS))]
        publish(out_dir, files, remove=stale)
        self.events("progress", stage="write", model="", done=1, total=1)
        return Path(out_dir)

    def _files(self, volume, ct_bytes, ct_name, composed, model_records, started) -> dict:
        import hashlib

        from ..io.nifti import nifti_gz_bytes

        files: dict = {}
        if ct_bytes is None:  # DICOM: the series as NIfTI, HU in int16 when they fit
            hu = np.asarray(volume.array) * volume.slope + volume.inter
            stored = hu.astype(np.int16) if np.all(hu == np.round(hu)) and hu.min() >= -32768 \
                and hu.max() <= 32767 else hu.astype(np.float32)
            ct_bytes = nifti_gz_bytes(stored, volume.ornt, volume.affine)
        files[ct_name] = ct_bytes
        structures = {}
        for name in sorted(composed.masks):
            mask = composed.masks[name]
            data = nifti_gz_bytes(mask.astype(np.uint8), volume.ornt, volume.affine)
            relative = f"segmentations/{name}.nii.gz"
            files[relative] = data
            info = {k: v for k, v in composed.provenance[name].items()}
            info.update(file=relative, sha256=hashlib.sha256(data).hexdigest(), voxels=int(np.count_nonzero(mask)),
                        version=__version__)
            probability = composed.probabilities.get(name)
            if probability is not None and mask.any():
                prob_rel = f"{PROBABILITIES}/{name}.npz"
                files[prob_rel] = probability_npz_bytes(from_canonical(probability, volume.ornt),
                                                        from_canonical(mask, volume.ornt))
                info.update(probabilities=prob_rel, probability=round(float(probability[mask].mean()), 4))
            structures[name] = info
        record = {
            "format": SEGMENTATION_FORMAT,
            "radgpt_version": __version__,
            "ct": {"file": ct_name, "sha256": hashlib.sha256(ct_bytes).hexdigest(),
                   "source": str(volume.path) if getattr(volume, "path", None) else None},
            "models": model_records,
            "precedence": [m["name"] for m in model_records],
            "seconds": round(time.monotonic() - started, 2),
            "structures": structures,
        }
        files["segmentation.json"] = json.dumps(record, indent=1) + "\n"
        return files
