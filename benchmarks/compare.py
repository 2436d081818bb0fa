"""The pruning methods side by side on the speech task (FSDD digit strings).

    python -m benchmarks.compare --data-dir ../shared/data [--quick] [--resume]
    python -m benchmarks.compare --data-dir ../shared/data --epochs 25 --targets 0.9 \
        --retrain-within-budget --name compare_1000 [--resume]
    python -m benchmarks.compare --data-dir ../shared/data --mask-padding --no-tfmot \
        --targets 0.9 --methods default one_shot l1 --name compare_masked [--resume]

Every method of `speech_bench.run_one` (the library's default, the paper's
ramped threshold, AGP, one-shot, prune-and-retrain, L1) at every `--targets`
sparsity on the same model,
data, optimizer and seeds; the dense model at `--units` and at
`--small-units`; and tfmot's own AGP on a tf_keras twin (`tfmot_speech.py`,
in a process of its own) at every target. Every pruned `--units`
model has fewer recurrent non-zeros than the dense `--small-units` one at
these targets, so the table answers the paper's claim per method.

Prune-and-retrain gets 2.5 times the `--epochs` budget, or with
`--retrain-within-budget` the budget itself (dense for 2/5 of it, then three
rounds of 1/5): at `--epochs 25` that is the 10-epoch dense phase of the
default run, so every method then has the same 1,000 steps. `--name`
writes to another results file (the 1,000-step run: `compare_1000`).
`--mask-padding` trains the recogniser that masks its padding (what
`speech_model` builds by default) instead of the unmasked first version
that every other speech table was measured on (`compare_masked`).

Order: first every headline row (dense, all methods at `--headline`) for
each seed, then the other targets; rows are saved as they finish and
`--resume` reuses the saved rows of a run with the same settings.
Writes benchmarks/results/compare.{json,md,png} (`compare_quick.*` with
--quick): mean ± std of the CER over seeds, steps and wall time per method,
and CER against sparsity per method.
"""

import argparse
import os
import sys

import numpy as np

if not __package__:  # run as a file (python benchmarks/<name>.py): the package from the root
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import common, speech_bench

HERE = os.path.dirname(os.path.abspath(__file__))
PRUNING = [m for m in speech_bench.METHODS if m != "dense"]
#: Settings that change what a row measures (`--resume` checks them).
SAME_RUN = ("data_dir", "epochs", "units", "small_units", "train_size", "test_size",
            "max_digits", "frequency", "quick", "retrain_within_budget", "mask_padding")
#: Settings added after the first results files: a file saved without them
#: was run without them (`rerun.py` reads old files with these).
LATER_SETTINGS = {"retrain_within_budget": None, "mask_padding": None}


def plot(path, summary, headline):
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
        if s["method"] == "tfmot_agp":
            ax.errorbar([s["sparsity"]], [s["mean"]], yerr=[s["std"]], marker="x", ms=10,
                        capsize=3, ls="none", color="black", label="AGP, tfmot on tf_keras")
        if s["method"] == "dense":
            ax.axhline(s["mean"], ls="--", color="gray")
            ax.text(0.01, s["mean"], f" {s['name']}", va="bottom", fontsize=8,
                    transform=ax.get_yaxis_transform())
    ax.set(xlabel="recurrent sparsity", ylabel="held-out speaker CER",
           title=f"FSDD digit strings: CER against sparsity, per method (headline {headline:.0%})")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    fig.tight_layout()
    files.save_figure(fig, path)


def configs(args):
    """`(name, units, method, target, seed)` in run order: headline rows first."""
    headline = [(f"dense GRU({args.units})", args.units, "dense", None),
                (f"dense GRU({args.small_units})", args.small_units, "dense", None)]
    headline += [(f"{m} {args.headline:.0%}", args.units, m, args.headline)
                 for m in args.methods]
    if not args.no_tfmot:
        headline.append((f"tfmot_agp {args.headline:.0%}", args.units, "tfmot_agp",
                         args.headline))
    methods = list(args.methods) + ([] if args.no_tfmot else ["tfmot_agp"])
    others = [(f"{m} {t:.0%}", args.units, m, t) for t in args.targets
              if t != args.headline for m in methods]
    return ([c + (seed,) for seed in args.seeds for c in headline]
            + [c + (seed,) for seed in args.seeds for c in others])


