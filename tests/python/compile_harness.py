"""Run one torch.nn.Module eagerly and through every graph compiler of torch 1.13.

The bug class under test: a collective that mutates its input inside an op the
compiler believes is functional gets dropped or reordered, and the model keeps
running on unreduced (or zero) values. The check is therefore end-to-end: each
compiled variant must produce exactly the values of an independent reference,
not merely "something that runs".

Variants (all built on every rank, in the same order, so any collective the
compilers execute while tracing matches up across ranks):

* eager
* fx:            torch.fx.symbolic_trace + graph.eliminate_dead_code() + recompile
* jit_script:    torch.jit.script
* jit_freeze:    torch.jit.freeze(torch.jit.script(module.eval()))
* jit_optimize:  torch.jit.optimize_for_inference (freeze + more passes)
* functionalize: functorch make_fx(functionalize(f)) with real tensors
* functionalize_fake: the same traced with fake tensors (Meta kernels; no
  communication while tracing)
"""

from __future__ import annotations

import copy
from typing import Callable, Sequence

import numpy as np
import torch
import torch.fx
from functorch import functionalize, make_fx
from torch.nn.utils.stateless import functional_call

VARIANTS: tuple[str, ...] = (
    "eager",
    "fx",
    "jit_script",
    "jit_freeze",
    "jit_optimize",
    "functionalize",
    "functionalize_fake",
)

Inputs = Callable[[], Sequence[torch.Tensor]]


def _fx(module: torch.nn.Module) -> Callable[..., torch.Tensor]:
    gm = torch.fx.symbolic_trace(module)
    gm.graph.eliminate_dead_code()
    gm.recompile()
    return gm


def build(name: str, module: torch.nn.Module, inputs: Inputs) -> Callable[..., torch.Tensor]:
    """Compile a private copy of module with compiler variant name."""
    module = copy.deepcopy(module).eval()
    if name == "eager":
        return module
    if name == "fx":
        return _fx(module)
    if name == "jit_script":
        return torch.jit.script(module)
    if name == "jit_freeze":
        return torch.jit.freeze(torch.jit.script(module))
    if name == "jit_optimize":
        return torch.jit.optimize_for_inference(torch.jit.script(module))
    if name == "functionalize":
        return make_fx(functionalize(module))(*inputs())
    if name == "functionalize_fake":
        # Fake tracing needs every tensor fake, parameters included: pass them
        # in as inputs through a stateless call.
        state = {**dict(module.named_parameters()), **dict(module.named_buffers())}

        def stateless(state: dict[str, torch.Tensor], *args: torch.Tensor) -> torch.Tensor:
            return functional_call(module, state, args)

        gm = make_fx(functionalize(stateless), tracing_mode="fake")(state, *inputs())
        return lambda *args: gm(state, *args)
    raise ValueError(name)


def describe_mismatch(got: torch.Tensor, want: np.ndarray, hints: dict[str, np.ndarray]) -> str:
    if tuple(got.shape) != tuple(want.shape):
        return f"shape {tuple(got.shape)} != expected {tuple(want.shape)}"
    g = got.detach().to(torch.float64).numpy()
    w = want.astype(np.float64)
    diff = float(np.max(np.abs(g - w))) if g.size else 0.0
    looks = [label for label, value in hints.items() if value.shape == g.shape and np.array_equal(g, value)]
    return f"max abs diff {diff:.3g}" + (f"; equals the {' / '.join(looks)} value" if looks else "")


def check(
    module: torch.nn.Module,
    inputs: Inputs,
    expected: np.ndarray,
    *,
    atol: float = 0.0,
    variants: Sequence[str] = VARIANTS,
    calls: int = 2,
    hints: dict[str, np.ndarray] | None = None,
    expected_input: np.ndarray | None = None,
) -> dict[str, str | None]:
    """Per variant: None when every call matches expected, else what went wrong.

    atol=0 demands bitwise equality. Each variant is called `calls` times on
    fresh inputs so state corrupted by a first call (e.g. a constant that a
    frozen graph mutates) is caught. expected_input, when given, is what the
    first input must hold after the call (in-place collectives on inputs).
    """
    report: dict[str, str | None] = {}
    hints = hints or {}
    for name in variants:
        problem: str | None = None
        try:
            fn = build(name, module, inputs)
            for call in range(calls):
                args = list(inputs())
                with torch.no_grad():
                    out = fn(*args)
                got = out.detach()
                ok = got.dtype == torch.from_numpy(expected[:0]).dtype and tuple(got.shape) == expected.shape
                if ok:
                    g = got.numpy()
                    ok = np.array_equal(g, expected) if atol == 0 else bool(
                        np.max(np.abs(g.astype(np.float64) - expected), initial=0.0) <= atol
                    )
                if not ok:
                    problem = f"call {call}: output {describe_mismatch(got, expected, hints)}"
                    break
                if expected_input is not None and not np.array_equal(args[0].numpy(), expected_input):
                    problem = f"call {call}: input after call {describe_mismatch(args[0], expected_input, hints)}"
                    break
        except Exception as exc:  # a compiler refusing loudly is reported, not hidden
            problem = f"raised {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        report[name] = problem
    return report


def failures(report: dict[str, str | None]) -> dict[str, str]:
    return {k: v for k, v in report.items() if v is not None}
