"""Locate the build tree and make its copy of the tpcomm package importable.

TPCOMM_BUILD_DIR selects the CMake build directory (default: <repo>/build).
The package is taken from <build>/python, exactly as a build-tree user would.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
BUILD_DIR = Path(os.environ.get("TPCOMM_BUILD_DIR", REPO / "build")).resolve()
PYTHON_DIR = BUILD_DIR / "python"
LAUNCHER = BUILD_DIR / "tools" / "tpcomm-run" / "tpcomm-run"

for path in (str(HERE), str(PYTHON_DIR)):
    if path not in sys.path:
        sys.path.insert(0, path)


def pytest_configure(config: object) -> None:
    import pytest

    if not (PYTHON_DIR / "tpcomm" / "__init__.py").is_file():
        pytest.exit(
            f"tpcomm Python package not found in {PYTHON_DIR}; build first "
            f"(cmake --build {BUILD_DIR}) or set TPCOMM_BUILD_DIR",
            returncode=1,
        )
