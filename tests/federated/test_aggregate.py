"""FedAvg's and FedProx's maths against values worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medseg.federated.aggregate import proximal_gradient, proximal_penalty, weighted_average, weighted_mean
from medseg.federated.proximal import proximal_term


def test_weighted_average_by_examples() -> None:
    a = [np.array([1.0, 2.0], np.float32), np.array([[0.0]], np.float32)]
    b = [np.array([4.0, 8.0], np.float32), np.array([[3.0]], np.float32)]
    # (1*1 + 2*4) / 3 = 3, (2*1 + 8*2) / 3 = 6, (0 + 2*3) / 3 = 2
    out = weighted_average([(a, 1), (b, 2)])
    np.testing.assert_allclose(out[0], [3.0, 6.0])
    np.testing.assert_allclose(out[1], [[2.0]])
    assert out[0].dtype == np.float32


def test_weighted_average_integer_buffers_round_back() -> None:
    out = weighted_average([([np.array(3, np.int64)], 1), ([np.array(4, np.int64)], 3)])
    assert out[0].dtype == np.int64 and int(out[0]) == 4  # 3.75 -> 4


def test_weighted_average_refuses_other_networks() -> None:
    with pytest.raises(ValueError, match="shapes"):
        weighted_average([([np.zeros(2)], 1), ([np.zeros(3)], 1)])
    with pytest.raises(ValueError, match="no site"):
        weighted_average([])


def test_weighted_mean_skips_nan_and_empty_sites() -> None:
    assert weighted_mean([(0.5, 1), (0.8, 3), (float("nan"), 5), (0.1, 0)]) == pytest.approx((0.5 + 2.4) / 4)
    assert np.isnan(weighted_mean([(float("nan"), 2)]))


def test_proximal_penalty_and_gradient() -> None:
    w, g = [np.array([1.0, 3.0]), np.array([2.0])], [np.array([0.0, 1.0]), np.array([2.0])]
    assert proximal_penalty(w, g, mu=0.5) == pytest.approx(0.25 * (1 + 4 + 0))
    np.testing.assert_allclose(proximal_gradient(w[0], g[0], 0.5), [0.5, 1.0])


def test_proximal_term_adds_mu_times_distance_to_the_gradient() -> None:
    """One SGD step on loss = sum(w) (gradient 1): w' = w - lr * (1 + mu (w - g)); without the term, w - lr."""
    w0, g = torch.tensor([1.0, -2.0]), torch.tensor([0.0, 0.0])
    lr, mu = 0.1, 0.5

    def step(with_term: bool) -> torch.Tensor:
        w = torch.nn.Parameter(w0.clone())
        optimizer = torch.optim.SGD([w], lr=lr)
        optimizer.zero_grad()
        w.sum().backward()
        if with_term:
            with proximal_term([g], mu):
                optimizer.step()
        else:
            optimizer.step()
        return w.detach()

    expected = w0 - lr * (1 + mu * (w0 - g))  # [1 - 0.1 * 1.5, -2 - 0.1 * 0] = [0.85, -2.0]
    torch.testing.assert_close(step(True), expected)
    torch.testing.assert_close(step(False), w0 - lr)
    torch.testing.assert_close(step(False), w0 - lr)  # the hook is gone after the block


def test_proximal_term_ignores_other_networks() -> None:
    w = torch.nn.Parameter(torch.tensor([1.0, 1.0, 1.0]))
    optimizer = torch.optim.SGD([w], lr=1.0)
    w.sum().backward()
    with proximal_term([torch.zeros(2)], mu=10.0):  # another network's shapes: not this optimiser
        optimizer.step()
    torch.testing.assert_close(w.detach(), torch.zeros(3))
