"""Train the project's tiny nnU-Net v2 model on synthetic phantoms (SYNTHETIC DATA ONLY).

What it makes: a standard nnU-Net v2 results folder,
``OUT/Dataset987_RadGPTTinyPhantom/nnUNetTrainer__nnUNetPlans__3d_tiny/`` with
``dataset.json``, ``plans.json``, ``fold_all/checkpoint_final.pth`` and
``training_summary.json``, that nnunetv2's own predictor (``nnUNetPredictor``,
``nnUNetv2_predict``) loads unchanged.  It segments liver, spleen, both kidneys,
pancreas and liver / pancreatic / kidney lesions on the RadGPT phantom.  It has
never seen a real CT: it is a test fixture for the real nnU-Net v2 code path,
not a clinical model.

Steps (each with nnunetv2's own code where nnunetv2 has it):

1. **dataset**: ``N`` phantoms (:func:`RadGPTLogic.phantom.build_phantom`) with
   varied voxel spacing (1.5-3 mm in-plane, 2-4 mm slices), craniocaudal field of
   view, contrast phase, noise and 1-4 random lesions per case placed inside their
   organs, written as an nnU-Net raw dataset (``imagesTr``/``labelsTr``, NIfTI in
   the canonical RAS orientation the segmentation stage feeds the model).  Labels
   are exclusive: a lesion's voxels carry the lesion label, not the organ's.
2. **plan + preprocess**: nnunetv2's fingerprint extractor and ExperimentPlanner,
   then one extra configuration ``3d_tiny`` (inherits ``3d_fullres``: CT
   normalisation from the fingerprint; 2.5 x 2 x 2 mm spacing; 64^3 patch; a
   4-stage PlainConvUNet with 8-64 features), preprocessed by nnunetv2's
   preprocessor, so normalisation, resampling and axis order are nnunetv2's.
3. **train**: nnunetv2's own trainer takes hours on 2 CPU cores, so this runs a
   short loop of its own on the preprocessed arrays: the network is built from
   the plans (``get_network_from_plans``), random 64^3 patches (two of every
   three centred on a foreground voxel of a random class present, so lesions are
   seen often), intensity jitter, **no mirroring** (left and right kidneys are
   different classes), Adam, cross-entropy + soft Dice, polynomial learning-rate
   decay.  ``--minutes`` bounds the wall time; a checkpoint is written (atomically)
   every 250 steps and at the end, so ``--resume`` continues an interrupted run.

The checkpoint names ``nnUNetTrainer`` as its trainer (nnunetv2 uses that name
only to build the network from the plans; a variant's name would make
nnunetv2 import every trainer module, some of which need torchvision) and
records ``inference_allowed_mirroring_axes = None``, so nnunetv2 never mirrors
at inference with it.

Regenerate the committed model (CPU, about an hour on 2 cores)::

    python Testing/models/train_tiny.py --work /tmp/tiny --out Testing/models --steps 5000 --minutes 70

Needs ``pip install torch==2.13.0`` then ``pip install nnunetv2 torch==2.13.0``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))  # RadGPTLogic from this checkout

DATASET_ID = 987
DATASET_NAME = f"Dataset{DATASET_ID:03d}_RadGPTTinyPhantom"
CONFIGURATION = "3d_tiny"
TRAINER = "nnUNetTrainer"
PLANS = "nnUNetPlans"
#: Exclusive training labels (dataset.json "labels"); names are RadGPT canonical structure names.
LABELS = {"background": 0, "liver": 1, "spleen": 2, "kidney_right": 3, "kidney_left": 4, "pancreas": 5,
          "liver_lesion": 6, "pancreatic_lesion": 7, "kidney_lesion": 8}
#: Phantom mask -> training label (lesion masks after organs: lesions overwrite their organ).
PHANTOM_TO_LABEL = [("liver", 1), ("spleen", 2), ("kidney_right", 3), ("kidney_left", 4), ("pancreas", 5),
                    ("liver_lesion", 6), ("pancreatic_pdac", 7), ("kidney_lesion", 8)]
SPACING_ZYX = [2.5, 2.0, 2.0]
PATCH_ZYX = [64, 64, 64]
FEATURES = [8, 16, 32, 64]


# ------------------------------------------------------------------------------------------ data
def random_lesions(rng: np.random.Generator, organs: dict, affine: np.ndarray) -> list:
    """1-4 LesionSpecs with centres deep enough inside their organ (RAS mm), not touching each other."""
    from scipy import ndimage

    from RadGPTLogic.phantom import LesionSpec

    spacing = np.abs(np.diag(affine)[:3])
    wanted = [("liver_lesion", "liver", (6.0, 18.0))] * int(rng.integers(1, 3))
    if rng.random() < 0.7:
        wanted.append(("pancreatic_pdac", "pancreas", (6.0, 11.0)))
    if rng.random() < 0.6:
        side = "kidney_left" if rng.random() < 0.5 else "kidney_right"
        wanted.append(("kidney_lesion", side, (6.0, 11.0)))
    placed: list = []
    for mask, organ, (lo, hi) in wanted:
        semi = tuple(float(v) for v in rng.uniform(lo, hi, 3))
        depth = ndimage.distance_transform_edt(organs[organ], sampling=spacing)
        inside = np.argwhere(depth >= 0.6 * max(semi))
        if inside.size == 0:
            inside = np.argwhere(depth >= 0.5 * depth.max())
        for _try in range(20):
            ijk = inside[rng.integers(len(inside))]
            center = affine[:3, :3] @ ijk + affine[:3, 3]
            if all(np.linalg.norm(center - np.array(p.center)) > max(semi) + max(p.semi_axes) + 3 for p in placed):
                placed.append(LesionSpec(mask, tuple(float(c) for c in center), semi, float(rng.uniform(0, 180))))
                break
    return placed


def make_phantom(index: int, seed: int):
    """The phantom of case ``index`` (spacing, field of view, phase, noise and lesions drawn from it)."""
    from RadGPTLogic.phantom import SIMULATED_PHASES, build_phantom

    rng = np.random.default_rng(seed * 1000 + index)
    spacing = (float(rng.uniform(1.5, 3.0)),) * 2 + (float(rng.uniform(2.0, 4.0)),)
    z_lo, z_hi = -135.0 + rng.uniform(0, 50), 115.0 - rng.uniform(0, 50)
    base = build_phantom(spacing=spacing, lesions=[], z_range_mm=(z_lo, z_hi), noise_sd=0)
    lesions = random_lesions(rng, base.masks, base.affine)
    return build_phantom(spacing=spacing, lesions=lesions, z_range_mm=(z_lo, z_hi),
                         phase=SIMULATED_PHASES[index % len(SIMULATED_PHASES)],
                         noise_sd=float(rng.uniform(5, 12)), seed=seed * 1000 + index)


def make_case(index: int, seed: int):
    """(ct int16 RAS array, labels uint8, affine) of training case ``index``."""
    phantom = make_phantom(index, seed)
    labels = np.zeros(phantom.shape, np.uint8)
    for name, value in PHANTOM_TO_LABEL:
        if name in phantom.masks:
            labels[phantom.masks[name]] = value
    return phantom.ct, labels, phantom.affine


def write_raw_dataset(raw: Path, n_cases: int, seed: int) -> None:
    import nibabel as nib

    folder = raw / DATASET_NAME
    (folder / "imagesTr").mkdir(parents=True, exist_ok=True)
    (folder / "labelsTr").mkdir(parents=True, exist_ok=True)
    for i in range(n_cases):
        ct, labels, affine = make_case(i, seed)
        name = f"phantom_{i:03d}"
        nib.save(nib.Nifti1Image(ct.astype(np.int16), affine), folder / "imagesTr" / f"{name}_0000.nii.gz")
        nib.save(nib.Nifti1Image(labels, affine), folder / "labelsTr" / f"{name}.nii.gz")
        print(f"case {i + 1}/{n_cases}: shape {ct.shape}, classes {sorted(set(np.unique(labels)) - {0})}",
              flush=True)
    dataset_json = {
        "name": DATASET_NAME,
        "description": "SYNTHETIC: RadGPT phantoms (RadGPTLogic.phantom), not real CT. Test fixture only.",
        "licence": "Apache-2.0 (synthetic data generated by the RadGPT for 3D Slicer project)",
        "channel_names": {"0": "CT"},
        "labels": LABELS,
        "numTraining": n_cases,
        "file_ending": ".nii.gz",
        "overwrite_image_reader_writer": "SimpleITKIO",
    }
    (folder / "dataset.json").write_text(json.dumps(dataset_json, indent=2))


def plan_and_preprocess() -> dict:
    """nnunetv2's fingerprint + planner, plus the 3d_tiny configuration; preprocess it.  Returns the plans."""
    from nnunetv2.experiment_planning.plan_and_preprocess_api import (
        extract_fingerprints,
        plan_experiments,
        preprocess,
    )
    from nnunetv2.paths import nnUNet_preprocessed

    extract_fingerprints([DATASET_ID], num_processes=2, check_dataset_integrity=True)
    plan_experiments([DATASET_ID])
    plans_file = Path(nnUNet_preprocessed) / DATASET_NAME / f"{PLANS}.json"
    plans = json.loads(plans_file.read_text(encoding="utf-8"))
    arch = json.loads(json.dumps(plans["configurations"]["3d_fullres"]["architecture"]))
    n = len(FEATURES)
    arch["arch_kwargs"].update(
        n_stages=n, features_per_stage=FEATURES, kernel_sizes=[[3, 3, 3]] * n,
        strides=[[1, 1, 1]] + [[2, 2, 2]] * (n - 1), n_conv_per_stage=[2] * n,
        n_conv_per_stage_decoder=[2] * (n - 1))
    plans["configurations"][CONFIGURATION] = {
        "inherits_from": "3d_fullres",
        "data_identifier": f"{PLANS}_{CONFIGURATION}",
        "spacing": SPACING_ZYX,
        "patch_size": PATCH_ZYX,
        "batch_size": 2,
        "architecture": arch,
    }
    plans_file.write_text(json.dumps(plans, indent=2))
    preprocess([DATASET_ID], configurations=(CONFIGURATION,), num_processes=(2,))
    return plans


