"""Single-process tests of the package itself: loading, layout, errors.

These need no peers (a one-rank communicator or none at all), so they also
run unchanged when every rank of a tpcomm-run job executes pytest.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest

from conftest import BUILD_DIR, PYTHON_DIR

import tpcomm  # noqa: E402  (conftest put <build>/python on sys.path)


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TPCOMM_", "OMPI_"))}
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "PYTHONPATH"):
        env.pop(k, None)
    env.update(extra)
    return env


def run_python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], env=clean_env(**env), capture_output=True, text=True, timeout=120)


def test_build_tree_package_loads_the_built_library() -> None:
    p = run_python(
        "import sys, tpcomm; print(tpcomm.library_path); print(tpcomm.library_version()); "
        "print('torch' in sys.modules)",
        PYTHONPATH=str(PYTHON_DIR),
    )
    assert p.returncode == 0, p.stderr
    path, version, torch_loaded = p.stdout.split()
    assert Path(path).resolve().parent == (BUILD_DIR / "src").resolve() or str(BUILD_DIR) in path
    assert version == tpcomm.library_version() and version.count(".") == 2
    assert torch_loaded == "False", "import tpcomm must not import torch"


def test_tpcomm_library_env_wins_and_a_wrong_one_is_reported() -> None:
    p = run_python("import tpcomm", PYTHONPATH=str(PYTHON_DIR), TPCOMM_LIBRARY="/nonexistent/libtpcomm.so")
    assert p.returncode != 0
    assert "/nonexistent/libtpcomm.so" in p.stderr and "TPCOMM_LIBRARY" in p.stderr, p.stderr
    p = run_python("import tpcomm; print(tpcomm.library_path)", PYTHONPATH=str(PYTHON_DIR),
                   TPCOMM_LIBRARY=tpcomm.library_path)
    assert p.returncode == 0 and p.stdout.strip() == tpcomm.library_path, p.stderr


def test_installed_layout_finds_the_library_relative_to_itself(tmp_path: Path) -> None:
    cmake = shutil.which("cmake")
    if cmake is None:
        pytest.skip("cmake not on PATH")
    prefix = tmp_path / "prefix"
    p = subprocess.run([cmake, "--install", str(BUILD_DIR), "--prefix", str(prefix), "--component", "python"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    pkg = prefix / "lib" / "python3" / "dist-packages" / "tpcomm"
    assert (pkg / "__init__.py").is_file() and (pkg / "torch" / "_ops.py").is_file()
    assert not (pkg / "_build_config.py").exists(), "the build-tree pointer must not be installed"
    (prefix / "lib" / "libtpcomm.so.0").symlink_to(Path(tpcomm.library_path).resolve())
    p = run_python("import tpcomm; print(tpcomm.library_path, tpcomm.__version__)",
                   PYTHONPATH=str(prefix / "lib" / "python3" / "dist-packages"))
    assert p.returncode == 0, p.stderr
    path, version = p.stdout.split()
    assert path == str(prefix / "lib" / "libtpcomm.so.0")
    assert version == tpcomm.library_version()


def test_single_rank_communicator_and_errors() -> None:
    job = f"pytest-single-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    with tpcomm.Communicator(0, 1, job, timeout=10) as comm:
        assert (comm.rank, comm.world_size) == (0, 1)
        x = np.arange(5, dtype=np.float64)
        y = comm.all_reduce(x)
        assert np.array_equal(x, y) and not np.shares_memory(x, y)
        assert comm.all_reduce_(x, op="max") is x
        comm.barrier()
        assert "Communicator rank=0" in repr(comm)
    assert comm.closed
    comm.close()
    with pytest.raises(tpcomm.InvalidArgumentError) as info:
        tpcomm.Communicator(3, 2, job + "-bad", timeout=5)
    assert info.value.message and info.value.status_name == "TPCOMM_ERROR_INVALID_ARGUMENT"
    with pytest.raises(ValueError):
        tpcomm.Communicator(0, 1, job, timeout=-1)


def test_error_classes_follow_the_status_codes() -> None:
    from tpcomm._errors import error_for_status

    expect = {
        1: (tpcomm.InvalidArgumentError, ValueError),
        2: (tpcomm.TimeoutError, TimeoutError),
        3: (tpcomm.PeerDeadError, ConnectionError),
        4: (tpcomm.MismatchError, tpcomm.Error),
        5: (tpcomm.SystemCallError, OSError),
        6: (tpcomm.CommFailedError, tpcomm.Error),
        7: (tpcomm.InternalError, tpcomm.Error),
    }
    for status, (cls, builtin) in expect.items():
        e = error_for_status(status, "rank 0: message", "NAME")
        assert type(e) is cls and isinstance(e, builtin) and isinstance(e, tpcomm.Error)
        assert e.status == status and "rank 0: message" in str(e)


def test_a_bad_output_cache_setting_is_named_at_import() -> None:
    pytest.importorskip("torch")
    code = "import tpcomm.torch"
    p = run_python(code, PYTHONPATH=str(PYTHON_DIR), TPCOMM_TORCH_OUTPUT_CACHE="12Q")
    from tpcomm.torch import _ops

    if not _ops._CPP_LIBRARY_PATH.is_file():
        pytest.skip("the C++ kernels are not built")
    assert p.returncode != 0 and "InvalidArgumentError" in p.stderr and "TPCOMM_TORCH_OUTPUT_CACHE" in p.stderr, p.stderr
    for good in ("0", "64M", "1G", "4096"):
        p = run_python(code, PYTHONPATH=str(PYTHON_DIR), TPCOMM_TORCH_OUTPUT_CACHE=good)
        assert p.returncode == 0, (good, p.stderr)


def test_torch_operators_have_the_documented_schemas() -> None:
    torch = pytest.importorskip("torch")
    import tpcomm.torch as tt

    for name, schema in tt.SCHEMAS.items():
        assert str(getattr(torch.ops.tpcomm, name).default._schema) == "tpcomm::" + schema
    x = torch.empty(4, 6, device="meta")
    tpcomm.register_group("pytest-meta", tpcomm.Communicator(0, 1, f"pytest-meta-{os.getpid()}-{uuid.uuid4().hex[:8]}"))
    try:
        assert torch.ops.tpcomm.all_gather(x, 0, "pytest-meta").shape == (4, 6)
    finally:
        tpcomm.get_group("pytest-meta").close()
        tpcomm.unregister_group("pytest-meta")
