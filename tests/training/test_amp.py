"""Tests of medseg.training.amp: reading bf16 support from /proc/cpuinfo, and the bounded CPU AMP probe.

The probe is timed with a fake clock that the model itself advances, so no test depends on wall time.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

import pytest
import torch
from torch import nn

from medseg.training import amp
from medseg.training.amp import CpuBf16, cpuinfo_field, measure_cpu_amp, native_bf16

INTEL_SPR = """processor\t: 0
vendor_id\t: GenuineIntel
cpu family\t: 6
model\t\t: 143
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu vme sse sse2 avx avx2 avx512f avx512bw avx512_vnni avx512_bf16 amx_bf16 amx_tile amx_int8
"""
INTEL_COOPER_LAKE = """model name\t: Intel(R) Xeon(R) Platinum 8380H CPU @ 2.90GHz
flags\t\t: fpu sse2 avx avx2 avx512f avx512bw avx512vl avx512_vnni avx512_bf16
"""
INTEL_ICE_LAKE = """model name\t: Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz
flags\t\t: fpu sse2 avx avx2 fma avx512f avx512dq avx512bw avx512vl avx512_vnni avx512_vbmi2
"""
AMD_EPYC_AVX2 = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 1
model name\t: AMD EPYC 7B13
flags\t\t: fpu vme de pse tsc msr sse sse2 ssse3 fma sse4_1 sse4_2 avx f16c avx2 bmi2 sha_ni vaes
"""
ARM_GRAVITON3 = """processor\t: 0
BogoMIPS\t: 2100.00
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics sve asimddp i8mm bf16 svebf16 rng
CPU implementer\t: 0x41
CPU part\t: 0xd40
"""
ARM_GRAVITON2 = """processor\t: 0
BogoMIPS\t: 243.75
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp
CPU implementer\t: 0x41
CPU part\t: 0xd0c
"""


@pytest.mark.parametrize(
    ("cpuinfo", "capability", "machine", "native", "flags"),
    [
        (INTEL_SPR, "AVX512", "x86_64", True, {"avx512_bf16", "amx_bf16"}),
        (INTEL_COOPER_LAKE, "AVX512", "x86_64", True, {"avx512_bf16"}),
        (INTEL_ICE_LAKE, "AVX512", "x86_64", False, set()),
        (AMD_EPYC_AVX2, "AVX2", "x86_64", False, set()),
        (ARM_GRAVITON3, "SVE256", "aarch64", True, {"bf16"}),
        (ARM_GRAVITON2, "DEFAULT", "aarch64", False, set()),
        ("", "AVX2", "AMD64", False, None),  # no /proc/cpuinfo (Windows): x86 below AVX-512 has no bf16
        ("", "AVX512", "AMD64", None, None),  # no /proc/cpuinfo, AVX-512: cannot tell
        ("", "DEFAULT", "arm64", None, None),  # no /proc/cpuinfo (macOS): cannot tell
    ],
)
def test_native_bf16_reads_the_flags(
    cpuinfo: str, capability: str, machine: str, native: bool | None, flags: set[str] | None
) -> None:
    assert native_bf16(cpuinfo, capability, machine) == (native, None if flags is None else frozenset(flags))


def test_cpuinfo_field_finds_the_model_name_not_the_model_number() -> None:
    assert cpuinfo_field(AMD_EPYC_AVX2, "model name") == "AMD EPYC 7B13"
    assert cpuinfo_field(AMD_EPYC_AVX2, "model") == "1"
    assert cpuinfo_field(ARM_GRAVITON3, "model name") is None


class FakeClock:
    """A clock that only the model moves: each forward of :class:`Paced` adds its seconds. Shared, not
    copied, by ``copy.deepcopy`` (the probe trains a copy of the model), and it counts forwards per dtype."""

    def __init__(self) -> None:
        self.now = 0.0
        self.steps = {"float32": 0, "bf16": 0}

    def __call__(self) -> float:
        return self.now

    def __deepcopy__(self, memo: dict[int, Any]) -> FakeClock:
        return self


