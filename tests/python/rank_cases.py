"""Test cases that run on every rank of a tpcomm job.

Each case is a function of the world communicator; it raises AssertionError
(or any exception) on failure and Skip when the loaded library lacks a C
function it needs. Cases run in the same order on every rank, so the
collectives they call match up. Every rank can compute every other rank's
input (seeded by rank), which gives an independent numpy reference: folding
the ranks' inputs in rank order r = 0..n-1 reproduces the library's
documented reduction order bit for bit.
"""

import math
import os
import time
from dataclasses import dataclass
from typing import Callable, Final

import numpy as np
import torch
import torch.nn.functional as F
from torch.library import Library

import tpcomm
import tpcomm.torch
from compile_harness import check, failures

# ---- registry -----------------------------------------------------------------


class Skip(Exception):
    """The case cannot run against this library build (reason in the message)."""


@dataclass(frozen=True)
class Case:
    name: str
    fn: Callable[[tpcomm.Communicator], None]
    needs: tuple[str, ...]
    sizes: tuple[int, ...]


CASES: dict[str, Case] = {}


def case(*needs: str, sizes: tuple[int, ...] = (2, 4)) -> Callable[[Callable[[tpcomm.Communicator], None]], Callable[[tpcomm.Communicator], None]]:
    def register(fn: Callable[[tpcomm.Communicator], None]) -> Callable[[tpcomm.Communicator], None]:
        name = fn.__name__.removeprefix("case_")
        CASES[name] = Case(name, fn, tuple(needs), sizes)
        return fn

    return register


def missing_symbols(c: Case) -> list[str]:
    return [s for s in c.needs if not tpcomm.has_symbol(s)]


def run_case(name: str, comm: tpcomm.Communicator) -> None:
    c = CASES[name]
    missing = missing_symbols(c)
    if missing:
        raise Skip(f"libtpcomm does not export {', '.join(missing)}")
    if comm.world_size not in c.sizes:
        raise Skip(f"runs at world sizes {c.sizes}")
    c.fn(comm)


# ---- data and references --------------------------------------------------------

NP_DTYPES = [np.float32, np.float64, np.float16, np.int8, np.uint8, np.int32, np.int64]
TORCH_DTYPES = [
    torch.float32, torch.float64, torch.float16, torch.bfloat16,
    torch.int8, torch.uint8, torch.int32, torch.int64,
]
OPS = ["sum", "prod", "min", "max", "avg"]


def rank_data(rank: int, shape: tuple[int, ...], dtype: type = np.float32, seed: int = 0) -> np.ndarray:
    """Deterministic input of `rank` (any rank can compute any other's)."""
    rng = np.random.default_rng([seed, rank])
    dt = np.dtype(dtype)
    if dt.kind == "f":
        return rng.standard_normal(shape).astype(dt)
    if dt.kind == "u":
        return rng.integers(0, 200, shape).astype(dt)
    return rng.integers(-100, 100, shape).astype(dt)


def fold(op: str, arrays: list[np.ndarray]) -> np.ndarray:
    """Left fold in rank order, element by element, in the arrays' dtype."""
    fns = {"sum": np.add, "prod": np.multiply, "min": np.minimum, "max": np.maximum}
    acc = arrays[0].copy()
    with np.errstate(over="ignore"):
        for a in arrays[1:]:
            acc = fns["sum" if op == "avg" else op](acc, a)
    if op == "avg":
        acc = (acc / acc.dtype.type(len(arrays))).astype(acc.dtype)
    return acc


def reference(op: str, arrays: list[np.ndarray]) -> np.ndarray:
    """The library's documented result: f16 accumulates in f32, rounds once."""
    if arrays[0].dtype == np.float16:
        return fold(op, [a.astype(np.float32) for a in arrays]).astype(np.float16)
    return fold(op, arrays)


def torch_reference(op: str, tensors: list[torch.Tensor]) -> torch.Tensor:
    if tensors[0].dtype in (torch.float16, torch.bfloat16):
        acc = fold(op, [t.float().numpy() for t in tensors])
        return torch.from_numpy(acc).to(tensors[0].dtype)
    return torch.from_numpy(fold(op, [t.numpy() for t in tensors]))


def torch_rank_data(rank: int, shape: tuple[int, ...], dtype: torch.dtype, seed: int = 0) -> torch.Tensor:
    if dtype == torch.bfloat16:
        return torch.from_numpy(rank_data(rank, shape, np.float32, seed)).to(torch.bfloat16)
    np_dtype = torch.empty(0, dtype=dtype).numpy().dtype
    if np_dtype.kind in "iu" and dtype in (torch.int8, torch.uint8):
        # keep prod from being dominated by wrap-around for tiny types
        return torch.from_numpy((rank_data(rank, shape, np.int64, seed) % 5).astype(np_dtype))
    return torch.from_numpy(rank_data(rank, shape, np_dtype, seed))


def all_inputs(comm: tpcomm.Communicator, shape: tuple[int, ...], dtype: type = np.float32, seed: int = 0) -> list[np.ndarray]:
    return [rank_data(r, shape, dtype, seed) for r in range(comm.world_size)]


def assert_bitwise(got: np.ndarray, want: np.ndarray, what: str) -> None:
    assert got.dtype == want.dtype, f"{what}: dtype {got.dtype} != {want.dtype}"
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    assert np.array_equal(got, want, equal_nan=got.dtype.kind == "f"), (
        f"{what}: values differ (max abs diff "
        f"{np.max(np.abs(got.astype(np.float64) - want.astype(np.float64))):.3g})"
    )


def assert_torch_bitwise(got: torch.Tensor, want: torch.Tensor, what: str) -> None:
    assert got.dtype == want.dtype, f"{what}: dtype {got.dtype} != {want.dtype}"
    assert got.shape == want.shape, f"{what}: shape {tuple(got.shape)} != {tuple(want.shape)}"
    assert torch.equal(got, want), f"{what}: values differ: {got} vs {want}"


def assert_all_ok(report: dict[str, str | None], what: str) -> None:
    bad = failures(report)
    assert not bad, f"{what}: " + "; ".join(f"{k}: {v}" for k, v in bad.items())


