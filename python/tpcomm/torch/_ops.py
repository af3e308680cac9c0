"""Registration of the ``tpcomm`` torch operators (see the package docstring)."""

from __future__ import annotations

from typing import Any, Callable

import torch
import torch.fx.node
from torch.library import Library

from .. import _groups, _library
from .._communicator import Communicator
from .._types import parse_op

__all__ = ["SCHEMAS", "OPERATORS", "register_group", "unregister_group"]

SCHEMAS: dict[str, str] = {
    "all_reduce": 'all_reduce(Tensor x, str op="sum", str group="world") -> Tensor',
    "all_reduce_": 'all_reduce_(Tensor(a!) x, str op="sum", str group="world") -> Tensor(a!)',
    "all_gather": 'all_gather(Tensor x, int dim=-1, str group="world") -> Tensor',
    "reduce_scatter": 'reduce_scatter(Tensor x, int dim=-1, str op="sum", str group="world") -> Tensor',
    "broadcast": 'broadcast(Tensor x, int src=0, str group="world") -> Tensor',
    "all_to_all": 'all_to_all(Tensor x, str group="world") -> Tensor',
}

# The C function each operator needs (all_reduce and all_reduce_ are core).
REQUIRED_SYMBOLS: dict[str, str] = {
    "all_reduce": "tpcomm_all_reduce",
    "all_reduce_": "tpcomm_all_reduce",
    "all_gather": "tpcomm_all_gather",
    "reduce_scatter": "tpcomm_reduce_scatter",
    "broadcast": "tpcomm_broadcast",
    "all_to_all": "tpcomm_all_to_all",
}


def register_group(name: str, comm: Communicator) -> None:
    """Make comm usable as ``group=name`` in the tpcomm operators."""
    _groups.register_group(name, comm)


def unregister_group(name: str) -> None:
    _groups.unregister_group(name)


def _comm(group: str) -> Communicator:
    return _groups.get_group(group)


# ---- CPU kernels: the collectives --------------------------------------------


def _all_reduce_cpu(x: torch.Tensor, op: str = "sum", group: str = "world") -> torch.Tensor:
    return _comm(group).all_reduce(x, op)


def _all_reduce__cpu(x: torch.Tensor, op: str = "sum", group: str = "world") -> torch.Tensor:
    _comm(group).all_reduce_(x, op)
    return x


def _all_gather_cpu(x: torch.Tensor, dim: int = -1, group: str = "world") -> torch.Tensor:
    return _comm(group).all_gather(x, dim)


def _reduce_scatter_cpu(
    x: torch.Tensor, dim: int = -1, op: str = "sum", group: str = "world"
) -> torch.Tensor:
    return _comm(group).reduce_scatter(x, op, dim)


def _broadcast_cpu(x: torch.Tensor, src: int = 0, group: str = "world") -> torch.Tensor:
    return _comm(group).broadcast(x, src)


def _all_to_all_cpu(x: torch.Tensor, group: str = "world") -> torch.Tensor:
    return _comm(group).all_to_all(x)


# ---- Meta kernels: shapes and dtypes, no communication ------------------------


def _dim(x: torch.Tensor, dim: int, what: str) -> int:
    if x.dim() == 0:
        raise ValueError(f"tpcomm: {what} needs at least one dimension")
    if not -x.dim() <= dim < x.dim():
        raise IndexError(f"tpcomm: {what}: dim {dim} out of range for {x.dim()} dimensions")
    return dim % x.dim()


def _split(size: Any, world_size: int, dim: int, what: str) -> Any:
    """Size of one rank's block; the same error the CPU kernel raises."""
    if size % world_size != 0:
        raise ValueError(
            f"tpcomm: {what}: size {size} of dim {dim} is not divisible by world size {world_size}"
        )
    return size // world_size


def _all_reduce_meta(x: torch.Tensor, op: str = "sum", group: str = "world") -> torch.Tensor:
    parse_op(op)
    return x.new_empty(x.shape)


def _all_reduce__meta(x: torch.Tensor, op: str = "sum", group: str = "world") -> torch.Tensor:
    parse_op(op)
    return x


def _all_gather_meta(x: torch.Tensor, dim: int = -1, group: str = "world") -> torch.Tensor:
    d = _dim(x, dim, "all_gather")
    shape = list(x.shape)
    shape[d] = shape[d] * _comm(group).world_size
    return x.new_empty(shape)


