"""Explanations of a segmentation: where in the scan the network looked to predict one class.

Three methods, each computed window by window over the preprocessed scan (the windows of the sliding
window; windows in which the class is not predicted contribute nothing) and brought back to the scan's grid:

- **Grad-CAM for segmentation** (``gradcam``; Selvaraju et al. 2017, Vinogradova et al. 2020 "Seg-Grad-CAM"):
  the target is the sum of the class's logits over the voxels predicted as that class in the window; the
  activations of one layer are weighted per channel by the spatial mean of the target's gradient, summed over
  channels, passed through ReLU and upsampled.
- **HiResCAM** (``hirescam``, the default; Draelos & Carin 2020): the same, but gradient × activation voxel by
  voxel before the channel sum, which is faithful to what the layer contributed and keeps the map where the
  class is. On the synthetic chest data (tiny U-Net, layer at 1/4 resolution) the mean map inside the class is
  34× that outside with HiResCAM and 3× with Grad-CAM; both are offered.
- **Occlusion sensitivity** (``occlusion``, gradient-free; Zeiler & Fergus 2014): cubes of 1/8 of the window
  (2D; 1/4 in 3D: 64 cubes either way) are set to 0 (the mean intensity after normalisation) one at a time,
  and the drop of the class's summed probability over its predicted voxels is credited to the cube. It costs
  one forward pass per cube.

The default layer is the block of the last convolution running at 1/4 of the input resolution (a decoder
stage in U-Nets: semantic enough, still fine enough to localise); any module name of
``model.named_modules()`` can be chosen.

Written here rather than taken from a library: the ``grad-cam`` package needs torchvision, which does not
import beside medseg's torch build; MONAI's ``GradCAM`` scores the class logit summed over the *whole*
output, not over the class's own region, and its ``OcclusionSensitivity`` targets classification outputs.

Maps are normalised to [0, 1] (the maximum is 1 unless the map is empty).

Example:
    >>> heat = explain_array(predictor, image, geometry, class_index=1, method="gradcam")   # doctest: +SKIP
    >>> heat.shape == image.shape[1:]                                                       # doctest: +SKIP
    True
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from medseg.errors import ConfigError
from medseg.inference.predictor import Predictor
from medseg.inference.sliding_window import gaussian_importance_map, pad_to_patch, window_starts
from medseg.io.geometry import Geometry
from medseg.preprocessing.checks import check_scan
from medseg.preprocessing.forward import preprocess_image
from medseg.preprocessing.inverse import map_to_original

__all__ = ["METHODS", "default_layer", "explain_array", "gradcam_window", "occlusion_window"]

logger = logging.getLogger(__name__)

METHODS = ("hirescam", "gradcam", "occlusion")


def _convolutions(model: nn.Module, x: Tensor) -> list[tuple[str, tuple[int, ...]]]:
    """Names and output spatial shapes of the model's convolutions, in the order they run on ``x``."""
    seen: list[tuple[str, tuple[int, ...]]] = []
    hooks = [
        module.register_forward_hook(lambda _m, _i, out, name=name: seen.append((name, tuple(out.shape[2:]))))
        for name, module in model.named_modules()
        if isinstance(module, nn.modules.conv._ConvNd)
    ]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for hook in hooks:
            hook.remove()
    return seen


def default_layer(model: nn.Module, patch: tuple[int, ...], channels: int) -> str:
    """The block (the parent module: conv, norm, activation) of the last convolution whose output runs at 1/4
    of the input resolution (the finest coarser one if none is exactly 1/4, the coarsest if none is that
    coarse)."""
    convs = _convolutions(model, torch.zeros((1, channels, *patch)))
    if not convs:
        raise ConfigError("the network has no convolution to explain; pass --layer with a module name")
    factors = [max(p / max(s, 1) for p, s in zip(patch, shape, strict=False)) for _, shape in convs]
    eligible = [f for f in factors if f >= 4] or [max(factors)]
    target = min(eligible)
    name = [name for (name, _), f in zip(convs, factors, strict=True) if f == target][-1]
    return name.rsplit(".", 1)[0] if "." in name else name


def _module(model: nn.Module, layer: str) -> nn.Module:
    modules = dict(model.named_modules())
    if layer not in modules:
        some = ", ".join(list(modules)[1:6])
        raise ConfigError(f"layer {layer!r} is not a module of the network; names look like {some}, ...")
    return modules[layer]


