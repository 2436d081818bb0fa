"""One entry point for the benchmarks.

    python -m benchmarks.run [--quick] [--resume] [--data-dir ../shared/data] [name ...]

Names: training, tflite, calibration, tuning, tuning_pareto, speech, lm,
compare, sensitivity, trajectory, classify (default: all, in that order), or a group:
`evidence` is the comparison of pruning methods on public data (trajectory,
speech, compare, sensitivity, classify, tuning). `classify`, `tuning` and
`tuning_pareto` read the files of the PyPI package aeon (`pip install --no-deps aeon==1.6.0`),
not `--data-dir`. Each writes its JSON, Markdown and PNG into benchmarks/results/
(with `--quick`, files named `*_quick.*`, so the committed results stay);
then `report.py` assembles docs/results.md (with `--quick`,
docs/results_quick.md from the quick files).
"""

import argparse
import os
import subprocess
import sys
import time

SCRIPTS = {
    "training": "training_bench.py",
    "tflite": "tflite_bench.py",
    "calibration": "calibration_bench.py",
    "tuning": "tuning_search.py",
    "tuning_pareto": "tuning_pareto.py",
    "speech": "speech_bench.py",
    "lm": "lm_bench.py",
    "compare": "compare.py",
    "sensitivity": "sensitivity.py",
    "trajectory": "trajectory.py",
    "classify": "classify_bench.py",
}
#: Names that stand for several benchmarks.
GROUPS = {"evidence": ["trajectory", "speech", "compare", "sensitivity", "classify",
                       "tuning"]}
TAKES_DATA = {"calibration", "speech", "lm", "compare", "sensitivity", "trajectory"}
RESUMABLE = {"speech", "lm", "compare", "sensitivity", "trajectory", "classify", "tuning",
             "tuning_pareto"}


def module(script):
    """The module `python -m` runs for a script of benchmarks/."""
    return "benchmarks." + os.path.splitext(script)[0]


def selected(names):
    """The benchmarks that `names` (script names or `GROUPS`) stand for, in
    the order given, each once; all of them for no names."""
    expanded = [n for name in names or list(SCRIPTS) for n in GROUPS.get(name, [name])]
    return list(dict.fromkeys(expanded))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("names", nargs="*",
                        help=f"any of {list(SCRIPTS)} or {list(GROUPS)} (default: all)")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--resume", action="store_true",
                        help=f"pass --resume to {sorted(RESUMABLE)} (keep their finished rows)")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in SCRIPTS and n not in GROUPS]
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; choose from {list(SCRIPTS)} "
                     f"or the groups {list(GROUPS)}")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    failed = []
    for name in selected(args.names):
        command = [sys.executable, "-m", module(SCRIPTS[name])]
        if args.quick:
            command.append("--quick")
        if args.data_dir and name in TAKES_DATA:
            command += ["--data-dir", args.data_dir]
        if args.resume and name in RESUMABLE:
            command.append("--resume")
        print(f"== {name}: {' '.join(command[1:])}", flush=True)
        start = time.perf_counter()
        if subprocess.run(command, cwd=root).returncode != 0:
            failed.append(name)
        print(f"== {name}: {time.perf_counter() - start:.0f} s", flush=True)
    subprocess.run([sys.executable, "-m", module("report.py")]
                   + (["--quick"] if args.quick else []), cwd=root, check=False)
    if failed:
        print(f"failed: {failed}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
