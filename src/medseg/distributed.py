"""Training and prediction on several processes, devices or machines through PyTorch's own engine (torchrun).

``torchrun --nproc-per-node N -m medseg train ... --distributed`` starts N processes; each reads its rank from
the environment torchrun sets (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``) and
joins one process group: ``nccl`` on CUDA (process ``LOCAL_RANK`` on GPU ``LOCAL_RANK``), ``gloo`` on CPU.
Several machines: the same command on each with ``--nnodes M --rdzv-backend c10d --rdzv-endpoint HOST:PORT``.

:class:`Dist` describes the process (``Dist.single()`` outside torchrun, where every helper here does nothing),
and its helpers are the only collectives medseg uses: :meth:`Dist.barrier`, :meth:`Dist.broadcast` (a
picklable value from rank 0), :meth:`Dist.any` (a flag raised by any rank), :meth:`Dist.mean` (a float).
:meth:`Dist.main_first` runs a step on rank 0 only (planning, preprocessing) and re-raises its error on every
rank, so a bad dataset is one error everywhere instead of N-1 processes waiting forever.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.distributed as dist

from medseg.errors import ConfigError, MedsegError

__all__ = ["Dist", "init_distributed"]

logger = logging.getLogger(__name__)

T = TypeVar("T")
_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


@dataclass(frozen=True)
class Dist:
    """This process's place among ``world`` processes (rank 0 writes files and logs)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @classmethod
    def single(cls) -> Dist:
        return cls()

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    def broadcast(self, value: T) -> T:
        """Rank 0's ``value`` on every rank."""
        if not self.active:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]  # type: ignore[no-any-return]

    def any(self, flag: bool) -> bool:
        """True on every rank when any rank's ``flag`` is True."""
        if not self.active:
            return flag
        t = torch.tensor([1.0 if flag else 0.0])
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item() > 0)

    def mean(self, value: float) -> float:
        """The mean of ``value`` over ranks."""
        if not self.active:
            return value
        t = torch.tensor([float(value)], dtype=torch.float64)
        dist.all_reduce(t)
        return float(t.item()) / self.world

    def main_first(self, step: Callable[[], T]) -> T | None:
        """Run ``step`` on rank 0 while the others wait; an error there is raised on every rank (a
        :class:`MedsegError` as itself, anything else as a RuntimeError naming it). Returns rank 0's result
        on rank 0 and None elsewhere."""
        result: T | None = None
        error: BaseException | None = None
        if self.is_main:
            try:
                result = step()
            except Exception as exc:  # re-raised below on every rank, this one included
                error = exc
        failure = None if error is None else (isinstance(error, MedsegError), type(error).__name__, str(error))
        shared = self.broadcast(failure)
        if error is not None:
            raise error
        if shared is not None:
            user_error, name, message = shared
            if not user_error:
                raise RuntimeError(f"rank 0 failed: {name}: {message}")
            echo = MedsegError(message)
            echo.reported_by_rank_zero = True  # type: ignore[attr-defined]  # the CLI prints it once, there
            raise echo
        return result

    def close(self) -> None:
        if self.active and dist.is_initialized():
            dist.destroy_process_group()


def init_distributed(device: str) -> tuple[Dist, torch.device]:
    """Join the process group torchrun prepared; returns this process's :class:`Dist` and device (CUDA:
    ``cuda:LOCAL_RANK``). Outside torchrun a :class:`ConfigError` says how to start it."""
    missing = [name for name in _ENV if name not in os.environ]
    if missing:
        raise ConfigError(
            f"--distributed needs the environment torchrun sets ({', '.join(missing)} missing): start it as "
            "torchrun --nproc-per-node N -m medseg ... --distributed"
        )
    rank, world, local = (int(os.environ[name]) for name in _ENV)
    cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if cuda:
        if torch.cuda.device_count() <= local:
            raise ConfigError(f"process {local} on this machine has no GPU ({torch.cuda.device_count()} visible)")
        torch.cuda.set_device(local)
    target = torch.device(f"cuda:{local}") if cuda else torch.device("cpu")
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo", rank=rank, world_size=world)
    logger.info("process %d of %d on %s (%s)", rank, world, target, dist.get_backend())
    return Dist(rank, world, local), target