def job_id(suffix: str) -> str:
    return os.environ.get("TPCOMM_JOB_ID", "tpcomm-pytest") + "-" + suffix


# =================================================================================
# Python package API (numpy and torch) over all_reduce
# =================================================================================


@case()
def case_numpy_dtypes_and_ops(comm: tpcomm.Communicator) -> None:
    for dt in NP_DTYPES:
        for op in OPS:
            if op == "avg" and np.dtype(dt).kind != "f":
                continue
            xs = all_inputs(comm, (3, 37), dt, seed=1)
            if op == "prod" and np.dtype(dt).kind == "f":
                xs = [np.asarray(x / 2 + 1, dtype=dt) for x in xs]
            x = xs[comm.rank].copy()
            before = x.copy()
            want = reference(op, xs)
            got = comm.all_reduce(x, op=op)
            assert_bitwise(got, want, f"all_reduce {np.dtype(dt)} {op}")
            assert_bitwise(x, before, f"all_reduce {np.dtype(dt)} {op} left its input")
            assert comm.all_reduce_(x, op=op) is x
            assert_bitwise(x, want, f"all_reduce_ {np.dtype(dt)} {op}")


@case()
def case_torch_dtypes_and_ops(comm: tpcomm.Communicator) -> None:
    for dt in TORCH_DTYPES:
        for op in OPS:
            if op == "avg" and not dt.is_floating_point:
                continue
            xs = [torch_rank_data(r, (5, 11), dt, seed=2) for r in range(comm.world_size)]
            x = xs[comm.rank].clone()
            want = torch_reference(op, xs)
            got = comm.all_reduce(x, op=op)
            assert_torch_bitwise(got, want, f"all_reduce {dt} {op}")
            assert_torch_bitwise(x, xs[comm.rank], f"all_reduce {dt} {op} left its input")
            assert comm.all_reduce_(x, op=op) is x
            assert_torch_bitwise(x, want, f"all_reduce_ {dt} {op}")
            # the torch operators give the same bits
            assert_torch_bitwise(torch.ops.tpcomm.all_reduce(xs[comm.rank], op), want, f"op all_reduce {dt} {op}")


@case()
def case_nan_propagates_through_min_max(comm: tpcomm.Communicator) -> None:
    x = np.zeros(4, np.float32)
    if comm.rank == comm.world_size - 1:
        x[1] = np.nan
    for op in ("min", "max"):
        got = comm.all_reduce(x, op=op)
        assert np.isnan(got[1]) and not np.isnan(got[[0, 2, 3]]).any(), f"{op}: {got}"


@case()
def case_out_of_place_vs_in_place(comm: tpcomm.Communicator) -> None:
    xs = all_inputs(comm, (64,), seed=3)
    want = reference("sum", xs)
    x = xs[comm.rank].copy()
    y = comm.all_reduce(x)
    assert y is not x and not np.shares_memory(x, y), "out-of-place result shares the input's memory"
    assert_bitwise(x, xs[comm.rank], "input after out-of-place")
    assert y.flags.c_contiguous and y.shape == x.shape
    assert comm.all_reduce_(x) is x
    assert_bitwise(x, want, "in-place")
    t = torch.from_numpy(xs[comm.rank].copy())
    u = comm.all_reduce(t)
    assert isinstance(u, torch.Tensor) and u.data_ptr() != t.data_ptr()
    assert torch.equal(t, torch.from_numpy(xs[comm.rank]))
    assert comm.all_reduce_(t) is t and np.array_equal(t.numpy(), want)


@case()
def case_non_contiguous(comm: tpcomm.Communicator) -> None:
    xs = all_inputs(comm, (6, 10), seed=4)
    full = reference("sum", xs)
    for label, view in [
        ("every other column", lambda a: a[:, ::2]),
        ("transpose", lambda a: a.T),
        ("column slice", lambda a: a[1:5, 3:7]),
    ]:
        base = xs[comm.rank].copy()
        v = view(base)
        assert not v.flags.c_contiguous
        got = comm.all_reduce(v)
        assert got.shape == v.shape and got.flags.c_contiguous
        assert_bitwise(got, np.ascontiguousarray(view(full)), f"numpy out-of-place on {label}")
        assert_bitwise(base, xs[comm.rank], f"numpy out-of-place on {label} left its input")
        # in place writes the strided elements and nothing else
        expect_base = xs[comm.rank].copy()
        view(expect_base)[...] = view(full)
        assert comm.all_reduce_(v) is v
        assert_bitwise(base, expect_base, f"numpy in-place on {label}")

        tbase = torch.from_numpy(xs[comm.rank].copy())
        tv = view(tbase) if label != "transpose" else tbase.t()
        assert not tv.is_contiguous()
        got_t = comm.all_reduce(tv)
        assert got_t.is_contiguous() and got_t.shape == tv.shape
        assert np.array_equal(got_t.numpy(), np.ascontiguousarray(view(full)))
        assert comm.all_reduce_(tv) is tv
        assert np.array_equal(tbase.numpy(), expect_base), f"torch in-place on {label}"
        # and through the torch operators
        tbase = torch.from_numpy(xs[comm.rank].copy())
        tv = view(tbase) if label != "transpose" else tbase.t()
        torch.ops.tpcomm.all_reduce_(tv)
        assert np.array_equal(tbase.numpy(), expect_base), f"op all_reduce_ on {label}"


