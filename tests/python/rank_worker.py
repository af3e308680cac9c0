"""Rank program: run the named cases (default: all) on the world communicator.

Usage (normally started by test_collectives.py):
    tpcomm-run -n 4 python3 tests/python/rank_worker.py RESULTS_DIR [CASE ...]

Writes one JSON line per case to RESULTS_DIR/rank<R>.jsonl and exits 0, so a
failing case on one rank never makes the launcher kill the others mid-case.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import rank_cases  # noqa: E402
import tpcomm  # noqa: E402


def main(argv: list[str]) -> int:
    results = Path(argv[1])
    names = argv[2:] or list(rank_cases.CASES)
    comm = tpcomm.init()
    out = (results / f"rank{comm.rank}.jsonl").open("w")
    for name in names:
        t0 = time.monotonic()
        try:
            rank_cases.run_case(name, comm)
            status, detail = "pass", ""
        except rank_cases.Skip as e:
            status, detail = "skip", str(e)
        except BaseException as e:  # report everything, keep going
            status, detail = "fail", "".join(traceback.format_exception(e))[-4000:]
        record = {"case": name, "status": status, "detail": detail, "seconds": round(time.monotonic() - t0, 3)}
        out.write(json.dumps(record) + "\n")
        out.flush()
    out.close()
    comm.close()
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main(sys.argv))
