"""Enumerations mirroring ``tpcomm_dtype_t`` and ``tpcomm_redop_t``."""

from __future__ import annotations

import enum

__all__ = ["DType", "ReduceOp", "parse_dtype", "parse_op"]


class DType(enum.IntEnum):
    F32 = 0
    F64 = 1
    F16 = 2
    BF16 = 3
    I8 = 4
    U8 = 5
    I32 = 6
    I64 = 7


class ReduceOp(enum.IntEnum):
    SUM = 0
    PROD = 1
    MIN = 2
    MAX = 3
    AVG = 4


_OPS = {op.name.lower(): op for op in ReduceOp}


def parse_op(op: "str | ReduceOp") -> ReduceOp:
    """Accept "sum", "prod", "min", "max", "avg" (any case) or a ReduceOp."""
    if isinstance(op, ReduceOp):
        return op
    if isinstance(op, str):
        found = _OPS.get(op.lower())
        if found is not None:
            return found
    raise ValueError(f"tpcomm: unknown reduction op {op!r}; expected one of {', '.join(_OPS)}")


_DTYPE_NAMES = {
    **{d.name.lower(): d for d in DType},
    "float32": DType.F32, "float": DType.F32, "float64": DType.F64, "double": DType.F64,
    "float16": DType.F16, "half": DType.F16, "bfloat16": DType.BF16,
    "int8": DType.I8, "uint8": DType.U8, "int32": DType.I32, "int64": DType.I64,
}


def parse_dtype(dtype: object) -> DType:
    """Accept a DType, a name ("f32", "bf16", "float32", ...), a numpy dtype or a torch dtype."""
    if isinstance(dtype, DType):
        return dtype
    if isinstance(dtype, str):
        name = dtype
    elif type(dtype).__module__.startswith("torch"):
        name = str(dtype)  # "torch.bfloat16"
    else:
        try:
            import numpy as np

            name = np.dtype(dtype).name  # np.float32, np.dtype("f2"), ...
        except TypeError:
            name = str(dtype)
    found = _DTYPE_NAMES.get(name.lower().removeprefix("torch."))
    if found is None:
        raise ValueError(f"tpcomm: unknown dtype {dtype!r}; expected one of {', '.join(d.name.lower() for d in DType)}")
    return found
