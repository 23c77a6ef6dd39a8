"""Mixed precision: which autocast dtype training uses.

On CUDA, ``auto`` is bf16 where the GPU supports it, else fp16 (with a gradient scaler). On the CPU, bf16
pays only on CPUs with native bf16 arithmetic (x86 ``avx512_bf16`` / ``amx_bf16``, aarch64 ``bf16``);
elsewhere it is many times slower than float32 (about 25x on an AVX2-only AMD EPYC). So ``auto`` on the CPU
first asks the CPU: without native bf16 it trains in float32 at once; with it, it times a few training
steps of both, within a hard budget of a few seconds, because some such CPUs are still not faster in bf16.
"""

from __future__ import annotations

import copy
import logging
import math
import platform
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch

__all__ = [
    "PROBE_BUDGET_S",
    "CpuBf16",
    "amp_dtype",
    "cpu_bf16",
    "cpuinfo_field",
    "measure_cpu_amp",
    "native_bf16",
]

logger = logging.getLogger(__name__)

PROBE_BUDGET_S = 4.5  # wall-clock seconds for timing both dtypes, all steps together (the promise: < 5 s)
PROBE_STEPS = 3  # steps per dtype at most; the first warms up
FLOAT32_SHARE = 0.5  # of the budget for the float32 steps; bf16 gets at most BF16_STEP_LIMIT times that
BF16_STEP_LIMIT = 1.5  # a bf16 step slower than this times the float32 one is abandoned (bf16 loses)
BF16_SPEEDUP = 0.9  # bf16 only when its step takes at most this fraction of the float32 one

_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})  # x86 'flags', aarch64 'Features'
_X86 = frozenset({"x86_64", "amd64", "i386", "i686", "x86"})


