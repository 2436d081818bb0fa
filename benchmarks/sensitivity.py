"""Sensitivity of the ramped threshold to its hyperparameters (speech task).

    python -m benchmarks.sensitivity --data-dir ../shared/data [--around default]
        [--quick] [--resume]

One hyperparameter at a time around the paper's setting, on the comparison's
task and model (`compare.py`: FSDD digit strings, 2 x BiGRU(128) CTC, Adam,
10-epoch budget) pruned to `--target` (90%): pruning begins at 10% of the
budget (the 2nd of 10 epochs), the ramp at 25%, the end at 50%, φ/θ = 1.5, masks
updated every `--frequency` (20) steps. The "paper's setting" row is the
comparison's "ramped 90%" row. Every setting runs for every seed, seed by
seed (all settings of the first seed first); rows are saved as they finish
and `--resume` reuses the saved rows of a run with the same settings.

Seeds: 0 and 2 by default. In the comparison, the paper's setting lands
near the other methods on seed 0 and collapses on seed 2 (CER 0.26), so the
two show how the settings move a typical run and whether any of them
avoids the collapse. `--seeds 0 1 2` runs all three (36 runs, about 2.1 h
on 2 cores, against 1.4 h for two).

`--around default` moves one hyperparameter at a time around the library's
default instead (`for_training` at this budget: begin 30%, ramp 45%, end
70%, 80 mask updates between begin and end, φ/θ 1.5, "geometric"
calibration, `"lamp"` allocation, fan-in step scaling; `DEFAULT`): begin,
ramp and end, the number of updates, φ/θ, no step scaling and the
`"uniform"` allocation (`DEFAULT_GRID`); rows run `common.pruning_schedule
("default", ...)` with only the moved argument changed, and go to
`sensitivity_default.*`.

Writes benchmarks/results/sensitivity.{json,md,png} (`sensitivity_quick.*`
with --quick: one seed, one value per hyperparameter, a tiny model): CER
per setting and seed, and one panel per numeric hyperparameter.
"""

import argparse
import os
import sys

import numpy as np

if not __package__:  # run as a file (python benchmarks/<name>.py): the package from the root
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import common, speech_bench
from tf_gradual_prune import schedules

HERE = os.path.dirname(os.path.abspath(__file__))
#: The paper's setting: begin, ramp and end as fractions of the budget
#: (begin: the 2nd of 10 epochs), φ/θ, and the frequency as a multiple of
#: `--frequency`.
PAPER = {"begin": 0.1, "ramp": 0.25, "end": 0.5, "ramp_slope_ratio": 1.5, "frequency": 1.0}
#: The values tried, one hyperparameter at a time.
GRID = {
    "begin": [0.05, 0.2],
    "ramp": [0.15, 0.35],
    "end": [0.35, 0.7, 0.9],
    "ramp_slope_ratio": [1.0, 2.0],
    "frequency": [0.5, 2.5],
}
#: The library's default at any budget (`RampedThresholdSchedule.for_training`).
DEFAULT = {"begin": schedules.DEFAULT_TIMING[0], "ramp": schedules.DEFAULT_TIMING[1],
           "end": schedules.DEFAULT_TIMING[2], "ramp_slope_ratio": schedules.PAPER_RAMP_SLOPE_RATIO,
           "updates": schedules.DEFAULT_UPDATES, "step_scale": schedules.DEFAULT_STEP_SCALE,
           "allocation": schedules.DEFAULT_ALLOCATION}
#: The values tried around the default, one hyperparameter at a time.
DEFAULT_GRID = {
    "begin": [0.2, 0.4],
    "ramp": [0.35, 0.55],
    "end": [0.6, 0.8],
    "updates": [20, 160],
    "ramp_slope_ratio": [1.0, 2.0],
    "step_scale": ["none"],
    "allocation": ["uniform"],
}
#: `--around`: `(base setting, its row's name, grid)`.
AROUND = {"paper": (PAPER, "paper's setting", GRID),
          "default": (DEFAULT, "default's setting", DEFAULT_GRID)}
LABELS = {"begin": "begin (fraction of budget)", "ramp": "ramp (fraction of budget)",
          "end": "end (fraction of budget)", "ramp_slope_ratio": "φ/θ",
          "frequency": "steps between mask updates",
          "updates": "mask updates between begin and end"}
SAME_RUN = ("data_dir", "epochs", "units", "target", "train_size", "test_size",
            "max_digits", "frequency", "quick")