#: Rounds of prune-and-retrain (`speech_bench.run_one`'s default).
ROUNDS = 3


def run_row(task, args, units, method, target, seed):
    if method == "tfmot_agp":
        return common.in_subprocess("tfmot_speech", "run", args.data_dir, args.train_size,
                                    args.test_size, args.max_digits, units, args.epochs,
                                    seed, target, args.frequency)
    epochs = args.epochs
    if method == "prune_retrain" and args.retrain_within_budget:
        # Dense for `epochs`, then ROUNDS rounds of epochs / 2: all of it within the budget.
        epochs = args.epochs * 2 // (2 + ROUNDS)
    return speech_bench.run_one(task, units, epochs, seed, target, frequency=args.frequency,
                                method=method, rounds=ROUNDS, verbose=0,
                                mask_padding=bool(args.mask_padding))


def table(rows, args, source, pending):
    """The Markdown report of the rows so far."""
    order = ["dense"] + PRUNING + ["tfmot_agp"]
    rows = sorted(rows, key=lambda r: (r["target"] is not None, r["target"] != args.headline,
                                       r["target"] or 0,
                                       order.index(r["method"]) if r["method"] in order
                                       else len(order), -r["units"]))
    summary = speech_bench.summarise(rows, "cer")
    for s in summary:
        s["method"] = next(r["method"] for r in rows if r["name"] == s["name"])
    small = next((s for s in summary if s["name"] == f"dense GRU({args.small_units})"), None)
    lines = [
        f"FSDD digit strings ({source}; held-out speaker), 2 x BiGRU({args.units}), "
        f"{args.epochs}-epoch budget (prune-and-retrain: more, see steps), Adam 1e-3, "
        f"{'padding masked (speech_model default), ' if args.mask_padding else ''}"
        f"masks updated every {args.frequency} steps; targets "
        f"{', '.join(f'{t:.0%}' for t in args.targets)} (headline {args.headline:.0%}, "
        f"with tfmot's own AGP); seeds {args.seeds}. CER mean ± sample std over the n "
        f"seeds. The last column compares each pruned GRU({args.units}) (fewer recurrent "
        f"non-zeros) with the dense GRU({args.small_units}).",
        "",
        "| method | n | CER | CER per seed | WER | sparsity | recurrent non-zeros | steps "
        f"| train s (mean) | vs dense GRU({args.small_units}) |",
        "|---|---:|---:|---|---:|---:|---:|---:|---:|---|",
    ]
    for s in summary:
        versus = ""
        if small is not None and s["method"] != "dense":
            versus = "better" if s["mean"] < small["mean"] else "worse"
        per_seed = " / ".join(f"{r['cer']:.3f}" for r in sorted(
            (r for r in rows if r["name"] == s["name"]), key=lambda r: r["seed"]))
        lines.append(f"| {s['name']} | {s['n']} | {s['mean']:.4f} ± {s['std']:.4f} | "
                     f"{per_seed} | {s['wer']:.4f} | {s['sparsity']:.3f} | {s['nonzeros']:,} | "
                     f"{s['steps']} "
                     f"| {s['seconds']:.0f} | {versus} |")
    ours = next((s for s in summary if s["name"] == f"agp {args.headline:.0%}"), None)
    theirs = next((s for s in summary if s["name"] == f"tfmot_agp {args.headline:.0%}"), None)
    if ours and theirs:
        lines += ["", f"AGP through our callback against tfmot's own `prune_low_magnitude` "
                  f"(tf_keras twin): CER {ours['mean']:.4f} ± {ours['std']:.4f} vs "
                  f"{theirs['mean']:.4f} ± {theirs['std']:.4f}, sparsity {ours['sparsity']:.4f} "
                  f"vs {theirs['sparsity']:.4f}."]
    total = sum(r["train_seconds"] for r in rows) / 60
    lines += ["", f"Training time summed over the {len(rows)} runs: {total:.0f} min on "
              f"{os.cpu_count()} CPU cores."]
    lines += common.hosts_note(rows)
    lines += common.partial_note(pending)
    return "\n".join(lines), summary