@case()
def case_bad_arguments_raise(comm: tpcomm.Communicator) -> None:
    def raises(exc: type[BaseException], fn: Callable[[], object], what: str, text: str = "") -> None:
        try:
            fn()
        except exc as e:
            assert text in str(e), f"{what}: message {str(e)!r} lacks {text!r}"
            return
        raise AssertionError(f"{what}: no {exc.__name__}")

    ro = np.ones(4, np.float32)
    ro.flags.writeable = False
    raises(ValueError, lambda: comm.all_reduce_(ro), "read-only in place", "read-only")
    assert np.array_equal(comm.all_reduce(ro), np.full(4, comm.world_size, np.float32))
    for bad in [np.ones(3, np.complex64), np.ones(3, np.bool_), np.ones(3, np.int16), np.ones(3, np.uint32)]:
        raises(TypeError, lambda: comm.all_reduce(bad), f"numpy {bad.dtype}", "unsupported dtype")
    raises(TypeError, lambda: comm.all_reduce(np.ones(3, ">f4")), "big-endian", "byte order")
    for bad_t in [torch.ones(3, dtype=torch.complex64), torch.ones(3, dtype=torch.bool), torch.ones(3, dtype=torch.int16)]:
        raises(TypeError, lambda: comm.all_reduce(bad_t), f"torch {bad_t.dtype}", "unsupported dtype")
        raises(TypeError, lambda: torch.ops.tpcomm.all_reduce(bad_t), f"op {bad_t.dtype}", "unsupported dtype")
    raises(TypeError, lambda: comm.all_reduce([1.0, 2.0]), "list input", "numpy.ndarray or a torch.Tensor")
    raises(ValueError, lambda: comm.all_reduce(np.ones(3, np.float32), op="median"), "unknown op", "median")
    raises(KeyError, lambda: torch.ops.tpcomm.all_reduce(torch.ones(3), "sum", "no-such-group"), "group", "no-such-group")
    # nothing above reached the library: the communicator is healthy
    assert np.array_equal(comm.all_reduce(np.ones(2, np.int32)), np.full(2, comm.world_size, np.int32))


@case()
def case_library_error_becomes_exception(comm: tpcomm.Communicator) -> None:
    x = np.arange(6, dtype=np.int32)
    try:
        comm.all_reduce(x, op="avg")
    except tpcomm.InvalidArgumentError as e:
        assert isinstance(e, tpcomm.Error) and isinstance(e, ValueError)
        assert e.status == 1 and e.status_name == "TPCOMM_ERROR_INVALID_ARGUMENT"
        assert "avg" in e.message and f"rank {comm.rank}" in e.message, e.message
    else:
        raise AssertionError("avg on int32 did not raise")
    try:
        torch.ops.tpcomm.all_reduce(torch.from_numpy(x), "avg")
    except tpcomm.InvalidArgumentError as e:
        assert "avg" in str(e)
    else:
        raise AssertionError("op all_reduce avg on int32 did not raise")
    # rejected before any rank moved: the communicator stays usable
    assert np.array_equal(comm.all_reduce(x), x * comm.world_size)


@case()
def case_close_is_idempotent(comm: tpcomm.Communicator) -> None:
    assert tpcomm.init() is comm, "init() twice must return the open world communicator"
    c = tpcomm.Communicator(comm.rank, comm.world_size, job_id("close"), timeout=30)
    assert (c.rank, c.world_size) == (comm.rank, comm.world_size)
    assert np.array_equal(c.all_reduce(np.ones(3, np.int64)), np.full(3, comm.world_size))
    c.barrier()
    c.close()
    c.close()
    assert c.closed
    try:
        c.all_reduce(np.ones(3, np.float32))
    except tpcomm.Error as e:
        assert "closed" in str(e)
    else:
        raise AssertionError("a closed communicator accepted a collective")
    with tpcomm.Communicator(comm.rank, comm.world_size, job_id("ctx"), timeout=30) as c2:
        c2.barrier()
    assert c2.closed
    c2.close()


@case()
def case_zero_size_and_large(comm: tpcomm.Communicator) -> None:
    empty = np.zeros((0, 3), np.float32)
    assert comm.all_reduce(empty).shape == (0, 3)
    assert comm.all_reduce_(empty) is empty
    xs = all_inputs(comm, (1 << 20,), seed=5)  # 4 MiB of f32: chunked paths
    assert_bitwise(comm.all_reduce(xs[comm.rank]), reference("sum", xs), "4 MiB f32 sum")


@case()
def case_timeout_becomes_timeout_error(comm: tpcomm.Communicator) -> None:
    c = tpcomm.Communicator(comm.rank, comm.world_size, job_id("timeout"), timeout=30)
    try:
        if comm.rank == 0:
            c.set_timeout(0.5)
            t0 = time.monotonic()
            try:
                c.all_reduce(np.ones(4, np.float32))
            except tpcomm.TimeoutError as e:
                assert isinstance(e, TimeoutError) and isinstance(e, tpcomm.Error)
                assert e.message, "empty library message"
                assert time.monotonic() - t0 < 20
            else:
                raise AssertionError("no TimeoutError while the peers stayed away")
    finally:
        c.close()
    comm.barrier()


# =================================================================================
# torch operators and the compilers
# =================================================================================

EXPECTED_SCHEMAS = {
    "all_reduce": 'tpcomm::all_reduce(Tensor x, str op="sum", str group="world") -> Tensor',
    "all_reduce_": 'tpcomm::all_reduce_(Tensor(a!) x, str op="sum", str group="world") -> Tensor(a!)',
    "all_gather": 'tpcomm::all_gather(Tensor x, int dim=-1, str group="world") -> Tensor',
    "reduce_scatter": 'tpcomm::reduce_scatter(Tensor x, int dim=-1, str op="sum", str group="world") -> Tensor',
    "broadcast": 'tpcomm::broadcast(Tensor x, int src=0, str group="world") -> Tensor',
    "all_to_all": 'tpcomm::all_to_all(Tensor x, str group="world") -> Tensor',
}


@case()
def case_cpu_kernels_in_use(comm: tpcomm.Communicator) -> None:
    """all_reduce and all_reduce_ run the C++ kernels when built, unless told not to."""
    from tpcomm.torch import _ops

    wanted = os.environ.get("TPCOMM_TORCH_KERNELS", "cpp")
    expected = {"all_reduce", "all_reduce_"} if wanted == "cpp" and _ops._CPP_LIBRARY_PATH.is_file() else set()
    assert set(_ops.CPP_KERNELS) == expected, (_ops.CPP_KERNELS, wanted)
    if os.environ.get("TPCOMM_REQUIRE_CPP_KERNELS") == "1" and wanted == "cpp":
        assert _ops.CPP_KERNELS, f"{_ops._CPP_LIBRARY_PATH} was not built (is libtorch-dev installed?)"


