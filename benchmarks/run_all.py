"""Run every benchmark and write benchmarks/RESULTS.md.

    python benchmarks/run_all.py [--reps 5] [--only overhead,large]

Each benchmark runs in a fresh interpreter, so none inherits another's memory or threads
(a forked worker shares its parent's pages; a leftover thread changes the default start
method). olympipe 2.2.0 runs in its own virtual environment (benchmarks/_venv_olympipe2,
built by `make bench`) because the package names collide. The machine is shared: every
figure is a median of several runs.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

from common import machine  # noqa: E402

BENCHMARKS = [
    "overhead",
    "balance",
    "latency",
    "realtime",
    "startup",
    "large",
    "cpu",
    "memory",
    "images",
    "auto",
    "resume",
    "seeing",
    "ray",
]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--only", default="")
    parser.add_argument("--child", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:  # one benchmark, in this fresh interpreter; its table goes to stdout's end
        section = importlib.import_module(f"bench_{args.child}").main(args.reps)
        print("\n@@SECTION@@\n" + section.markdown(), flush=True)
        return
    names = [n for n in args.only.split(",") if n] or BENCHMARKS
    sections = []
    for name in names:
        print(f"# {name}", flush=True)
        proc = subprocess.run(
            [sys.executable, __file__, "--child", name, "--reps", str(args.reps)],
            stdout=subprocess.PIPE,
            text=True,
            check=True,
        )
        shown, _, table = proc.stdout.partition("\n@@SECTION@@\n")
        print(shown, end="", flush=True)
        sections.append(table)
    stamp = datetime.date.today().isoformat()
    header = (
        "# Benchmark results\n\n"
        f"Machine: {machine()}. Written by `make bench` on {stamp}; medians of {args.reps} runs"
        " (fewer for the slow ones) on a shared machine.\n\n"
    )
    body = "\n".join(sections)
    if set(names) == set(BENCHMARKS):
        (HERE / "RESULTS.md").write_text(header + body)
        print(f"wrote {HERE / 'RESULTS.md'}")
    else:
        print(header + body)


if __name__ == "__main__":
    main()
