"""Where a training run executes: one CPU process (the default, deterministic), a GPU, or several
processes under ``torchrun`` (DistributedDataParallel; gloo on the CPU, nccl on GPUs).

A :class:`Runtime` says which device this process uses, its rank among ``world`` processes, and the
arithmetic of the forward and backward passes: ``"float64"`` (the book's), ``"float32"``, or ``"bf16"``
(float32 parameters, bfloat16 autocast of the matrix products). Whatever the arithmetic of training,
the tracked spectra are computed in float64 (:func:`lrt.perturbation_spectra`).

Data parallelism keeps the run the same: every process draws the same *global* mini-batch from the
same seeded generator and keeps its own contiguous share (``batch / world`` examples); DDP averages
the gradients, which is the gradient of the global batch's mean loss. A 2-process run therefore
follows the 1-process run up to the order of floating-point sums (tested in
``tests/test_transformer_scale.py``).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch

from lrt.core import checks as _checks
from lrt.core.errors import LrtError

__all__ = ["PRECISIONS", "Runtime", "runtime"]

#: Arithmetic of training: parameter dtype and autocast dtype (None: no autocast).
PRECISIONS = {"float64": (torch.float64, None), "float32": (torch.float32, None), "bf16": (torch.float32, torch.bfloat16)}


@dataclass(frozen=True)
class Runtime:
    """This process's device, its ``rank`` among ``world`` processes, and the training arithmetic
    (a key of :data:`PRECISIONS`).

    >>> rt = Runtime()
    >>> rt.device, rt.main, rt.distributed, rt.dtype
    (device(type='cpu'), True, False, torch.float64)

    Defined in :ref:`ch-beyond-diagonal`.
    """

    device: torch.device = torch.device("cpu")
    rank: int = 0
    world: int = 1
    precision: str = "float64"

    @property
    def main(self) -> bool:
        """True on the process that evaluates, records and writes files (rank 0)."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1

    @property
    def dtype(self) -> torch.dtype:
        """The parameters' dtype."""
        return PRECISIONS[self.precision][0]

    def autocast(self):
        """The context of a forward pass: bf16 autocast on ``device`` for ``"bf16"``, else nothing."""
        low = PRECISIONS[self.precision][1]
        return torch.autocast(self.device.type, dtype=low) if low is not None else contextlib.nullcontext()

    def close(self) -> None:
        """Leave the process group, if this process joined one (at the end of a run)."""
        if self.distributed:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()

    def shard(self, n: int) -> slice:
        """This process's contiguous share of a global batch of ``n`` examples."""
        if n % self.world:
            raise LrtError(f"batch: expected a multiple of the number of processes ({self.world}), got {n}")
        size = n // self.world
        return slice(self.rank * size, (self.rank + 1) * size)


def runtime(device: str = "cpu", precision: str = "float64") -> Runtime:
    """The :class:`Runtime` of this process. Under ``torchrun`` (``WORLD_SIZE`` > 1 in the
    environment) it joins the process group — gloo on ``"cpu"``, nccl on ``"cuda"``, one GPU per
    process (``LOCAL_RANK``) — if that is not done yet; call :meth:`Runtime.close` at the end.

    Arguments:
        device: ``"cpu"`` (default) or ``"cuda"`` (an error if no GPU is visible).
        precision: a key of :data:`PRECISIONS` (``"float64"``, ``"float32"``, ``"bf16"``).

    >>> runtime("cpu", "bf16").dtype
    torch.float32

    Defined in :ref:`ch-beyond-diagonal`.
    """
    _checks.choice("device", device, ("cpu", "cuda"))
    _checks.choice("precision", precision, PRECISIONS)
    if device == "cuda" and not torch.cuda.is_available():
        raise LrtError("device: 'cuda' requested but no GPU is visible to torch (torch.cuda.is_available() is False); use 'cpu'")
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", "0"))
    except ValueError:
        raise LrtError("WORLD_SIZE, RANK, LOCAL_RANK: expected integers in the environment (as torchrun sets them)") from None
    dev = torch.device("cpu")
    if device == "cuda":
        dev = torch.device("cuda", local % torch.cuda.device_count())
        torch.cuda.set_device(dev)
    if world > 1:
        import torch.distributed as dist

        if not dist.is_available():
            raise LrtError("WORLD_SIZE: several processes requested but this torch has no torch.distributed")
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device == "cuda" else "gloo")
        rank, world = dist.get_rank(), dist.get_world_size()
    return Runtime(dev, rank, world, precision)

