"""The server's side of a round: Flower's FedAvg strategy with medseg's planning, aggregation and record.

Before round 1 the server waits for the sites, asks each for its name and fingerprint, plans once for all
(or takes the given plans.json), and writes the global run folder (``plans.json``, ``dataset.json``). Each
round it sends the global weights with the plans and the round's settings, averages what came back
(:func:`medseg.federated.aggregate.weighted_average`, by training cases), and writes
``checkpoint_last.pt``; after the sites evaluated the new weights on their validation cases,
``checkpoint_best.pt`` when the example-weighted Dice improved. A site that fails or leaves in a round is
recorded and left out (``accept_failures``); the round goes on with at least ``min_sites`` sites.

``federated.json`` records every round: per site its metrics and exactly what it sent (array shapes and
dtypes, metric names), the failures, and the global metrics; ``log.jsonl`` has one line per round in the
trainer's format (``epoch`` is the round), so the run reads like any other medseg run.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from flwr.common import (
    EvaluateRes,
    FitRes,
    GetPropertiesIns,
    Parameters,
    Scalar,
    ndarrays_to_parameters,
    parameters_to_ndarrays,
)
from flwr.server.client_manager import ClientManager
from flwr.server.client_proxy import ClientProxy
from flwr.server.strategy import FedAvg

from medseg.config.plans import Plans, load_plans
from medseg.errors import MedsegError
from medseg.evaluation.federated_report import write_federated_report
from medseg.federated.aggregate import weighted_average, weighted_mean
from medseg.federated.options import FederatedOptions
from medseg.federated.planning import fingerprint_from_json, merge_fingerprints, plan_federation
from medseg.federated.site import weights_of
from medseg.fileutil import atomic_write_json, atomic_write_text
from medseg.inference.network import network_for
from medseg.run import RunDir, RunRecord
from medseg.serial import to_dict

__all__ = ["FEDERATED_JSON", "FederatedStrategy"]

logger = logging.getLogger(__name__)

FEDERATED_JSON = "federated.json"


class FederatedStrategy(FedAvg):
    """FedAvg (``options.mu == 0``) or FedProx (``mu > 0``: the sites add the proximal term) into ``run_dir``."""

    def __init__(self, options: FederatedOptions, run_dir: Path) -> None:
        super().__init__(
            fraction_fit=1.0,
            fraction_evaluate=1.0,
            min_fit_clients=options.min_sites,
            min_evaluate_clients=options.min_sites,
            min_available_clients=options.min_sites,
            accept_failures=True,
            on_fit_config_fn=self._config,
            on_evaluate_config_fn=self._config,
        )
        self.options = options
        self.run = RunDir(Path(run_dir))
        self.run.require_new()
        self.names: dict[str, str] = {}  # Flower client id -> site name
        self.plans: Plans | None = None
        self.keys: list[str] = []
        self.current: list[np.ndarray] = []
        self.rounds: dict[int, dict[str, Any]] = {}
        self.best_dice = -float("inf")
        self.started = time.perf_counter()

    # -- before round 1 -------------------------------------------------------------------------------

    def initialize_parameters(self, client_manager: ClientManager) -> Parameters | None:
        """Wait for the sites, plan for all, write the global run folder; the initial weights (seeded)."""
        n = self.options.sites
        if not client_manager.wait_for(n, timeout=int(self.options.join_timeout_s)):
            raise MedsegError(
                f"only {client_manager.num_available()} of {n} site(s) joined within "
                f"{self.options.join_timeout_s:.0f} s; "
                "start the sites with the server's address (and certificate), or lower --sites"
            )
        want = self.options.plans is None
        fingerprints, names = [], []
        for proxy in client_manager.all().values():
            properties = self._ask(proxy, fingerprint=want)
            names.append(self.names[proxy.cid])
            if want:
                fingerprints.append(fingerprint_from_json(str(properties["fingerprint"]), self.names[proxy.cid]))
        if len(set(names)) != len(names):
            raise MedsegError(f"two sites share a name ({sorted(names)}); give each site its own --name")
        if self.options.plans is not None:  # its schedule runs over the federation's epochs, as a planned one
            given = load_plans(self.options.plans)
            plans = replace(given, train=replace(given.train, epochs=self.options.rounds * self.options.local_epochs))
        else:
            o = self.options
            changes: dict[str, Any] = {
                k: v for k, v in {"iterations_per_epoch": o.iterations, "amp": o.amp}.items() if v
            }
            merged = merge_fingerprints(fingerprints, names, self.run.path.name)
            plans = plan_federation(
                merged, device=o.device, epochs=o.rounds * o.local_epochs, model=o.model, seed=o.seed, changes=changes
            )
        self.plans = plans
        self.run.create(plans, RunRecord(self.run.path.resolve(), "federated", (), ()))
        model = network_for(plans, generator=torch.Generator().manual_seed(self.options.seed))
        state = model.state_dict()
        self.keys, self.current = list(state), weights_of(state)
        self._write()
        logger.info(
            "federation of %d site(s): %s; %s, %d round(s)",
            n,
            ", ".join(sorted(names)),
            self.options.strategy,
            self.options.rounds,
        )
        return ndarrays_to_parameters(self.current)

    def _ask(self, proxy: ClientProxy, *, fingerprint: bool) -> dict[str, Scalar]:
        res = proxy.get_properties(
            GetPropertiesIns({"fingerprint": fingerprint}), timeout=self.options.join_timeout_s, group_id=0
        )
        self.names[proxy.cid] = str(res.properties["site"])
        return dict(res.properties)

    def _name(self, proxy: ClientProxy) -> str:
        if proxy.cid not in self.names:  # a site that joined after round 1 began
            self._ask(proxy, fingerprint=False)
        return self.names[proxy.cid]

    def _config(self, server_round: int) -> dict[str, Scalar]:
        plans = self.plans
        if plans is None:
            raise RuntimeError("the federation was not initialised")
        o = self.options
        return {
            "plans": json.dumps(to_dict(plans)),
            "round": server_round,
            "rounds": o.rounds,
            "local_epochs": o.local_epochs,
            "mu": o.mu,
        }

    # -- each round ----------------------------------------------------------------------------------

    def aggregate_fit(
        self,
        server_round: int,
        results: list[tuple[ClientProxy, FitRes]],
        failures: list[tuple[ClientProxy, FitRes] | BaseException],
    ) -> tuple[Parameters | None, dict[str, Scalar]]:
        record = self.rounds.setdefault(
            server_round, {"round": server_round, "sites": {}, "failures": [], "global": {}}
        )
        record["failures"] = [self._failure(f) for f in failures]
        updates = []
        for proxy, res in results:
            arrays = parameters_to_ndarrays(res.parameters)
            name = self._name(proxy)
            record["sites"][name] = {
                "examples": res.num_examples,
                **{k: _number(v) for k, v in res.metrics.items()},
                "sent": {
                    "arrays": [f"{'x'.join(map(str, a.shape))} {a.dtype}" for a in arrays],
                    "metrics": sorted(res.metrics),
                },
            }
            updates.append((arrays, res.num_examples))
        if not updates:
            logger.warning("round %d: no site returned weights; the global model is kept", server_round)
            self._write()
            return None, {}
        self.current = weighted_average(updates)
        losses = [(float(res.metrics.get("train_loss", np.nan)), res.num_examples) for _, res in results]  # type: ignore[arg-type]
        lrs = [(float(res.metrics.get("lr", np.nan)), res.num_examples) for _, res in results]  # type: ignore[arg-type]
        seconds = max(float(res.metrics.get("seconds", 0.0)) for _, res in results)  # type: ignore[arg-type]
        record["global"].update(
            {
                "train_loss": weighted_mean(losses),
                "lr": weighted_mean(lrs),
                "seconds": seconds,
                "sites_aggregated": len(updates),
            }
        )
        self.run.save_checkpoint(self._state(server_round), "last")
        self._write()
        logger.info("round %d: averaged %d site(s), %d failed", server_round, len(updates), len(failures))
        return ndarrays_to_parameters(self.current), {"train_loss": record["global"]["train_loss"]}

    def aggregate_evaluate(
        self,
        server_round: int,
        results: list[tuple[ClientProxy, EvaluateRes]],
        failures: list[tuple[ClientProxy, EvaluateRes] | BaseException],
    ) -> tuple[float | None, dict[str, Scalar]]:
        record = self.rounds.setdefault(
            server_round, {"round": server_round, "sites": {}, "failures": [], "global": {}}
        )
        evaluated: dict[str, Any] = {}
        for proxy, res in results:
            evaluated[self._name(proxy)] = {
                "examples": res.num_examples,
                **{k: _number(v) for k, v in res.metrics.items()},
            }
        record["evaluation"] = {"sites": evaluated, "failures": [self._failure(f) for f in failures]}
        dice = weighted_mean([(float(res.metrics.get("dice", np.nan)), res.num_examples) for _, res in results])  # type: ignore[arg-type]
        record["global"]["dice"] = dice
        if np.isfinite(dice) and dice > self.best_dice and self.current:
            self.best_dice = dice
            self.run.save_checkpoint(self._state(server_round), "best")
        self._write()
        if np.isfinite(dice):
            logger.info(
                "round %d: global Dice %.4f (%s)",
                server_round,
                dice,
                ", ".join(f"{k} {v['dice']:.3f}" for k, v in sorted(evaluated.items())),
            )
        return (1.0 - dice if np.isfinite(dice) else None), {"dice": dice}

    def finish(self) -> dict[str, Any]:
        """After the last round: a best checkpoint exists (the last weights if no round was evaluated), and
        ``report.html`` shows each site's and the global Dice per round."""
        if self.plans is not None and not self.run.checkpoint("best").exists() and self.current:
            self.run.save_checkpoint(self._state(max(self.rounds, default=0)), "best")
        record = self._write()
        if self.plans is not None:
            lines = self.run.log.read_text(encoding="utf-8").splitlines()
            write_federated_report(
                self.run.report,
                record,
                title=f"Federated run {self.run.path.name}",
                log_records=[json.loads(line) for line in lines if line.strip()],
                config=to_dict(self.plans),
            )
        return record

    # -- the record ----------------------------------------------------------------------------------

    def _failure(self, failure: tuple[ClientProxy, Any] | BaseException) -> str:
        if isinstance(failure, BaseException):
            return f"{type(failure).__name__}: {failure}"[:200]
        return self.names.get(failure[0].cid, failure[0].cid)

    def _state(self, server_round: int) -> dict[str, Any]:
        model = {k: torch.from_numpy(np.array(a)) for k, a in zip(self.keys, self.current, strict=True)}
        best = self.best_dice if np.isfinite(self.best_dice) else -1.0
        return {
            "model": model,
            "epoch": server_round,
            "elapsed_s": time.perf_counter() - self.started,
            "best_dice": best,
        }

    def _write(self) -> dict[str, Any]:
        o = self.options
        data = {
            "strategy": o.strategy,
            "mu": o.mu,
            "rounds_planned": o.rounds,
            "local_epochs": o.local_epochs,
            "min_sites": o.min_sites,
            "sites": sorted(set(self.names.values())),
            "best_dice": self.best_dice if np.isfinite(self.best_dice) else None,
            "rounds": [self.rounds[r] for r in sorted(self.rounds)],
        }
        atomic_write_json(self.run.path / FEDERATED_JSON, _clean(data))
        lines = []
        for r in sorted(self.rounds):
            g = self.rounds[r]["global"]
            line = {
                "epoch": r,
                "train_loss": g.get("train_loss"),
                "lr": g.get("lr"),
                "seconds": g.get("seconds", 0.0),
                "val_dice": g.get("dice"),
            }
            lines.append(
                json.dumps(
                    {
                        k: v
                        for k, v in line.items()
                        if v is not None and not (isinstance(v, float) and not np.isfinite(v))
                    }
                )
            )
        atomic_write_text(self.run.log, "".join(ln + "\n" for ln in lines))
        return data


def _number(value: Any) -> Any:
    """A metric as JSON can hold it (NaN as null)."""
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def _clean(data: Any) -> Any:
    """``data`` with every non-finite float as null (strict JSON)."""
    if isinstance(data, dict):
        return {k: _clean(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_clean(v) for v in data]
    return _number(data)
