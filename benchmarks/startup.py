"""Start-up: CPU seconds of ``evoae --help``, ``--version``, ``runs list`` and ``runs show``.

Each command runs ``--repeats`` times in a fresh interpreter (``python -m evoae.cli``);
the figure is the least CPU time (user + system) of the runs, as on a shared machine
other work only ever adds to it. The reference, measured in the same run, is
``python -c pass``: the interpreter's own start. ``runs list`` and ``runs show`` read a
small finished run made first (untimed). ``--baseline-src DIR`` also times the same
commands with ``DIR`` (another checkout's ``src``, e.g. an older commit's) on the path,
for a before/after in one run. Target: ``--help`` and ``runs list`` within 0.3 s of CPU.

    .venv/bin/python benchmarks/startup.py
    git archive 04d1fcc src | tar -x -C /tmp/before && \\
        .venv/bin/python benchmarks/startup.py --baseline-src /tmp/before/src
    .venv/bin/python benchmarks/startup.py --smoke    # seconds: checks it still runs
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
#: CPU seconds ``--help`` and ``runs list`` may take (issue 20).
TARGET_CPU = 0.3
#: ``--smoke``: one run of each command, ``runs list`` of an empty folder and no ``runs
#: show`` (no run to make first), so a test runs it in seconds.
SMOKE = {"repeats": 1}
#: The run ``runs list`` and ``runs show`` read: a few one-epoch candidates on digits.
RUN_FLAGS = ["--population", "2", "--generations", "1", "--epochs", "1", "--final-epochs", "1"]


def cpu_seconds(argv: list[str], src: Path, repeats: int) -> float:
    """Least user + system CPU seconds of ``repeats`` runs of ``argv``."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    best = float("inf")
    for _ in range(repeats):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        used = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        best = min(best, used)
    return best


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=5, help="least of this many runs")
    ap.add_argument("--baseline-src", type=Path, default=None, help="also time this src")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes: check that it runs")
    args = ap.parse_args()
    if args.smoke:
        vars(args).update(SMOKE)
    py = sys.executable
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "runs" / "r1"
        run.parent.mkdir()
        cli = [py, "-m", "evoae.cli"]
        commands = {
            "python -c pass (reference)": [py, "-c", "pass"],
            "evoae --help": [*cli, "--help"],
            "evoae --version": [*cli, "--version"],
            "evoae runs list": [*cli, "runs", "list", str(run.parent)],
        }
        if not args.smoke:
            make = [*cli, "search", *RUN_FLAGS, "--out", str(run), "-q"]
            env = {**os.environ, "PYTHONPATH": str(SRC)}
            subprocess.run(make, env=env, check=True, stdout=subprocess.DEVNULL)
            commands["evoae runs show"] = [*cli, "runs", "show", str(run)]
        sources = {"this checkout": SRC}
        if args.baseline_src is not None:
            sources["baseline"] = args.baseline_src.resolve()
        figures: dict[str, dict[str, float]] = {}
        for name, src in sources.items():
            figures[name] = {
                c: cpu_seconds(argv, src, args.repeats) for c, argv in commands.items()
            }
    ref = figures["this checkout"]["python -c pass (reference)"]
    cols = "".join(f"{name + ' CPU s':>22}{'x python':>10}" for name in figures)
    print(f"least CPU seconds of {args.repeats} run(s); {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}")  # fmt: skip
    print(f"{'command':<28}{cols}")
    for command in commands:
        cells = "".join(f"{f[command]:>22.3f}{f[command] / ref:>9.1f}x" for f in figures.values())
        print(f"{command:<28}{cells}")
    mine = figures["this checkout"]
    worst = max(mine["evoae --help"], mine["evoae runs list"])
    verdict = "met" if worst <= TARGET_CPU else "MISSED"
    print(f"--help and runs list within {TARGET_CPU} s of CPU: {verdict} ({worst:.3f} s)")
    if "baseline" in figures:
        for command in list(commands)[1:]:
            ratio = figures["baseline"][command] / mine[command]
            print(f"{command}: {ratio:.1f}x less CPU than the baseline")
    if args.json:
        args.json.write_text(
            json.dumps({"repeats": args.repeats, "cpu_seconds": figures}, indent=2)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
