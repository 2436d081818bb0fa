"""Diagnosis: what each mask update cuts, and what the loss does right after.

    python -m benchmarks.trajectory --data-dir ../shared/data [--quick] [--resume]
        [--held-out SPEAKER] [--variants NAME ...] [--targets 0.9 0.95] [--name STEM]

The comparison's task and model (FSDD digit strings, 2 x BiGRU(128) CTC,
Adam 1e-3, 10-epoch budget of 400 steps) on the *validation* split of
`speech_bench.SpeechTask`: the test speaker of every other benchmark is left
out entirely, four speakers train and the fifth scores. This is where the
library's defaults are chosen; the test split is only for reporting them.

Every variant is trained with `speech_bench.run_one(..., trace=True)`, which
records the loss of every optimizer step, every matrix's sparsity after each
mask update, and the validation CER at every epoch end. Variants: the
paper's rule (its timing, "track" calibration, as in the comparison), AGP
(tfmot's `PolynomialDecay` through our callback), the paper's timing with
"spread" calibration, a later timing (begin 20%, ramp 40%, end 70%: the
library's first default) with "track", the same with "spread" and with
"geometric", and "geometric" placed elsewhere in the budget: everything
earlier (10/30/60%) or a later begin (30/45/70%; with 20 updates this was
`for_training(...)` at this budget until 80 updates won, variants "default,
every 2 steps" and "default, every step"). `--held-out` scores another validation
speaker (any but the test split's), `--data-seed` composes other digit
strings from the recordings; variant "default" is `for_training` as it
stands. Rows are saved as they finish;
`--resume` reuses them.

Writes benchmarks/results/trajectory.{json,md,png} (`--name` for another
stem, e.g. `trajectory_95` for `--targets 0.95`; `*_quick.*` with --quick):
per variant and seed the final validation CER, the largest
share of a matrix cut in one update, the share of the final sparsity added
in the last four updates, the worst loss jump after an update, and the
steps left for recovery after the last cut; the plot shows sparsity and loss
against the step, and the validation CER along the way.
"""

import argparse
import os
import sys

import numpy as np

if not __package__:  # run as a file (python benchmarks/<name>.py): the package from the root
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import common, speech_bench