# ------------------------------------------------------------------------------------------ training
def load_preprocessed() -> list:
    """[(data float32 (1, z, y, x), seg int16 (z, y, x), {label: foreground voxel indices})]."""
    from nnunetv2.paths import nnUNet_preprocessed
    from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class

    folder = str(Path(nnUNet_preprocessed) / DATASET_NAME / f"{PLANS}_{CONFIGURATION}")
    dataset = infer_dataset_class(folder)(folder)
    cases = []
    for identifier in dataset.identifiers:
        data, seg, _prev, _props = dataset.load_case(identifier)
        data = np.asarray(data[:], np.float32)
        seg = np.asarray(seg[:], np.int16)[0]
        where = {int(v): np.argwhere(seg == v) for v in np.unique(seg) if v > 0}
        cases.append((data, seg, where))
    return cases


LESION_LABELS = (6, 7, 8)


def sample_batch(cases: list, rng: np.random.Generator, batch: int, lesion_share: float = 0.0):
    """Patches (B, 1, 64, 64, 64) and targets (B, 64, 64, 64); -1 marks padding (ignored).

    With probability ``lesion_share`` a patch is centred (with jitter) on a voxel of a lesion
    class drawn uniformly among the lesion classes of the dataset, in a case that has it; else
    on a voxel of a class present in a random case with probability 2/3, else anywhere.
    """
    patch = np.array(PATCH_ZYX)
    xs = np.zeros((batch, 1, *PATCH_ZYX), np.float32)
    ys = np.full((batch, *PATCH_ZYX), -1, np.int64)
    present = [v for v in LESION_LABELS if any(v in c[2] for c in cases)]
    for b in range(batch):
        data, seg, where = cases[rng.integers(len(cases))]
        if present and rng.random() < lesion_share:
            # a lesion class first (rare classes as often as common ones), then a case that has it
            label = present[rng.integers(len(present))]
            holding = [c for c in cases if label in c[2]]
            data, seg, where = holding[rng.integers(len(holding))]
        else:
            label = None
        shape = np.array(seg.shape)
        if label is not None:
            centre = where[label][rng.integers(len(where[label]))]
            lo = centre - patch // 2 + rng.integers(-patch // 4, patch // 4 + 1)
        elif rng.random() < 2 / 3 and where:
            label = list(where)[rng.integers(len(where))]
            centre = where[label][rng.integers(len(where[label]))]
            lo = centre - patch // 2 + rng.integers(-patch // 4, patch // 4 + 1)
        else:
            lo = np.array([rng.integers(min(0, s - p), max(0, s - p) + 1) for s, p in zip(shape, patch)])
        src_lo, src_hi = np.maximum(lo, 0), np.minimum(lo + patch, shape)
        dst_lo = src_lo - lo
        dst = tuple(slice(a, a + (h - l)) for a, l, h in zip(dst_lo, src_lo, src_hi))
        src = tuple(slice(l, h) for l, h in zip(src_lo, src_hi))
        # intensity jitter in normalised units (nnU-Net's brightness/contrast augmentation, simplified)
        xs[b, 0][dst] = data[0][src] * rng.uniform(0.9, 1.1) + rng.uniform(-0.1, 0.1)
        ys[b][dst] = seg[src]
    return xs, ys


