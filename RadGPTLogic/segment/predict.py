"""One nnU-Net v2 model on one CT, through nnunetv2's own predictor.

:class:`LoadedModel` loads a results folder once (every fold's weights) and
predicts any number of CTs with it.  Everything between the CT's voxels and the
label map is nnunetv2's code: its preprocessor (cropping, resampling,
normalisation from the plans), ``nnUNetPredictor``'s sliding window (Gaussian
weighting, fold averaging, mirroring when the checkpoint allows it and the user
did not switch it off) and its conversion of logits back to the input grid.  The
only departures from ``nnUNetPredictor.initialize_from_trained_model_folder``:

* the network is built from the plans with ``get_network_from_plans`` and handed to
  ``manual_initialization``, instead of looking the trainer class up by name:
  that lookup imports every trainer module of nnunetv2, some of which import
  timm and hence torchvision, which does not load beside a CPU build of torch.
  For trainers that keep nnU-Net's standard ``build_network_architecture`` (all
  that ship with nnunetv2 and TotalSegmentator's) the network is the same.
* progress is reported per fold and per sliding-window tile (a small subclass).

Frames: the CT goes in as the case's canonical RAS array (axis 0 -> R, 1 -> A,
2 -> S) and is handed to nnunetv2 transposed to ``(z, y, x)`` with spacing
``(sz, sy, sx)``, exactly what nnunetv2's SimpleITK reader gives for a NIfTI file
stored in that orientation.  Outputs come back in the canonical frame.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np

from ..errors import InputError
from .models import ModelFolder

#: progress(stage, done, total, fold) -> None; stage is "predict" for tiles.
Progress = Callable[[str, int, int, str], None]


@dataclass
class Prediction:
    """What one model made of one CT (canonical RAS frame, the CT's grid).

    Attributes
    ----------
    labels : ndarray of uint8/uint16
        nnunetv2's label map (values as in the model's dataset.json, regions resolved).
    probabilities : dict
        Label value -> float32 softmax probability of that class (only for the values
        asked for: tumor classes), resampled to the CT grid.
    seconds : float
    """

    labels: np.ndarray
    probabilities: dict
    seconds: float


def _torch_device(device: str):
    import torch

    return torch.device(device)


class LoadedModel:
    """A results folder loaded onto a device, ready for many CTs (see the module doc).

    ``mirroring``: None = what the checkpoint allows (``inference_allowed_mirroring_axes``),
    False = never.  ``tile_step``: the sliding window's step as a fraction of the patch.
    """

    def __init__(self, model: ModelFolder, device: str = "cpu", mirroring: Optional[bool] = None,
                 tile_step: float = 0.5, progress: Optional[Progress] = None):
        if not 0 < tile_step <= 1:
            raise InputError(None, f"--tile-step must be in (0, 1], not {tile_step}")
        self.model = model
        self.device = device
        self.tile_step = tile_step
        self.progress = progress
        self._predictor = self._load(mirroring)

    # ------------------------------------------------------------------ loading
    def _load(self, mirroring):
        import torch
        from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
        from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
        from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

        model = self.model
        parameters, allowed_axes, trainer = [], None, model.trainer
        for n, path in enumerate(model.checkpoint_paths()):
            try:
                checkpoint = torch.load(path, map_location=torch.device("cpu"), weights_only=False)
                weights = checkpoint["network_weights"]
            except Exception as exc:  # noqa: BLE001 - any unreadable checkpoint is the user's one-line error
                raise InputError(path, f"not a loadable nnU-Net checkpoint ({type(exc).__name__}: "
                                       f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
            if n == 0:
                allowed_axes = checkpoint.get("inference_allowed_mirroring_axes")
                trainer = checkpoint.get("trainer_name", trainer)
            parameters.append(weights)
        plans_manager = PlansManager(model.plans)
        configuration = plans_manager.get_configuration(model.configuration)
        arch = configuration.network_arch_class_name, configuration.network_arch_init_kwargs, \
            configuration.network_arch_init_kwargs_req_import
        n_in = determine_num_input_channels(plans_manager, configuration, model.dataset_json)
        n_out = plans_manager.get_label_manager(model.dataset_json).num_segmentation_heads
        try:
            network = get_network_from_plans(*arch, n_in, n_out, allow_init=False, deep_supervision=False)
            network.load_state_dict(parameters[0])
        except Exception as exc:  # noqa: BLE001 - plans and weights that do not fit
            raise InputError(model.path / "plans.json", f"the network of configuration {model.configuration!r} "
                             f"does not fit the checkpoint ({type(exc).__name__}: {str(exc).splitlines()[0]})") \
                from None
        predictor = _ProgressPredictor(tile_step_size=self.tile_step, use_gaussian=True,
                                       use_mirroring=mirroring is not False, perform_everything_on_device=True,
                                       device=_torch_device(self.device), verbose=False, allow_tqdm=False)
        predictor.manual_initialization(network, plans_manager, configuration, parameters, model.dataset_json,
                                        trainer, tuple(allowed_axes) if allowed_axes is not None else None)
        predictor.progress = self.progress
        predictor.fold_names = list(model.folds)
        return predictor

    @property
    def mirroring_axes(self):
        """The axes nnunetv2 mirrors at inference (None: no mirroring)."""
        p = self._predictor
        return p.allowed_mirroring_axes if p.use_mirroring else None

    # ------------------------------------------------------------------ predicting
    def predict(self, ct_hu_ras: np.ndarray, spacing_ras_mm, probability_labels=()) -> Prediction:
        """Segment one CT.

        Parameters
        ----------
        ct_hu_ras : ndarray
            HU in the canonical RAS frame (axis 0 -> R, 1 -> A, 2 -> S).
        spacing_ras_mm : 3 floats
            Voxel size along those axes (mm).
        probability_labels : iterable of int
            Label values whose softmax probability to return (tumor classes).
        """
        import torch
        from nnunetv2.inference.export_prediction import (
            convert_predicted_logits_to_segmentation_with_correct_shape,
        )

        started = time.monotonic()
        p = self._predictor
        image = np.asarray(ct_hu_ras, np.float32).transpose(2, 1, 0)[None]  # (c, z, y, x) as SimpleITKIO reads
        properties = {"spacing": [float(s) for s in reversed(tuple(spacing_ras_mm))]}
        preprocessor = p.configuration_manager.preprocessor_class(verbose=False)
        data, _seg, properties = preprocessor.run_case_npy(image, None, properties, p.plans_manager,
                                                           p.configuration_manager, p.dataset_json)
        del image
        logits = p.predict_logits_from_preprocessed_data(torch.from_numpy(data)).cpu()
        del data
        # The label map first: nnunetv2 resamples every class's logits to the CT grid for it, the
        # largest allocation of the run; the tumor probabilities (one float32 volume each) come after.
        labels = convert_predicted_logits_to_segmentation_with_correct_shape(
            logits, p.plans_manager, p.configuration_manager, p.label_manager, properties,
            return_probabilities=False)
        probabilities = {int(v): _class_probability(p, logits, int(v), properties).transpose(2, 1, 0)
                         for v in probability_labels}
        return Prediction(np.ascontiguousarray(np.asarray(labels).transpose(2, 1, 0)), probabilities,
                          time.monotonic() - started)


def _class_probability(predictor, logits, value: int, properties: dict) -> np.ndarray:
    """Softmax probability of label ``value`` on the input grid (z, y, x), float32.

    The softmax is taken at the network's resolution and that one channel is resampled
    to the input grid with the configuration's own probability resampling (nnunetv2
    resamples all logits first; one channel keeps the memory of a 512 x 512 x 300 CT
    at one float32 volume per tumor class).  Region-based models: the sigmoid of the
    region whose class order entry is ``value``.
    """
    from acvl_utils.cropping_and_padding.bounding_boxes import insert_crop_into_image

    label_manager = predictor.label_manager
    probs = label_manager.apply_inference_nonlin(logits)
    if label_manager.has_regions:
        channel = list(label_manager.regions_class_order).index(value)
    else:
        channel = list(label_manager.all_labels).index(value)
    one = probs[channel:channel + 1].float().numpy()
    del probs
    plans, configuration = predictor.plans_manager, predictor.configuration_manager
    spacing_transposed = [properties["spacing"][i] for i in plans.transpose_forward]
    shape = properties["shape_after_cropping_and_before_resampling"]
    current = configuration.spacing if len(configuration.spacing) == len(shape) \
        else [spacing_transposed[0], *configuration.spacing]
    resampled = np.asarray(configuration.resampling_fn_probabilities(one, shape, current, spacing_transposed),
                           np.float32)[0]
    full = np.zeros(properties["shape_before_cropping"], np.float32)
    full = insert_crop_into_image(full, resampled, properties["bbox_used_for_cropping"])
    return np.clip(np.asarray(full).transpose(plans.transpose_backward), 0.0, 1.0)


def _progress_predictor_class() -> Any:
    """nnUNetPredictor with per-fold and per-tile progress callbacks (built lazily: nnunetv2 is heavy)."""
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    class ProgressPredictor(nnUNetPredictor):
        progress: Any = None
        fold_names: list = []

        def predict_logits_from_preprocessed_data(self, data):
            self._fold = 0
            return super().predict_logits_from_preprocessed_data(data)

        def predict_sliding_window_return_logits(self, input_image):
            self._fold = getattr(self, "_fold", 0) + 1  # called once per fold
            return super().predict_sliding_window_return_logits(input_image)

        def _internal_get_sliding_window_slicers(self, image_size):
            slicers = super()._internal_get_sliding_window_slicers(image_size)
            self._tiles, self._done = len(slicers), 0
            return slicers

        def _internal_maybe_mirror_and_predict(self, x):
            out = super()._internal_maybe_mirror_and_predict(x)
            self._done = getattr(self, "_done", 0) + 1
            if self.progress is not None:
                names = self.fold_names or ["?"]
                fold = names[min(self._fold, len(names)) - 1]
                self.progress("predict", self._done, getattr(self, "_tiles", 0), str(fold))
            return out

    return ProgressPredictor


def _ProgressPredictor(**kwargs):
    return _progress_predictor_class()(**kwargs)
