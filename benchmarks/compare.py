"""The pruning methods side by side on the speech task (FSDD digit strings).

    python benchmarks/compare.py --data-dir ../shared/data [--seeds 0 1 2] [--quick]

Every method of `speech_bench.run_one` (dense, ramped threshold, AGP,
one-shot, prune-and-retrain, L1) at every `--targets` sparsity on the same
model, data, optimizer and seeds, plus the dense model at `--small-units`.
Writes benchmarks/results/compare.{json,md,png} (`compare_quick.*` with
--quick): mean ± std of the CER over seeds, steps and wall time per method,
and CER against sparsity per method.
"""

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
import speech_bench  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
PRUNING = [m for m in speech_bench.METHODS if m != "dense"]


def plot(path, summary):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tf_gradual_prune import files

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for method in PRUNING:
        points = sorted((s["sparsity"], s["mean"], s["std"]) for s in summary
                        if s["method"] == method)
        if points:
            x, y, e = zip(*points)
            ax.errorbar(x, y, yerr=e, marker="o", capsize=3, label=method)
    for s in summary:
        if s["method"] == "dense":
            ax.axhline(s["mean"], ls="--", color="gray")
            ax.text(ax.get_xlim()[0], s["mean"], f" {s['name']}", va="bottom", fontsize=8)
    ax.set(xlabel="recurrent sparsity", ylabel="held-out speaker CER",
           title="FSDD digit strings: CER against sparsity, per method")
    ax.legend(fontsize=8)
    fig.tight_layout()
    files.save_figure(fig, path)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default=os.environ.get("TFGP_DATA_DIR"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--targets", type=float, nargs="+", default=[0.8, 0.9, 0.95])
    parser.add_argument("--methods", nargs="+", default=PRUNING, choices=PRUNING)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--units", type=int, default=128)
    parser.add_argument("--small-units", type=int, default=64)
    parser.add_argument("--train-size", type=int, default=1200)
    parser.add_argument("--test-size", type=int, default=400)
    parser.add_argument("--max-digits", type=int, default=7)
    parser.add_argument("--frequency", type=int, default=20)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.targets, args.epochs = args.seeds[:1], [0.9], 4
        args.train_size, args.test_size, args.units, args.small_units = 200, 50, 32, 16
        args.frequency = 2
    task = speech_bench.SpeechTask(args.data_dir, args.train_size, args.test_size,
                                   args.max_digits, 32)
    configs = [(f"dense GRU({args.units})", args.units, "dense", None),
               (f"dense GRU({args.small_units})", args.small_units, "dense", None)]
    configs += [(f"{m} {t:.0%}", args.units, m, t) for t in args.targets for m in args.methods]
    rows = []
    for seed in args.seeds:
        for name, units, method, target in configs:
            print(f"== {name}, seed {seed}", flush=True)
            row = speech_bench.run_one(task, units, args.epochs, seed, target,
                                       frequency=args.frequency, method=method, verbose=0)
            row["name"] = name
            rows.append(row)
            print(f"   CER {row['cer']:.4f}  sparsity {row['sparsity']:.3f}  steps "
                  f"{row['steps']}  {row['train_seconds']:.0f} s", flush=True)
    summary = speech_bench.summarise(rows, "cer")
    for s in summary:
        s["method"] = next(r["method"] for r in rows if r["name"] == s["name"])
    lines = [
        f"FSDD digit strings ({task.source}; held-out speaker), 2 x BiGRU({args.units}), "
        f"{args.epochs}-epoch budget, seeds {args.seeds}; CER mean ± sample std.",
        "",
        "| method | CER | WER | sparsity | steps | train s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for s in summary:
        lines.append(f"| {s['name']} | {s['mean']:.4f} ± {s['std']:.4f} | {s['wer']:.4f} | "
                     f"{s['sparsity']:.3f} | {s['steps']} | {s['seconds']:.0f} |")
    markdown = "\n".join(lines)
    print("\n" + markdown)
    prefix = os.path.join(HERE, "results", "compare_quick" if args.quick else "compare")
    common.save_results(prefix, " ".join(["python", "benchmarks/compare.py"]
                                         + (argv or sys.argv[1:])), vars(args), rows, markdown)
    plot(prefix + ".png", summary)
    print(f"saved {prefix}.json, .md and .png")
    return 0 if np.all([np.isfinite(r["cer"]) for r in rows]) else 1


if __name__ == "__main__":
    sys.exit(main())