def loss_fn(logits, target, n_classes: int):
    import torch
    import torch.nn.functional as F

    valid = target >= 0
    ce = F.cross_entropy(logits, target.clamp(min=0), reduction="none")[valid].mean()
    probs = torch.softmax(logits, 1) * valid.unsqueeze(1)
    onehot = F.one_hot(target.clamp(min=0), n_classes).permute(0, 4, 1, 2, 3).float() * valid.unsqueeze(1)
    dims = (0, 2, 3, 4)
    inter, denom = (probs * onehot).sum(dims), probs.sum(dims) + onehot.sum(dims)
    dice = (2 * inter + 1e-5) / (denom + 1e-5)
    return ce + (1 - dice[1:].mean())


def save_checkpoint(path: Path, network, plans: dict, dataset_json: dict, step: int, extra: dict) -> None:
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save({
        "network_weights": network.state_dict(),
        "optimizer_state": None,
        "grad_scaler_state": None,
        "logging": extra,
        "_best_ema": None,
        "current_epoch": step // 250,
        "init_args": {"plans": plans, "configuration": CONFIGURATION, "fold": "all", "dataset_json": dataset_json},
        "trainer_name": TRAINER,
        "inference_allowed_mirroring_axes": None,
    }, tmp)
    os.replace(tmp, path)


