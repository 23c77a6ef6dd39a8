"""Tiny federations end to end over Flower's gRPC on 127.0.0.1: FedAvg, FedProx, a site failing mid-run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from medseg.federated.federation import simulate
from medseg.federated.options import FederatedOptions, SiteConfig
from medseg.federated.site import SiteClient
from medseg.inference.predictor import Predictor
from medseg.run import RunDir


def test_fedavg_two_rounds_end_to_end(tmp_path: Path, sites: list[SiteConfig], tiny_plans: Path) -> None:
    options = FederatedOptions(rounds=2, plans=tiny_plans, device="cpu")
    result = simulate(sites, tmp_path / "global", options)
    record = json.loads(result.record_path.read_text())
    assert record["strategy"] == "fedavg" and record["sites"] == ["site0", "site1", "site2"]
    assert [r["round"] for r in record["rounds"]] == [1, 2]
    for r in record["rounds"]:
        assert sorted(r["sites"]) == ["site0", "site1", "site2"] and r["failures"] == []
        assert sorted(r["evaluation"]["sites"]) == ["site0", "site1", "site2"]
        # the global Dice is the validation-case-weighted mean of the sites' Dice
        ev = r["evaluation"]["sites"]
        expected = sum(v["dice"] * v["examples"] for v in ev.values()) / sum(v["examples"] for v in ev.values())
        assert r["global"]["dice"] == pytest.approx(expected)
    # the global checkpoint is the example-weighted mean of the weights the sites ended round 2 with
    last = RunDir(result.run_dir).load_checkpoint("last")["model"]
    site_states = [RunDir(s.work_dir).load_checkpoint("last")["model"] for s in sites]
    counts = [record["rounds"][1]["sites"][s.name]["examples"] for s in sites]
    for key, value in last.items():
        if value.is_floating_point():
            mean = sum(st[key].double() * n for st, n in zip(site_states, counts, strict=True)) / sum(counts)
            torch.testing.assert_close(value.double(), mean, rtol=1e-5, atol=1e-6)
    # each site's schedule runs over the federation: 2 rounds x 1 local epoch, its log continued
    assert [json.loads(line)["epoch"] for line in RunDir(sites[0].work_dir).log.read_text().splitlines()] == [1, 2]
    # its report shows each site's and the global Dice per round
    report = RunDir(result.run_dir).report.read_text(encoding="utf-8")
    last_round = report.split("<tr><td>2</td>")[1].split("</tr>")[0]
    for name, values in record["rounds"][1]["evaluation"]["sites"].items():
        assert f"<th>{name}</th>" in report and f"{values['dice']:.4f} (n={values['examples']})" in last_round
    assert f"<b>{record['rounds'][1]['global']['dice']:.4f}</b>" in last_round
    # the global run is a medseg run folder: it predicts
    predictor = Predictor.from_run(result.run_dir)
    image = np.zeros((1, 64, 64), np.float32)
    assert predictor.model(torch.from_numpy(image)[None]).shape[-2:] == (64, 64)


class _CrashesInRound2(SiteClient):
    def fit(self, parameters: list[np.ndarray], config: dict[str, Any]) -> Any:
        if int(config["round"]) == 2:
            raise RuntimeError("site lost its disk")
        return super().fit(parameters, config)


def test_a_site_failing_in_round_2_does_not_stop_the_server(
    tmp_path: Path, sites: list[SiteConfig], tiny_plans: Path
) -> None:
    def factory(site: SiteConfig) -> SiteClient:
        return _CrashesInRound2(site) if site.name == "site2" else SiteClient(site)

    options = FederatedOptions(rounds=3, plans=tiny_plans, device="cpu", mu=0.01, min_sites=2)
    result = simulate(sites, tmp_path / "global", options, client_factory=factory)
    rounds = result.record["rounds"]
    assert result.record["strategy"] == "fedprox"
    assert [r["round"] for r in rounds] == [1, 2, 3]
    assert sorted(rounds[0]["sites"]) == ["site0", "site1", "site2"]
    assert sorted(rounds[1]["sites"]) == ["site0", "site1"] and len(rounds[1]["failures"]) == 1
    assert rounds[1]["global"]["sites_aggregated"] == 2 and np.isfinite(rounds[2]["global"]["dice"])
    assert RunDir(result.run_dir).checkpoint("best").exists()
