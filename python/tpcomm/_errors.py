"""Exceptions raised by tpcomm.

Every failed library call becomes an instance of a :class:`Error` subclass
chosen by the returned ``tpcomm_status_t``. The message is the library's own
(``tpcomm_last_error()``), which names the rank, the collective and the values
involved, so a failure on one rank can be diagnosed from its log alone.

The subclasses also derive from the closest built-in exception so that generic
handlers keep working: ``except TimeoutError`` catches a collective timeout and
``except ValueError`` catches an invalid argument.
"""

from __future__ import annotations

import builtins

__all__ = [
    "Error",
    "InvalidArgumentError",
    "TimeoutError",
    "PeerDeadError",
    "MismatchError",
    "SystemCallError",
    "CommFailedError",
    "InternalError",
    "error_for_status",
]


class Error(Exception):
    """Base class of every error reported by the tpcomm library.

    Attributes:
        status: the numeric ``tpcomm_status_t`` returned by the library.
        status_name: its symbolic name, e.g. ``"TPCOMM_ERROR_TIMEOUT"``.
        message: the library's message for this failure.
    """

    status: int = -1

    def __init__(self, message: str, status: int | None = None, status_name: str = "") -> None:
        super().__init__(message)
        if status is not None:
            self.status = status
        self.status_name = status_name
        self.message = message

    def __str__(self) -> str:
        if self.status_name:
            return f"{self.message} [{self.status_name}]"
        return self.message


class InvalidArgumentError(Error, ValueError):
    """Rejected before any rank moved; the communicator stays usable."""

    status = 1


class TimeoutError(Error, builtins.TimeoutError):  # noqa: A001 - mirrors the status name
    """A peer did not arrive within the communicator's timeout."""

    status = 2


class PeerDeadError(Error, ConnectionError):
    """A peer process exited or was killed."""

    status = 3


class MismatchError(Error):
    """Ranks called different collectives or passed mismatching arguments."""

    status = 4


class SystemCallError(Error, OSError):
    """An operating-system call (shared memory, mmap, ...) failed."""

    status = 5


class CommFailedError(Error):
    """An earlier error failed this communicator; create a new one."""

    status = 6


class InternalError(Error):
    """A bug in tpcomm; please report it with the message."""

    status = 7


_BY_STATUS: dict[int, type[Error]] = {
    cls.status: cls
    for cls in (
        InvalidArgumentError,
        TimeoutError,
        PeerDeadError,
        MismatchError,
        SystemCallError,
        CommFailedError,
        InternalError,
    )
}


def error_for_status(status: int, message: str, status_name: str = "") -> Error:
    """Build the exception matching a library status code."""
    cls = _BY_STATUS.get(status, Error)
    return cls(message, status=status, status_name=status_name)