def train(args, plans: dict, dataset_json: dict, model_dir: Path) -> dict:
    import torch
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    arch = plans["configurations"][CONFIGURATION]["architecture"]
    n_classes = len(LABELS)
    network = get_network_from_plans(arch["network_class_name"], arch["arch_kwargs"], arch["_kw_requires_import"],
                                     1, n_classes, allow_init=True, deep_supervision=False)
    ckpt = model_dir / "fold_all" / "checkpoint_final.pth"
    step0, log = 0, {"loss": []}
    if args.resume and ckpt.is_file():
        state = torch.load(ckpt, map_location="cpu", weights_only=False)
        network.load_state_dict(state["network_weights"])
        log = state["logging"]
        step0 = int(log.get("steps", 0))
        rng = np.random.default_rng([args.seed, step0])  # new patches, not the first run's again
        print(f"resuming at step {step0}", flush=True)
    cases = load_preprocessed()
    optimiser = torch.optim.Adam(network.parameters(), lr=args.lr)
    started, step = time.monotonic(), step0
    running = None
    while step < args.steps and time.monotonic() - started < args.minutes * 60:
        for group in optimiser.param_groups:
            group["lr"] = args.lr * (1 - step / args.steps) ** 0.9
        xs, ys = sample_batch(cases, rng, args.batch, args.lesion_share)
        logits = network(torch.from_numpy(xs))
        loss = loss_fn(logits, torch.from_numpy(ys), n_classes)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        step += 1
        value = float(loss.detach())
        running = value if running is None else 0.98 * running + 0.02 * value
        if step % 50 == 0:
            print(f"step {step}/{args.steps} loss {running:.4f} ({time.monotonic() - started:.0f} s)", flush=True)
            log["loss"].append([step, round(running, 5)])
        if step % 250 == 0:
            log["steps"] = step
            save_checkpoint(ckpt, network, plans, dataset_json, step, log)
    log.update(steps=step, seconds_this_run=round(time.monotonic() - started, 1))
    save_checkpoint(ckpt, network, plans, dataset_json, step, log)
    return log