def publish(prefix, command, args, source, rows, pending):
    """Saves the rows so far with their table and plot; returns the table."""
    markdown, summary = table(rows, args, source, pending)
    common.save_results(prefix, command, vars(args), rows, markdown)
    plot(prefix + ".png", summary, args.headline)
    return markdown


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default=os.environ.get("TFGP_DATA_DIR"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--targets", type=float, nargs="+", default=[0.8, 0.9, 0.95])
    parser.add_argument("--headline", type=float, default=0.9,
                        help="the target of the headline rows (run first, with tfmot)")
    parser.add_argument("--methods", nargs="+", default=PRUNING, choices=PRUNING)
    parser.add_argument("--no-tfmot", action="store_true",
                        help="skip tfmot's own AGP on the tf_keras twin")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--units", type=int, default=128)
    parser.add_argument("--small-units", type=int, default=64)
    parser.add_argument("--train-size", type=int, default=1200)
    parser.add_argument("--test-size", type=int, default=400)
    parser.add_argument("--max-digits", type=int, default=7)
    parser.add_argument("--frequency", type=int, default=20)
    parser.add_argument("--retrain-within-budget", action="store_true", default=None,
                        help="prune-and-retrain gets the --epochs budget too (its dense "
                             "phase is 2/5 of it), instead of 2.5 times the budget")
    parser.add_argument("--mask-padding", action="store_true", default=None,
                        help="train and score the recogniser that masks the padding "
                             "(speech_model's default; needs --no-tfmot) instead of the "
                             "unmasked first version every other speech table used")
    parser.add_argument("--name", default="compare",
                        help="results file name in benchmarks/results (default: compare)")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--resume", action="store_true",
                        help="reuse the saved rows of a run with the same settings")
    args = parser.parse_args(argv)
    if args.retrain_within_budget and args.epochs % (2 + ROUNDS):
        parser.error(f"--retrain-within-budget needs --epochs divisible by {2 + ROUNDS} "
                     f"(a dense phase of 2/{2 + ROUNDS} of the budget and {ROUNDS} rounds "
                     f"of 1/{2 + ROUNDS}). Received: --epochs {args.epochs}")
    if args.mask_padding and not args.no_tfmot:
        parser.error("--mask-padding needs --no-tfmot: tfmot's tf_keras twin has no "
                     "padding mask")
    if args.quick:
        args.seeds, args.targets, args.epochs = args.seeds[:1], [args.headline], 4
        args.train_size, args.test_size, args.units, args.small_units = 200, 50, 32, 16
        args.frequency = 2
    if args.headline not in args.targets:
        parser.error(f"--headline must be one of --targets {args.targets}. "
                     f"Received: --headline {args.headline}")
    task = speech_bench.SpeechTask(args.data_dir, args.train_size, args.test_size,
                                   args.max_digits, 32)
    prefix = os.path.join(HERE, "results", args.name + ("_quick" if args.quick else ""))
    command = common.command_line("compare.py", argv or sys.argv[1:])
    todo = [(name, seed, (units, method, target))
            for name, units, method, target, seed in configs(args)]
    rows = common.run_and_publish(
        prefix, args, SAME_RUN, todo, lambda config, seed: run_row(task, args, *config, seed),
        lambda saved, pending: publish(prefix, command, args, task.source, saved, pending))
    return 0 if np.all([np.isfinite(r["cer"]) for r in rows]) else 1


if __name__ == "__main__":
    sys.exit(main())