HERE = os.path.dirname(os.path.abspath(__file__))
LATE = (0.2, 0.4, 0.7)
EARLY = (0.1, 0.3, 0.6)
LATE_BEGIN = (0.3, 0.45, 0.7)
#: `(name, run_one keywords)`, in run order within a seed. "late" is the
#: library's first default timing, "late begin" today's `DEFAULT_TIMING`
#: (each with 20 updates, `for_training`'s frequency at this budget until
#: `DEFAULT_UPDATES` became 80: "default, every 2 steps"); the
#: paper's-timing variants update every `--frequency`.
VARIANTS = [
    ("dense", {"method": "dense"}),
    ("paper's rule", {"method": "ramped"}),
    ("late timing, spread", {"method": "ramped", "timing": LATE, "calibration": "spread",
                             "frequency": 10}),
    ("late timing, track", {"method": "ramped", "timing": LATE, "calibration": "track",
                            "frequency": 10}),
    ("paper's timing, spread", {"method": "ramped", "calibration": "spread"}),
    ("AGP", {"method": "agp"}),
    ("late timing, geometric", {"method": "ramped", "timing": LATE,
                                "calibration": "geometric", "frequency": 10}),
    # Where the geometric ramp sits in the budget (20 updates each):
    # everything earlier (more recovery, but cuts while the recogniser is
    # still on its plateau), and a later begin with the same end.
    ("early timing, geometric", {"method": "ramped", "timing": EARLY,
                                 "calibration": "geometric", "frequency": 10}),
    ("late begin, geometric", {"method": "ramped", "timing": LATE_BEGIN,
                               "calibration": "geometric", "frequency": 8}),
    # Learning rate coupled to the ramp: constant until the last cut, then a
    # cosine to 0 over the recovery steps; the dense twin decays over the
    # same last 30% of the budget.
    ("dense, decay", {"method": "dense", "decay": True}),
    ("default, decay", {"method": "default", "decay": True}),
    # Regrowth (opt-in): the default's schedule, masks recomputed at every
    # update from a dense shadow that every optimizer update also reaches.
    ("default, regrow", {"method": "default", "options": {"regrow": True}}),
    # Allocation among the matrices: each keeps a share proportional to
    # sum(shape) / prod(shape) (Erdős-Rényi), the group at the target.
    ("default, erk", {"method": "default", "options": {"allocation": "erk"}}),
    # ... or by LAMP scores (Lee et al. 2021), from the live magnitudes.
    ("default, lamp", {"method": "default", "options": {"allocation": "lamp"}}),
    # Smaller, more frequent cuts: the default's ramp with a mask update
    # every 2 steps (80 updates instead of 20; geometric calibration then
    # removes ~3% of the survivors per update instead of ~13%), or every
    # step (160 updates, ~1.4% each).
    ("default, every 2 steps", {"method": "default", "options": {"frequency": 2}}),
    ("default, every step", {"method": "default", "options": {"frequency": 1}}),
    # Step scaling: every optimizer step on a pruned matrix multiplied by
    # how much pruning shrank its outputs' fan-in (about 1 / density).
    ("default, fan-in steps", {"method": "default", "options": {"step_scale": "fan_in"}}),
    # `for_training` as it stands, nothing changed (the checks after a choice).
    ("default", {"method": "default"}),
]
SAME_RUN = ("data_dir", "held_out", "data_seed", "epochs", "units", "train_size", "test_size",
            "max_digits", "frequency", "quick")
#: Steps before and after an update over which the loss jump is measured.
WINDOW = 10
#: The last updates whose share of the final sparsity is reported.
LAST_UPDATES = 4


def diagnose(row):
    """Figures of one traced row: `updates`, `largest_cut` (of a matrix, in
    one update), `largest_survivor_cut` (the largest share of a matrix's
    surviving weights cut in one update), `late_share`, `loss_jump`,
    `recovery_steps` (None for a dense row)."""
    trace = row["trajectory"]
    updates = trace["updates"]
    if not updates or not trace["matrices"]:
        return None
    loss = np.asarray(trace["loss"])
    before = np.zeros(len(trace["matrices"]))
    cuts, survivor_cuts, jumps = [], [], []
    for step, sparsity in updates:
        sparsity = np.asarray(sparsity)
        cuts.append(sparsity - before)
        survivor_cuts.append((sparsity - before) / np.maximum(1 - before, 1e-12))
        before = sparsity
        # `loss[i]` is the loss of optimizer step i + 1; the update follows step `step`.
        prior, after = loss[max(step - WINDOW, 0):step], loss[step:step + WINDOW]
        if len(prior) and len(after):
            jumps.append(float(np.mean(after) / np.mean(prior)))
    cuts = np.asarray(cuts)
    final = cuts.sum(axis=0)
    late = cuts[-LAST_UPDATES:].sum(axis=0)
    return {
        "updates": len(updates),
        "largest_cut": float(cuts.max()),
        "largest_survivor_cut": float(np.max(survivor_cuts)),
        "late_share": float(np.mean(late / np.maximum(final, 1e-12))),
        "loss_jump": float(max(jumps)) if jumps else None,
        "recovery_steps": int(row["steps"] - updates[-1][0]),
    }


