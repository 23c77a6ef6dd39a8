"""FedProx's proximal term in a site's local training, without touching the trainer.

:func:`medseg.training.loop.fit` builds its own network and optimiser, so the term cannot be added to the
loss from outside. It is added to the gradient instead, which is the same thing: the gradient of
``L(w) + mu/2 ||w - g||^2`` is ``grad L(w) + mu (w - g)``. A torch optimiser pre-step hook adds
``mu (w - g)`` to each parameter's gradient just before the optimiser steps (after gradient clipping and
AMP unscaling), for the optimiser of this thread's training only: the hook is process-wide while it is
registered, so it acts only in the thread that entered :func:`proximal_term` and only on an optimiser whose
parameters have the global network's shapes, and it is removed on exit.

Example:
    >>> with proximal_term(global_parameters, mu=0.01):      # doctest: +SKIP
    ...     fit(plans, train, val, run_dir, device=device)
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch.optim.optimizer import register_optimizer_step_pre_hook

__all__ = ["proximal_term"]


@contextmanager
def proximal_term(global_parameters: Sequence[torch.Tensor], mu: float) -> Iterator[None]:
    """While open, every optimiser step in this thread over parameters shaped like ``global_parameters``
    (the network's ``parameters()``, in order) adds ``mu * (w - g)`` to their gradients first.
    ``mu <= 0`` does nothing (plain FedAvg)."""
    if mu <= 0:
        yield
        return
    owner = threading.get_ident()
    shapes = [tuple(g.shape) for g in global_parameters]
    targets: dict[torch.device, list[torch.Tensor]] = {}

    def add_proximal_gradient(optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        if threading.get_ident() != owner:
            return
        params = [p for group in optimizer.param_groups for p in group["params"]]
        if [tuple(p.shape) for p in params] != shapes:
            return
        device = params[0].device
        if device not in targets:
            targets[device] = [
                g.detach().to(device=device, dtype=p.dtype) for g, p in zip(global_parameters, params, strict=True)
            ]
        with torch.no_grad():
            for p, g in zip(params, targets[device], strict=True):
                if p.grad is not None:  # a frozen or unused parameter has none and is left alone
                    p.grad.add_(p.detach() - g, alpha=mu)

    handle = register_optimizer_step_pre_hook(add_proximal_gradient)
    try:
        yield
    finally:
        handle.remove()
