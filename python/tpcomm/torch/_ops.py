"""Registration of the ``tpcomm`` torch operators (see the package docstring)."""

from __future__ import annotations

import ctypes
import os
from pathlib import Path
from typing import Any, Callable

import torch
import torch.fx.node
from torch.library import Library

from .. import _communicator, _errors, _groups, _library
from .._communicator import Communicator
from .._types import parse_op

__all__ = ["SCHEMAS", "OPERATORS", "CPP_KERNELS", "register_group", "unregister_group"]

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

def _raise_error_cpu(x: torch.Tensor, status: int, message: str) -> None:
    """Raise what the Python API raises for a failed library call."""
    raise _errors.error_for_status(status, message or f"status {status}", _library.status_name(status))


# Private operators the C++ kernels call, below the dispatcher, for what their
# fast path does not cover (never seen by a compiler): the Python kernels, and
# the exception of a failed library call.
_PRIVATE_SCHEMAS: dict[str, tuple[str, Callable[..., Any]]] = {
    "_all_reduce_py": ('_all_reduce_py(Tensor x, str op="sum", str group="world") -> Tensor', _all_reduce_cpu),
    "_all_reduce__py": (
        '_all_reduce__py(Tensor(a!) x, str op="sum", str group="world") -> Tensor(a!)',
        _all_reduce__cpu,
    ),
    "_raise_error": ("_raise_error(Tensor x, int status, str message) -> ()", _raise_error_cpu),
}

_CPP_LIBRARY_PATH = Path(__file__).with_name("_torch_ops.so")


def _output_cache_limit() -> int:
    """TPCOMM_TORCH_OUTPUT_CACHE: bytes of freed out-of-place results kept for reuse (default 256M, 0: none)."""
    text = os.environ.get("TPCOMM_TORCH_OUTPUT_CACHE", "").strip()
    if not text:
        return 256 << 20
    shift = {"K": 10, "M": 20, "G": 30}.get(text[-1:].upper(), 0)
    digits = text[:-1] if shift else text
    if not digits.isdigit() or len(digits) > 12:
        raise _errors.InvalidArgumentError(
            f"TPCOMM_TORCH_OUTPUT_CACHE: cannot parse {text!r} as a byte size (e.g. 0, 64M, 1G)"
        )
    return int(digits) << shift


def empty_output_cache() -> None:
    """Free the memory kept for reuse by out-of-place results (it is refilled as results are freed)."""
    if _CPP is not None:
        _CPP.tpcomm_torch_set_output_cache(0)
        _CPP.tpcomm_torch_set_output_cache(_output_cache_limit())


def _load_cpp_kernels() -> ctypes.CDLL | None:
    """The C++ CPU kernels of all_reduce and all_reduce_, if built and wanted.

    TPCOMM_TORCH_KERNELS=python keeps the Python kernels (for comparison and
    for testing them).
    """
    if os.environ.get("TPCOMM_TORCH_KERNELS", "cpp") == "python" or not _CPP_LIBRARY_PATH.is_file():
        return None
    torch.ops.load_library(str(_CPP_LIBRARY_PATH))  # registers the CPU kernels
    cpp = ctypes.CDLL(str(_CPP_LIBRARY_PATH))  # the same loaded object
    cpp.tpcomm_torch_set_library(
        ctypes.cast(_library.lib.tpcomm_all_reduce, ctypes.c_void_p),
        ctypes.cast(_library.lib.tpcomm_last_error, ctypes.c_void_p),
    )
    cpp.tpcomm_torch_set_output_cache.argtypes = [ctypes.c_size_t]
    cpp.tpcomm_torch_set_output_cache(_output_cache_limit())
    cpp.tpcomm_torch_output_cache_held.restype = ctypes.c_size_t
    cpp.tpcomm_torch_set_group.argtypes = [ctypes.c_char_p, ctypes.c_void_p]
    cpp.tpcomm_torch_forget_comm.argtypes = [ctypes.c_void_p]

    def group_changed(name: str, comm: Communicator | None) -> None:
        handle = comm.handle if comm is not None and not comm.closed else None
        cpp.tpcomm_torch_set_group(name.encode(), handle)

    _groups._CHANGE_HOOKS.append(group_changed)
    _communicator._CLOSE_HOOKS.append(lambda handle: cpp.tpcomm_torch_forget_comm(handle))
    for name, comm in list(_groups._GROUPS.items()):
        group_changed(name, comm)
    return cpp


_LIB = Library("tpcomm", "DEF")
for _name, _schema in SCHEMAS.items():
    # Mutable schemas need FROM_SCHEMA; functional collectives are CONSERVATIVE
    # so TorchScript never folds, merges or drops a communication.
    _LIB.define(_schema, "FROM_SCHEMA" if "(a!)" in _schema else "CONSERVATIVE")
for _name, (_schema, _cpu) in _PRIVATE_SCHEMAS.items():
    _LIB.define(_schema, "FROM_SCHEMA" if "(a!)" in _schema else "CONSERVATIVE")
    _LIB.impl(_name, _cpu, "CPU")
_CPP = _load_cpp_kernels()
# Which operators run C++ CPU kernels (the others run the Python ones).
CPP_KERNELS: frozenset[str] = frozenset({"all_reduce", "all_reduce_"} if _CPP is not None else ())
for _name in SCHEMAS:
    _cpu, _meta = _KERNELS[_name]
    if _name not in CPP_KERNELS:
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