@case()
def case_out_of_place_results_reuse_freed_memory_only(comm: tpcomm.Communicator) -> None:
    """torch.ops.tpcomm.all_reduce takes memory for its results from a cache of freed ones (C++ kernels).

    A live result is never handed out again: results stay correct when many of
    one shape are alive at once, and a result freed by one call is reused by
    the next of the same size. Small results (4 KiB here) and empty ones take
    the same path as large ones (128 KiB).
    """
    from tpcomm.torch import _ops

    cached = _ops.CPP_KERNELS and _ops._output_cache_limit() > 0
    for shape in ((128, 256), (4, 256), (3,), (0, 5)):
        xs = [all_inputs(comm, shape, seed=40 + k) for k in range(6)]
        wants = [reference("sum", x) for x in xs]
        alive = [torch.ops.tpcomm.all_reduce(torch.from_numpy(x[comm.rank].copy())) for x in xs]
        if math.prod(shape) > 0:
            assert len({t.data_ptr() for t in alive}) == len(alive), f"{shape}: two live results share memory"
        wrong = [k for k in range(len(alive)) if not np.array_equal(alive[k].numpy(), wants[k])]
        assert not wrong and all(t.shape == shape for t in alive), f"{shape}: live results {wrong} were overwritten"
        freed = alive.pop().data_ptr()
        again = torch.ops.tpcomm.all_reduce(torch.from_numpy(xs[0][comm.rank].copy()))
        assert np.array_equal(again.numpy(), wants[0])
        if cached and math.prod(shape) > 0:
            assert again.data_ptr() == freed, f"{shape}: a freed result of the same size was not reused"
        # Views keep a result alive; a result is an ordinary tensor that can grow
        # (checked before .numpy(), which pins a tensor's size).
        view = again[1:]
        del again
        other = torch.ops.tpcomm.all_reduce(torch.from_numpy(xs[1][comm.rank].copy()))
        assert np.array_equal(view.numpy(), wants[0][1:]), f"{shape}: memory still referenced by a view was reused"
        grown = torch.ops.tpcomm.all_reduce(torch.from_numpy(xs[3][comm.rank].copy()))
        grown.resize_(2 * grown.numel() + 1)
        grown.fill_(1.0)
        assert float(grown.sum()) == grown.numel()
        assert np.array_equal(other.numpy(), wants[1])
    tpcomm.torch.empty_output_cache()
    assert np.array_equal(torch.ops.tpcomm.all_reduce(torch.from_numpy(xs[2][comm.rank].copy())).numpy(), wants[2])
    if not cached:
        return
    # The limit bounds what is kept, tiny and empty results included: each
    # block is charged two lines (its bytes rounded up, and the C library's
    # header), so of 4096 freed results of 4 bytes or none, 512 fill a 64 KiB
    # limit and the rest are freed, instead of all piling up.
    limit = 64 << 10
    try:
        for shape in ((1,), (0,)):
            _ops._CPP.tpcomm_torch_set_output_cache(0)  # start empty
            _ops._CPP.tpcomm_torch_set_output_cache(limit)
            x = torch.ones(shape)
            results = [torch.ops.tpcomm.all_reduce(x) for _ in range(4096)]
            assert all(torch.equal(r, x * comm.world_size) for r in results[:3])
            del results
            held = int(_ops._CPP.tpcomm_torch_output_cache_held())
            assert held == limit, f"{shape}: {held} bytes charged for 4096 freed results against a limit of {limit}"
    finally:
        _ops._CPP.tpcomm_torch_set_output_cache(_ops._output_cache_limit())


@case()
def case_operator_schemas(comm: tpcomm.Communicator) -> None:
    for name, schema in EXPECTED_SCHEMAS.items():
        got = str(getattr(torch.ops.tpcomm, name).default._schema)
        assert got == schema, f"{name}: {got} != {schema}"


@case()
def case_meta_kernels(comm: tpcomm.Communicator) -> None:
    n = comm.world_size
    x = torch.empty(2 * n, 3 * n, device="meta", dtype=torch.bfloat16)
    cases = {
        "all_reduce": (torch.ops.tpcomm.all_reduce(x), (2 * n, 3 * n)),
        "all_reduce_": (torch.ops.tpcomm.all_reduce_(x, "max"), (2 * n, 3 * n)),
        "all_gather": (torch.ops.tpcomm.all_gather(x), (2 * n, 3 * n * n)),
        "all_gather dim 0": (torch.ops.tpcomm.all_gather(x, 0), (2 * n * n, 3 * n)),
        "reduce_scatter": (torch.ops.tpcomm.reduce_scatter(x), (2 * n, 3)),
        "reduce_scatter dim 0": (torch.ops.tpcomm.reduce_scatter(x, 0), (2, 3 * n)),
        "broadcast": (torch.ops.tpcomm.broadcast(x, 1), (2 * n, 3 * n)),
        "all_to_all": (torch.ops.tpcomm.all_to_all(x), (2 * n, 3 * n)),
    }
    for label, (t, shape) in cases.items():
        assert t.device.type == "meta" and t.dtype == torch.bfloat16, label
        assert tuple(t.shape) == shape, f"{label}: {tuple(t.shape)} != {shape}"
    assert torch.ops.tpcomm.all_reduce_(x) is x
    odd = torch.empty(n + 1, 2, device="meta")
    for label, call in {
        "reduce_scatter": lambda: torch.ops.tpcomm.reduce_scatter(odd, 0),
        "all_to_all": lambda: torch.ops.tpcomm.all_to_all(odd),
    }.items():
        try:
            call()
        except ValueError as e:
            assert "not divisible" in str(e), str(e)
        else:
            raise AssertionError(f"{label} meta kernel accepted an indivisible size")


# ---- modules under test (module level so TorchScript can compile them) -----------