def update_steps(multiple, frequency):
    """Steps between mask updates for a `multiple` of `--frequency`."""
    return max(1, int(round(multiple * frequency)))


def settings_grid(frequency, quick=False, around="paper"):
    """`(name, parameter, value, hyperparameters)`: the base setting first
    (the paper's, or with `around="default"` the library's default; with
    `quick`, one value per hyperparameter)."""
    def named(parameter, value):
        shown = update_steps(value, frequency) if parameter == "frequency" else value
        return f"{parameter} {shown if isinstance(shown, str) else format(shown, 'g')}", shown

    base, base_name, grid = AROUND[around]
    out = [(base_name, None, None, dict(base))]
    for parameter, values in grid.items():
        for value in values[:1] if quick else values:
            name, shown = named(parameter, value)
            out.append((name, parameter, shown, dict(base, **{parameter: value})))
    return out


def default_options(hyper, total):
    """The `RampedThresholdSchedule` arguments that turn `for_training`'s
    schedule for a `total`-step run into `hyper` (`DEFAULT` with one value
    moved): only those that differ, `{}` for the default itself."""
    def arguments(h):
        begin, ramp, end = (int(round(h[k] * total)) for k in ("begin", "ramp", "end"))
        return {"begin_step": begin, "ramp_step": ramp, "end_step": end,
                "frequency": schedules.update_frequency(begin, end, h["updates"]),
                "ramp_slope_ratio": h["ramp_slope_ratio"],
                "step_scale": None if h["step_scale"] == "none" else h["step_scale"],
                "allocation": h["allocation"]}

    base, moved = arguments(DEFAULT), arguments(hyper)
    return {k: v for k, v in moved.items() if v != base[k]}


def run_setting(task, args, hyper, seed):
    if args.around == "default":
        return speech_bench.run_one(
            task, args.units, args.epochs, seed, args.target, method="default", verbose=0,
            options=default_options(hyper, args.epochs * task.train_dataset(seed)[1]) or None)
    return speech_bench.run_one(
        task, args.units, args.epochs, seed, args.target,
        frequency=update_steps(hyper["frequency"], args.frequency),
        method="ramped", verbose=0, timing=(hyper["begin"], hyper["ramp"], hyper["end"]),
        ramp_slope_ratio=hyper["ramp_slope_ratio"])


def table(rows, args, source, pending):
    base_setting, base_name, _ = AROUND[args.around]
    base_cers = [r["cer"] for r in rows if r["name"] == base_name]
    timing = (f"begin {base_setting['begin']:.0%}, ramp {base_setting['ramp']:.0%}, end "
              f"{base_setting['end']:.0%} of the budget, φ/θ {base_setting['ramp_slope_ratio']:g}")
    setting = (f"the paper's setting ({timing}, masks updated every {args.frequency} steps)"
               if args.around == "paper" else
               f"the library's default (`for_training`: {timing}, {DEFAULT['updates']} mask "
               f"updates, {schedules.DEFAULT_CALIBRATION} calibration, "
               f"{DEFAULT['allocation']} allocation, {DEFAULT['step_scale']} step scaling)")
    lines = [
        f"Ramped threshold, one hyperparameter at a time around {setting}. FSDD digit "
        f"strings ({source}; held-out speaker), "
        f"2 x BiGRU({args.units}) pruned to {args.target:.0%} of the recurrent weights, "
        f"{args.epochs}-epoch budget, seeds {args.seeds}. 'vs base' is the mean CER "
        f"difference against the {base_name} over the same seeds.",
        "",
        "| setting | n | CER per seed | CER mean | sparsity | vs base | final training loss "
        "per seed |",
        "|---|---:|---|---:|---:|---:|---|",
    ]
    for name, *_ in settings_grid(args.frequency, around=args.around):
        group = sorted((r for r in rows if r["name"] == name), key=lambda r: r["seed"])
        if not group:
            continue
        cers = [r["cer"] for r in group]
        losses = " / ".join(f"{r['loss']:.3g}" for r in group)
        base = [r["cer"] for r in rows if r["name"] == base_name
                and r["seed"] in {g["seed"] for g in group}]
        versus = ("" if name == base_name or len(base) != len(group)
                  else f"{np.mean(cers) - np.mean(base):+.4f}")
        lines.append(f"| {name} | {len(group)} | {' / '.join(f'{c:.3f}' for c in cers)} "
                     f"| {np.mean(cers):.4f} | {np.mean([r['sparsity'] for r in group]):.3f} "
                     f"| {versus} | {losses} |")
    if base_cers:
        lines += ["", f"{base_name.capitalize()}: CER {np.mean(base_cers):.4f} over "
                  f"{len(base_cers)} seed(s)."]
    total = sum(r["train_seconds"] for r in rows) / 60
    lines += ["", f"Training time summed over the {len(rows)} runs: {total:.0f} min on "
              f"{os.cpu_count()} CPU cores."]
    lines += common.partial_note(pending)
    return "\n".join(lines)


