"""A site: a Flower client that trains the global network on its own dataset folder and sends back weights.

What leaves the site, and nothing else (``tests/federated/test_privacy.py`` inspects it):

* on joining, its name and its fingerprint (:mod:`medseg.federated.planning`: statistics, not images);
* after each round's local training, the network's weight arrays, its number of training cases and scalar
  metrics (training loss, learning rate, seconds, local validation Dice);
* after each evaluation of the global weights on its validation cases, their number and Dice per class.

The site keeps an ordinary run folder (``work_dir``): its split, its preprocessing cache, and its local
``checkpoint_last.pt`` and ``log.jsonl`` continued across rounds. Each round the global weights are written
into that checkpoint and :func:`medseg.training.loop.fit` resumes it for ``local_epochs`` epochs, so the
learning-rate schedule runs over the whole federation and the site's optimiser state carries over.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from flwr.client import NumPyClient

from medseg.config.plans import Plans
from medseg.datasets.dataset import load_dataset
from medseg.datasets.records import Dataset
from medseg.device import resolve_device
from medseg.errors import ConfigError
from medseg.federated.options import SiteConfig
from medseg.federated.planning import fingerprint_to_json
from medseg.federated.proximal import proximal_term
from medseg.inference.network import network_for
from medseg.planning.fingerprint import fingerprint
from medseg.preprocessing.forward import PreprocessedCase
from medseg.run import RunDir, RunRecord
from medseg.serial import from_dict, to_dict
from medseg.splits import split_cases
from medseg.training.loop import EpochResult, TrainCallbacks, fit, validation_dice
from medseg.training.optim import build_optimizer
from medseg.workflow import preprocess_cases, require_clean

__all__ = ["SiteClient", "plans_from_config", "set_weights", "weights_of"]

logger = logging.getLogger(__name__)


def weights_of(state: dict[str, torch.Tensor]) -> list[np.ndarray]:
    """A network's state as the arrays Flower sends (state-dict order)."""
    return [t.detach().cpu().numpy() for t in state.values()]


def set_weights(model: torch.nn.Module, arrays: list[np.ndarray]) -> None:
    """Load ``arrays`` (state-dict order) into ``model``; a different network is a bug, not the user's."""
    state = model.state_dict()
    if len(arrays) != len(state) or any(
        tuple(a.shape) != tuple(t.shape) for a, t in zip(arrays, state.values(), strict=False)
    ):
        raise ValueError("received weights do not fit the planned network")
    model.load_state_dict(
        {k: torch.from_numpy(np.array(a)).to(t.dtype) for (k, t), a in zip(state.items(), arrays, strict=True)}
    )


def plans_from_config(config: dict[str, Any]) -> Plans:
    return from_dict(Plans, json.loads(str(config["plans"])), "plans")


class _RoundStop:
    """Stops :func:`fit` at the end of the ``epochs``-th epoch it trains (the callbacks' ``should_stop``)."""

    def __init__(self, epochs: int) -> None:
        self.epochs, self.results = epochs, []  # type: ignore[var-annotated]
        self.stop = False

    def on_iteration(self, done: int, total: int, _loss: float) -> None:
        self.stop = done == total and len(self.results) == self.epochs - 1

    def on_epoch(self, result: EpochResult) -> None:
        self.results.append(result)

    def callbacks(self) -> TrainCallbacks:
        return TrainCallbacks(self.on_iteration, self.on_epoch, lambda: self.stop)


