"""What tuning the schedule costs and what it buys: RandomSearch and Hyperband
against the library's default, every winner trained again with fresh seeds.

    python -m benchmarks.tuning_search [--task JapaneseVowels] [--target 0.98]
        [--epochs 30] [--trials 12] [--tuners random hyperband] [--quick] [--resume]

The task is `classify_bench.Task` (JapaneseVowels: 207 training, 63
validation and 370 test utterances of the time-series archive, from the files
the PyPI package aeon ships), its LSTM(`--units`) classifier, Adam 1e-3, batch
16, `--epochs` epochs; pruned: the LSTM's two kernels, at `--target`. Every
choice is made on the validation split; the test split is only reported.

Stages, each saved as it finishes (`--resume` reuses them):

- `default`: `RampedThresholdSchedule.for_training` with nothing else set,
  trained with the retrain seeds (`--retrain-seeds`, 11 12 13).
- one per `--tuners` entry: `random` is `RandomSearch(max_trials=--trials)`,
  `hyperband` is `Hyperband(max_epochs=--epochs, factor=3)` (successive
  halving), both over `tuning.SearchSpace()` with `tuning.OBJECTIVE`
  (validation accuracy of trials at the target). Then
  `PrunedHyperModel.reevaluate(top=--top, runs=--runs)` (seeds 1, 2, ...),
  and the best schedule trained again from scratch with the retrain seeds,
  which no search or re-evaluation run used: does it land within the
  reported spread, and what does it score on the test split?

Compute is counted in optimizer steps (every batch any trial, re-evaluation
or retraining trained) and given as a multiple of one training of
`--epochs`; wall seconds beside it. Writes benchmarks/results/tuning.{json,md,png}
(`tuning_quick.*` with --quick) and each tuner's trial table
(`tuning_<tuner>_trials.{csv,json}`) and sensitivity plot
(`tuning_<tuner>_sensitivity.png`).
"""

import argparse
import os
import shutil
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

if not __package__:  # run as a file (python benchmarks/<name>.py): the package from the root
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import classify_bench, common

HERE = os.path.dirname(os.path.abspath(__file__))
TUNERS = ("random", "hyperband")
SAME_RUN = ("data_dir", "task", "target", "epochs", "units", "batch_size", "trials",
            "top", "runs", "retrain_seeds", "quick")
#: Optimizer steps trained since the last reset. A module-level counter:
#: keras-tuner deep-copies the callbacks of every trial.
STEPS = {"count": 0}


