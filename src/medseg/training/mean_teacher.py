"""Mean Teacher (Tarvainen & Valpola, NeurIPS 2017): the maths, as pure functions, and the teacher network.

The student is the network the optimiser trains. After every optimiser step the teacher's parameters move
towards the student's, ``theta' <- alpha theta' + (1 - alpha) theta`` (an exponential moving average, EMA),
with ``alpha = min(1 - 1/(step + 1), ema_decay)`` so that the early teacher is not stuck near the random
initialisation (the paper's ramp of the decay); buffers (batch-norm running statistics) are copied from the
student. The consistency term is the mean squared difference between the student's and the teacher's
class probabilities (softmax, or sigmoid for overlapping structures) on the full-resolution output, weighted
by ``consistency_weight * exp(-5 (1 - t)^2)``, ``t`` the training progress over the ramp-up (Laine & Aila,
ICLR 2017). The teacher is what validation, ``checkpoint_best`` and prediction use.

Example:
    >>> ema_decay(0, 0.99), ema_decay(9, 0.99), ema_decay(1000, 0.99)
    (0.0, 0.9, 0.99)
    >>> round(sigmoid_rampup(0.0, 0.25), 4), sigmoid_rampup(0.25, 0.25)
    (0.0067, 1.0)
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping, Sequence

import torch
from torch import Tensor, nn

from medseg.config.semi_supervised import SemiSupervisedConfig
from medseg.training.batches import Batch

__all__ = [
    "consistency_loss",
    "consistency_weight",
    "ema",
    "ema_decay",
    "full_resolution",
    "make_teacher",
    "mean_teacher_losses",
    "sigmoid_rampup",
    "update_teacher",
]


def ema_decay(step: int, decay: float) -> float:
    """The EMA decay after ``step`` optimiser steps (0 before the first update): ``min(1 - 1/(step + 1), decay)``."""
    return min(1.0 - 1.0 / (step + 1), decay)


def ema(teacher: Tensor, student: Tensor, decay: float) -> Tensor:
    """One EMA step of a tensor: ``decay * teacher + (1 - decay) * student`` (a new tensor)."""
    return decay * teacher + (1.0 - decay) * student


def sigmoid_rampup(progress: float, rampup: float) -> float:
    """Laine & Aila's ramp-up ``exp(-5 (1 - t)^2)``, ``t = min(progress / rampup, 1)``; 1 when ``rampup`` is 0."""
    if rampup <= 0:
        return 1.0
    t = min(max(progress / rampup, 0.0), 1.0)
    return math.exp(-5.0 * (1.0 - t) ** 2)


def consistency_weight(progress: float, config: SemiSupervisedConfig) -> float:
    """The consistency term's weight at training ``progress`` in [0, 1]."""
    return config.consistency_weight * sigmoid_rampup(progress, config.rampup)


def full_resolution(output: Tensor | Sequence[Tensor]) -> Tensor:
    """The full-resolution logits of a network's output (the first of deep-supervision outputs)."""
    return output if isinstance(output, Tensor) else output[0]


def consistency_loss(student: Tensor, teacher: Tensor, *, overlapping: bool) -> Tensor:
    """Mean squared difference of class probabilities, in float32; the teacher gets no gradient.

    ``student`` and ``teacher`` are logits ``(B, K, *spatial)``: softmax over K for exclusive classes,
    a sigmoid per channel for overlapping structures. Returns a scalar (mean over every element).
    """
    if student.shape != teacher.shape:
        raise ValueError(f"student logits {tuple(student.shape)} and teacher logits {tuple(teacher.shape)} differ")
    activation = torch.sigmoid if overlapping else (lambda x: torch.softmax(x, dim=1))
    return torch.mean((activation(student.float()) - activation(teacher.detach().float())) ** 2)


def make_teacher(student: nn.Module) -> nn.Module:
    """A copy of ``student`` that takes no gradients and stays in eval mode (its forward is the teacher's)."""
    teacher = copy.deepcopy(student)
    for parameter in teacher.parameters():
        parameter.requires_grad_(False)
    return teacher.eval()


@torch.no_grad()
def update_teacher(teacher: nn.Module, student: nn.Module, decay: float) -> None:
    """In place: every parameter of ``teacher`` becomes ``ema(teacher, student, decay)``; every buffer (e.g.
    batch-norm running statistics and counters) is copied from ``student``. Both have one architecture."""
    t_params, s_params = list(teacher.parameters()), list(student.parameters())
    if len(t_params) != len(s_params):
        raise ValueError(f"teacher has {len(t_params)} parameters, student {len(s_params)}")
    floating = [(t, s) for t, s in zip(t_params, s_params, strict=True) if t.dtype.is_floating_point]
    if floating:
        torch._foreach_mul_([t for t, _ in floating], decay)
        torch._foreach_add_([t for t, _ in floating], [s.detach() for _, s in floating], alpha=1.0 - decay)
    for t_buffer, s_buffer in zip(teacher.buffers(), student.buffers(), strict=True):
        t_buffer.copy_(s_buffer)


def mean_teacher_losses(
    student: Callable[[Tensor], Tensor | Sequence[Tensor]],
    teacher: nn.Module,
    loss_fn: Callable[..., Tensor],
    batch: Batch,
    pair: Mapping[str, Tensor],
    overlapping: bool,
) -> tuple[Tensor, Tensor]:
    """(supervised loss, consistency term) of one step; the caller weights and adds them.

    The student sees the labelled ``batch.image`` (B, C, *patch) and the unlabelled ``pair["student"]``
    (U, C, *patch) in one forward pass (batch norm sees both, as in Tarvainen & Valpola); ``loss_fn`` takes
    its labelled outputs (every deep-supervision output), the consistency its full-resolution unlabelled
    ones against the teacher's on ``pair["teacher"]`` (no gradient)."""
    n = batch.image.shape[0]
    output = student(torch.cat([batch.image, pair["student"]]))
    labelled = output[:n] if isinstance(output, Tensor) else [o[:n] for o in output]
    loss = loss_fn(labelled, batch.target, **batch.extras)
    with torch.no_grad():
        target = full_resolution(teacher(pair["teacher"]))
    return loss, consistency_loss(full_resolution(output)[n:], target, overlapping=overlapping)