class InplaceAfterMul(torch.nn.Module):
    """The motivating pattern: y = x * 2; all_reduce_(y); return y + 1."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(2.0), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x * self.scale
        torch.ops.tpcomm.all_reduce_(y)
        return y + 1


class FunctionalAfterMul(torch.nn.Module):
    """The same with the functional op: y = all_reduce(x * 2); return y + 1."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(2.0), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.ops.tpcomm.all_reduce(x * self.scale)
        return y + 1


class InplaceOnInput(torch.nn.Module):
    """Mutates its input; the caller must see the reduced input afterwards."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        torch.ops.tpcomm.all_reduce_(x)
        return x * 3


class InplaceOnView(torch.nn.Module):
    """Reduces a slice of an intermediate; the rest must stay unreduced."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x + 0.5
        torch.ops.tpcomm.all_reduce_(y[:, 1:3], "max")
        return y * 2


class ChainedOps(torch.nn.Module):
    """Several collectives whose order matters (max, then sum of that, then avg)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = x * 1.0
        torch.ops.tpcomm.all_reduce_(a, "max")
        b = torch.ops.tpcomm.all_reduce(a + x, "sum")
        torch.ops.tpcomm.all_reduce_(b, "avg")
        return b - a


class ReduceOfParameter(torch.nn.Module):
    """After freezing, w * 2 could become a constant the in-place op then mutates."""

    def __init__(self, w: torch.Tensor) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(w, requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.w * 2
        torch.ops.tpcomm.all_reduce_(y)
        z = torch.ops.tpcomm.all_reduce(self.w)
        return x + y + z


class TensorParallelMLP(torch.nn.Module):
    """Column-parallel linear, GELU, row-parallel linear, all_reduce, bias."""

    inplace: Final[bool]

    def __init__(self, w1: torch.Tensor, b1: torch.Tensor, w2: torch.Tensor, b2: torch.Tensor, inplace: bool) -> None:
        super().__init__()
        self.w1 = torch.nn.Parameter(w1)
        self.b1 = torch.nn.Parameter(b1)
        self.w2 = torch.nn.Parameter(w2)
        self.b2 = torch.nn.Parameter(b2)
        self.inplace = inplace

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.gelu(F.linear(x, self.w1, self.b1))
        partial = F.linear(h, self.w2)
        if self.inplace:
            torch.ops.tpcomm.all_reduce_(partial)
            out = partial
        else:
            out = torch.ops.tpcomm.all_reduce(partial)
        return out + self.b2


# A deliberately mis-declared collective: mutates x but its schema says it is
# functional. This is the bug class the harness exists to catch.
_TEST_LIB = Library("tpcomm_test", "DEF")
_TEST_LIB.define('bad_all_reduce_(Tensor x, str op="sum", str group="world") -> Tensor')


def _bad_all_reduce_cpu(x: torch.Tensor, op: str = "sum", group: str = "world") -> torch.Tensor:
    tpcomm.get_group(group).all_reduce_(x, op)
    return x


_TEST_LIB.impl("bad_all_reduce_", _bad_all_reduce_cpu, "CPU")


class MisdeclaredInplace(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x * 2
        torch.ops.tpcomm_test.bad_all_reduce_(y)
        return y + 1


def _motivating_inputs(comm: tpcomm.Communicator, seed: int) -> tuple[list[np.ndarray], Callable[[], list[torch.Tensor]]]:
    xs = all_inputs(comm, (4, 8), seed=seed)
    return xs, lambda: [torch.from_numpy(xs[comm.rank].copy())]


def _hints(comm: tpcomm.Communicator, unreduced: np.ndarray) -> dict[str, np.ndarray]:
    return {"unreduced": unreduced, "all-zeros": np.zeros_like(unreduced)}


@case()
def case_fx_dce_keeps_inplace_op(comm: tpcomm.Communicator) -> None:
    gm = torch.fx.symbolic_trace(InplaceAfterMul())
    gm.graph.eliminate_dead_code()
    targets = [n.target for n in gm.graph.nodes if n.op == "call_function"]
    assert torch.ops.tpcomm.all_reduce_ in targets, f"DCE dropped all_reduce_: {gm.code}"
    bad = torch.fx.symbolic_trace(MisdeclaredInplace())
    bad.graph.eliminate_dead_code()
    assert torch.ops.tpcomm_test.bad_all_reduce_ not in [n.target for n in bad.graph.nodes], (
        "expected fx DCE to drop the mis-declared op (negative control)"
    )


@case()
def case_functionalize_and_jit_graphs(comm: tpcomm.Communicator) -> None:
    """functionalize rewrites all_reduce_ to all_reduce (+ copy); TorchScript keeps it."""
    from functorch import functionalize, make_fx

    x = torch.from_numpy(rank_data(comm.rank, (4, 8), seed=17))
    for module in (InplaceAfterMul(), InplaceOnInput()):
        gm = make_fx(functionalize(module))(x.clone())
        targets = {n.target for n in gm.graph.nodes if n.op == "call_function"}
        assert torch.ops.tpcomm.all_reduce.default in targets, gm.code
        assert torch.ops.tpcomm.all_reduce_.default not in targets, f"mutation left in the graph:\n{gm.code}"
    for module in (InplaceAfterMul(), TensorParallelMLP(*_mlp_parts(comm)[2], inplace=True)):
        scripted = torch.jit.freeze(torch.jit.script(module.eval()))
        assert "tpcomm::all_reduce_(" in str(scripted.graph), str(scripted.graph)


@case()
def case_motivating_inplace(comm: tpcomm.Communicator) -> None:
    xs, inputs = _motivating_inputs(comm, 10)
    want = reference("sum", [x * np.float32(2) for x in xs]) + np.float32(1)
    report = check(InplaceAfterMul(), inputs, want, hints=_hints(comm, xs[comm.rank] * 2 + 1))
    assert_all_ok(report, "y = x*2; all_reduce_(y); return y+1")


@case()
def case_motivating_functional(comm: tpcomm.Communicator) -> None:
    xs, inputs = _motivating_inputs(comm, 11)
    want = reference("sum", [x * np.float32(2) for x in xs]) + np.float32(1)
    report = check(FunctionalAfterMul(), inputs, want, hints=_hints(comm, xs[comm.rank] * 2 + 1))
    assert_all_ok(report, "y = all_reduce(x*2); return y+1")


@case()
def case_inplace_on_graph_input(comm: tpcomm.Communicator) -> None:
    xs, inputs = _motivating_inputs(comm, 12)
    reduced = reference("sum", xs)
    report = check(InplaceOnInput(), inputs, reduced * np.float32(3), expected_input=reduced,
                   hints=_hints(comm, xs[comm.rank] * 3))
    assert_all_ok(report, "all_reduce_(x); return x*3")


@case()
def case_inplace_on_view(comm: tpcomm.Communicator) -> None:
    xs, inputs = _motivating_inputs(comm, 13)
    ys = [x + np.float32(0.5) for x in xs]
    want = ys[comm.rank].copy()
    want[:, 1:3] = reference("max", [y[:, 1:3] for y in ys])
    report = check(InplaceOnView(), inputs, want * np.float32(2), hints=_hints(comm, ys[comm.rank] * 2))
    assert_all_ok(report, "all_reduce_(y[:, 1:3], 'max')")


@case()
def case_chained_collectives_keep_order(comm: tpcomm.Communicator) -> None:
    xs, inputs = _motivating_inputs(comm, 14)
    a = reference("max", xs)
    b = reference("sum", [a + x for x in xs])
    b = reference("avg", [b] * comm.world_size)
    report = check(ChainedOps(), inputs, b - a)
    assert_all_ok(report, "max_, sum, avg_ chain")


@case()
def case_freeze_keeps_collectives_at_run_time(comm: tpcomm.Communicator) -> None:
    w = torch.from_numpy(rank_data(comm.rank, (4, 8), seed=15))
    ws = all_inputs(comm, (4, 8), seed=15)
    xs, inputs = _motivating_inputs(comm, 16)
    want = xs[comm.rank] + reference("sum", [v * np.float32(2) for v in ws]) + reference("sum", ws)
    report = check(ReduceOfParameter(w), inputs, want, calls=3)
    assert_all_ok(report, "in-place and functional collectives of a frozen parameter")
    frozen = torch.jit.freeze(torch.jit.script(ReduceOfParameter(w).eval()))
    graph = str(frozen.graph)
    assert "tpcomm::all_reduce(" in graph and "tpcomm::all_reduce_(" in graph, (
        f"freeze folded a collective into a constant:\n{graph}"
    )


def _mlp_parts(comm: tpcomm.Communicator, d_model: int = 32, d_ff: int = 64, batch: int = 6) -> tuple[torch.Tensor, tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]:
    g = torch.Generator().manual_seed(1234)
    w1 = torch.randn(d_ff, d_model, generator=g) * 0.2
    b1 = torch.randn(d_ff, generator=g) * 0.1
    w2 = torch.randn(d_model, d_ff, generator=g) * 0.2
    b2 = torch.randn(d_model, generator=g) * 0.1
    x = torch.randn(batch, d_model, generator=g)
    shard = d_ff // comm.world_size
    rows = slice(comm.rank * shard, (comm.rank + 1) * shard)
    return x, (w1, b1, w2, b2), (w1[rows].clone(), b1[rows].clone(), w2[:, rows].clone(), b2.clone())


@case()
def case_tensor_parallel_mlp(comm: tpcomm.Communicator) -> None:
    x, (w1, b1, w2, b2), shards = _mlp_parts(comm)
    want = F.linear(F.gelu(F.linear(x, w1, b1)), w2, b2).numpy()
    for inplace in (False, True):
        report = check(TensorParallelMLP(*shards, inplace=inplace), lambda: [x.clone()], want, atol=1e-5)
        assert_all_ok(report, f"TP MLP ({'all_reduce_' if inplace else 'all_reduce'})")


@case()
def case_negative_control_is_caught(comm: tpcomm.Communicator) -> None:
    """The harness must flag the mis-declared op; otherwise it proves nothing."""
    xs, inputs = _motivating_inputs(comm, 10)
    want = reference("sum", [x * np.float32(2) for x in xs]) + np.float32(1)
    report = check(MisdeclaredInplace(), inputs, want, hints=_hints(comm, xs[comm.rank] * 2 + 1))
    assert report["eager"] is None, f"the mis-declared op is right eagerly: {report['eager']}"
    assert report["fx"] is not None, "harness failed to catch fx DCE dropping a mis-declared in-place op"
    assert "unreduced" in report["fx"], report["fx"]
    print(f"[rank {comm.rank}] negative control report: {report}", flush=True)


@case()
def case_device_communicator_all_reduce(comm: tpcomm.Communicator) -> None:
    dc = tpcomm.torch.DeviceCommunicator()
    assert (dc.rank, dc.world_size, dc.device.type) == (comm.rank, comm.world_size, "cpu")
    xs = all_inputs(comm, (3, 5), seed=20)
    x = torch.from_numpy(xs[comm.rank].copy())
    y = dc.all_reduce(x)
    assert np.array_equal(y.numpy(), reference("sum", xs))
    assert np.array_equal(x.numpy(), xs[comm.rank]), "DeviceCommunicator.all_reduce mutated its input"
    xt = torch.from_numpy(xs[comm.rank].copy()).t()
    assert np.array_equal(dc.all_reduce(xt).numpy(), reference("sum", xs).T)
    dc.destroy()


# =================================================================================
# Other collectives (skipped while the library lacks their C functions)
# =================================================================================


class GatherAfterMul(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.tpcomm.all_gather(x * 2, -1) + 1


class ReduceScatterAfterMul(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.tpcomm.reduce_scatter(x * 2, -1, "sum") + 1


class BroadcastAfterMul(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.tpcomm.broadcast(x * 2, 1) + 1


class AllToAllAfterMul(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.tpcomm.all_to_all(x * 2) + 1


def _op_check(comm: tpcomm.Communicator, module: torch.nn.Module, want_of: Callable[[list[np.ndarray]], np.ndarray], seed: int) -> None:
    n = comm.world_size
    xs = all_inputs(comm, (2 * n, 3 * n), seed=seed)
    doubled = [x * np.float32(2) for x in xs]
    report = check(module, lambda: [torch.from_numpy(xs[comm.rank].copy())], want_of(doubled) + np.float32(1))
    assert_all_ok(report, type(module).__name__)


@case("tpcomm_all_gather")
def case_op_all_gather(comm: tpcomm.Communicator) -> None:
    _op_check(comm, GatherAfterMul(), lambda d: np.concatenate(d, axis=-1), 30)


@case("tpcomm_reduce_scatter")
def case_op_reduce_scatter(comm: tpcomm.Communicator) -> None:
    r = comm.rank
    _op_check(comm, ReduceScatterAfterMul(), lambda d: np.split(reference("sum", d), comm.world_size, axis=-1)[r], 31)


@case("tpcomm_broadcast")
def case_op_broadcast(comm: tpcomm.Communicator) -> None:
    _op_check(comm, BroadcastAfterMul(), lambda d: d[1], 32)


@case("tpcomm_all_to_all")
def case_op_all_to_all(comm: tpcomm.Communicator) -> None:
    r, n = comm.rank, comm.world_size
    _op_check(comm, AllToAllAfterMul(), lambda d: np.concatenate([np.split(v, n, axis=0)[r] for v in d], axis=0), 33)


@case("tpcomm_all_gather", "tpcomm_all_gatherv")
def case_numpy_all_gather(comm: tpcomm.Communicator) -> None:
    n, r = comm.world_size, comm.rank
    xs = all_inputs(comm, (3, 4, 5), np.int32, seed=40)
    for dim in (0, 1, -1):
        assert_bitwise(comm.all_gather(xs[r], dim), np.concatenate(xs, axis=dim), f"all_gather dim {dim}")
    sizes = [1 + k for k in range(n)]
    parts = [rank_data(k, (2, sizes[k], 3), np.float64, seed=41) for k in range(n)]
    for dim, arrs in ((1, parts), (0, [np.moveaxis(p, 1, 0).copy() for p in parts])):
        got = comm.all_gatherv(arrs[r], sizes, dim)
        assert_bitwise(got, np.concatenate(arrs, axis=dim), f"all_gatherv dim {dim}")
    t = torch.from_numpy(xs[r].copy())
    assert np.array_equal(comm.all_gather(t.transpose(0, 2), 0).numpy(), np.concatenate([x.transpose(2, 1, 0) for x in xs], 0))


@case("tpcomm_reduce_scatter", "tpcomm_reduce_scatterv")
def case_numpy_reduce_scatter(comm: tpcomm.Communicator) -> None:
    n, r = comm.world_size, comm.rank
    xs = all_inputs(comm, (2 * n, 3, 3 * n), seed=42)
    total = reference("sum", xs)
    for dim in (0, 2, -1):
        got = comm.reduce_scatter(xs[r], "sum", dim)
        assert_bitwise(got, np.split(total, n, axis=dim)[r], f"reduce_scatter dim {dim}")
    sizes = [k + 1 for k in range(n)]
    ys = all_inputs(comm, (3, sum(sizes)), np.int64, seed=43)
    bounds = np.cumsum([0] + sizes)
    got = comm.reduce_scatterv(ys[r], sizes, "max", dim=1)
    assert_bitwise(got, reference("max", ys)[:, bounds[r]:bounds[r + 1]], "reduce_scatterv dim 1")


@case("tpcomm_broadcast", "tpcomm_reduce", "tpcomm_gather", "tpcomm_scatter", "tpcomm_all_to_all")
def case_numpy_rooted_and_all_to_all(comm: tpcomm.Communicator) -> None:
    n, r = comm.world_size, comm.rank
    xs = all_inputs(comm, (n, 6), seed=44)
    src = n - 1
    x = xs[r].copy()
    assert_bitwise(comm.broadcast(x, src), xs[src], "broadcast")
    assert_bitwise(x, xs[r], "broadcast left its input")
    assert comm.broadcast_(x, src) is x
    assert_bitwise(x, xs[src], "broadcast_")
    red = comm.reduce(xs[r], dst=1, op="sum")
    assert (red is None) == (r != 1)
    if red is not None:
        assert_bitwise(red, reference("sum", xs), "reduce")
    gat = comm.gather(xs[r], dst=0, dim=1)
    assert (gat is None) == (r != 0)
    if gat is not None:
        assert_bitwise(gat, np.concatenate(xs, axis=1), "gather")
    assert_bitwise(comm.scatter(xs[r], src=1, dim=0), np.split(xs[1], n, axis=0)[r], "scatter")
    assert_bitwise(comm.all_to_all(xs[r]), np.concatenate([np.split(v, n)[r] for v in xs]), "all_to_all")


@case("tpcomm_send", "tpcomm_recv")
def case_numpy_send_recv(comm: tpcomm.Communicator) -> None:
    n, r = comm.world_size, comm.rank
    xs = all_inputs(comm, (5, 3), seed=45)
    nxt, prv = (r + 1) % n, (r - 1) % n
    if r % 2 == 0:
        comm.send(xs[r], nxt)
        got = comm.recv((5, 3), np.float32, prv)
    else:
        got = comm.recv((5, 3), np.float32, prv)
        comm.send(xs[r], nxt)
    assert_bitwise(got, xs[prv], "recv")


@case("tpcomm_all_gather", "tpcomm_all_gatherv", "tpcomm_reduce_scatter", "tpcomm_reduce_scatterv",
      "tpcomm_gather", "tpcomm_broadcast", "tpcomm_send", "tpcomm_recv")
def case_device_communicator_collectives(comm: tpcomm.Communicator) -> None:
    dc = tpcomm.torch.DeviceCommunicator()
    n, r = comm.world_size, comm.rank
    xs = all_inputs(comm, (2, 3 * n), seed=50)
    t = torch.from_numpy(xs[r].copy())
    assert np.array_equal(dc.all_gather(t).numpy(), np.concatenate(xs, axis=-1))
    assert np.array_equal(dc.all_gather(t, 0).numpy(), np.concatenate(xs, axis=0))
    assert np.array_equal(dc.reduce_scatter(t).numpy(), np.split(reference("sum", xs), n, axis=-1)[r])
    sizes = [3 * n - (n - 1)] + [1] * (n - 1)
    bounds = np.cumsum([0] + sizes)
    assert np.array_equal(dc.reduce_scatterv(t, -1, sizes).numpy(), reference("sum", xs)[:, bounds[r]:bounds[r + 1]])
    part = torch.from_numpy(rank_data(r, (r + 1, 2), seed=51))
    want = np.concatenate([rank_data(k, (k + 1, 2), seed=51) for k in range(n)], 0)
    assert np.array_equal(dc.all_gatherv(part, 0, [k + 1 for k in range(n)]).numpy(), want)
    g = dc.gather(t, dst=0, dim=-1)
    assert (g is None) == (r != 0)
    if g is not None:
        assert np.array_equal(g.numpy(), np.concatenate(xs, axis=-1))
    b = t.clone()
    assert dc.broadcast(b, src=1) is b and np.array_equal(b.numpy(), xs[1])
    assert np.array_equal(t.numpy(), xs[r])
    if r % 2 == 0:
        dc.send(t)
        got = dc.recv(t.shape, t.dtype)
    else:
        got = dc.recv(t.shape, t.dtype)
        dc.send(t)
    assert np.array_equal(got.numpy(), xs[(r - 1) % n])


@case()
def case_missing_symbols_fail_loudly(comm: tpcomm.Communicator) -> None:
    """Operators whose C function is absent raise NotImplementedError naming it."""
    from tpcomm.torch._ops import REQUIRED_SYMBOLS, missing_symbol

    x = torch.ones(comm.world_size, 2)
    calls = {
        "all_gather": lambda: torch.ops.tpcomm.all_gather(x),
        "reduce_scatter": lambda: torch.ops.tpcomm.reduce_scatter(x, 0),
        "broadcast": lambda: torch.ops.tpcomm.broadcast(x),
        "all_to_all": lambda: torch.ops.tpcomm.all_to_all(x),
    }
    for name, call in calls.items():
        symbol = missing_symbol(name)
        if symbol is None:
            continue
        try:
            call()
        except NotImplementedError as e:
            assert REQUIRED_SYMBOLS[name] in str(e), str(e)
        else:
            raise AssertionError(f"{name} ran without {symbol}")



@case()
def case_mismatch_becomes_mismatch_error(comm: tpcomm.Communicator) -> None:
    """Ranks disagreeing on the count get MismatchError with both calls described."""
    with tpcomm.Communicator(comm.rank, comm.world_size, job_id("mismatch"), timeout=30) as c:
        try:
            c.all_reduce(np.ones(4 + comm.rank, np.float32))
        except tpcomm.MismatchError as e:
            assert e.status_name == "TPCOMM_ERROR_MISMATCH" and "count" in e.message, e.message
        else:
            raise AssertionError("mismatched counts were not reported")
    comm.barrier()


# ---- groups and shared buffers -----------------------------------------------------


@case("tpcomm_comm_split", "tpcomm_comm_new_group")
def case_split_and_new_group(comm: tpcomm.Communicator) -> None:
    n, r = comm.world_size, comm.rank
    # Two halves ordered by reversed key; each half reduces its own members' inputs.
    half = comm.split(r % 2, key=-r)
    assert half is not None
    members = sorted((q for q in range(n) if q % 2 == r % 2), reverse=True)
    assert half.world_size == len(members) and half.rank == members.index(r)
    inputs = [rank_data(q, (257,), np.float32, seed=41) for q in range(n)]
    got = half.all_reduce(inputs[r])
    assert_bitwise(got, reference("sum", [inputs[q] for q in members]), "split group all_reduce")
    # The undefined color leaves a rank out.
    none_for_last = comm.split(tpcomm.COLOR_UNDEFINED if r == n - 1 else 0)
    assert (none_for_last is None) == (r == n - 1)
    # new_group with a non-contiguous list, in list order.
    listed = [n - 1, 0]
    group = comm.new_group(listed)
    if r in listed:
        assert group is not None and group.rank == listed.index(r)
        assert_bitwise(group.all_reduce(inputs[r]), reference("sum", [inputs[q] for q in listed]), "new_group")
        group.close()
    else:
        assert group is None
    if none_for_last is not None:
        none_for_last.close()
    half.close()
    comm.barrier()


@case("tpcomm_alloc_shared", "tpcomm_free_shared")
def case_alloc_shared_zero_copy(comm: tpcomm.Communicator) -> None:
    n, r = comm.world_size, comm.rank
    x = comm.alloc_shared((64, 33), np.float32)
    assert x.shape == (64, 33) and x.dtype == np.float32
    inputs = [rank_data(q, (64, 33), np.float32, seed=77) for q in range(n)]
    for _ in range(3):  # inputs rewritten every call, as a producer does
        x[...] = inputs[r]
        y = comm.all_reduce(x)
        x[...] = -1.0  # overwriting the input right after the call must not disturb peers
        assert_bitwise(y, reference("sum", inputs), "zero-copy out-of-place")
    x[...] = inputs[r]
    comm.all_reduce_(x)
    assert_bitwise(x, reference("sum", inputs), "zero-copy in-place")
    t = comm.alloc_shared(100, torch.bfloat16)
    tin = [torch_rank_data(q, (100,), torch.bfloat16, seed=5) for q in range(n)]
    t.copy_(tin[r])
    out = comm.all_reduce(t)
    assert_torch_bitwise(out, torch_reference("sum", tin), "zero-copy bf16 tensor")
    # close() refuses while shared arrays live; after they are gone it works.
    probe = tpcomm.Communicator(r, n, job_id("shared-close"))
    held = probe.alloc_shared(8, np.int32)
    try:
        probe.close()
        raise AssertionError("close() must refuse while a shared array is alive")
    except tpcomm.Error as error:
        assert "still alive" in str(error)
    del held
    probe.close()
    del x, t