def _counter():
    import keras

    class CountSteps(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            STEPS["count"] += 1

    return CountSteps()


def _measured(function, *args, **kwargs):
    """`function(...)`, its optimizer steps and wall seconds."""
    STEPS["count"] = 0
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return result, STEPS["count"], time.perf_counter() - start


def accuracy(model, x, y):
    return float(np.mean(np.argmax(model.predict(x, verbose=0), -1) == y))


def retrain(task, args, hp, schedule):
    """`schedule` trained from scratch once per retrain seed: validation and
    test accuracy per seed, steps and seconds."""
    import keras

    import tf_gradual_prune as tgp

    valid, test = [], []
    STEPS["count"] = 0
    start = time.perf_counter()
    for seed in args.retrain_seeds:
        keras.utils.set_random_seed(seed)
        model = build_model(task, args, hp)
        model.fit(task.x, task.y, batch_size=args.batch_size, epochs=args.epochs,
                  callbacks=[tgp.GradualPruning(schedule), _counter()], verbose=0)
        valid.append(accuracy(model, task.x_valid, task.y_valid))
        test.append(accuracy(model, task.x_test, task.y_test))
        sparsity = tgp.sparsity_table(model, weights="recurrent").sparsity
    return {"retrain_valid": valid, "retrain_test": test, "sparsity": sparsity,
            "retrain_steps": STEPS["count"], "retrain_seconds": time.perf_counter() - start}


def build_model(task, args, hp):
    """classify_bench's model; `hp` may hold nothing (the schedule is the
    only thing searched)."""
    return classify_bench.build(task, args.units)


def run_default(task, args):
    import tf_gradual_prune as tgp

    steps = int(np.ceil(len(task.x) / args.batch_size))
    schedule = tgp.RampedThresholdSchedule.for_training(
        args.epochs, steps, target_sparsity=args.target)
    row = {"method": "default", "schedule": repr(schedule), "recipe": common.default_recipe(),
           "trials": 0, "search_steps": 0, "search_seconds": 0.0,
           "reevaluate_steps": 0, "reevaluate_seconds": 0.0}
    row.update(retrain(task, args, None, schedule))
    return row


def run_tuner(task, args, kind, prefix):
    import keras
    import keras_tuner

    from tf_gradual_prune import tuning

    hypermodel = tuning.PrunedHyperModel(
        lambda hp: build_model(task, args, hp), target_sparsity=args.target)
    workdir = tempfile.mkdtemp(prefix="tfgp_tuner_")
    common_args = dict(objective=tuning.OBJECTIVE, directory=workdir, project_name=kind,
                       seed=0)
    if kind == "random":
        tuner = keras_tuner.RandomSearch(hypermodel, max_trials=args.trials, **common_args)
    else:
        tuner = keras_tuner.Hyperband(hypermodel, max_epochs=args.epochs, factor=3,
                                      hyperband_iterations=1, **common_args)
    fit = dict(batch_size=args.batch_size, validation_data=(task.x_valid, task.y_valid))
    keras.utils.set_random_seed(0)
    search_epochs = {} if kind == "hyperband" else {"epochs": args.epochs}
    _, search_steps, search_seconds = _measured(
        tuner.search, task.x, task.y, callbacks=[_counter()], verbose=2,
        **search_epochs, **fit)
    trials = tuning.save_trials(tuner, f"{prefix}_{kind}_trials")
    try:
        tuning.sensitivity_plot(trials, f"{prefix}_{kind}_sensitivity.png")
    except ValueError as error:  # no completed trial: said in the table
        print(f"no sensitivity plot for {kind}: {error}")
    search_best = hypermodel.best_score(tuner)
    rows, reevaluate_steps, reevaluate_seconds = _measured(
        hypermodel.reevaluate, tuner, task.x, task.y, top=args.top, runs=args.runs,
        epochs=args.epochs, callbacks=[_counter()], verbose=0, **fit)
    best = hypermodel.best_score(tuner)
    schedule = hypermodel.best_schedule(tuner)
    hp = hypermodel.best_hyperparameters(tuner)
    row = {"method": kind, "schedule": repr(schedule), "hyperparameters": hp.values,
           "trials": len(trials),
           "completed": sum(r["pruning_score"] is not None for r in trials),
           "search_steps": search_steps, "search_seconds": search_seconds,
           "search_best": search_best["mean"], "search_best_trial": search_best["trial"],
           "trial_values": [r["val_accuracy"] for r in trials
                            if r["val_accuracy"] is not None],
           "reevaluated": [{k: r[k] for k in ("trial", "search_score", "values", "mean", "std")}
                           for r in rows],
           "reevaluate_steps": reevaluate_steps, "reevaluate_seconds": reevaluate_seconds,
           "best": {k: best[k] for k in ("trial", "mean", "std", "low", "high", "values",
                                         "runs")}}
    row.update(retrain(task, args, hp, schedule))
    shutil.rmtree(workdir, ignore_errors=True)
    return row


def _mean_std(values):
    values = np.asarray(values, float)
    std = values.std(ddof=1) if len(values) > 1 else 0.0
    return f"{values.mean():.4f} ± {std:.4f}"


def table(rows, args, one_training):
    by_method = {r["method"]: r for r in rows}
    best_found = max(np.mean(r["retrain_valid"]) for r in rows) if rows else None
    lines = [
        f"{args.task} (207 / 63 / 370 training / validation / test utterances), "
        f"LSTM({args.units}), Adam 1e-3, batch {args.batch_size}, {args.epochs} epochs "
        f"({one_training} optimizer steps = one training), target sparsity {args.target:.0%} "
        f"of the LSTM kernels. Search: {args.trials} RandomSearch trials; Hyperband with "
        f"max_epochs {args.epochs}, factor 3, one iteration; objective `tuning.OBJECTIVE` "
        f"(validation accuracy at the target). Re-evaluation: the top {args.top} trials, "
        f"{args.runs} runs each (seeds 1-{args.runs}), then the winner {args.runs} more times "
        f"(seeds {args.runs + 1}-{2 * args.runs}), whose mean, std and 95% prediction "
        "interval for one more training are reported. Retrained: the winner from scratch "
        f"with seeds {' '.join(map(str, args.retrain_seeds))}, which no search or "
        "re-evaluation run used. Accuracy is on the validation split unless it says test; "
        "compute counts every optimizer step trained, in trainings.",
        "",
        "| schedule | trials | search compute | + re-evaluation | search's figure for its "
        "best | winner on fresh seeds (mean ± std, runs) | reported spread (95% PI) | retrained "
        "(valid, per seed) | in spread | retrained test error | wall min |",
        "|---|---:|---:|---:|---:|---|---|---|---:|---|---:|",
    ]
    for method in ("default",) + TUNERS:
        r = by_method.get(method)
        if r is None:
            continue
        valid = r["retrain_valid"]
        test_error = [1 - t for t in r["retrain_test"]]
        wall = (r["search_seconds"] + r["reevaluate_seconds"] + r["retrain_seconds"]) / 60
        if method == "default":
            lines.append(
                f"| default (`for_training`) | - | 0 | 0 | - | - | - | "
                f"{' / '.join(f'{v:.3f}' for v in valid)} ({_mean_std(valid)}) | - | "
                f"{_mean_std(test_error)} | {wall:.1f} |")
            continue
        best = r["best"]
        inside = sum(best["low"] <= v <= best["high"] for v in valid)
        lines.append(
            f"| {method} | {r['completed']} of {r['trials']} | "
            f"{r['search_steps'] / one_training:.1f} | "
            f"{r['reevaluate_steps'] / one_training:.1f} | {r['search_best']:.4f} | "
            f"{best['mean']:.4f} ± {best['std']:.4f} ({best['runs']}) | "
            f"{best['low']:.3f}-{best['high']:.3f} | "
            f"{' / '.join(f'{v:.3f}' for v in valid)} ({_mean_std(valid)}) | "
            f"{inside} of {len(valid)} | {_mean_std(test_error)} | {wall:.1f} |")
    lines.append("")
    for method in TUNERS:
        r = by_method.get(method)
        if r is None:
            continue
        values = r["trial_values"]
        lines.append(
            f"- {method}: the trials' last-epoch validation accuracy spans "
            f"{min(values):.3f}-{max(values):.3f} (search's best trial {r['search_best_trial']}); "
            f"re-evaluated top trials (search figure -> mean of the selection runs): "
            + "; ".join(f"{e['trial']}: {e['search_score']:.3f} -> {np.mean(e['values']):.3f}"
                        for e in r["reevaluated"])
            + f"; the winner on {r['best']['runs']} further seeds: {r['best']['mean']:.3f} ± "
              f"{r['best']['std']:.3f}"
            + f". Winner: `{r['schedule']}`.")
        if best_found is not None:
            gap = np.mean(r["retrain_valid"]) - best_found
            lines.append(f"  Retrained validation accuracy {gap:+.4f} against the best "
                         "schedule found here (retrained means).")
    if "default" in by_method:
        lines.append(f"- default: `{by_method['default']['schedule']}`.")
    return "\n".join(lines)


def plot(path, rows, one_training):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tf_gradual_prune import files

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for r in rows:
        compute = (r["search_steps"] + r["reevaluate_steps"]) / one_training + len(
            r["retrain_valid"])
        error = 1 - np.asarray(r["retrain_valid"])
        ax.errorbar(compute, error.mean(), yerr=error.std(ddof=1) if len(error) > 1 else 0,
                    fmt="o", capsize=4, label=f"{r['method']} (validation)")
        test = 1 - np.asarray(r["retrain_test"])
        ax.errorbar(compute, test.mean(), yerr=test.std(ddof=1) if len(test) > 1 else 0,
                    fmt="s", capsize=4, mfc="none", label=f"{r['method']} (test)")
    ax.set(xlabel="compute, in trainings (search + re-evaluation + retraining)",
           ylabel="error of the retrained winner", xscale="symlog",
           title="What tuning the schedule costs and buys")
    ax.legend(fontsize=7)
    fig.tight_layout()
    files.save_figure(fig, path)


def search_parser():
    """The arguments of a search on `classify_bench`'s task, which this
    script and tuning_pareto.py share."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--data-dir", default=None,
                        help="folder holding JapaneseVowels/ (default: aeon's files)")
    parser.add_argument("--task", default="JapaneseVowels")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--units", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--top", type=int, default=3)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--retrain-seeds", type=int, nargs="+", default=[11, 12, 13])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--resume", action="store_true")
    return parser


def check_search_args(parser, args, quick_trials):
    """Refuses what `search_parser` cannot run; shrinks a --quick run to
    `quick_trials` trials of a small model."""
    if args.runs < 2:
        parser.error(f"--runs must be >= 2 (a spread needs two runs). Received: {args.runs}")
    if args.quick:
        args.epochs, args.units, args.trials, args.top, args.runs = 6, 16, quick_trials, 1, 2
        args.retrain_seeds = args.retrain_seeds[:2]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     parents=[search_parser()])
    parser.add_argument("--target", type=float, default=0.98)
    parser.add_argument("--tuners", nargs="+", default=list(TUNERS), choices=TUNERS)
    args = parser.parse_args(argv)
    if not 0 < args.target < 1:
        parser.error(f"--target must lie in (0, 1). Received: {args.target}")
    check_search_args(parser, args, quick_trials=2)
    task = classify_bench.Task(args.data_dir, args.task)
    prefix = os.path.join(HERE, "results", "tuning" + ("_quick" if args.quick else ""))
    command = common.command_line("tuning_search.py", argv or sys.argv[1:])
    one_training = args.epochs * int(np.ceil(len(task.x) / args.batch_size))
    todo = [("default", 0, "default")] + [(kind, 0, kind) for kind in args.tuners]

    def train(kind, seed):
        row = run_default(task, args) if kind == "default" else run_tuner(task, args, kind, prefix)
        row["seed"] = seed
        row["cer"] = 1 - float(np.mean(row["retrain_valid"]))  # what train_rows prints
        row["steps"] = row["search_steps"] + row["reevaluate_steps"] + row["retrain_steps"]
        row["train_seconds"] = (row["search_seconds"] + row["reevaluate_seconds"]
                                + row["retrain_seconds"])
        return row

    def publish(rows, pending):
        markdown = table(rows, args, one_training)
        if pending:
            markdown += "\n\nStill to run: " + ", ".join(name for name, _, _ in pending)
        common.save_results(prefix, command, vars(args), rows, markdown)
        if rows:
            plot(prefix + ".png", rows, one_training)
        return markdown

    common.run_and_publish(prefix, args, SAME_RUN, todo, train, publish)
    return 0


if __name__ == "__main__":
    sys.exit(main())