def plot(path, rows, args):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tf_gradual_prune import files

    base_setting, base_name, base_grid = AROUND[args.around]
    grid = settings_grid(args.frequency, around=args.around)
    base_rows = [r for r in rows if r["name"] == base_name]
    numeric = [p for p, values in base_grid.items() if not isinstance(values[0], str)]
    fig, axes = plt.subplots(1, len(numeric), figsize=(3.2 * len(numeric), 3.4), sharey=True)
    for ax, parameter in zip(axes, numeric):
        base_value = (base_setting[parameter] * args.frequency if parameter == "frequency"
                      else base_setting[parameter])
        points = [(base_value, r) for r in base_rows]
        points += [(value, r) for name, p, value, _ in grid if p == parameter
                   for r in rows if r["name"] == name]
        for seed in args.seeds:
            mine = sorted((v, r["cer"]) for v, r in points if r["seed"] == seed)
            if mine:
                ax.plot(*zip(*mine), marker="o", alpha=0.6, label=f"seed {seed}")
        ax.axvline(base_value, ls="--", color="gray")
        ax.set(xlabel=LABELS[parameter])
    axes[0].set_ylabel("held-out speaker CER")
    axes[0].legend(fontsize=8)
    fig.suptitle(f"Ramped threshold at {args.target:.0%}: one hyperparameter at a time "
                 f"(dashed: the {base_name})", fontsize=10)
    fig.tight_layout()
    files.save_figure(fig, path)


def publish(prefix, command, args, source, rows, pending):
    markdown = table(rows, args, source, pending)
    common.save_results(prefix, command, vars(args), rows, markdown)
    plot(prefix + ".png", rows, args)
    return markdown


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default=os.environ.get("TFGP_DATA_DIR"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--target", type=float, default=0.9)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--units", type=int, default=128)
    parser.add_argument("--train-size", type=int, default=1200)
    parser.add_argument("--test-size", type=int, default=400)
    parser.add_argument("--max-digits", type=int, default=7)
    parser.add_argument("--frequency", type=int, default=20,
                        help="the paper's setting's steps between mask updates")
    parser.add_argument("--around", default="paper", choices=sorted(AROUND),
                        help="move the hyperparameters around the paper's setting (default) "
                             "or the library's default (results: sensitivity_default.*)")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--resume", action="store_true",
                        help="reuse the saved rows of a run with the same settings")
    args = parser.parse_args(argv)
    if not 0 < args.target < 1:
        parser.error(f"--target must be in (0, 1). Received: --target {args.target}")
    if args.epochs < 10:
        parser.error("--epochs must be >= 10 (the grid begins pruning at 5% of the "
                     f"budget and the paper at the 2nd epoch). Received: --epochs {args.epochs}")
    if args.quick:
        args.seeds, args.train_size, args.test_size = args.seeds[:1], 200, 50
        args.units, args.frequency = 16, 2
    task = speech_bench.SpeechTask(args.data_dir, args.train_size, args.test_size,
                                   args.max_digits, 32)
    stem = "sensitivity" + ("_default" if args.around == "default" else "")
    prefix = os.path.join(HERE, "results", stem + ("_quick" if args.quick else ""))
    command = common.command_line("sensitivity.py", argv or sys.argv[1:])
    todo = [(name, seed, (parameter, value, hyper)) for seed in args.seeds
            for name, parameter, value, hyper in settings_grid(args.frequency, args.quick,
                                                               args.around)]

    def train(config, seed):
        parameter, value, hyper = config
        return dict(run_setting(task, args, hyper, seed), parameter=parameter, value=value)

    rows = common.run_and_publish(
        prefix, args, SAME_RUN, todo, train,
        lambda saved, pending: publish(prefix, command, args, task.source, saved, pending))
    return 0 if all(np.isfinite(r["cer"]) for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