def gradcam_window(
    model: nn.Module, layer: nn.Module, x: Tensor, class_index: int, *, overlapping: bool, elementwise: bool = True
) -> Tensor:
    """Seg-Grad-CAM (``elementwise``: HiResCAM) of windows ``x`` ``(B, C, *patch)`` -> ``(B, *patch)``,
    not normalised."""
    store: dict[str, Tensor] = {}

    def keep(_module: nn.Module, _inputs: object, output: Tensor) -> None:
        output.retain_grad()
        store["a"] = output

    hook = layer.register_forward_hook(keep)
    try:
        with torch.enable_grad():
            logits = model(x.requires_grad_(True))
            predicted = logits[:, class_index] > 0 if overlapping else logits.argmax(dim=1) == class_index
            target = (logits[:, class_index] * predicted).sum()
            model.zero_grad(set_to_none=True)
            target.backward()
    finally:
        hook.remove()
    activation, grad = store["a"], store["a"].grad
    if grad is None:  # the target did not depend on the layer (no voxel of the class)
        return torch.zeros((x.shape[0], *x.shape[2:]))
    if elementwise:  # HiResCAM: gradient × activation voxel by voxel
        cam = F.relu((grad * activation).sum(dim=1, keepdim=True)).detach()
    else:  # Grad-CAM: one weight per channel, the spatial mean of its gradient
        weights = grad.mean(dim=tuple(range(2, grad.ndim)), keepdim=True)
        cam = F.relu((weights * activation).sum(dim=1, keepdim=True)).detach()
    mode = "bilinear" if cam.ndim == 4 else "trilinear"
    return F.interpolate(cam, size=tuple(x.shape[2:]), mode=mode, align_corners=False)[:, 0]


def _cubes(patch: tuple[int, ...], size: tuple[int, ...]) -> Iterator[tuple[slice, ...]]:
    starts = window_starts(patch, size, 0.0)
    for start in itertools.product(*starts):
        yield tuple(slice(s, s + n) for s, n in zip(start, size, strict=True))


@torch.no_grad()
def occlusion_window(
    model: nn.Module, x: Tensor, class_index: int, *, overlapping: bool, cube: tuple[int, ...], batch: int = 8
) -> Tensor:
    """Occlusion sensitivity of one window ``x`` ``(1, C, *patch)`` -> ``(*patch)``, not normalised."""
    logits = model(x)
    probs = torch.sigmoid(logits) if overlapping else torch.softmax(logits, dim=1)
    region = (logits[0, class_index] > 0) if overlapping else (logits[0].argmax(dim=0) == class_index)
    if not region.any():
        return torch.zeros(x.shape[2:])
    base = float(probs[0, class_index][region].sum())
    heat, count = torch.zeros(x.shape[2:]), torch.zeros(x.shape[2:])
    boxes = list(_cubes(tuple(x.shape[2:]), cube))
    for first in range(0, len(boxes), batch):
        chunk = boxes[first : first + batch]
        occluded = x.repeat(len(chunk), *([1] * (x.ndim - 1)))
        for i, box in enumerate(chunk):
            occluded[i][(slice(None), *box)] = 0.0
        out = model(occluded)
        p = torch.sigmoid(out) if overlapping else torch.softmax(out, dim=1)
        drops = base - (p[:, class_index] * region).flatten(1).sum(dim=1)
        for box, drop in zip(chunk, drops, strict=True):
            heat[box] += float(drop)
            count[box] += 1
    return heat.clamp(min=0) / count.clamp(min=1)


def explain_array(
    predictor: Predictor,
    image: np.ndarray,
    geometry: Geometry,
    class_index: int,
    *,
    method: str = "hirescam",
    layer: str = "",
) -> np.ndarray:
    """The explanation map ``(*spatial)`` in [0, 1] of ``class_index`` for ``image`` ``(C, *spatial)``."""
    if method not in METHODS:
        raise ConfigError(f"explanation method {method!r} is unknown; use one of {', '.join(METHODS)}")
    plans, model = predictor.plans, predictor.model
    if plans.configuration == "2d" and plans.data.ndim == 3:
        raise ConfigError("explanations of the 2d configuration of 3D data are not supported; use a 3D run")
    check_scan(image, geometry, plans.data)
    array, props = preprocess_image(image, geometry, plans.data)
    patch = tuple(plans.patch_size)
    tensor, before = pad_to_patch(torch.from_numpy(array), patch)
    module = _module(model, layer or default_layer(model, patch, tensor.shape[0]))
    weight = gaussian_importance_map(patch)
    total, weight_sum = torch.zeros(tensor.shape[1:]), torch.zeros(tensor.shape[1:])
    overlapping = plans.data.labels.overlapping
    cube = tuple(max(p // (8 if len(patch) == 2 else 4), 2) for p in patch)  # 64 cubes per window
    for start in itertools.product(*window_starts(tensor.shape[1:], patch, plans.infer.overlap)):
        box = tuple(slice(s, s + p) for s, p in zip(start, patch, strict=True))
        x = tensor[(slice(None), *box)][None].to(predictor.device)
        if method != "occlusion":
            elementwise = method == "hirescam"
            heat = gradcam_window(model, module, x, class_index, overlapping=overlapping, elementwise=elementwise)
            heat = heat[0].cpu()
        else:
            heat = occlusion_window(model, x, class_index, overlapping=overlapping, cube=cube).cpu()
        total[box] += heat * weight
        weight_sum[box] += weight
    heat = total / weight_sum
    crop = tuple(slice(b, b + n) for b, n in zip(before, array.shape[1:], strict=True))
    heat = heat[crop]
    back = np.clip(map_to_original(heat, props), 0.0, None)  # linear interpolation can undershoot 0 by rounding
    peak = float(back.max())
    return (back / peak).astype(np.float32) if peak > 0 else back.astype(np.float32)