def table(rows, args, pending):
    lines = [
        f"Validation split (FSDD; the benchmarks' test speaker left out, four speakers "
        f"train, {'the fifth' if args.held_out is None else repr(args.held_out)} scores"
        f"{'' if not args.data_seed else f'; digit strings of data seed {args.data_seed}'}), "
        f"2 x BiGRU({args.units}) CTC, {args.epochs}-epoch "
        f"budget, Adam 1e-3; seeds {sorted({r['seed'] for r in rows})}. Per variant and "
        f"seed: validation CER at "
        f"the end, the largest share of one matrix cut in one mask update, the largest "
        f"share of a matrix's surviving weights cut in one update, the share of "
        f"the final sparsity added in the last {LAST_UPDATES} updates (mean over "
        f"matrices), the worst ratio of the mean loss over the {WINDOW} steps after an "
        f"update to the {WINDOW} before, and the steps left after the last cut.",
        "",
        "| target | variant | seed | val CER | sparsity | updates | largest cut | "
        f"largest cut of survivors | last {LAST_UPDATES} updates | worst loss jump | "
        "recovery steps |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        d = diagnose(row) or {}
        target = "" if row["target"] is None else f"{row['target']:.0%}"
        def fmt(key, spec, d=d):
            return "" if d.get(key) is None else format(d[key], spec)

        lines.append(
            f"| {target} | {row['name']} | {row['seed']} | {row['cer']:.4f} | "
            f"{row['sparsity']:.3f} | {fmt('updates', 'd')} | {fmt('largest_cut', '.3f')} | "
            f"{fmt('largest_survivor_cut', '.0%')} | "
            f"{fmt('late_share', '.0%')} | {fmt('loss_jump', '.2f')} | "
            f"{fmt('recovery_steps', 'd')} |")
    lines += ["", "Mean over seeds (CER against the dense model of the same seeds; cuts as above):",
              "", "| target | variant | n | CER mean ± std | vs dense | CER per seed | "
              "largest cut of survivors | last 4 updates |",
              "|---:|---|---:|---:|---:|---|---:|---:|"]
    dense = {r["seed"]: r["cer"] for r in rows if r["target"] is None}
    groups = {}
    for row in rows:
        groups.setdefault((row["target"], row["name"]), []).append(row)
    for (target, name), group in groups.items():
        cer = np.array([r["cer"] for r in group])
        std = cer.std(ddof=1) if len(cer) > 1 else 0.0
        shown = "" if target is None else f"{target:.0%}"
        baseline = [dense[r["seed"]] for r in group if r["seed"] in dense]
        versus = ("" if target is None or len(baseline) != len(group)
                  else f"{cer.mean() / np.mean(baseline) - 1:+.1%}")
        found = [d for d in map(diagnose, group) if d]
        cuts = (f"{np.mean([d['largest_survivor_cut'] for d in found]):.0%} | "
                f"{np.mean([d['late_share'] for d in found]):.0%}") if found else " | "
        lines.append(f"| {shown} | {name} | {len(cer)} | {cer.mean():.4f} ± {std:.4f} | "
                     f"{versus} | {' / '.join(f'{c:.3f}' for c in cer)} | {cuts} |")
    lines += common.partial_note(pending)
    return "\n".join(lines)


def plot(path, rows):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tf_gradual_prune import files

    pruned = [r for r in rows if r["trajectory"]["matrices"]]
    panels = list(dict.fromkeys((r["target"], r["name"]) for r in pruned))
    if not panels:
        return
    fig, axes = plt.subplots(len(panels), 2, figsize=(12, 2.6 * len(panels)), squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    dense = {r["seed"]: r for r in rows if not r["trajectory"]["matrices"]}
    for (target, name), (left, right) in zip(panels, axes):
        twin = left.twinx()
        for r in (r for r in pruned if (r["target"], r["name"]) == (target, name)):
            colour = colours[r["seed"] % len(colours)]
            trace = r["trajectory"]
            steps = [0] + [s for s, _ in trace["updates"]] + [r["steps"]]
            mean = [0.0] + [float(np.mean(v)) for _, v in trace["updates"]]
            left.step(steps, mean + mean[-1:], where="post", color=colour,
                      label=f"seed {r['seed']} sparsity")
            loss = np.convolve(trace["loss"], np.ones(5) / 5, mode="valid")
            twin.plot(np.arange(len(loss)) + 3, loss, color=colour, alpha=0.45, lw=0.8)
            if trace["cer"]:
                x, y = zip(*trace["cer"])
                right.plot(x, y, marker="o", ms=3, color=colour, label=f"seed {r['seed']}")
            if r["seed"] in dense and dense[r["seed"]]["trajectory"]["cer"]:
                x, y = zip(*dense[r["seed"]]["trajectory"]["cer"])
                right.plot(x, y, ls=":", color=colour, lw=0.8)
        left.set(ylim=(0, 1), ylabel="sparsity (mean of matrices)",
                 title=f"{name}: sparsity (steps) and loss (faint)")
        twin.set(yscale="log", ylabel="training loss")
        right.set(ylim=(0, 1), ylabel="validation CER",
                  title=f"{name}: validation CER (dotted: dense)")
        left.legend(fontsize=7, loc="upper left")
    for ax in axes[-1]:
        ax.set_xlabel("optimizer step")
    fig.tight_layout()
    files.save_figure(fig, path)


def publish(prefix, command, args, rows, pending):
    markdown = table(rows, args, pending)
    common.save_results(prefix, command, vars(args), rows, markdown)
    plot(prefix + ".png", rows)
    return markdown


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default=os.environ.get("TFGP_DATA_DIR"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--targets", type=float, nargs="+", default=[0.9])
    parser.add_argument("--variants", nargs="+", default=[n for n, _ in VARIANTS],
                        choices=[n for n, _ in VARIANTS])
    parser.add_argument("--held-out", default=None,
                        help="the validation speaker (default: the fifth in sorted order; "
                             "never the test split's)")
    parser.add_argument("--data-seed", type=int, default=0,
                        help="seed of the digit strings composed from the recordings "
                             "(default 0, every other speech benchmark's)")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--units", type=int, default=128)
    parser.add_argument("--train-size", type=int, default=1200)
    parser.add_argument("--test-size", type=int, default=400)
    parser.add_argument("--max-digits", type=int, default=7)
    parser.add_argument("--frequency", type=int, default=20,
                        help="steps between mask updates of the paper's-timing variants")
    parser.add_argument("--name", default="trajectory",
                        help="results file name in benchmarks/results (default: trajectory)")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args(argv)
    for target in args.targets:
        if not 0 < target < 1:
            parser.error(f"--targets must lie in (0, 1). Received: {target}")
    if args.quick:
        args.seeds, args.epochs, args.train_size, args.test_size = args.seeds[:1], 4, 200, 50
        args.units, args.frequency = 32, 2
    task = speech_bench.SpeechTask(args.data_dir, args.train_size, args.test_size,
                                   args.max_digits, 32, data_seed=args.data_seed,
                                   split="validation", held_out=args.held_out)
    prefix = os.path.join(HERE, "results", args.name + ("_quick" if args.quick else ""))
    command = common.command_line("trajectory.py", argv or sys.argv[1:])
    chosen = [(n, kw) for n, kw in VARIANTS if n in args.variants]
    todo = []
    for seed in args.seeds:
        for target in args.targets:
            for name, keywords in chosen:
                if keywords["method"] == "dense":
                    if target == args.targets[0]:
                        todo.append((name, seed, (None, keywords)))
                    continue
                todo.append((f"{name} {target:.0%}", seed, (target, keywords)))

    def train(config, seed):
        target, keywords = config
        keywords = dict({"frequency": args.frequency}, **keywords)
        return speech_bench.run_one(task, args.units, args.epochs, seed, target, verbose=0,
                                    trace=True, **keywords)

    common.run_and_publish(
        prefix, args, SAME_RUN, todo, train,
        lambda saved, pending: publish(prefix, command, args, saved, pending))
    return 0


if __name__ == "__main__":
    sys.exit(main())
