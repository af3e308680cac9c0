"""Uniform access to numpy arrays and torch CPU tensors.

The collectives only need a handful of operations on their buffers (pointer,
contiguity, allocation, axis moves). Expressing them once per array library
keeps the collective code single-sourced, so numpy and torch callers get
exactly the same semantics. torch is never imported here: a tensor can only
reach us if the caller already imported torch.
"""

from __future__ import annotations

import sys
from typing import Any, Sequence

import numpy as np

from ._types import DType

__all__ = ["Adapter", "adapter_for", "SUPPORTED_DTYPES_TEXT"]

SUPPORTED_DTYPES_TEXT = (
    "float32, float64, float16, bfloat16 (torch only), int8, uint8, int32, int64"
)

_NUMPY_DTYPES: dict[np.dtype, DType] = {
    np.dtype(np.float32): DType.F32,
    np.dtype(np.float64): DType.F64,
    np.dtype(np.float16): DType.F16,
    np.dtype(np.int8): DType.I8,
    np.dtype(np.uint8): DType.U8,
    np.dtype(np.int32): DType.I32,
    np.dtype(np.int64): DType.I64,
}


class Adapter:
    """Operations on one kind of array; see NumpyAdapter and TorchAdapter."""

    def check(self, x: Any) -> None: ...
    def dtype(self, x: Any) -> DType: ...
    def shape(self, x: Any) -> tuple[int, ...]: ...
    def numel(self, x: Any) -> int: ...
    def is_contiguous(self, x: Any) -> bool: ...
    def contiguous(self, x: Any) -> Any: ...
    def empty(self, shape: Sequence[int], like: Any) -> Any: ...
    def ptr(self, x: Any) -> int: ...
    def writable(self, x: Any) -> bool: ...
    def copy_into(self, dst: Any, src: Any) -> None: ...
    def movedim(self, x: Any, source: int, destination: int) -> Any: ...
    def reshape(self, x: Any, shape: Sequence[int]) -> Any: ...


class NumpyAdapter(Adapter):
    def check(self, x: np.ndarray) -> None:
        self.dtype(x)

    def dtype(self, x: np.ndarray) -> DType:
        code = _NUMPY_DTYPES.get(x.dtype)
        if code is None:
            if x.dtype.byteorder not in ("=", "|") and x.dtype.newbyteorder("=") in _NUMPY_DTYPES:
                raise TypeError(
                    f"tpcomm: dtype {x.dtype.str} has non-native byte order; "
                    "convert with x.astype(x.dtype.newbyteorder('='))"
                )
            raise TypeError(
                f"tpcomm: unsupported dtype {x.dtype}; supported: {SUPPORTED_DTYPES_TEXT}"
            )
        return code

    def shape(self, x: np.ndarray) -> tuple[int, ...]:
        return tuple(x.shape)

    def numel(self, x: np.ndarray) -> int:
        return int(x.size)

    def is_contiguous(self, x: np.ndarray) -> bool:
        return bool(x.flags.c_contiguous and x.flags.aligned)

    def contiguous(self, x: np.ndarray) -> np.ndarray:
        return x if self.is_contiguous(x) else x.copy(order="C")

    def empty(self, shape: Sequence[int], like: np.ndarray) -> np.ndarray:
        return np.empty(tuple(shape), dtype=like.dtype)

    def ptr(self, x: np.ndarray) -> int:
        return int(x.__array_interface__["data"][0])

    def writable(self, x: np.ndarray) -> bool:
        return bool(x.flags.writeable)

    def copy_into(self, dst: np.ndarray, src: np.ndarray) -> None:
        np.copyto(dst, src)

    def movedim(self, x: np.ndarray, source: int, destination: int) -> np.ndarray:
        return np.moveaxis(x, source, destination)

    def reshape(self, x: np.ndarray, shape: Sequence[int]) -> np.ndarray:
        return x.reshape(tuple(shape))


class TorchAdapter(Adapter):
    def __init__(self, torch: Any) -> None:
        self.torch = torch
        self.dtypes: dict[Any, DType] = {
            torch.float32: DType.F32,
            torch.float64: DType.F64,
            torch.float16: DType.F16,
            torch.bfloat16: DType.BF16,
            torch.int8: DType.I8,
            torch.uint8: DType.U8,
            torch.int32: DType.I32,
            torch.int64: DType.I64,
        }

    def check(self, x: Any) -> None:
        if x.device.type != "cpu":
            raise ValueError(f"tpcomm: tensor is on {x.device}; tpcomm works on CPU tensors only")
        if x.layout != self.torch.strided:
            raise ValueError(f"tpcomm: tensor layout {x.layout} is not supported; use a dense tensor")
        self.dtype(x)

    def dtype(self, x: Any) -> DType:
        code = self.dtypes.get(x.dtype)
        if code is None:
            raise TypeError(
                f"tpcomm: unsupported dtype {x.dtype}; supported: {SUPPORTED_DTYPES_TEXT}"
            )
        return code

    def shape(self, x: Any) -> tuple[int, ...]:
        return tuple(x.shape)

    def numel(self, x: Any) -> int:
        return int(x.numel())

    def is_contiguous(self, x: Any) -> bool:
        return bool(x.is_contiguous())

    def contiguous(self, x: Any) -> Any:
        return x.contiguous()

    def empty(self, shape: Sequence[int], like: Any) -> Any:
        return self.torch.empty(tuple(shape), dtype=like.dtype, device="cpu")

    def ptr(self, x: Any) -> int:
        return int(x.data_ptr())

    def writable(self, x: Any) -> bool:
        return True

    def copy_into(self, dst: Any, src: Any) -> None:
        # The collective itself is invisible to autograd; so is its write-back.
        with self.torch.no_grad():
            dst.copy_(src)

    def movedim(self, x: Any, source: int, destination: int) -> Any:
        return x.movedim(source, destination)

    def reshape(self, x: Any, shape: Sequence[int]) -> Any:
        return x.reshape(tuple(shape))


_NUMPY = NumpyAdapter()
_TORCH: TorchAdapter | None = None


def adapter_for(x: Any) -> Adapter:
    """The adapter for x, after validating device, layout and dtype."""
    global _TORCH
    if isinstance(x, np.ndarray):
        _NUMPY.check(x)
        return _NUMPY
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(x, torch.Tensor):
        if _TORCH is None:
            _TORCH = TorchAdapter(torch)
        _TORCH.check(x)
        return _TORCH
    raise TypeError(
        f"tpcomm: expected a numpy.ndarray or a torch.Tensor, got {type(x).__module__}.{type(x).__qualname__}"
    )
