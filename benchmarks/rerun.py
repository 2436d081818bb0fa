"""Spot re-run: trains saved rows of the comparison again and checks them.

    python -m benchmarks.rerun --rows "ramped 90%" --seed 0
    python -m benchmarks.rerun --rows "dense GRU(64)" "ramped 90%" --seed 1

Takes every setting from a results file of `compare.py` (`--results`,
default benchmarks/results/compare.json), trains the named rows for `--seed`
one after the other in this process and prints each saved CER beside the
re-run one, and the final training loss beside the saved one (a finer
check: the quick run's CERs are all near 1). Naming several rows also
checks that a row does not depend on what the same process trained before
it. A re-run on a CPU with the same instruction sets as the one that made
the row gives the same CER and loss to the last bit ("identical"). On
another CPU, TensorFlow picks other kernels whose last bits differ, and
after 400 steps the CER moves by a few thousandths (measured between an
AVX-512 machine and earlier hosts: 0.001-0.004), so the default
`--tolerance` (0.01 CER) and `--loss-tolerance` (5%) count such a row as
"within tolerance"; `--tolerance 0 --loss-tolerance 0` asks for identity.
Rows where a model collapsed (CER far above its seed-mates) can land
elsewhere on another CPU: they are the ones to expect "no" on.

Writes `<results>_rerun.{json,md}` beside the results file (or `--output`
PREFIX.{json,md}); the exit code is 1 when a row is not reproduced.
"""

import argparse
import json
import os
import sys

if not __package__:  # run as a file (python benchmarks/<name>.py): the package from the root
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import common, compare, speech_bench

HERE = os.path.dirname(os.path.abspath(__file__))


def machine(versions):
    """A results file's machine, as far as it recorded it."""
    features = versions.get("cpu_features")
    return (f"{versions.get('cpus')} x {versions.get('machine')} CPUs with "
            + (", ".join(features) if features is not None else "features not recorded"))


def trained_on(features):
    """A saved row's `cpu_features`, as the table shows them."""
    return "not recorded" if features is None else ", ".join(features)


#: What a re-run row can be, best first.
VERDICTS = ("identical", "within tolerance", "no")


def verdict(row, tolerance, loss_tolerance):
    """One of `VERDICTS` for a re-run row (a saved row without a loss is
    judged by its CER alone)."""
    saved_loss = row["saved_loss"]
    if row["difference"] == 0 and saved_loss in (None, row["loss"]):
        return "identical"
    if abs(row["difference"]) <= tolerance and (
            saved_loss is None
            or abs(row["loss"] - saved_loss) <= loss_tolerance * abs(saved_loss)):
        return "within tolerance"
    return "no"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--results", default=os.path.join(HERE, "results", "compare.json"))
    parser.add_argument("--rows", nargs="+", required=True,
                        help="row names as in the results table, run in this order")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tolerance", type=float, default=0.01,
                        help="largest CER difference counted as reproduced")
    parser.add_argument("--loss-tolerance", type=float, default=0.05,
                        help="largest relative difference of the final training loss "
                             "counted as reproduced (rows saved without a loss: not checked)")
    parser.add_argument("--data-dir", default=None,
                        help="the data folder, when it is not where the results file says")
    parser.add_argument("--output", default=None,
                        help="where to write PREFIX.json and PREFIX.md "
                             "(default: <results>_rerun)")
    args = parser.parse_args(argv)
    if not os.path.exists(args.results):
        parser.error(f"--results {args.results} does not exist; run compare.py first")
    for option in ("tolerance", "loss_tolerance"):
        if getattr(args, option) < 0:
            flag = "--" + option.replace("_", "-")
            parser.error(f"{flag} must be >= 0. Received: {flag} {getattr(args, option)}")
    with open(args.results) as f:
        saved = json.load(f)
    settings = argparse.Namespace(**dict(compare.LATER_SETTINGS, **saved["settings"]))
    if args.data_dir is not None:
        settings.data_dir = args.data_dir
    known = {(name, seed): (units, method, target)
             for name, units, method, target, seed in compare.configs(settings)}
    rows = {common.row_key(r): r for r in saved["rows"]}
    for name in args.rows:
        if (name, args.seed) not in known:
            names = sorted({n for n, _ in known})
            parser.error(f"--rows {name!r} --seed {args.seed} is not a row of "
                         f"{args.results}; its rows are {names} with seeds {settings.seeds}")
        if (name, args.seed) not in rows:
            parser.error(f"--rows {name!r} --seed {args.seed} has no saved result in "
                         f"{args.results} yet (a partial run); finish it with --resume")

    task = speech_bench.SpeechTask(settings.data_dir, settings.train_size, settings.test_size,
                                   settings.max_digits, 32)
    results = []
    for position, name in enumerate(args.rows):
        units, method, target = known[name, args.seed]
        print(f"== {name}, seed {args.seed} ({position} rows before it in this process)",
              flush=True)
        row = compare.run_row(task, settings, units, method, target, args.seed)
        before = rows[name, args.seed]
        results.append({"name": name, "seed": args.seed, "position": position,
                        "saved_cer": before["cer"], "cer": row["cer"],
                        "difference": row["cer"] - before["cer"],
                        "saved_loss": before.get("loss"), "loss": row["loss"],
                        "sparsity": row["sparsity"], "train_seconds": row["train_seconds"],
                        "saved_cpu_features": before.get("cpu_features")})
        print(f"   CER saved {before['cer']!r}, re-run {row['cer']!r}; final training loss "
              f"saved {before.get('loss')!r}, re-run {row['loss']!r}", flush=True)

    verdicts = [verdict(r, args.tolerance, args.loss_tolerance) for r in results]
    counts = {v: verdicts.count(v) for v in VERDICTS if v in verdicts}
    lines = [
        f"Spot re-run of `{os.path.relpath(args.results)}` (seed {args.seed}, the rows in "
        f"this order in one process; saved with tf_gradual_prune "
        f"{saved['versions']['tf_gradual_prune']}, the file last written on "
        f"{machine(saved['versions'])}, each row on the CPUs the table names; re-run on "
        f"{machine(common.software_versions())}). Reproduced: the same CER and loss "
        f"(identical), or CER within {args.tolerance:g} and final training loss within "
        f"{args.loss_tolerance:g} (relative) of the saved values (within tolerance). "
        f"Here: {', '.join(f'{n} {v}' for v, n in counts.items())}.",
        "",
        "| row | rows before it | saved CER | re-run CER | difference | reproduced "
        "| final training loss, saved / re-run | saved row trained on |",
        "|---|---:|---:|---:|---:|---|---|---|",
    ]
    for r, ok in zip(results, verdicts):
        loss = ("not saved" if r["saved_loss"] is None
                else f"{r['saved_loss']:.6g} / {r['loss']:.6g}")
        lines.append(f"| {r['name']} | {r['position']} | {r['saved_cer']:.6f} | "
                     f"{r['cer']:.6f} | {r['difference']:+.2e} | "
                     f"{ok} | {loss} | {trained_on(r['saved_cpu_features'])} |")
    markdown = "\n".join(lines)
    prefix = args.output or os.path.splitext(args.results)[0] + "_rerun"
    common.save_results(prefix, common.command_line("rerun.py", argv or sys.argv[1:]),
                        vars(args), results, markdown)
    print("\n" + markdown)
    print(f"saved {prefix}.json and .md")
    return 0 if "no" not in verdicts else 1


if __name__ == "__main__":
    sys.exit(main())
