"""Locating and loading libtpcomm with ctypes.

The package is pure Python: it binds the stable C API (``tpcomm/tpcomm.h``)
so that it needs no compiler and works with any Python that has ctypes.

The shared library is searched, in order:

1. ``$TPCOMM_LIBRARY`` (a path to the .so), when set; nothing else is tried,
   so a wrong value is reported instead of silently loading another copy.
2. Next to the installed package: ``<prefix>/lib/python3/dist-packages/tpcomm``
   resolves ``<prefix>/lib/libtpcomm.so.0`` (also ``<prefix>/lib/<multiarch>``
   and ``<prefix>/lib64``).
3. The build tree the package was copied into: ``<build>/python/tpcomm`` has a
   generated ``_build_config.py`` naming the freshly built library, so
   ``PYTHONPATH=<build>/python`` is all a build-tree user needs.
4. The dynamic loader's search path (``ctypes.util.find_library``).

Collectives added to the C API later are bound only when the loaded library
exports them; :func:`require` raises a clear ``NotImplementedError`` naming the
missing symbol otherwise, so an older library never silently misbehaves.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sysconfig
from pathlib import Path
from typing import Any

__all__ = ["lib", "library_path", "has_symbol", "require", "Options"]

_SONAMES = ("libtpcomm.so.0", "libtpcomm.so")

c_int = ctypes.c_int
c_size_t = ctypes.c_size_t
c_void_p = ctypes.c_void_p
c_char_p = ctypes.c_char_p
c_double = ctypes.c_double
_status = ctypes.c_int
_size_array = ctypes.POINTER(ctypes.c_size_t)


class Options(ctypes.Structure):
    """Mirror of ``tpcomm_options_t``; zero fields mean "environment or default"."""

    _fields_ = [("timeout_seconds", c_double), ("chunk_bytes", c_size_t)]


# name -> (restype, argtypes). Core symbols must exist; the rest are optional.
_CORE: dict[str, tuple[Any, list[Any]]] = {
    "tpcomm_last_error": (c_char_p, []),
    "tpcomm_status_string": (c_char_p, [_status]),
    "tpcomm_version": (c_char_p, []),
    "tpcomm_dtype_size": (c_size_t, [c_int]),
    "tpcomm_options_init": (None, [ctypes.POINTER(Options)]),
    "tpcomm_comm_create": (
        _status,
        [c_int, c_int, c_char_p, ctypes.POINTER(Options), ctypes.POINTER(c_void_p)],
    ),
    "tpcomm_comm_create_from_env": (_status, [ctypes.POINTER(Options), ctypes.POINTER(c_void_p)]),
    "tpcomm_comm_destroy": (_status, [c_void_p]),
    "tpcomm_comm_rank": (_status, [c_void_p, ctypes.POINTER(c_int)]),
    "tpcomm_comm_world_size": (_status, [c_void_p, ctypes.POINTER(c_int)]),
    "tpcomm_comm_set_timeout": (_status, [c_void_p, c_double]),
    "tpcomm_all_reduce": (_status, [c_void_p, c_void_p, c_void_p, c_size_t, c_int, c_int]),
    "tpcomm_barrier": (_status, [c_void_p]),
}

_OPTIONAL: dict[str, tuple[Any, list[Any]]] = {
    "tpcomm_all_reduce_algorithm": (c_char_p, [c_void_p, c_size_t, c_int]),
    "tpcomm_reduce_scatter": (_status, [c_void_p, c_void_p, c_void_p, c_size_t, c_int, c_int]),
    "tpcomm_all_gather": (_status, [c_void_p, c_void_p, c_void_p, c_size_t, c_int]),
    "tpcomm_all_gatherv": (_status, [c_void_p, c_void_p, c_void_p, _size_array, c_int]),
    "tpcomm_reduce_scatterv": (_status, [c_void_p, c_void_p, c_void_p, _size_array, c_int, c_int]),
    "tpcomm_broadcast": (_status, [c_void_p, c_void_p, c_void_p, c_size_t, c_int, c_int]),
    "tpcomm_reduce": (_status, [c_void_p, c_void_p, c_void_p, c_size_t, c_int, c_int, c_int]),
    "tpcomm_gather": (_status, [c_void_p, c_void_p, c_void_p, c_size_t, c_int, c_int]),
    "tpcomm_scatter": (_status, [c_void_p, c_void_p, c_void_p, c_size_t, c_int, c_int]),
    "tpcomm_all_to_all": (_status, [c_void_p, c_void_p, c_void_p, c_size_t, c_int]),
    "tpcomm_send": (_status, [c_void_p, c_void_p, c_size_t, c_int, c_int]),
    "tpcomm_recv": (_status, [c_void_p, c_void_p, c_size_t, c_int, c_int]),
    "tpcomm_comm_split": (_status, [c_void_p, c_int, c_int, ctypes.POINTER(c_void_p)]),
    "tpcomm_comm_new_group": (
        _status,
        [c_void_p, ctypes.POINTER(c_int), c_size_t, ctypes.POINTER(c_void_p)],
    ),
    "tpcomm_alloc_shared": (_status, [c_void_p, c_size_t, ctypes.POINTER(c_void_p)]),
    "tpcomm_free_shared": (_status, [c_void_p, c_void_p]),
}


def _candidates() -> list[Path]:
    """Paths to try, most specific first (see the module docstring)."""
    explicit = os.environ.get("TPCOMM_LIBRARY")
    if explicit:
        return [Path(explicit)]
    package_dir = Path(os.path.abspath(__file__)).parent
    found: list[Path] = []
    # <prefix>/lib/python3/dist-packages/tpcomm -> <prefix>/lib
    lib_dir = package_dir.parent.parent.parent
    dirs = [lib_dir]
    multiarch = sysconfig.get_config_var("MULTIARCH")
    if multiarch:
        dirs.append(lib_dir / str(multiarch))
    dirs.append(lib_dir.parent / "lib64")
    for d in dirs:
        found.extend(d / name for name in _SONAMES)
    try:
        from . import _build_config  # generated in the build tree only

        found.append(Path(_build_config.LIBRARY_PATH))
    except ImportError:
        pass
    return found


def _load() -> tuple[ctypes.CDLL, str]:
    tried: list[str] = []
    for path in _candidates():
        tried.append(str(path))
        if not path.is_file():
            continue
        # RTLD_LOCAL keeps the library's symbols out of the global namespace.
        return ctypes.CDLL(str(path), mode=ctypes.RTLD_LOCAL), str(path)
    if not os.environ.get("TPCOMM_LIBRARY"):
        name = ctypes.util.find_library("tpcomm")
        if name:
            return ctypes.CDLL(name, mode=ctypes.RTLD_LOCAL), name
    raise ImportError(
        "tpcomm: cannot find libtpcomm; tried " + ", ".join(tried) + " and the loader path. "
        "Set TPCOMM_LIBRARY=/path/to/libtpcomm.so, or put <build>/python on PYTHONPATH "
        "after building the 'tpcomm' CMake target."
    )


def _bind(cdll: ctypes.CDLL) -> set[str]:
    for name, (restype, argtypes) in _CORE.items():
        try:
            fn = getattr(cdll, name)
        except AttributeError as exc:
            raise ImportError(f"tpcomm: {library_path} does not export {name}") from exc
        fn.restype = restype
        fn.argtypes = argtypes
    present: set[str] = set(_CORE)
    for name, (restype, argtypes) in _OPTIONAL.items():
        fn = getattr(cdll, name, None)
        if fn is None:
            continue
        fn.restype = restype
        fn.argtypes = argtypes
        present.add(name)
    return present


lib, library_path = _load()
_present = _bind(lib)


def has_symbol(name: str) -> bool:
    """Whether the loaded library exports the C function ``name``."""
    return name in _present


def require(name: str) -> Any:
    """The bound C function ``name``, or NotImplementedError naming what is missing."""
    if name not in _present:
        raise NotImplementedError(
            f"tpcomm: the loaded library {library_path} does not export {name}(); "
            "this collective needs a newer libtpcomm"
        )
    return getattr(lib, name)


def last_error() -> str:
    """The library's message for the last failed call on this thread."""
    raw = lib.tpcomm_last_error()
    return raw.decode("utf-8", "replace") if raw else ""


def status_name(status: int) -> str:
    raw = lib.tpcomm_status_string(status)
    return raw.decode("utf-8", "replace") if raw else f"status {status}"


def version() -> str:
    """Version string of the loaded library."""
    raw = lib.tpcomm_version()
    return raw.decode() if raw else ""
