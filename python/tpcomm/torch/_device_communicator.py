"""A CPU drop-in for vLLM's ``DeviceCommunicatorBase`` built on tpcomm.

vLLM calls these methods from inside its own custom operators. all_reduce,
all_gather and reduce_scatter go through the ``torch.ops.tpcomm`` operators,
so a caller that traces through them (torch.fx, make_fx) records the same
compiler-safe operators that user code would.

Unlike torch.distributed, ``all_reduce`` never writes its input: the result
is a new tensor. That is the contract vLLM's callers rely on (they always use
the return value) and it removes the need for a defensive clone.
"""

from __future__ import annotations

from typing import Optional, Sequence, Union

import torch

from .. import _groups
from .._communicator import Communicator
from . import _ops  # noqa: F401  (registers torch.ops.tpcomm)

__all__ = ["DeviceCommunicator"]


class DeviceCommunicator:
    """vLLM-compatible collectives for tensor parallelism on CPU.

    Args:
        group: name of a registered communicator (``tpcomm.init()`` registers
            "world"; see ``tpcomm.torch.register_group``).
        device: accepted for signature compatibility; must be a CPU device.
        unique_name: free-form name, kept for vLLM's bookkeeping.
    """

    def __init__(
        self,
        group: str = "world",
        device: Optional[torch.device] = None,
        unique_name: str = "",
    ) -> None:
        if device is not None and torch.device(device).type != "cpu":
            raise ValueError(f"tpcomm: DeviceCommunicator runs on CPU, got device {device}")
        self.group = group
        self._comm: Optional[Communicator] = _groups.get_group(group)
        self.device = torch.device("cpu")
        self.unique_name = unique_name
        self.rank = self._comm.rank
        self.world_size = self._comm.world_size
        self.rank_in_group = self.rank
        self.local_rank = self.rank
        self.ranks = list(range(self.world_size))
        self.use_all2all = False
        self.all2all_manager = None

    @property
    def comm(self) -> Communicator:
        """The underlying communicator; raises once destroyed or closed."""
        self._check_alive()
        assert self._comm is not None
        return self._comm

    def _check_alive(self) -> None:
        if self._comm is None:
            raise RuntimeError(f"tpcomm: DeviceCommunicator({self.group!r}) has been destroyed")
        if self._comm.closed:
            raise RuntimeError(f"tpcomm: the communicator of group {self.group!r} is closed")

    def all_reduce(self, input_: torch.Tensor) -> torch.Tensor:
        """Sum over ranks, as a new tensor; input_ is left untouched."""
        self._check_alive()
        return torch.ops.tpcomm.all_reduce(input_, "sum", self.group)

    def all_gather(self, input_: torch.Tensor, dim: int = -1) -> torch.Tensor:
        """Concatenate every rank's input_ along dim."""
        self._check_alive()
        return torch.ops.tpcomm.all_gather(input_, dim, self.group)

    def all_gatherv(
        self,
        input_: Union[torch.Tensor, list[torch.Tensor]],
        dim: int = 0,
        sizes: Optional[Sequence[int]] = None,
    ) -> Union[torch.Tensor, list[torch.Tensor]]:
        """Concatenate along dim where rank r contributes sizes[r] slices."""
        if isinstance(input_, (list, tuple)):
            return [self.comm.all_gatherv(t, sizes, dim) for t in input_]
        return self.comm.all_gatherv(input_, sizes, dim)

    def reduce_scatter(self, input_: torch.Tensor, dim: int = -1) -> torch.Tensor:
        """Sum over ranks, then keep this rank's equal block along dim."""
        self._check_alive()
        return torch.ops.tpcomm.reduce_scatter(input_, dim, "sum", self.group)

    def reduce_scatterv(
        self, input_: torch.Tensor, dim: int = -1, sizes: Optional[Sequence[int]] = None
    ) -> torch.Tensor:
        """Sum over ranks, then keep this rank's sizes[rank] slices along dim."""
        return self.comm.reduce_scatterv(input_, sizes, "sum", dim)

    def gather(self, input_: torch.Tensor, dst: int = 0, dim: int = -1) -> Optional[torch.Tensor]:
        """Concatenation along dim on rank dst; None on the other ranks."""
        return self.comm.gather(input_, dst, dim)

    def broadcast(self, tensor: torch.Tensor, src: int = 0) -> torch.Tensor:
        """src's tensor on every rank, written into tensor (as vLLM does); returns it."""
        return self.comm.broadcast_(tensor, src)

    def send(self, tensor: torch.Tensor, dst: Optional[int] = None) -> None:
        """Send to dst (default: the next rank)."""
        if dst is None:
            dst = (self.rank + 1) % self.world_size
        self.comm.send(tensor, dst)

    def recv(
        self, size: Union[torch.Size, Sequence[int]], dtype: torch.dtype, src: Optional[int] = None
    ) -> torch.Tensor:
        """Receive a new tensor of size and dtype from src (default: the previous rank)."""
        if src is None:
            src = (self.rank - 1) % self.world_size
        return self.comm.recv(tuple(size), dtype, src)

    def prepare_communication_buffer_for_model(self, model: torch.nn.Module) -> None:
        """Nothing to prepare: tpcomm's shared segment is set up at creation."""

    def destroy(self) -> None:
        """Drop this object's reference to the group (the group stays registered)."""
        self._comm = None
