"""All-reduce latency: torch.ops.tpcomm.all_reduce vs all_reduce_ vs Gloo.

Run with one process per rank:

    tpcomm-run -n 2 /usr/bin/python3 bench/torch_ops/bench_all_reduce.py [--sizes 4K,64K,1M] [--rounds N]

Method (so the three variants are measured under the same conditions):
* f32 messages from 4 KiB to 16 MiB (x4 steps by default);
* before every timed call the input is rewritten from a pristine copy (not
  timed), so in-place variants never reduce an already-reduced buffer and
  every variant starts with the input equally warm in cache;
* tpcomm's two forms are interleaved round by round, in an order swapped
  every round, so drift in machine load affects them alike; Gloo runs after
  them, on its own, because its background threads keep running for a while
  after its calls return (measured: run right after Gloo, a tpcomm call took
  ~40 us longer);
* every timed call starts right after two barriers (the second one is left
  by ranks that are all spinning, so none starts late from a sleep); a call's
  time is the slowest rank's (max over ranks), and the report shows the
  median over rounds.
* The machine should be otherwise idle: a third busy process on a two-core
  machine preempts a spinning rank and adds milliseconds to any call. The
  header prints the load average for that reason.
The out-of-place/in-place ratio shows what the functional form costs: it
allocates its output but performs no extra copy.

The "local" columns are the memory system's own price for writing a result
somewhere else than over the input, with no communication at all: on every
rank, the same input rewrite, barriers and interleaving, then
torch.add(input, other, out=result) into one result tensor kept across calls
(as the output cache hands back the last freed block) against
input.add_(other). Neither depends on tpcomm, so their ratio is the floor an
out-of-place collective meets beside an in-place one under these conditions.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.distributed as dist

try:
    import tpcomm
except ImportError:  # run from a source checkout: use <repo>/build/python
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "build" / "python"))
    import tpcomm
import tpcomm.torch  # noqa: F401  (registers torch.ops.tpcomm)


def parse_size(text: str) -> int:
    text = text.strip().upper().removesuffix("B").removesuffix("I")
    scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:], 1)
    return int(float(text.rstrip("KMG")) * scale)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def init_gloo(comm: tpcomm.Communicator) -> None:
    """Gloo on loopback; rank 0 picks a free port and shares it through tpcomm."""
    port = np.array([free_port() if comm.rank == 0 else 0], dtype=np.int64)
    comm.all_reduce_(port, op="max")
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(int(port[0]))
    os.environ["RANK"] = str(comm.rank)
    os.environ["WORLD_SIZE"] = str(comm.world_size)
    dist.init_process_group("gloo", rank=comm.rank, world_size=comm.world_size)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="4K,16K,64K,256K,1M,4M,16M", help="message sizes in bytes (K/M suffixes)")
    parser.add_argument("--rounds", type=int, default=0, help="timed rounds per size (0: scale with size)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--no-gloo", action="store_true", help="leave torch.distributed's Gloo out")
    parser.add_argument("--no-local", action="store_true", help="leave out the local add reference")
    args = parser.parse_args()

    torch.set_num_threads(1)
    comm = tpcomm.init()
    if not args.no_gloo:
        init_gloo(comm)
    sizes = [parse_size(s) for s in args.sizes.split(",")]

    variants: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
        "tpcomm.all_reduce": lambda x: torch.ops.tpcomm.all_reduce(x),
        "tpcomm.all_reduce_": lambda x: torch.ops.tpcomm.all_reduce_(x),
        "gloo": lambda x: (dist.all_reduce(x), x)[1],
    }
    if args.no_gloo:
        del variants["gloo"]
    # Filled per size: the local reference's second operand and kept result.
    local: dict[str, torch.Tensor] = {}
    if not args.no_local:
        variants["local add"] = lambda x: torch.add(x, local["other"], out=local["result"])
        variants["local add_"] = lambda x: x.add_(local["other"])
    if "gloo" in variants:
        variants["gloo"] = variants.pop("gloo")  # printed last, as it runs last

    if comm.rank == 0:
        print(f"# tpcomm {tpcomm.library_version()}, torch {torch.__version__}, {comm.world_size} ranks, "
              f"f32 sum, median of per-call max-over-ranks latency, "
              f"load average at start {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
        print(f"{'bytes':>10} {'algo':>9} {'rounds':>6} " + " ".join(f"{v + ' us':>21}" for v in variants)
              + f" {'oop/inplace':>11} {'gloo/inplace':>12} {'local oop/ip':>12}")

    for nbytes in sizes:
        count = max(1, nbytes // 4)
        g = torch.Generator().manual_seed(1000 + comm.rank)
        pristine = torch.randn(count, generator=g)
        work = torch.empty_like(pristine)
        if not args.no_local:
            local["other"] = torch.randn(count, generator=g)
            local["result"] = torch.empty_like(pristine)
        rounds = args.rounds or int(min(200, max(15, (64 << 20) // max(nbytes, 1))))

        # correctness first: all three variants agree bitwise? (Gloo's order may differ: allclose)
        work.copy_(pristine)
        a = variants["tpcomm.all_reduce"](work)
        b = variants["tpcomm.all_reduce_"](work.copy_(pristine))
        assert torch.equal(a, b), "all_reduce and all_reduce_ disagree"
        if "gloo" in variants:
            c = variants["gloo"](pristine.clone())
            assert torch.allclose(a, c, rtol=1e-5, atol=1e-5), "tpcomm and gloo disagree"

        times: dict[str, list[float]] = {v: [] for v in variants}
        # tpcomm's two forms interleaved, then Gloo on its own: Gloo's
        # background threads keep running for a while after its calls return
        # and would slow whatever runs next.
        tpcomm_forms = ["tpcomm.all_reduce", "tpcomm.all_reduce_"]
        groups = [tpcomm_forms]
        if not args.no_local:
            groups.append(["local add", "local add_"])
        if "gloo" in variants:
            groups.append(["gloo"])
        for names in groups:
            for it in range(args.warmup + rounds):
                shift = it % len(names)
                for name in names[shift:] + names[:shift]:
                    fn = variants[name]
                    work.copy_(pristine)          # untimed rewrite of the input
                    comm.barrier()
                    comm.barrier()    # second barrier: both ranks leave it spinning, not napping
                    t0 = time.perf_counter()
                    out = fn(work)
                    dt = time.perf_counter() - t0
                    del out  # an out-of-place result is freed outside the timed call
                    if it >= args.warmup:
                        times[name].append(dt)

        medians: dict[str, float] = {}
        for name, ts in times.items():
            per_call = np.array(ts, dtype=np.float64)
            comm.all_reduce_(per_call, op="max")       # slowest rank of each call
            medians[name] = statistics.median(per_call.tolist()) * 1e6
        if comm.rank == 0:
            algo = comm.all_reduce_algorithm(count * 4)
            oop = medians["tpcomm.all_reduce"] / medians["tpcomm.all_reduce_"]
            gl = medians["gloo"] / medians["tpcomm.all_reduce_"] if "gloo" in medians else float("nan")
            lo = medians["local add"] / medians["local add_"] if "local add" in medians else float("nan")
            print(f"{count * 4:>10} {algo:>9} {rounds:>6} "
                  + " ".join(f"{medians[v]:>21.1f}" for v in variants) + f" {oop:>11.3f} {gl:>12.2f} {lo:>12.3f}",
                  flush=True)

    if not args.no_gloo:
        dist.destroy_process_group()
    comm.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
