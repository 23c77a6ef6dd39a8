"""What a site sends: only weight arrays shaped like the network's and scalar metrics; no image, label or path.

The check inspects the exact Flower messages a site's client returns (FitRes, EvaluateRes,
GetPropertiesRes: what gRPC serialises and sends), and what the server received over 127.0.0.1."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from flwr.common import Code, EvaluateIns, FitIns, GetPropertiesIns, ndarrays_to_parameters, parameters_to_ndarrays

from medseg.config.plans import load_plans
from medseg.datasets.dataset import load_dataset
from medseg.federated.federation import simulate
from medseg.federated.options import FederatedOptions, SiteConfig
from medseg.federated.site import SiteClient, weights_of
from medseg.inference.network import network_for
from medseg.io.images import read_channels
from medseg.serial import to_dict


def _forbidden_strings(site: SiteConfig) -> list[str]:
    dataset = load_dataset(site.dataset)
    return [str(site.dataset.resolve()), str(site.work_dir), *(c.case_id for c in dataset.cases)]


def test_a_site_sends_only_weights_and_scalars(sites: list[SiteConfig], tiny_plans: Path) -> None:
    site = sites[0]
    plans = load_plans(tiny_plans)
    model_shapes = [tuple(t.shape) for t in network_for(plans).state_dict().values()]
    image, _ = read_channels(list(load_dataset(site.dataset).labelled_cases[0].channels))
    config = {"plans": json.dumps(to_dict(plans)), "round": 1, "rounds": 1, "local_epochs": 1, "mu": 0.0}
    initial = ndarrays_to_parameters(weights_of(network_for(plans).state_dict()))
    client = SiteClient(site).to_client()

    fit_res = client.fit(FitIns(initial, config))
    assert fit_res.status.code == Code.OK
    arrays = parameters_to_ndarrays(fit_res.parameters)
    assert [a.shape for a in arrays] == model_shapes  # exactly the network's arrays, in order, nothing more
    assert all(a.shape != image.shape[1:] and a.shape != image.shape for a in arrays)
    assert all(isinstance(v, (int, float)) for v in fit_res.metrics.values())
    assert fit_res.num_examples == len(SiteClient(site).run.load_record().train)

    eval_res = client.evaluate(EvaluateIns(fit_res.parameters, config))
    assert all(isinstance(v, (int, float)) for v in eval_res.metrics.values())

    properties = client.get_properties(GetPropertiesIns({"fingerprint": True})).properties
    assert set(properties) == {"site", "fingerprint"}
    sent = json.dumps(properties) + json.dumps({k: v for k, v in fit_res.metrics.items()})
    for secret in _forbidden_strings(site):  # no path, no file or case name
        assert secret not in sent
    fingerprint = json.loads(str(properties["fingerprint"]))
    assert np.asarray(fingerprint["shapes"]).shape == (
        len(load_dataset(site.dataset).labelled_cases),
        2,
    )  # one (H, W) per case


def test_the_server_received_only_the_networks_arrays(
    tmp_path: Path, sites: list[SiteConfig], tiny_plans: Path
) -> None:
    result = simulate(sites[:2], tmp_path / "global", FederatedOptions(rounds=1, plans=tiny_plans, device="cpu"))
    model_arrays = [
        f"{'x'.join(map(str, t.shape))} {str(t.dtype).removeprefix('torch.')}"
        for t in network_for(load_plans(tiny_plans)).state_dict().values()
    ]
    received = result.record["rounds"][0]["sites"]
    assert sorted(received) == ["site0", "site1"]
    for site in received.values():
        assert site["sent"]["arrays"] == model_arrays
        assert set(site["sent"]["metrics"]) <= {"train_loss", "lr", "seconds", "local_dice"}
