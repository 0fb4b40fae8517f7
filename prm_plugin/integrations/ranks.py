"""Data-parallel ranks for ``lm_eval --model prm_guided`` under ``accelerate launch``.

lm-eval's data parallelism (``accelerate launch -m lm_eval ...``, or ``torchrun``) starts
one evaluator process per rank; the evaluator hands each rank every ``world_size``-th
doc, pads the ranks to the same number of requests, and gathers the logged samples and
metrics on rank 0 through the model's ``all_gather`` / ``gather_object`` / ``barrier``.
``Ranks`` is what ``PRMGuidedLM`` needs for that, set up as lm-eval's ``hf`` model does:
an ``accelerate.Accelerator`` (gloo on CPU, NCCL with one GPU per ``LOCAL_RANK``) when
the launcher's ``WORLD_SIZE`` is above 1, else a single rank that needs no accelerate.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any


@dataclass
class Ranks:
    """This process's rank among ``world_size`` evaluator processes.

    Attributes:
        rank: the global rank (``accelerator.process_index``).
        world_size: the number of processes.
        accelerator: the ``accelerate.Accelerator``; None for a single process.
        device: the rank's device (``cuda:<LOCAL_RANK>`` on GPUs, ``cpu``); None for a
            single process (the model's ``device=`` setting decides).
    """

    rank: int = 0
    world_size: int = 1
    accelerator: Any = None
    device: Any = None

    @classmethod
    def detect(cls, device: str | None = None) -> Ranks:
        """The ranks the launcher set up (``WORLD_SIZE`` > 1), else a single rank.

        Args:
            device: the model's ``device=`` setting: ``cpu`` joins the ranks over gloo even
                on a machine with GPUs (so does a machine without any).
        """
        if _env_int("WORLD_SIZE") <= 1:
            return cls()
        try:
            from accelerate import Accelerator, InitProcessGroupKwargs
        except ImportError as exc:
            raise ImportError(
                "prm_guided: WORLD_SIZE>1 (a data-parallel launch) needs accelerate to join the ranks: "
                "pip install accelerate, and launch with `accelerate launch -m lm_eval ...`."
            ) from exc
        # ranks finish their shares at different times: wait at the gathers as long as hf does
        cpu = str(device or "").startswith("cpu") or not _has_accelerator()
        accelerator = Accelerator(cpu=cpu, kwargs_handlers=[InitProcessGroupKwargs(timeout=timedelta(weeks=52))])
        if accelerator.num_processes <= 1:
            return cls()
        device_ = accelerator.device
        if device_.type == "cpu":  # accelerate says cpu:0 on every CPU rank
            import torch

            device_ = torch.device("cpu")
        return cls(rank=accelerator.process_index, world_size=accelerator.num_processes,
                   accelerator=accelerator, device=device_)

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def shard(self) -> str | None:
        """The tag of this rank's own files (``rank1``); None for a single process."""
        return f"rank{self.rank}" if self.distributed else None

    def placement(self, device: str | None) -> str | None:
        """Where this rank's native policy and PRM go: the rank's own device, unless
        ``device=`` names another kind (``device=cpu`` on a GPU launch stays on the CPU)."""
        if not self.distributed:
            return device
        mine = str(self.device)
        if device is None or device.split(":")[0] == mine.split(":")[0]:
            return mine
        return device

    # -- the collectives lm-eval's evaluator calls (as lm_eval.models.huggingface.HFLM) --
    def all_gather(self, tensor: Any) -> Any:
        return self.accelerator.gather(tensor) if self.distributed else tensor

    def gather_object(self, obj: Any, dst: int = 0) -> list[Any] | None:
        if not self.distributed:
            return [obj]
        import torch.distributed as dist

        out: list[Any] | None = [None] * self.world_size if self.rank == dst else None
        dist.gather_object(obj=obj, object_gather_list=out, dst=dst)
        return out

    def barrier(self) -> None:
        if self.distributed:
            self.accelerator.wait_for_everyone()


def _has_accelerator() -> bool:
    import torch

    probe = getattr(torch, "accelerator", None)  # torch >= 2.6: CUDA, XPU, MPS, ...
    return bool(probe.is_available()) if probe is not None else torch.cuda.is_available()


def _env_int(name: str) -> int:
    try:
        return int(os.environ.get(name, "1") or 1)
    except ValueError:
        return 1
