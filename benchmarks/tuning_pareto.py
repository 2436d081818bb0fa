"""A size-aware search: the smallest (or fastest) `.tflite` export whose
validation accuracy reaches a floor, and the Pareto front of accuracy against
size over the trials.

    python -m benchmarks.tuning_pareto [--size tflite_bytes|tflite_ms|nonzeros]
        [--floor 0.9] [--sparsity 0.5 0.99] [--trials 12] [--quick] [--resume]

The task and model are `tuning_search.py`'s (JapaneseVowels from aeon's
files, LSTM(`--units`) classifier, Adam 1e-3, batch 16, `--epochs` epochs;
the LSTM's two kernels pruned). `RandomSearch(max_trials=--trials)` searches
`tuning.SearchSpace(target_sparsity=--sparsity)` (the timing as well) with
`PrunedHyperModel(scoring="smallest", metric_floor=--floor, size=--size)`:
each trial's size is measured on its final model (`tuning.TFLiteSize`
exports it; `nonzeros` counts non-zero parameters). The winner is then
re-evaluated on fresh seeds (`reevaluate(top=--top, runs=--runs)`) and
trained again from scratch with `--retrain-seeds`, which nothing chose
with; its retrained models are measured the same way. The dense model
(seed 0) is the reference for the size ratio. Every choice is made on the
validation split; the test split is only reported.

Stages, each saved as it finishes (`--resume` reuses them): `dense`,
`search`. Writes benchmarks/results/tuning_pareto.{json,md,png}
(`tuning_pareto_quick.*` with --quick) and the trial table
`tuning_pareto_trials.{csv,json}`.
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
from benchmarks import classify_bench, common, tuning_search

HERE = os.path.dirname(os.path.abspath(__file__))
SIZES = ("tflite_bytes", "tflite_ms", "nonzeros")
SAME_RUN = ("data_dir", "task", "epochs", "units", "batch_size", "size", "floor",
            "sparsity", "trials", "top", "runs", "retrain_seeds", "quick")
UNITS = {"tflite_bytes": "bytes", "tflite_ms": "ms", "nonzeros": "non-zeros"}


def _size(value, args):
    return f"{value:.4f}" if args.size == "tflite_ms" else f"{value:,.0f}"


def _measure(name):
    from tf_gradual_prune import tuning

    if name == "nonzeros":
        return tuning.count_nonzeros
    return tuning.TFLiteSize("bytes" if name == "tflite_bytes" else "ms")


def run_dense(task, args):
    import keras

    keras.utils.set_random_seed(0)
    model = classify_bench.build(task, args.units)
    start = time.perf_counter()
    model.fit(task.x, task.y, batch_size=args.batch_size, epochs=args.epochs, verbose=0)
    seconds = time.perf_counter() - start
    return {"valid": tuning_search.accuracy(model, task.x_valid, task.y_valid),
            "test": tuning_search.accuracy(model, task.x_test, task.y_test),
            "size": float(_measure(args.size)(model)), "sparsity": 0.0,
            "steps": args.epochs * _steps(task, args), "train_seconds": seconds}


def _steps(task, args):
    return int(np.ceil(len(task.x) / args.batch_size))


def run_search(task, args, prefix):
    import keras
    import keras_tuner

    import tf_gradual_prune as tgp
    from tf_gradual_prune import tuning

    space = tuning.SearchSpace(target_sparsity=tuple(args.sparsity))
    hypermodel = tuning.PrunedHyperModel(
        lambda hp: classify_bench.build(task, args.units), space=space,
        scoring="smallest", metric_floor=args.floor, size=args.size)
    workdir = tempfile.mkdtemp(prefix="tfgp_pareto_")
    start = time.perf_counter()
    try:
        tuner = keras_tuner.RandomSearch(hypermodel, objective=tuning.OBJECTIVE,
                                         max_trials=args.trials, directory=workdir,
                                         project_name="pareto", seed=0)
        fit = dict(batch_size=args.batch_size, epochs=args.epochs,
                   validation_data=(task.x_valid, task.y_valid))
        keras.utils.set_random_seed(0)
        tuner.search(task.x, task.y, verbose=2, **fit)
        search_seconds = time.perf_counter() - start
        trials = tuning.save_trials(tuner, prefix + "_trials")
        tuning.pareto_plot(tuner, prefix + ".png")
        reevaluated = hypermodel.reevaluate(tuner, task.x, task.y, top=args.top,
                                            runs=args.runs, verbose=0, **fit)
        best = hypermodel.best_score(tuner)
        hp = hypermodel.best_hyperparameters(tuner)
        schedule = hypermodel.best_schedule(tuner)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    retrained = []
    for seed in args.retrain_seeds:
        keras.utils.set_random_seed(seed)
        model = classify_bench.build(task, args.units)
        model.fit(task.x, task.y, batch_size=args.batch_size, epochs=args.epochs,
                  callbacks=[tgp.GradualPruning(schedule)], verbose=0)
        retrained.append({
            "seed": seed, "valid": tuning_search.accuracy(model, task.x_valid, task.y_valid),
            "test": tuning_search.accuracy(model, task.x_test, task.y_test),
            "sparsity": tgp.sparsity_table(model, weights="recurrent").sparsity,
            "size": float(_measure(args.size)(model))})
    trainings = (args.trials + len(reevaluated) * args.runs + args.runs
                 + len(args.retrain_seeds))
    return {"trainings": trainings, "trials": trials, "best": best, "winner": hp.values,
            "schedule": repr(schedule),
            "reevaluated": [{k: r[k] for k in ("trial", "values", "size", "mean_score")}
                            for r in reevaluated],
            "retrained": retrained, "search_seconds": search_seconds,
            "sparsity": float(np.mean([r["sparsity"] for r in retrained])),
            "steps": trainings * args.epochs * _steps(task, args),
            "train_seconds": time.perf_counter() - start}


def table(rows, args):
    by_name = {r["name"]: r for r in rows}
    unit = UNITS[args.size]
    lines = [
        f"{args.task} (207 / 63 / 370 training / validation / test utterances), "
        f"LSTM({args.units}), Adam 1e-3, batch {args.batch_size}, {args.epochs} epochs. "
        f"RandomSearch, {args.trials} trials, over target sparsity "
        f"{args.sparsity[0]:.2f}-{args.sparsity[1]:.2f} of the LSTM kernels and the "
        f"schedule's timing; objective: the smallest `{args.size}` ({unit}) whose "
        f"validation accuracy reaches {args.floor} (`scoring=\"smallest\"`). Size measured "
        "on each trial's final model. Accuracy on the validation split unless it says test.",
        "",
    ]
    dense = by_name.get("dense")
    if dense:
        lines.append(f"Dense LSTM({args.units}), seed 0: validation {dense['valid']:.3f}, "
                     f"test {dense['test']:.3f}, size {_size(dense['size'], args)} {unit}.")
        lines.append("")
    search = by_name.get("search")
    if search:
        lines += [
            f"| trial | target sparsity | begin / ramp / end | validation | sparsity | "
            f"size ({unit}) | vs dense | reaches {args.floor} | Pareto front |",
            "|---|---:|---|---:|---:|---:|---:|---|---|",
        ]
        done = [t for t in search["trials"] if t.get("size") is not None]
        for t in sorted(done, key=lambda t: t["size"]):
            ratio = f"{dense['size'] / t['size']:.2f}x smaller" if dense else ""
            timing = " / ".join(f"{t[k]:.2f}" for k in
                                ("begin_fraction", "ramp_fraction", "end_fraction"))
            lines.append(
                f"| {t['trial']} | {t['target_sparsity']:.3f} | {timing} | "
                f"{t['val_accuracy']:.3f} | {t['sparsity']:.3f} | {_size(t['size'], args)} | "
                f"{ratio} | {'yes' if t['val_accuracy'] >= args.floor else 'no'} | "
                f"{'yes' if t['pareto'] else ''} |")
        best, retrained = search["best"], search["retrained"]
        valid = [r["valid"] for r in retrained]
        sizes = [r["size"] for r in retrained]
        reached = sum(v >= args.floor for v in valid)
        lines += [
            "",
            f"- Winner after re-evaluation (top {args.top}, {args.runs} runs each"
            + (f", then {args.runs} confirmation runs" if args.top > 1 else "")
            + f"): trial {best['trial']}, target sparsity "
            f"{search['winner'].get('target_sparsity', float('nan')):.3f}; validation "
            f"{best['mean']:.3f} ± {best['std']:.3f} (95% PI {best['low']:.3f}-"
            f"{best['high']:.3f}). `{search['schedule']}`.",
            "- Re-evaluated (validation per run; size per run): " + "; ".join(
                f"{r['trial']}: {' / '.join(f'{v:.3f}' for v in r['values'])} "
                f"({' / '.join(_size(s, args) for s in r['size'])} {unit})"
                for r in search["reevaluated"]),
            f"- Retrained from scratch, seeds {' '.join(map(str, args.retrain_seeds))}: "
            f"validation {' / '.join(f'{v:.3f}' for v in valid)}, {reached} of {len(valid)} "
            f"reach {args.floor}; {sum(best['low'] <= v <= best['high'] for v in valid)} of "
            f"{len(valid)} inside the reported interval; test "
            f"{' / '.join(format(r['test'], '.3f') for r in retrained)}; sparsity "
            f"{search['sparsity']:.3f}; size {' / '.join(_size(s, args) for s in sizes)} {unit}"
            + (f" ({dense['size'] / np.mean(sizes):.2f}x smaller than dense)" if dense else "")
            + ".",
            f"- Compute: {search['trainings']} trainings (search, re-evaluation, "
            f"retraining), {search['train_seconds'] / 60:.1f} min on this host, of which the "
            f"search {search['search_seconds'] / 60:.1f} min.",
        ]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     parents=[tuning_search.search_parser()])
    parser.add_argument("--size", default="tflite_bytes", choices=SIZES)
    parser.add_argument("--floor", type=float, default=0.9)
    parser.add_argument("--sparsity", type=float, nargs=2, default=[0.5, 0.99],
                        metavar=("LOW", "HIGH"))
    args = parser.parse_args(argv)
    low, high = args.sparsity
    if not 0 < low < high < 1:
        parser.error(f"--sparsity must be LOW HIGH with 0 < LOW < HIGH < 1. Received: "
                     f"{low} {high}")
    if not 0 < args.floor <= 1:
        parser.error(f"--floor must lie in (0, 1] (a validation accuracy). Received: "
                     f"{args.floor}")
    tuning_search.check_search_args(parser, args, quick_trials=3)
    task = classify_bench.Task(args.data_dir, args.task)
    prefix = os.path.join(HERE, "results", "tuning_pareto" + ("_quick" if args.quick else ""))
    command = common.command_line("tuning_pareto.py", argv or sys.argv[1:])
    todo = [("dense", 0, "dense"), ("search", 0, "search")]

    def train(kind, seed):
        row = run_dense(task, args) if kind == "dense" else run_search(task, args, prefix)
        row["seed"] = seed
        # What train_rows prints: the validation error (of the retrained winner).
        row["cer"] = 1 - (row["valid"] if kind == "dense" else float(np.mean(
            [r["valid"] for r in row["retrained"]])))
        return row

    def publish(rows, pending):
        markdown = table(rows, args) + "\n" + "\n".join(common.partial_note(pending))
        common.save_results(prefix, command, vars(args), rows, markdown.rstrip())
        return markdown

    common.run_and_publish(prefix, args, SAME_RUN, todo, train, publish)
    return 0


if __name__ == "__main__":
    sys.exit(main())