def _reduce_scatter_meta(
    x: torch.Tensor, dim: int = -1, op: str = "sum", group: str = "world"
) -> torch.Tensor:
    parse_op(op)
    d = _dim(x, dim, "reduce_scatter")
    shape = list(x.shape)
    shape[d] = _split(shape[d], _comm(group).world_size, d, "reduce_scatter")
    return x.new_empty(shape)


def _broadcast_meta(x: torch.Tensor, src: int = 0, group: str = "world") -> torch.Tensor:
    return x.new_empty(x.shape)


def _all_to_all_meta(x: torch.Tensor, group: str = "world") -> torch.Tensor:
    _dim(x, 0, "all_to_all")
    _split(x.shape[0], _comm(group).world_size, 0, "all_to_all")
    return x.new_empty(x.shape)


# ---- Functionalization of the in-place operator -------------------------------


def _all_reduce__functionalize(
    x: torch.Tensor, op: str = "sum", group: str = "world"
) -> torch.Tensor:
    """all_reduce_(x) == x.copy_(all_reduce(x)) for the functionalization pass.

    Called with functional wrapper tensors; both ops below are dispatched
    again, so functionalization records a functional all_reduce and turns the
    copy_ into a pure update of x (and of every view of x).
    """
    out = torch.ops.tpcomm.all_reduce(x, op, group)
    x.copy_(out)
    return x


_KERNELS: dict[str, tuple[Callable[..., Any], Callable[..., Any]]] = {
    "all_reduce": (_all_reduce_cpu, _all_reduce_meta),
    "all_reduce_": (_all_reduce__cpu, _all_reduce__meta),
    "all_gather": (_all_gather_cpu, _all_gather_meta),
    "reduce_scatter": (_reduce_scatter_cpu, _reduce_scatter_meta),
    "broadcast": (_broadcast_cpu, _broadcast_meta),
    "all_to_all": (_all_to_all_cpu, _all_to_all_meta),
}

_LIB = Library("tpcomm", "DEF")
for _name, _schema in SCHEMAS.items():
    # Mutable schemas need FROM_SCHEMA; functional collectives are CONSERVATIVE
    # so TorchScript never folds, merges or drops a communication.
    _LIB.define(_schema, "FROM_SCHEMA" if "(a!)" in _schema else "CONSERVATIVE")
    _cpu, _meta = _KERNELS[_name]
    _LIB.impl(_name, _cpu, "CPU")
    _LIB.impl(_name, _meta, "Meta")
_LIB.impl("all_reduce_", _all_reduce__functionalize, "Functionalize")


def _below_autograd(name: str) -> Callable[..., Any]:
    """AutogradMeta kernel: meta tensors carry that key and 1.13 has no fallthrough for it."""
    overload = getattr(torch.ops.tpcomm, name).default

    def kernel(*args: Any, **kwargs: Any) -> Any:
        # An RAII guard in 1.13 (no context-manager protocol): lives until del.
        guard = torch._C._AutoDispatchBelowAutograd()
        try:
            return overload(*args, **kwargs)
        finally:
            del guard

    return kernel


for _name in SCHEMAS:
    _LIB.impl(_name, _below_autograd(_name), "AutogradMeta")

OPERATORS: dict[str, Any] = {name: getattr(torch.ops.tpcomm, name) for name in SCHEMAS}

for _packet in OPERATORS.values():
    # torch.fx's dead-code elimination keeps exactly these call targets.
    torch.fx.node._side_effectful_functions.add(_packet)
    torch.fx.node._side_effectful_functions.add(_packet.default)


def _register_symbolic_meta() -> None:
    """Let make_fx(tracing_mode="symbolic") use the Meta kernels.

    FakeTensor in 1.13 only consults this private table for tensors with
    symbolic sizes; without it symbolic tracing fails (loudly) on our ops.
    """
    try:
        from torch._meta_registrations import meta_table
    except ImportError:
        return
    for name, (_, meta) in _KERNELS.items():
        meta_table.setdefault(OPERATORS[name].default, meta)


_register_symbolic_meta()


def missing_symbol(name: str) -> str | None:
    """The C function operator name needs but the loaded library lacks, if any."""
    symbol = REQUIRED_SYMBOLS[name]
    return None if _library.has_symbol(symbol) else symbol
