"""torch operators ``torch.ops.tpcomm.*`` and a vLLM-style DeviceCommunicator.

Importing this module registers, in namespace ``tpcomm``::

    all_reduce(Tensor x, str op="sum", str group="world") -> Tensor
    all_reduce_(Tensor(a!) x, str op="sum", str group="world") -> Tensor(a!)
    all_gather(Tensor x, int dim=-1, str group="world") -> Tensor
    reduce_scatter(Tensor x, int dim=-1, str op="sum", str group="world") -> Tensor
    broadcast(Tensor x, int src=0, str group="world") -> Tensor
    all_to_all(Tensor x, str group="world") -> Tensor

each with a CPU kernel (the collective) and a Meta kernel (shapes and dtypes
only, no communication). Groups are communicators registered by name because
compilers cannot pass Python objects into operators; ``tpcomm.init()``
registers "world".

Why the operators are safe under every compiler in torch 1.13 (the failure
they prevent: an in-place collective that a compiler believes is functional is
dropped or reordered, and the model silently computes on unreduced values):

* TorchScript (script, freeze, optimize_for_inference): ``all_reduce_``
  declares its mutation in the schema (``Tensor(a!)``), so alias analysis keeps
  it and orders every later read after it. The functional collectives use
  CONSERVATIVE alias analysis: TorchScript then treats them as having side
  effects and never constant-folds them (``freeze`` would otherwise run a
  collective at compile time on parameters), deduplicates or drops them.
* torch.fx: ``Node.is_impure`` in 1.13 only consults
  ``torch.fx.node._side_effectful_functions``, so ``eliminate_dead_code``
  would drop an ``all_reduce_`` whose return value is unused. Every tpcomm
  operator (packet and overload) is added to that set.
* functorch ``functionalize``: 1.13 has no generic rule for mutable custom ops
  (it hits an internal assert). ``all_reduce_`` gets a Functionalize kernel
  that rewrites it as the functional ``all_reduce`` followed by ``copy_``, so
  ``make_fx(functionalize(f))`` yields a graph without mutation.
"""

from __future__ import annotations

from ._device_communicator import DeviceCommunicator
from ._ops import OPERATORS, SCHEMAS, empty_output_cache, register_group, unregister_group

__all__ = ["DeviceCommunicator", "register_group", "unregister_group", "empty_output_cache", "SCHEMAS", "OPERATORS"]
