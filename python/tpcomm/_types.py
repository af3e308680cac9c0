"""Enumerations mirroring ``tpcomm_dtype_t`` and ``tpcomm_redop_t``."""

from __future__ import annotations

import enum

__all__ = ["DType", "ReduceOp", "parse_op"]


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
