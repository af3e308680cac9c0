"""The Communicator: collectives over numpy arrays and torch CPU tensors.

Naming follows torch conventions: ``all_reduce(x)`` returns a new array and
never writes ``x``; ``all_reduce_(x)`` overwrites ``x`` and returns it. The
out-of-place form calls the C API with disjoint send/recv buffers, so the
result is written straight into freshly allocated memory: there is no copy of
the input followed by an in-place reduction.

Non-contiguous inputs are handled, never misread: the out-of-place forms
reduce a contiguous copy, and the in-place forms reduce a contiguous copy and
write it back into the strided input.
"""

from __future__ import annotations

import ctypes
import os
import sys
import weakref
from typing import Any, Sequence, TypeVar

import numpy as np

from . import _library
from ._arrays import Adapter, adapter_for
from ._errors import Error, error_for_status
from ._types import ReduceOp, parse_dtype, parse_op

__all__ = ["Communicator"]

Array = TypeVar("Array")


# Called with a communicator's handle just before it is destroyed (the torch
# operators' C++ kernels keep handles by group name and must forget it).
_CLOSE_HOOKS: list[Any] = []


def _check(status: int, what: str) -> None:
    if status != 0:
        message = _library.last_error() or f"{what} failed"
        raise error_for_status(status, message, _library.status_name(status))


def _normalize_dim(dim: int, ndim: int, what: str) -> int:
    if ndim == 0:
        raise ValueError(f"tpcomm: {what} needs at least one dimension, got a 0-d array")
    if not -ndim <= dim < ndim:
        raise IndexError(f"tpcomm: {what}: dim {dim} out of range for {ndim} dimensions")
    return dim % ndim


def _inner(shape: Sequence[int], dim: int) -> int:
    """Elements per unit step along dim."""
    n = 1
    for s in shape[dim + 1 :]:
        n *= s
    for s in shape[:dim]:
        n *= s
    return n


