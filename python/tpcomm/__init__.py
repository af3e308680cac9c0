"""tpcomm: shared-memory collectives between processes on one machine.

Quick start (each rank started by ``tpcomm-run -n 4 python3 prog.py``)::

    import numpy as np, tpcomm
    comm = tpcomm.init()                  # also registered as group "world"
    y = comm.all_reduce(np.ones(8, np.float32))   # new array, input untouched
    comm.all_reduce_(y, op="max")                 # in place, returns y

``import tpcomm.torch`` adds the ``torch.ops.tpcomm.*`` operators, which stay
correct under torch.fx, TorchScript and functorch, and a vLLM-style
``tpcomm.torch.DeviceCommunicator``.

From a build tree, put ``<build>/python`` on ``PYTHONPATH``: the build copies
the package there together with the path of the freshly built library.
Installed, the package lives in ``<prefix>/lib/python3/dist-packages/tpcomm``
and finds ``<prefix>/lib/libtpcomm.so.0``. ``$TPCOMM_LIBRARY`` overrides both.
"""

from __future__ import annotations

from ._communicator import Communicator
from ._errors import (
    CommFailedError,
    Error,
    InternalError,
    InvalidArgumentError,
    MismatchError,
    PeerDeadError,
    SystemCallError,
    TimeoutError,
)
from ._groups import get_group, register_group, unregister_group
from ._library import has_symbol, library_path
from ._library import version as library_version
from ._types import DType, ReduceOp

#: Color that leaves a rank out of every group made by Communicator.split.
COLOR_UNDEFINED = -1

try:
    from ._version import __version__
except ImportError:  # running from the source tree
    __version__ = "0.0.0+source"

__all__ = [
    "Communicator",
    "COLOR_UNDEFINED",
    "init",
    "Error",
    "InvalidArgumentError",
    "TimeoutError",
    "PeerDeadError",
    "MismatchError",
    "SystemCallError",
    "CommFailedError",
    "InternalError",
    "DType",
    "ReduceOp",
    "register_group",
    "unregister_group",
    "get_group",
    "has_symbol",
    "library_path",
    "library_version",
    "__version__",
]


def init(timeout: float | None = None, chunk_bytes: int | None = None) -> Communicator:
    """The communicator described by the environment, registered as group "world".

    Reads tpcomm-run's (TPCOMM_RANK, TPCOMM_WORLD_SIZE, TPCOMM_JOB_ID),
    torchrun's or Open MPI's variables. Calling it again while the "world"
    communicator is open returns that same communicator, so libraries and the
    application can both call it.
    """
    from . import _groups

    existing = _groups._GROUPS.get("world")
    if existing is not None and not existing.closed:
        return existing
    comm = Communicator.from_env(timeout=timeout, chunk_bytes=chunk_bytes)
    register_group("world", comm)
    return comm