class Paced(nn.Module):
    """A 1x1 convolution whose forward takes ``float32_s`` seconds of ``clock``, or ``bf16_s`` under CPU
    autocast; the convolution after the delay lets the probe notice a step past its limit."""

    def __init__(self, clock: FakeClock, float32_s: float, bf16_s: float) -> None:
        super().__init__()
        self.clock, self.float32_s, self.bf16_s = clock, float32_s, bf16_s
        self.conv = nn.Conv2d(1, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bf16 = torch.is_autocast_enabled("cpu")
        self.clock.steps["bf16" if bf16 else "float32"] += 1
        self.clock.now += self.bf16_s if bf16 else self.float32_s
        return self.conv(x)


class Refuses(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise AssertionError("the probe ran the model on a CPU without native bf16")


def claim(monkeypatch: pytest.MonkeyPatch, native: bool | None) -> None:
    """Make :func:`medseg.training.amp.cpu_bf16` report ``native``."""
    flags = frozenset({"amx_bf16"}) if native else frozenset()
    cpu = CpuBf16(native, "Test CPU", "AVX512" if native else "AVX2", flags)
    monkeypatch.setattr(amp, "cpu_bf16", lambda: cpu)


def probe(
    float32_s: float, bf16_s: float, budget_s: float = amp.PROBE_BUDGET_S
) -> tuple[torch.dtype | None, dict[str, int]]:
    """The probe's choice for a model with these step times, and its forwards per dtype."""
    clock = FakeClock()
    image, target = torch.ones(2, 1, 4, 4), torch.zeros(2, 1, 4, 4)
    choice = measure_cpu_amp(
        Paced(clock, float32_s, bf16_s), nn.MSELoss(), image, target, budget_s=budget_s, clock=clock
    )
    return choice, clock.steps


def test_no_native_bf16_means_float32_without_running_the_model(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    claim(monkeypatch, False)
    with caplog.at_level(logging.INFO, logger="medseg.training.amp"):
        assert measure_cpu_amp(Refuses(), nn.MSELoss(), torch.ones(2, 1, 4, 4), torch.zeros(2, 1, 4, 4)) is None
    assert "Test CPU" in caplog.text and "no native bf16" in caplog.text


@pytest.mark.parametrize("native", [True, None])
def test_bf16_wins_when_at_least_ten_percent_faster(monkeypatch: pytest.MonkeyPatch, native: bool | None) -> None:
    claim(monkeypatch, native)  # unknown support (None) is measured like claimed support
    assert probe(0.1, 0.05) == (torch.bfloat16, {"float32": 3, "bf16": 3})


def test_bf16_loses_when_less_than_ten_percent_faster(monkeypatch: pytest.MonkeyPatch) -> None:
    claim(monkeypatch, True)
    assert probe(0.1, 0.095) == (None, {"float32": 3, "bf16": 3})


def test_slow_bf16_is_abandoned_in_its_first_step(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    claim(monkeypatch, True)
    with caplog.at_level(logging.INFO, logger="medseg.training.amp"):
        assert probe(0.1, 2.5) == (None, {"float32": 3, "bf16": 1})  # 25x: one bf16 forward, cut short
    assert "Test CPU" in caplog.text and "float32" in caplog.text


def test_float32_steps_stop_at_their_share_of_the_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    claim(monkeypatch, True)  # 0.5 x 4.5 s for float32: two 0.8 s steps fit, a third would not
    assert amp.FLOAT32_SHARE * amp.PROBE_BUDGET_S == 2.25
    assert probe(0.8, 0.3) == (torch.bfloat16, {"float32": 2, "bf16": 2})


def test_a_float32_step_over_the_budget_skips_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    claim(monkeypatch, True)
    assert probe(3.0, 0.1) == (None, {"float32": 1, "bf16": 0})


def test_a_step_is_cut_short_in_its_backward_pass() -> None:
    clock, model = FakeClock(), nn.Sequential(nn.Conv2d(1, 1, 1), nn.ReLU())
    with amp._deadline(model, 1.0, clock):
        loss = model(torch.ones(1, 1, 2, 2)).sum()
        clock.now = 2.0
        with pytest.raises(amp._OverBudget):
            loss.backward()
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def weighted_mse(output: torch.Tensor, target: torch.Tensor, *, weight: torch.Tensor) -> torch.Tensor:
    if weight.shape != output.shape:
        raise ValueError(f"weight {tuple(weight.shape)} does not match output {tuple(output.shape)}")
    return (weight * (output - target) ** 2).mean()


def test_extra_targets_bound_by_partial_reach_the_loss_at_the_planned_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    claim(monkeypatch, True)
    clock = FakeClock()
    loss_fn = functools.partial(weighted_mse, weight=torch.ones(2, 1, 4, 4))
    image, target = torch.ones(2, 1, 4, 4), torch.zeros(2, 1, 4, 4)
    assert measure_cpu_amp(Paced(clock, 0.1, 0.05), loss_fn, image, target, clock=clock) == torch.bfloat16
    assert clock.steps == {"float32": 3, "bf16": 3}