class Communicator:
    """A group of processes on this machine joined through shared memory.

    Every rank must call the same collectives in the same order with matching
    shapes and dtypes. Use as a context manager, or call :meth:`close`.

    Args:
        rank: this process's rank in ``[0, world_size)``.
        world_size: number of processes.
        job_id: identifies the job; ranks with the same id rendezvous.
        timeout: seconds every wait may take (``None``: ``$TPCOMM_TIMEOUT`` or 300 s).
        chunk_bytes: staging slot size (``None``: ``$TPCOMM_CHUNK_BYTES`` or the default).
    """

    def __init__(
        self,
        rank: int,
        world_size: int,
        job_id: str,
        timeout: float | None = None,
        chunk_bytes: int | None = None,
    ) -> None:
        self._handle: int | None = None
        options = self._options(timeout, chunk_bytes)
        out = ctypes.c_void_p()
        _check(
            _library.lib.tpcomm_comm_create(
                int(rank), int(world_size), str(job_id).encode(), ctypes.byref(options), ctypes.byref(out)
            ),
            "tpcomm_comm_create",
        )
        self._adopt(out)

    @classmethod
    def from_env(cls, timeout: float | None = None, chunk_bytes: int | None = None) -> "Communicator":
        """Create from tpcomm-run's, torchrun's or Open MPI's environment variables."""
        self = cls.__new__(cls)
        self._handle = None
        options = cls._options(timeout, chunk_bytes)
        out = ctypes.c_void_p()
        _check(
            _library.lib.tpcomm_comm_create_from_env(ctypes.byref(options), ctypes.byref(out)),
            "tpcomm_comm_create_from_env",
        )
        self._adopt(out)
        return self

    @staticmethod
    def _options(timeout: float | None, chunk_bytes: int | None) -> _library.Options:
        options = _library.Options()
        _library.lib.tpcomm_options_init(ctypes.byref(options))
        if timeout is not None:
            if timeout <= 0:
                raise ValueError(f"tpcomm: timeout must be positive, got {timeout}")
            options.timeout_seconds = float(timeout)
        if chunk_bytes is not None:
            if chunk_bytes <= 0:
                raise ValueError(f"tpcomm: chunk_bytes must be positive, got {chunk_bytes}")
            options.chunk_bytes = int(chunk_bytes)
        return options

    def _adopt(self, out: ctypes.c_void_p) -> None:
        self._handle = out.value
        rank = ctypes.c_int()
        world = ctypes.c_int()
        _check(_library.lib.tpcomm_comm_rank(self._handle, ctypes.byref(rank)), "tpcomm_comm_rank")
        _check(
            _library.lib.tpcomm_comm_world_size(self._handle, ctypes.byref(world)),
            "tpcomm_comm_world_size",
        )
        self._rank = rank.value
        self._world_size = world.value
        self._pid = os.getpid()

    # ---- lifetime -----------------------------------------------------------

    @property
    def rank(self) -> int:
        return self._rank

    @property
    def world_size(self) -> int:
        return self._world_size

    @property
    def closed(self) -> bool:
        return self._handle is None

    def close(self) -> None:
        """Release the communicator. Idempotent; not collective; never blocks.

        Raises if arrays from :meth:`alloc_shared` are still alive: their memory
        belongs to the communicator, so they must be deleted first.
        """
        shared = getattr(self, "_shared", None)
        if shared and getattr(self, "_handle", None) is not None:
            raise Error(
                f"tpcomm: close(): {len(shared)} array(s) from alloc_shared are still alive; "
                "delete them before closing the communicator"
            )
        handle, self._handle = getattr(self, "_handle", None), None
        if handle is not None:
            for hook in _CLOSE_HOOKS:
                hook(handle)
        # A forked child must not tear down its parent's shared state.
        if handle is not None and getattr(self, "_pid", None) == os.getpid():
            _check(_library.lib.tpcomm_comm_destroy(handle), "tpcomm_comm_destroy")

    def __enter__(self) -> "Communicator":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<tpcomm.Communicator rank={self._rank} world_size={self._world_size} {state}>"

    @property
    def handle(self) -> int:
        """The raw ``tpcomm_comm_t`` (for other bindings); raises if closed."""
        if self._handle is None:
            raise Error("tpcomm: the communicator is closed")
        return self._handle

    # ---- groups and shared buffers -------------------------------------------

    def _child(self, out: ctypes.c_void_p) -> "Communicator | None":
        if not out.value:
            return None
        child = Communicator.__new__(Communicator)
        child._handle = None
        child._adopt(out)
        return child

    def split(self, color: int, key: int = 0) -> "Communicator | None":
        """Collective: ranks with the same color (>= 0) form a new communicator.

        Ranks are ordered by key, then by rank here (``MPI_Comm_split``
        semantics). ``color=tpcomm.COLOR_UNDEFINED`` returns None. The new
        communicator is independent: close it on its own.
        """
        out = ctypes.c_void_p()
        fn = _library.require("tpcomm_comm_split")
        _check(fn(self.handle, int(color), int(key), ctypes.byref(out)), "split")
        return self._child(out)

    def new_group(self, ranks: Sequence[int]) -> "Communicator | None":
        """Collective: every rank passes the same list; listed ranks get a
        communicator ordered as the list, the others None."""
        listed = [int(r) for r in ranks]
        array = (ctypes.c_int * max(1, len(listed)))(*listed)
        out = ctypes.c_void_p()
        fn = _library.require("tpcomm_comm_new_group")
        _check(fn(self.handle, array, len(listed), ctypes.byref(out)), "new_group")
        return self._child(out)

    def alloc_shared(self, shape: Sequence[int] | int, dtype: Any = np.float32) -> Any:
        """Collective: an array in a shared buffer of this communicator.

        ``all_reduce``/``all_reduce_`` on such arrays run zero-copy (the peers'
        data is read in place instead of being copied into staging first). Every
        rank must call it with the same shape and dtype and pass arrays at the
        same offset. ``dtype`` is a numpy dtype, or a torch dtype to get a
        tensor (``torch.bfloat16`` included). The memory is freed when the last
        array (or view) of it is gone.
        """
        dims = (int(shape),) if isinstance(shape, int) else tuple(int(d) for d in shape)
        count = 1
        for d in dims:
            count *= d
        torch_module = sys.modules.get("torch")
        is_torch = torch_module is not None and isinstance(dtype, torch_module.dtype)
        if is_torch:
            element = torch_module.empty((), dtype=dtype).element_size()
        else:
            element = np.dtype(dtype).itemsize
        nbytes = max(1, count * element)
        pointer = ctypes.c_void_p()
        fn = _library.require("tpcomm_alloc_shared")
        _check(fn(self.handle, nbytes, ctypes.byref(pointer)), "alloc_shared")
        # The ctypes array carries the owner; numpy arrays (and torch tensors
        # made from them) keep it alive through their base chain.
        raw = (ctypes.c_uint8 * nbytes).from_address(pointer.value)
        raw._tpcomm_owner = _SharedMemory(self, pointer.value)
        flat = np.frombuffer(raw, dtype=np.uint8)[: count * element]
        if is_torch:
            return torch_module.from_numpy(flat).view(dtype).reshape(dims)
        return flat.view(np.dtype(dtype)).reshape(dims)

    def set_timeout(self, seconds: float) -> None:
        """Change the bound on every later wait on this communicator."""
        _check(_library.lib.tpcomm_comm_set_timeout(self.handle, float(seconds)), "set_timeout")

    def all_reduce_algorithm(self, nbytes: int, dtype: Any = "f32") -> str:
        """Name of the all_reduce algorithm chosen for a message of nbytes of dtype."""
        fn = _library.require("tpcomm_all_reduce_algorithm")
        raw = fn(self.handle, int(nbytes), int(parse_dtype(dtype)))
        return raw.decode() if raw else ""

    def barrier(self) -> None:
        """Return once every rank has entered the barrier."""
        _check(_library.lib.tpcomm_barrier(self.handle), "barrier")

    # ---- internals ----------------------------------------------------------

    def _root(self, root: int, what: str) -> int:
        root = int(root)
        if not 0 <= root < self._world_size:
            raise ValueError(f"tpcomm: {what}: rank {root} is outside [0, {self._world_size})")
        return root

    def _split(self, a: Adapter, x: Any, dim: int, what: str) -> tuple[int, int]:
        """(normalized dim, chunk size along it) for an equal split across ranks."""
        shape = a.shape(x)
        d = _normalize_dim(dim, len(shape), what)
        if shape[d] % self._world_size:
            raise ValueError(
                f"tpcomm: {what}: size {shape[d]} of dim {d} is not divisible by world size {self._world_size}"
            )
        return d, shape[d] // self._world_size

    def _counts(self, sizes: Sequence[int], inner: int, what: str) -> Any:
        sizes = [int(s) for s in sizes]
        if len(sizes) != self._world_size:
            raise ValueError(f"tpcomm: {what}: got {len(sizes)} sizes for world size {self._world_size}")
        if any(s < 0 for s in sizes):
            raise ValueError(f"tpcomm: {what}: negative size in {sizes}")
        return (ctypes.c_size_t * self._world_size)(*(s * inner for s in sizes))

    # ---- all_reduce ---------------------------------------------------------

    def all_reduce(self, x: Array, op: str | ReduceOp = "sum") -> Array:
        """Element-wise reduction across ranks into a new array; x is not written."""
        a = adapter_for(x)
        code = parse_op(op)
        dtype = a.dtype(x)
        if a.is_contiguous(x):
            out = a.empty(a.shape(x), x)
            send = a.ptr(x)
        else:
            out = a.contiguous(x)  # already a private copy: reduce it in place
            send = a.ptr(out)
        _check(
            _library.lib.tpcomm_all_reduce(self.handle, send, a.ptr(out), a.numel(x), dtype, code),
            "all_reduce",
        )
        return out

    def all_reduce_(self, x: Array, op: str | ReduceOp = "sum") -> Array:
        """Element-wise reduction across ranks, overwriting x; returns x."""
        a = adapter_for(x)
        code = parse_op(op)
        dtype = a.dtype(x)
        if not a.writable(x):
            raise ValueError("tpcomm: all_reduce_ needs a writable array (this one is read-only)")
        buf = a.contiguous(x)
        _check(
            _library.lib.tpcomm_all_reduce(self.handle, a.ptr(buf), a.ptr(buf), a.numel(x), dtype, code),
            "all_reduce_",
        )
        if buf is not x:
            a.copy_into(x, buf)
        return x

    # ---- other collectives (bound when the library exports them) -----------

    def all_gather(self, x: Array, dim: int = 0) -> Array:
        """Concatenation of every rank's x along dim (same shape on every rank)."""
        fn = _library.require("tpcomm_all_gather")
        a = adapter_for(x)
        shape = a.shape(x)
        d = _normalize_dim(dim, len(shape), "all_gather")
        send = a.contiguous(x)
        n = self._world_size
        if d == 0:
            out = a.empty((n * shape[0],) + shape[1:], x)
            _check(fn(self.handle, a.ptr(send), a.ptr(out), a.numel(x), a.dtype(x)), "all_gather")
            return out
        stacked = a.empty((n,) + shape, x)
        _check(fn(self.handle, a.ptr(send), a.ptr(stacked), a.numel(x), a.dtype(x)), "all_gather")
        merged = shape[:d] + (n * shape[d],) + shape[d + 1 :]
        return a.contiguous(a.reshape(a.movedim(stacked, 0, d), merged))

    def all_gatherv(self, x: Array, sizes: Sequence[int] | None = None, dim: int = 0) -> Array:
        """Concatenation along dim where rank r contributes sizes[r] slices.

        ``sizes=None`` means every rank contributes ``x.shape[dim]`` (all_gather).
        """
        a = adapter_for(x)
        shape = a.shape(x)
        d = _normalize_dim(dim, len(shape), "all_gatherv")
        if sizes is None:
            return self.all_gather(x, d)
        fn = _library.require("tpcomm_all_gatherv")
        sizes = [int(s) for s in sizes]
        if len(sizes) == self._world_size and sizes[self._rank] != shape[d]:
            raise ValueError(
                f"tpcomm: all_gatherv: rank {self._rank} holds {shape[d]} slices along dim {d} "
                f"but sizes[{self._rank}] = {sizes[self._rank]}"
            )
        counts = self._counts(sizes, _inner(shape, d), "all_gatherv")
        send = a.contiguous(a.movedim(x, d, 0))
        rest = a.shape(send)[1:]
        buf = a.empty((sum(sizes),) + rest, x)
        _check(fn(self.handle, a.ptr(send), a.ptr(buf), counts, a.dtype(x)), "all_gatherv")
        return buf if d == 0 else a.contiguous(a.movedim(buf, 0, d))

    def reduce_scatter(self, x: Array, op: str | ReduceOp = "sum", dim: int = 0) -> Array:
        """Reduce x across ranks, then keep block ``rank`` of its equal split along dim."""
        fn = _library.require("tpcomm_reduce_scatter")
        a = adapter_for(x)
        code = parse_op(op)
        shape = a.shape(x)
        d, chunk = self._split(a, x, dim, "reduce_scatter")
        n = self._world_size
        if d == 0:
            send = a.contiguous(x)
        else:
            blocks = a.reshape(x, shape[:d] + (n, chunk) + shape[d + 1 :])
            send = a.contiguous(a.movedim(blocks, d, 0))
        out = a.empty(shape[:d] + (chunk,) + shape[d + 1 :], x)
        _check(
            fn(self.handle, a.ptr(send), a.ptr(out), a.numel(x) // n, a.dtype(x), code),
            "reduce_scatter",
        )
        return out

    def reduce_scatterv(
        self, x: Array, sizes: Sequence[int] | None = None, op: str | ReduceOp = "sum", dim: int = 0
    ) -> Array:
        """Reduce x across ranks; rank r keeps its sizes[r] slices along dim.

        ``sizes=None`` means an equal split (reduce_scatter).
        """
        a = adapter_for(x)
        shape = a.shape(x)
        d = _normalize_dim(dim, len(shape), "reduce_scatterv")
        if sizes is None:
            return self.reduce_scatter(x, op, d)
        fn = _library.require("tpcomm_reduce_scatterv")
        code = parse_op(op)
        sizes = [int(s) for s in sizes]
        if sum(sizes) != shape[d]:
            raise ValueError(
                f"tpcomm: reduce_scatterv: sizes {sizes} sum to {sum(sizes)}, dim {d} has {shape[d]}"
            )
        counts = self._counts(sizes, _inner(shape, d), "reduce_scatterv")
        send = a.contiguous(a.movedim(x, d, 0))
        rest = a.shape(send)[1:]
        buf = a.empty((sizes[self._rank],) + rest, x)
        _check(fn(self.handle, a.ptr(send), a.ptr(buf), counts, a.dtype(x), code), "reduce_scatterv")
        return buf if d == 0 else a.contiguous(a.movedim(buf, 0, d))

    def broadcast(self, x: Array, src: int = 0) -> Array:
        """src's x, returned as a new array on every rank; x is not written."""
        fn = _library.require("tpcomm_broadcast")
        a = adapter_for(x)
        src = self._root(src, "broadcast")
        send = a.contiguous(x)
        out = a.empty(a.shape(x), x)
        _check(fn(self.handle, a.ptr(send), a.ptr(out), a.numel(x), a.dtype(x), src), "broadcast")
        return out

    def broadcast_(self, x: Array, src: int = 0) -> Array:
        """Overwrite x with src's x on every rank; returns x."""
        fn = _library.require("tpcomm_broadcast")
        a = adapter_for(x)
        src = self._root(src, "broadcast_")
        if not a.writable(x):
            raise ValueError("tpcomm: broadcast_ needs a writable array (this one is read-only)")
        buf = a.contiguous(x)
        _check(fn(self.handle, a.ptr(buf), a.ptr(buf), a.numel(x), a.dtype(x), src), "broadcast_")
        if buf is not x:
            a.copy_into(x, buf)
        return x

    def reduce(self, x: Array, dst: int = 0, op: str | ReduceOp = "sum") -> Array | None:
        """Element-wise reduction delivered to dst only; other ranks get None."""
        fn = _library.require("tpcomm_reduce")
        a = adapter_for(x)
        code = parse_op(op)
        dst = self._root(dst, "reduce")
        send = a.contiguous(x)
        out = a.empty(a.shape(x), x) if self._rank == dst else None
        recv = a.ptr(out) if out is not None else None
        _check(fn(self.handle, a.ptr(send), recv, a.numel(x), a.dtype(x), code, dst), "reduce")
        return out

    def gather(self, x: Array, dst: int = 0, dim: int = 0) -> Array | None:
        """Concatenation of every rank's x along dim on dst; other ranks get None."""
        fn = _library.require("tpcomm_gather")
        a = adapter_for(x)
        shape = a.shape(x)
        d = _normalize_dim(dim, len(shape), "gather")
        dst = self._root(dst, "gather")
        send = a.contiguous(x)
        n = self._world_size
        stacked = a.empty((n,) + shape, x) if self._rank == dst else None
        recv = a.ptr(stacked) if stacked is not None else None
        _check(fn(self.handle, a.ptr(send), recv, a.numel(x), a.dtype(x), dst), "gather")
        if stacked is None:
            return None
        merged = shape[:d] + (n * shape[d],) + shape[d + 1 :]
        return a.contiguous(a.reshape(a.movedim(stacked, 0, d), merged))

    def scatter(self, x: Array, src: int = 0, dim: int = 0) -> Array:
        """Block ``rank`` of src's x split equally along dim.

        Every rank passes an x of the same shape and dtype; only src's data is read.
        """
        fn = _library.require("tpcomm_scatter")
        a = adapter_for(x)
        src = self._root(src, "scatter")
        shape = a.shape(x)
        d, chunk = self._split(a, x, dim, "scatter")
        n = self._world_size
        if d == 0:
            send = a.contiguous(x)
        else:
            blocks = a.reshape(x, shape[:d] + (n, chunk) + shape[d + 1 :])
            send = a.contiguous(a.movedim(blocks, d, 0))
        out = a.empty(shape[:d] + (chunk,) + shape[d + 1 :], x)
        _check(fn(self.handle, a.ptr(send), a.ptr(out), a.numel(x) // n, a.dtype(x), src), "scatter")
        return out

    def all_to_all(self, x: Array) -> Array:
        """Block j of rank i's x (equal split along dim 0) becomes block i on rank j."""
        fn = _library.require("tpcomm_all_to_all")
        a = adapter_for(x)
        self._split(a, x, 0, "all_to_all")
        send = a.contiguous(x)
        out = a.empty(a.shape(x), x)
        _check(
            fn(self.handle, a.ptr(send), a.ptr(out), a.numel(x) // self._world_size, a.dtype(x)),
            "all_to_all",
        )
        return out

    def send(self, x: Any, dst: int) -> None:
        """Send x to rank dst (which must call recv/recv_ with the same size and dtype)."""
        fn = _library.require("tpcomm_send")
        a = adapter_for(x)
        dst = self._root(dst, "send")
        buf = a.contiguous(x)
        _check(fn(self.handle, a.ptr(buf), a.numel(x), a.dtype(x), dst), "send")

    def recv_(self, x: Array, src: int) -> Array:
        """Receive from rank src into x; returns x."""
        fn = _library.require("tpcomm_recv")
        a = adapter_for(x)
        src = self._root(src, "recv")
        if not a.writable(x):
            raise ValueError("tpcomm: recv_ needs a writable array (this one is read-only)")
        buf = a.contiguous(x)
        _check(fn(self.handle, a.ptr(buf), a.numel(x), a.dtype(x), src), "recv")
        if buf is not x:
            a.copy_into(x, buf)
        return x

    def recv(self, shape: Sequence[int], dtype: Any, src: int) -> Any:
        """Receive a new array of shape and dtype from rank src.

        A ``torch.dtype`` yields a tensor; anything numpy understands an ndarray.
        """
        torch = sys.modules.get("torch")
        if torch is not None and isinstance(dtype, torch.dtype):
            buf = torch.empty(tuple(shape), dtype=dtype)
        else:
            buf = np.empty(tuple(shape), dtype=np.dtype(dtype))
        return self.recv_(buf, src)


class _SharedMemory:
    """Owns one tpcomm_alloc_shared buffer; frees it when the last array goes."""

    def __init__(self, comm: Communicator, pointer: int) -> None:
        self._comm = comm
        self._pointer = pointer
        if getattr(comm, "_shared", None) is None:
            comm._shared = weakref.WeakSet()
        comm._shared.add(self)

    def __del__(self) -> None:
        comm = self._comm
        if comm._handle is not None and getattr(comm, "_pid", None) == os.getpid():
            _library.require("tpcomm_free_shared")(comm._handle, self._pointer)
