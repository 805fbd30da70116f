"""Data-parallel plumbing: the process group from torchrun's environment, rank and world, the sums.

`torchrun --nproc-per-node N -m mnistlab train ...` starts N processes with RANK, WORLD_SIZE and
LOCAL_RANK set; `init_from_env` joins them into one process group (gloo on the CPU, NCCL on CUDA with
one GPU per rank, cuda:LOCAL_RANK). Without those variables (or with WORLD_SIZE 1) nothing is
initialised and `current()` is the single process: rank 0 of 1, every helper here a no-op.

What the Trainer does with it (training/trainer.py):
- each global batch of `--batch-size` images, sliced from the epoch's one seeded permutation, is cut
  into `world` contiguous shares (`share`): every image is seen once per epoch, none is repeated;
- per step one all-reduce sums (loss * items, items, correct, stop requested) over the ranks, and each
  rank back-propagates its loss sum / the global item count (times `world`, which DDP's mean of the
  gradients divides away): the gradient of the global batch's mean loss, whatever the shares;
- evaluation splits a split into `world` contiguous parts and sums the losses and counts exactly.

A collective that fails because another rank died becomes a DistributedError (one line, non-zero
exit); a peer that hangs fails it after TIMEOUT_S (MNISTLAB_DIST_TIMEOUT seconds, default 60).
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as tdist
import torch.nn as nn

from mnistlab.errors import DistributedError, MnistlabError
from mnistlab.training.launch import env_world

TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Dist:
    """This process's place in the job: rank `rank` of `world` (local rank `local_rank` on its node)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    comm_device: torch.device = torch.device("cpu")  # where collectives' tensors live: cuda:LOCAL_RANK for NCCL

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def share(self, start: int, stop: int) -> tuple[int, int]:
        """This rank's contiguous part of the items start..stop: sizes differ by at most one, ranks in order."""
        n = stop - start
        return start + n * self.rank // self.world, start + n * (self.rank + 1) // self.world

    # ------------------------------------------------------------------ collectives (no-ops for one process)

    def all_reduce_sum(self, t: torch.Tensor) -> torch.Tensor:
        """`t` summed over the ranks, in place (returned for convenience)."""
        if self.active:
            _guard(lambda: tdist.all_reduce(t, op=tdist.ReduceOp.SUM), self)
        return t

    def all_gather_rows(self, t: torch.Tensor) -> torch.Tensor:
        """Every rank's rows of `t` (same trailing shape, any row count), concatenated in rank order."""
        if not self.active:
            return t
        counts = torch.zeros(self.world, dtype=torch.long, device=t.device)
        counts[self.rank] = t.shape[0]
        self.all_reduce_sum(counts)
        most = int(counts.max())
        padded = torch.zeros((most, *t.shape[1:]), dtype=t.dtype, device=t.device)
        padded[: t.shape[0]] = t
        parts = [torch.empty_like(padded) for _ in range(self.world)]
        _guard(lambda: tdist.all_gather(parts, padded), self)
        return torch.cat([p[: int(c)] for p, c in zip(parts, counts)])

    def broadcast_buffers(self, model: nn.Module) -> None:
        """Rank 0's buffers (batch norm running statistics) on every rank, so all evaluate one model."""
        if self.active:
            for b in model.buffers():
                _guard(lambda b=b: tdist.broadcast(b, src=0), self)

    def reduce_step(self, loss: torch.Tensor, n: int, correct: torch.Tensor | None,
                    stop: bool) -> tuple[torch.Tensor, torch.Tensor, int, torch.Tensor | None, bool]:
        """One all-reduce per training step over the ranks' shares of a global batch.

        `loss` is this rank's mean loss over its `n` items. Returns (the loss to back-propagate: this
        rank's loss sum / the global count * world, so that DDP's mean gives the global batch's
        gradient; the global mean loss; the global item count; the global correct count or None;
        whether any rank asked to stop).
        """
        t = torch.stack([loss.detach().double() * n, torch.tensor(float(n), dtype=torch.float64, device=loss.device),
                         (correct.double() if correct is not None else torch.zeros((), dtype=torch.float64, device=loss.device)),
                         torch.tensor(float(stop), dtype=torch.float64, device=loss.device)])
        self.all_reduce_sum(t)
        total, count, right, stops = t.tolist()  # one sync per step
        count_i = int(count)
        back = loss * (n * self.world / max(1, count_i))
        mean = torch.tensor(total / max(1, count_i), dtype=loss.dtype, device=loss.device)
        right_t = torch.tensor(int(right), dtype=torch.long, device=loss.device) if correct is not None else None
        return back, mean, count_i, right_t, stops > 0

    def agree(self, message: str | None) -> str | None:
        """Rank 0's message (None: fine) on every rank: all fail together on what only rank 0 checked."""
        if not self.active:
            return message
        box = [message]
        _guard(lambda: tdist.broadcast_object_list(box, src=0), self)
        return box[0]


