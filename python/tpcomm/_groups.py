"""Communicators registered by name.

Graph compilers (TorchScript, torch.fx, functorch) can only pass tensors,
numbers and strings into an operator, never a Python object. The torch
operators therefore take a group *name* and look the communicator up here.
This module does not import torch, so ``tpcomm.init()`` can register "world"
for numpy-only programs too.
"""

from __future__ import annotations

from ._communicator import Communicator

__all__ = ["register_group", "unregister_group", "get_group", "group_names"]

_GROUPS: dict[str, Communicator] = {}
# Called as hook(name, comm_or_None) on every change (the torch operators'
# C++ kernels keep their own name -> handle table).
_CHANGE_HOOKS: list = []


def register_group(name: str, comm: Communicator) -> None:
    """Make comm reachable as ``group=name`` from the torch operators."""
    if not isinstance(name, str) or not name:
        raise ValueError("tpcomm: a group name must be a non-empty string")
    if not isinstance(comm, Communicator):
        raise TypeError(f"tpcomm: expected a tpcomm.Communicator, got {type(comm).__name__}")
    _GROUPS[name] = comm
    for hook in _CHANGE_HOOKS:
        hook(name, comm)


def unregister_group(name: str) -> None:
    """Forget a group name (the communicator itself stays open)."""
    _GROUPS.pop(name, None)
    for hook in _CHANGE_HOOKS:
        hook(name, None)


def get_group(name: str) -> Communicator:
    """The open communicator registered as name, or a clear error."""
    comm = _GROUPS.get(name)
    if comm is None:
        hint = "call tpcomm.init()" if name == "world" else f"call tpcomm.torch.register_group({name!r}, comm)"
        raise KeyError(f"tpcomm: no communicator is registered as group {name!r}; {hint}")
    if comm.closed:
        raise RuntimeError(f"tpcomm: the communicator registered as group {name!r} is closed")
    return comm


def group_names() -> list[str]:
    return sorted(_GROUPS)