def amp_dtype(setting: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for an explicit ``setting`` ('off', 'bf16', 'fp16'), or for 'auto' on CUDA
    (bf16 where supported, else fp16). 'auto' on CPU is decided by :func:`measure_cpu_amp`."""
    if setting == "off" or (setting == "auto" and device.type != "cuda"):
        return None
    if setting == "fp16":
        return torch.float16
    if setting == "bf16" or torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16


@dataclass(frozen=True)
class CpuBf16:
    """What this CPU says about bf16. ``native`` is None when it cannot tell (no /proc/cpuinfo and an
    AVX-512 or non-x86 CPU); ``flags`` are the bf16 features it lists (None: no flags list to read)."""

    native: bool | None
    model: str
    capability: str  # torch.backends.cpu.get_cpu_capability(): the vector ISA torch's kernels use
    flags: frozenset[str] | None


def cpuinfo_field(cpuinfo: str, key: str) -> str | None:
    """The value of the first ``key : value`` line of /proc/cpuinfo text (key case-insensitive), or None.

    >>> cpuinfo_field("processor\\t: 0\\nmodel name\\t: AMD EPYC 7B13\\n", "model name")
    'AMD EPYC 7B13'
    """
    for line in cpuinfo.splitlines():
        name, sep, value = line.partition(":")
        if sep and name.strip().lower() == key.lower():
            return value.strip()
    return None


def native_bf16(cpuinfo: str, capability: str, machine: str) -> tuple[bool | None, frozenset[str] | None]:
    """Whether a CPU has native bf16 arithmetic, from its /proc/cpuinfo text ('' where there is none), torch's
    CPU capability and ``platform.machine()``; with the bf16 flags found (None: no flags line).

    The flags decide where there are any (x86 'flags', aarch64 'Features'). Without them an x86 CPU below
    AVX-512 has none (every x86 bf16 extension needs AVX-512); anything else is unknown (None)."""
    listed = cpuinfo_field(cpuinfo, "flags") or cpuinfo_field(cpuinfo, "Features")
    if listed is not None:
        flags = frozenset(listed.split()) & _BF16_FLAGS
        return bool(flags), flags
    if machine.lower() in _X86 and not capability.startswith("AVX512"):
        return False, None
    return None, None


def cpu_bf16() -> CpuBf16:
    """Read this CPU's bf16 support (see :func:`native_bf16`) and its model name."""
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        cpuinfo = ""
    capability = torch.backends.cpu.get_cpu_capability()
    native, flags = native_bf16(cpuinfo, capability, platform.machine())
    model = cpuinfo_field(cpuinfo, "model name") or platform.processor() or platform.machine() or "unknown CPU"
    return CpuBf16(native, model, capability, flags)


class _OverBudget(Exception):
    """A probe step ran past its time limit."""


@contextmanager
def _deadline(module: torch.nn.Module, end: float, clock: Callable[[], float]) -> Iterator[None]:
    """Raise :class:`_OverBudget` inside a forward or backward pass of ``module`` once ``clock()`` passes
    ``end``: checked before every submodule's forward and before the backward of every tensor it returns."""

    def check(*_: object) -> None:
        if clock() > end:
            raise _OverBudget

    def watch_backward(_module: torch.nn.Module, _inputs: object, output: object) -> None:
        if isinstance(output, torch.Tensor) and output.grad_fn is not None:
            output.grad_fn.register_prehook(check)

    handles = [m.register_forward_pre_hook(check) for m in module.modules()]
    handles += [m.register_forward_hook(watch_backward) for m in module.modules()]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _time_steps(
    probe: torch.nn.Module,
    loss_fn: Callable[..., torch.Tensor],
    batch: tuple[torch.Tensor, torch.Tensor],
    dtype: torch.dtype | None,
    limits: Sequence[float],
    end: float,
    clock: Callable[[], float],
) -> tuple[list[float], bool]:
    """Seconds of forward + backward steps of ``probe`` under ``dtype`` autocast, one per entry of ``limits``
    (each step's limit, seconds). Stops early, not abandoned, when another step would pass ``end``; stops
    abandoned (True) at the first step that passes its limit or ``end``, which is cut short and not counted."""
    times: list[float] = []
    for limit in limits:
        started = clock()
        if times and started + times[-1] > end:
            break
        try:
            with _deadline(probe, min(started + limit, end), clock):
                with torch.autocast("cpu", dtype=dtype) if dtype is not None else nullcontext():
                    loss = loss_fn(probe(batch[0]), batch[1])
                loss.backward()
        except _OverBudget:
            return times, True
        finally:
            probe.zero_grad(set_to_none=True)
        elapsed = clock() - started
        if elapsed > limit:
            return times, True
        times.append(elapsed)
    return times, False


def _step_seconds(times: Sequence[float]) -> float:
    """One step's time: the fastest after the warm-up step, or the warm-up step when it is the only one."""
    return min(times[1:]) if len(times) > 1 else times[0]


def _describe(cpu: CpuBf16) -> str:
    """'CPU <model> (bf16 flags: ..., torch kernels AVX512)' for the log."""
    flags = "unreadable" if cpu.flags is None else ", ".join(sorted(cpu.flags)) or "none"
    return f"CPU {cpu.model} (bf16 flags: {flags}; torch kernels {cpu.capability})"


def _choose(
    fp32: Sequence[float], bf16: Sequence[float], abandoned: bool, cpu: CpuBf16, budget_s: float, seconds: float
) -> torch.dtype | None:
    """bf16 when it was measured at least 10 % faster than float32 over the same steps; log the figures."""
    where = _describe(cpu)
    if abandoned or not bf16:
        logger.info(
            "%s: float32 step %.3f s; a bf16 step took over %.1fx that or passed the %.1f s budget "
            "(probe %.1f s): training in float32",
            where,
            _step_seconds(fp32),
            BF16_STEP_LIMIT,
            budget_s,
            seconds,
        )
        return None
    fp32_s, bf16_s = _step_seconds(fp32[: len(bf16)]), _step_seconds(bf16)
    choice = torch.bfloat16 if bf16_s <= BF16_SPEEDUP * fp32_s else None
    logger.info(
        "%s: step %.3f s float32, %.3f s bf16 (%d + %d steps, probe %.1f s): training in %s",
        where,
        fp32_s,
        bf16_s,
        len(fp32),
        len(bf16),
        seconds,
        "bf16" if choice else "float32",
    )
    return choice


def measure_cpu_amp(
    model: torch.nn.Module,
    loss_fn: Callable[..., torch.Tensor],
    image: torch.Tensor,
    target: torch.Tensor,
    *,
    budget_s: float = PROBE_BUDGET_S,
    clock: Callable[[], float] = time.perf_counter,
) -> torch.dtype | None:
    """'auto' AMP on CPU: bf16 autocast or None (float32) for training ``model`` with ``loss_fn`` on batches
    like ``image`` (B, C, *patch) and ``target`` (B, ...) as the loss takes it (``loss_fn`` may be a
    ``functools.partial`` binding extra targets).

    A CPU without native bf16 gets float32 without measuring. Otherwise a copy of ``model`` times forward +
    backward at the planned batch, float32 then bf16, within ``budget_s`` seconds of ``clock`` in all (a step is cut
    short when it passes its limit), and bf16 is chosen only if at least 10 % faster. (On the 2-core
    benchmark machine, with AMX, bf16 took 0.46-0.57x the float32 time at equal Dice.)"""
    cpu = cpu_bf16()
    if cpu.native is False:
        logger.info(
            "%s has no native bf16, where bf16 is many times slower: training in float32 without measuring",
            _describe(cpu),
        )
        return None
    # at the planned batch: a small network is too little work for bf16 to pay (the demo's 2D net:
    # 0.026 s bf16 against 0.023 s float32, 0.15 against 0.28 s at its batch of 32)
    batch, probe, started = (image, target), copy.deepcopy(model).train(), clock()
    fp32_end = started + FLOAT32_SHARE * budget_s
    fp32, abandoned = _time_steps(probe, loss_fn, batch, None, [math.inf] * PROBE_STEPS, fp32_end, clock)
    if abandoned:
        logger.info(
            "%s: a float32 training step takes over %.1f s, too long to compare with bf16 "
            "within the %.1f s budget: training in float32 (set amp to 'bf16' to use it anyway)",
            _describe(cpu),
            FLOAT32_SHARE * budget_s,
            budget_s,
        )
        return None
    limits = [BF16_STEP_LIMIT * t for t in fp32]
    bf16, abandoned = _time_steps(probe, loss_fn, batch, torch.bfloat16, limits, started + budget_s, clock)
    return _choose(fp32, bf16, abandoned, cpu, budget_s, clock() - started)