# ------------------------------------------------------------------------------------------ evaluation
def evaluate(model_dir: Path, n_cases: int, seed: int) -> dict:
    """Dice of the committed model on ``n_cases`` phantoms it never saw (other seeds), through the
    project's segmentation stage (nnunetv2's predictor): per organ, and per lesion over 15 mm."""
    import tempfile

    from scipy import ndimage

    from RadGPTLogic.segment.stage import Segmenter

    def dice(a, b):
        total = a.sum() + b.sum()
        return 1.0 if total == 0 else 2.0 * float((a & b).sum()) / float(total)

    segmenter = Segmenter([str(model_dir)], device="cpu")
    names = {v: k for k, v in LABELS.items() if v}
    organs: dict = {n: [] for n in ("liver", "spleen", "kidney_right", "kidney_left", "pancreas")}
    lesions: list = []
    false_positives: list = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(n_cases):
            index = 10_000 + i  # training used indices 0 .. cases-1
            phantom = make_phantom(index, seed)
            import nibabel as nib

            path = Path(tmp) / f"eval_{i}.nii.gz"
            nib.save(nib.Nifti1Image(phantom.ct, phantom.affine), str(path))
            segmenter.segment(path, Path(tmp) / f"case_{i}")
            predicted = {}
            for name in names.values():
                image = nib.as_closest_canonical(nib.load(str(Path(tmp) / f"case_{i}" / "segmentations"
                                                             / f"{name}.nii.gz")))
                predicted[name] = np.asarray(image.dataobj) > 0
            for organ in organs:  # organ masks hold their lesions, in the phantom as in the stage's output
                organs[organ].append(round(dice(predicted[organ], phantom.masks[organ]), 4))
            spacing = np.abs(np.diag(phantom.affine)[:3])
            for source, cls in (("liver_lesion", "liver_lesion"), ("pancreatic_pdac", "pancreatic_lesion"),
                                ("kidney_lesion", "kidney_lesion")):
                if source not in phantom.masks:
                    continue
                components, n = ndimage.label(phantom.masks[source], structure=np.ones((3, 3, 3), bool))
                for k in range(1, n + 1):
                    truth = components == k
                    idx = np.argwhere(truth)
                    extent = (idx.max(0) - idx.min(0) + 1) * spacing
                    if max(extent[:2]) <= 15:
                        continue
                    lo, hi = np.maximum(idx.min(0) - 6, 0), idx.max(0) + 7
                    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
                    lesions.append({"case": i, "class": cls, "extent_mm": [round(float(e), 1) for e in extent],
                                    "dice": round(dice(predicted[cls][box], truth[box]), 4)})
            for source, cls in (("liver_lesion", "liver_lesion"), ("pancreatic_pdac", "pancreatic_lesion"),
                                ("kidney_lesion", "kidney_lesion")):
                # predicted components that touch no true lesion of their class (false positives)
                truth = phantom.masks.get(source, np.zeros(phantom.shape, bool))
                components, n = ndimage.label(predicted[cls], structure=np.ones((3, 3, 3), bool))
                for k in range(1, n + 1):
                    component = components == k
                    if not (component & truth).any():
                        false_positives.append({"case": i, "class": cls, "voxels": int(component.sum()),
                                                "volume_ml": round(float(component.sum() * np.prod(spacing))
                                                                   / 1000.0, 3)})
    return {"cases": n_cases, "organ_dice_min": {k: min(v) for k, v in organs.items()},
            "organ_dice_median": {k: float(np.median(v)) for k, v in organs.items()},
            "lesions_over_15_mm": len(lesions),
            "lesion_dice_median": float(np.median([l["dice"] for l in lesions])) if lesions else None,
            "lesion_dice_min": min((l["dice"] for l in lesions), default=None),
            "false_positive_components": len(false_positives),
            "false_positives_over_0_1_ml": sum(1 for f in false_positives if f["volume_ml"] > 0.1),
            "lesions": lesions, "false_positives": false_positives}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", required=True, help="scratch folder for nnUNet_raw and nnUNet_preprocessed")
    parser.add_argument("--out", required=True, help="where the results folder is written (Testing/models)")
    parser.add_argument("--cases", type=int, default=24)
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--minutes", type=float, default=75.0, help="wall-time budget of the training loop")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lesion-share", type=float, default=0.0,
                        help="share of patches centred on a lesion voxel (default 0: classes drawn uniformly)")
    parser.add_argument("--resume", action="store_true", help="reuse the dataset and continue the checkpoint")
    parser.add_argument("--evaluate", type=int, default=0, metavar="N",
                        help="after training, Dice on N phantoms the model never saw (in training_summary.json)")
    parser.add_argument("--evaluate-only", action="store_true", help="only evaluate the model already in --out")
    args = parser.parse_args(argv)

    work = Path(args.work).resolve()
    os.environ["nnUNet_raw"] = str(work / "nnUNet_raw")
    os.environ["nnUNet_preprocessed"] = str(work / "nnUNet_preprocessed")
    os.environ["nnUNet_results"] = str(work / "nnUNet_results")
    import torch

    torch.set_num_threads(2)
    model_dir = Path(args.out).resolve() / DATASET_NAME / f"{TRAINER}__{PLANS}__{CONFIGURATION}"
    if args.evaluate_only:
        summary_path = model_dir / "training_summary.json"
        summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
        summary["evaluation"] = evaluate(model_dir, args.evaluate or 6, args.seed)
        summary_path.write_text(json.dumps(summary, indent=2))
        print(json.dumps({k: v for k, v in summary["evaluation"].items() if k != "lesions"}, indent=2))
        return 0
    plans_file = work / "nnUNet_preprocessed" / DATASET_NAME / f"{PLANS}.json"
    if not (args.resume and plans_file.is_file()):
        shutil.rmtree(work, ignore_errors=True)
        write_raw_dataset(work / "nnUNet_raw", args.cases, args.seed)
        plans_and_data = plan_and_preprocess()
    else:
        plans_and_data = json.loads(plans_file.read_text(encoding="utf-8"))
    plans = plans_and_data
    dataset_json = json.loads((work / "nnUNet_raw" / DATASET_NAME / "dataset.json").read_text(encoding="utf-8"))
    model_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / "plans.json").write_text(json.dumps(plans, indent=2))
    (model_dir / "dataset.json").write_text(json.dumps(dataset_json, indent=2))
    log = train(args, plans, dataset_json, model_dir)
    summary_path = model_dir / "training_summary.json"
    earlier = json.loads(summary_path.read_text()) if args.resume and summary_path.is_file() else {}
    command = "python Testing/models/train_tiny.py " + " ".join(argv if argv is not None else sys.argv[1:])
    summary = {
        "synthetic": True,
        "commands": earlier.get("commands", [earlier["command"]] if "command" in earlier else []) + [command],
        "what": "RadGPT phantom segmenter for tests; trained on synthetic phantoms only, never on real CT",
        "command": command,
        "cases": args.cases, "steps": log["steps"], "batch": args.batch, "lr": args.lr, "seed": args.seed,
        "lesion_share": args.lesion_share,
        "seconds_last_run": log["seconds_this_run"], "final_loss": log["loss"][-1][1] if log["loss"] else None,
        "torch": torch.__version__, "nnunetv2": __import__("importlib.metadata").metadata.version("nnunetv2"),
        "threads": torch.get_num_threads(), "mirroring": "none in training or inference",
    }
    if args.evaluate:
        summary["evaluation"] = evaluate(model_dir, args.evaluate, args.seed)
    summary_path.write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))
    return 0 if math.isfinite(summary["final_loss"] or 0.0) else 1


if __name__ == "__main__":
    sys.exit(main())