_current = Dist()


def current() -> Dist:
    """The process's Dist: set by init_from_env, rank 0 of 1 otherwise."""
    return _current


def init_from_env(device: torch.device) -> Dist:
    """Join torchrun's process group (once) when WORLD_SIZE > 1; the device type picks the backend.

    On CUDA each rank takes cuda:LOCAL_RANK (set as the current device, so 'cuda' means it).
    """
    global _current
    if _current.active or env_world() <= 1:
        return _current
    rank, world, local = int(os.environ["RANK"]), env_world(), int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        if local >= torch.cuda.device_count():
            raise DistributedError(f"rank {rank}: LOCAL_RANK {local} but only {torch.cuda.device_count()} CUDA devices: "
                                   "use --nproc-per-node at most the GPUs per node")
        torch.cuda.set_device(local)
        backend = "nccl"
    elif device.type == "cpu":
        backend = "gloo"
    else:
        raise DistributedError(f"data-parallel training runs on CPUs (gloo) or CUDA (NCCL), not {device.type}")
    timeout = datetime.timedelta(seconds=float(os.environ.get("MNISTLAB_DIST_TIMEOUT", TIMEOUT_S)))
    try:
        kwargs = {"device_id": torch.device("cuda", local)} if backend == "nccl" else {}
        tdist.init_process_group(backend, rank=rank, world_size=world, timeout=timeout, **kwargs)
    except Exception as e:  # noqa: BLE001  a rendezvous that failed or timed out
        raise DistributedError(f"rank {rank} of {world}: could not join the process group ({backend}): "
                               f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    _current = Dist(rank, world, local, torch.device("cuda", local) if backend == "nccl" else torch.device("cpu"))
    return _current


def shutdown() -> None:
    """Leave the process group (at the end of a command)."""
    global _current
    if tdist.is_available() and tdist.is_initialized():
        tdist.destroy_process_group()
    _current = Dist()


def wrap(model: nn.Module, dist: Dist) -> nn.Module:
    """The model as training calls it: DistributedDataParallel over the ranks, or the model itself.

    Batch norm keeps per-rank statistics: each rank normalises its share by the share's own mean and
    variance (as one process would with a batch of that size), and DDP broadcasts rank 0's running
    statistics at each forward; `Dist.broadcast_buffers` does it again before evaluating.
    """
    if not dist.active:
        return model
    from torch.nn.parallel import DistributedDataParallel

    device_ids = [dist.local_rank] if next(model.parameters()).device.type == "cuda" else None
    return _guard(lambda: DistributedDataParallel(model, device_ids=device_ids), dist)


def _guard(fn, dist: Dist):
    """Run a collective; a failure (a rank died, a timeout) becomes one DistributedError line."""
    try:
        return fn()
    except MnistlabError:
        raise
    except Exception as e:  # noqa: BLE001  gloo/NCCL raise RuntimeError subclasses with long texts
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DistributedError(f"rank {dist.rank} of {dist.world}: lost contact with the other ranks (one of them "
                               f"failed, was killed or hung past the {os.environ.get('MNISTLAB_DIST_TIMEOUT', TIMEOUT_S)} s "
                               f"timeout): {first[:200]}") from None