class SiteClient(NumPyClient):
    """The Flower client of one site (:class:`SiteConfig`); Flower calls its methods, one at a time."""

    def __init__(self, site: SiteConfig) -> None:
        self.site = site
        self.device = resolve_device(site.device)
        self._dataset: Dataset | None = None
        self._fingerprint: str | None = None
        self._cases: dict[str, PreprocessedCase] | None = None
        self.run = RunDir(Path(site.work_dir))

    # -- joining --------------------------------------------------------------------------------------

    def dataset(self) -> Dataset:
        if self._dataset is None:
            self._dataset = load_dataset(self.site.dataset)
            require_clean(self._dataset)
        return self._dataset

    def get_properties(self, config: dict[str, Any]) -> dict[str, Any]:
        """The site's name and, when asked, its fingerprint as JSON (statistics; its name is the site's)."""
        properties: dict[str, Any] = {"site": self.site.name}
        if config.get("fingerprint"):
            if self._fingerprint is None:
                fp = fingerprint(self.dataset(), seed=self.site.seed)
                self._fingerprint = fingerprint_to_json(type(fp)(**{**fp.__dict__, "name": self.site.name}))
            properties["fingerprint"] = self._fingerprint
        return properties

    # -- a round --------------------------------------------------------------------------------------

    def _prepare(self, plans: Plans) -> dict[str, PreprocessedCase]:
        """The site's run folder with the federation's plans (created on the first round) and its cases."""
        if not self.run.plans_path.exists():
            dataset = self.dataset()
            ids = [c.case_id for c in dataset.labelled_cases]
            train, val = split_cases(ids, self.site.folds, 0, self.site.seed)
            self.run.create(
                plans, RunRecord(Path(self.site.dataset).resolve(), dataset.layout, tuple(train), tuple(val))
            )
        elif to_dict(self.run.load_plans()) != to_dict(plans):
            raise ConfigError(
                f"{self.run.plans_path}: this site's work folder was planned for another federation; "
                "pass a new --work folder"
            )
        if self._cases is None:
            record = self.run.load_record()
            self._cases = preprocess_cases(self.run, plans, self.dataset(), [*record.train, *record.validation], None)
        return self._cases

    def _split(self, plans: Plans) -> tuple[list[PreprocessedCase], list[PreprocessedCase]]:
        cases, record = self._prepare(plans), self.run.load_record()
        return [cases[i] for i in record.train], [cases[i] for i in record.validation]

    def _start_round(self, plans: Plans, arrays: list[np.ndarray], epoch: int) -> None:
        """Write the global weights into the local ``checkpoint_last`` at ``epoch`` (its optimiser state kept)."""
        model = network_for(plans)
        set_weights(model, arrays)
        if self.run.checkpoint("last").exists():
            previous = self.run.load_checkpoint("last")
            optimizer, scaler = previous["optimizer"], previous.get("scaler", {})
            elapsed, best = float(previous["elapsed_s"]), float(previous["best_dice"])
        else:
            optimizer, scaler = build_optimizer(list(model.parameters()), plans.train).state_dict(), {}
            elapsed, best = 0.0, -1.0
        state = {"model": model.state_dict(), "optimizer": optimizer, "scaler": scaler}
        self.run.save_checkpoint({**state, "epoch": epoch, "elapsed_s": elapsed, "best_dice": best}, "last")

    def fit(self, parameters: list[np.ndarray], config: dict[str, Any]) -> tuple[list[np.ndarray], int, dict[str, Any]]:
        """Train ``local_epochs`` epochs from the global weights; return the new weights, the number of
        training cases and scalar metrics."""
        started = time.perf_counter()
        plans = plans_from_config(config)
        train, val = self._split(plans)
        epochs = int(config["local_epochs"])
        self._start_round(plans, parameters, (int(config["round"]) - 1) * epochs)
        stop = _RoundStop(epochs)
        global_parameters = [torch.from_numpy(np.array(a)) for a in _parameter_arrays(plans, parameters)]
        with proximal_term(global_parameters, float(config.get("mu", 0.0))):
            fit(plans, train, val, self.run.path, device=self.device, resume=True, callbacks=stop.callbacks())
        weights = weights_of(self.run.load_checkpoint("last")["model"])
        results = stop.results
        metrics = {
            "train_loss": float(np.mean([r.train_loss for r in results])) if results else float("nan"),
            "lr": float(results[-1].lr) if results else 0.0,
            "seconds": time.perf_counter() - started,
        }
        if results and results[-1].val_dice is not None:
            metrics["local_dice"] = float(results[-1].val_dice)
        logger.info(
            "site %s: round %s trained %d epoch(s) in %.1f s",
            self.site.name,
            config["round"],
            len(results),
            metrics["seconds"],
        )
        return weights, len(train), metrics

    def evaluate(self, parameters: list[np.ndarray], config: dict[str, Any]) -> tuple[float, int, dict[str, Any]]:
        """Dice of the global weights on the site's validation cases (network grid, as during training)."""
        plans = plans_from_config(config)
        _, val = self._split(plans)
        model = network_for(plans)
        set_weights(model, parameters)
        per_class = validation_dice(model.to(self.device), val, plans, self.device)
        finite = [v for v in per_class.values() if np.isfinite(v)]
        mean = float(np.mean(finite)) if finite else float("nan")
        metrics = {"dice": mean, **{f"dice_{name}": float(v) for name, v in per_class.items()}}
        return 1.0 - mean if finite else 1.0, len(val), metrics


def _parameter_arrays(plans: Plans, arrays: list[np.ndarray]) -> list[np.ndarray]:
    """The arrays of ``arrays`` (the whole state, in order) that are parameters, not buffers."""
    model = network_for(plans)
    names = {name for name, _ in model.named_parameters()}
    return [a for name, a in zip(model.state_dict(), arrays, strict=True) if name in names]
