"""Beyond FSDD: every pruning method on a sequence-classification task.

    python -m benchmarks.classify_bench [--data-dir FOLDER] [--task NAME] [--targets 0.9 0.98]
        [--methods ...] [--allocations erk lamp uniform] [--step-scales none fan_in]
        [--quick] [--resume]

The time-series archive's JapaneseVowels (`timeseries_data.ts_classification`:
nine speakers, 7-29 frames of 12 LPC coefficients; the files the PyPI package
aeon ships, `pip install --no-deps aeon==1.6.0`, or `--data-dir` holding
`JapaneseVowels/`). The 270 training utterances are split once into 207 for
training and 63 (7 per speaker) for validation; the 370 test utterances are
only reported. Model: masking, LSTM(`--units`), softmax; Adam at
`--learning-rate` (1e-3; another rate goes to another `--name`), gradients
clipped to norm `--clipnorm` if given (likewise), batch 16,
`--epochs` (30) epochs. Pruned: the LSTM's two kernels.

`--task` picks another problem of the archive (results then in
`classify_<task>.*`), `--validation` the share of each class held out.
`--allocations` adds the default with other shares of the target among the
two kernels (`RampedThresholdSchedule(allocation=...)`), as rows
`default, <allocation>`; `--step-scales` the default with other step
scalings (`step_scale=...`, `none` for off), as rows `default, steps <scaling>`.

Rows, every one over `--seeds` (0 1 2) and at the same step budget unless
said: dense LSTM(`--units`) and LSTM(`--small-units`); at every `--targets`
sparsity the library's default (`for_training` with nothing else set), the
paper's rule (its timing, "track" calibration), AGP, one-shot, L1, and
prune-and-retrain (2.5 times the steps), as `common.pruning_schedule`
defines them for the speech task. Rows are saved as they finish; `--resume`
reuses them. Writes benchmarks/results/classify.{json,md,png}
(`classify_quick.*` with --quick).
"""

import argparse
import os
import sys
import time

import numpy as np

if not __package__:  # run as a file (python benchmarks/<name>.py): the package from the root
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import common

HERE = os.path.dirname(os.path.abspath(__file__))
METHODS = ("default", "ramped", "agp", "one_shot", "l1", "prune_retrain")
SAME_RUN = ("data_dir", "task", "validation", "epochs", "units", "small_units", "batch_size",
            "frequency", "quick")
# (`--learning-rate` and `--clipnorm` are not among them, so that files written before it
# existed still resume: a run at another rate goes to another `--name`.)
#: Share of each class's training utterances held out for validation (60 of
#: JapaneseVowels' 270: 7 per speaker).
VALIDATION_SHARE = 60 / 270
ALLOCATIONS = ("uniform", "erk", "lamp")
STEP_SCALES = ("none", "fan_in")


def pad(sequences, length):
    out = np.zeros((len(sequences), length, sequences[0].shape[1]), np.float32)
    for i, s in enumerate(sequences):
        out[i, :len(s)] = s
    return out


class Task:
    """JapaneseVowels, split and normalised once for every row."""

    def __init__(self, data_dir, name="JapaneseVowels", validation=VALIDATION_SHARE):
        from tf_gradual_prune import timeseries_data

        (x, y), (xt, yt), self.classes = timeseries_data.ts_classification(name, data_dir)
        rng = np.random.default_rng(0)  # the split is fixed, whatever the row's seed
        held = np.zeros(len(y), bool)
        for label in np.unique(y):
            members = np.flatnonzero(y == label)
            share = max(1, int(round(validation * len(members))))
            held[rng.choice(members, share, replace=False)] = True
        frames = np.concatenate([s for s, h in zip(x, held) if not h])
        mean, std = frames.mean(axis=0), frames.std(axis=0) + 1e-6
        length = max(len(s) for s in x + xt)
        def scale(seqs):
            return pad([(s - mean) / std for s in seqs], length)

        train = [s for s, h in zip(x, held) if not h]
        valid = [s for s, h in zip(x, held) if h]
        self.x, self.y = scale(train), y[~held]
        self.x_valid, self.y_valid = scale(valid), y[held]
        self.x_test, self.y_test = scale(xt), yt
        self.name = name


def build(task, units, regularizer=None, learning_rate=1e-3, clipnorm=None):
    import keras

    model = keras.Sequential([
        keras.Input(task.x.shape[1:]),
        keras.layers.Masking(0.0),
        keras.layers.LSTM(units, kernel_regularizer=regularizer,
                          recurrent_regularizer=regularizer),
        keras.layers.Dense(len(task.classes), activation="softmax"),
    ])
    model.compile(optimizer=keras.optimizers.Adam(learning_rate, clipnorm=clipnorm),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def run_one(task, units, method, target, seed, args, rounds=3, l1=1e-4, options=None):
    import keras

    import tf_gradual_prune as tgp

    keras.utils.set_random_seed(seed)
    steps = int(np.ceil(len(task.x) / args.batch_size))
    model = build(task, units, keras.regularizers.L1(l1) if method == "l1" else None,
                  args.learning_rate, args.clipnorm)
    schedule = (None if method == "dense" else common.pruning_schedule(
        method, args.epochs, steps, target, args.frequency, rounds, options=options))
    epochs = args.epochs + (rounds * (args.epochs // 2) if method == "prune_retrain" else 0)
    callbacks = [] if schedule is None else [tgp.GradualPruning(schedule)]
    start = time.perf_counter()
    history = model.fit(task.x, task.y, batch_size=args.batch_size, epochs=epochs,
                        callbacks=callbacks, verbose=0)
    seconds = time.perf_counter() - start
    table = tgp.sparsity_table(model, weights="recurrent")
    def accuracy(x, y):
        return float(np.mean(np.argmax(model.predict(x, verbose=0), -1) == y))

    return {
        "units": units, "seed": seed, "method": method, "target": target,
        "valid_accuracy": accuracy(task.x_valid, task.y_valid),
        "test_accuracy": accuracy(task.x_test, task.y_test),
        "sparsity": table.sparsity, "nonzeros": table.size - table.zeros,
        "steps": epochs * steps, "train_seconds": seconds,
        "loss": float(history.history["loss"][-1]),
        "schedule": None if schedule is None else repr(schedule),
        **({"recipe": common.default_recipe()} if method == "default" else {}),
        **(options or {}),
    }


def table(rows, args, pending):
    lines = [
        f"{rows[0]['task'] if rows else 'JapaneseVowels'} (time-series archive, files from "
        f"the PyPI package aeon): {' / '.join(map(str, rows[0]['sizes'] if rows else []))} "
        f"training / validation / test utterances, "
        f"LSTM({args.units}) classifier, Adam {args.learning_rate:g}"
        f"{'' if args.clipnorm is None else f' (gradients clipped to norm {args.clipnorm:g})'}, "
        f"batch {args.batch_size}, "
        f"{args.epochs} epochs (prune-and-retrain: 2.5 times the steps); pruned: the LSTM kernels. "
        f"Seeds {args.seeds}. Error = 1 - accuracy, mean ± sample std over seeds, and per "
        "seed. Nothing was chosen on the test split; the default's allocation (`lamp`) was "
        "chosen on the validation splits of JapaneseVowels and ItalyPowerDemand and two "
        "FSDD speakers (rows 'default, <allocation>').",
        "",
        "| model | n | valid error | test error | test error per seed | sparsity "
        "| non-zeros | steps | vs dense (test) |",
        "|---|---:|---:|---:|---|---:|---:|---:|---:|",
    ]
    groups = {}
    for row in rows:
        groups.setdefault(row["name"], []).append(row)
    dense = groups.get(f"dense LSTM({args.units})")
    dense_error = None if not dense else np.mean([1 - r["test_accuracy"] for r in dense])
    for name, group in groups.items():
        valid = np.array([1 - r["valid_accuracy"] for r in group])
        test = np.array([1 - r["test_accuracy"] for r in group])
        def std(v):
            return v.std(ddof=1) if len(v) > 1 else 0.0

        versus = ("" if dense_error is None or group[0]["method"] == "dense"
                  else f"{test.mean() - dense_error:+.4f}")
        lines.append(
            f"| {name} | {len(group)} | {valid.mean():.4f} ± {std(valid):.4f} | "
            f"{test.mean():.4f} ± {std(test):.4f} | {' / '.join(f'{t:.4f}' for t in test)} | "
            f"{np.mean([r['sparsity'] for r in group]):.3f} | "
            f"{int(np.mean([r['nonzeros'] for r in group])):,} | {group[0]['steps']} | "
            f"{versus} |")
    lines += common.partial_note(pending)
    return "\n".join(lines)


def plot(path, rows, args):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tf_gradual_prune import files

    fig, ax = plt.subplots(figsize=(8, 4.5))
    lines = {}  # a row's name without its target: the method and its options
    for r in rows:
        if r["method"] != "dense":
            lines.setdefault(r["name"].rsplit(" ", 1)[0], {}).setdefault(
                r["target"], []).append(1 - r["test_accuracy"])
    for label, points in lines.items():
        x = sorted(points)
        ax.errorbar(x, [np.mean(points[t]) for t in x],
                    yerr=[np.std(points[t]) for t in x], marker="o", capsize=3,
                    label=label)
    for r_name in dict.fromkeys(r["name"] for r in rows if r["method"] == "dense"):
        errors = [1 - r["test_accuracy"] for r in rows if r["name"] == r_name]
        ax.axhline(np.mean(errors), ls="--", color="gray")
        ax.text(0.01, np.mean(errors), f" {r_name}", va="bottom", fontsize=8,
                transform=ax.get_yaxis_transform())
    ax.set(xlabel="recurrent sparsity", ylabel="test error (1 - accuracy)", yscale="log",
           title=f"{rows[0]['task'] if rows else ''}: test error against sparsity, "
                 "per method")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    fig.tight_layout()
    files.save_figure(fig, path)


def publish(prefix, command, args, rows, pending):
    markdown = table(rows, args, pending)
    common.save_results(prefix, command, vars(args), rows, markdown)
    plot(prefix + ".png", rows, args)
    return markdown


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default=None,
                        help="folder holding JapaneseVowels/ (default: aeon's files)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--targets", type=float, nargs="+", default=[0.9, 0.98])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--units", type=int, default=64)
    parser.add_argument("--small-units", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--clipnorm", type=float, default=None,
                        help="clip each gradient to this norm (Adam's clipnorm; default: none)")
    parser.add_argument("--frequency", type=int, default=20,
                        help="steps between mask updates of the paper's rule and AGP")
    parser.add_argument("--task", default="JapaneseVowels",
                        help="the problem's name in the archive (default: JapaneseVowels)")
    parser.add_argument("--validation", type=float, default=VALIDATION_SHARE,
                        help="share of the training utterances held out for validation")
    parser.add_argument("--allocations", nargs="+", default=[], choices=ALLOCATIONS,
                        help="also the default with each of these allocations (rows "
                             "'default, <allocation>')")
    parser.add_argument("--step-scales", nargs="+", default=[], choices=STEP_SCALES,
                        help="also the default with each of these step scalings (rows "
                             "'default, steps <scaling>'; 'none': the optimizer's steps)")
    parser.add_argument("--name", default=None,
                        help="results file stem (default: classify, or classify_<task>)")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args(argv)
    for target in args.targets:
        if not 0 < target < 1:
            parser.error(f"--targets must lie in (0, 1). Received: {target}")
    if args.epochs < 4:
        parser.error(f"--epochs must be >= 4 (the paper's timing). Received: {args.epochs}")
    if args.learning_rate <= 0:
        parser.error(f"--learning-rate must be > 0. Received: {args.learning_rate}")
    if args.clipnorm is not None and args.clipnorm <= 0:
        parser.error(f"--clipnorm must be > 0. Received: {args.clipnorm}")
    if args.quick:
        args.seeds, args.targets, args.epochs, args.units = args.seeds[:1], [0.9], 6, 16
        args.small_units, args.frequency = 8, 5
    task = Task(args.data_dir, args.task, args.validation)
    stem = args.name or ("classify" if args.task == "JapaneseVowels" else f"classify_{args.task}")
    prefix = os.path.join(HERE, "results", stem + ("_quick" if args.quick else ""))
    command = common.command_line("classify_bench.py", argv or sys.argv[1:])
    configs = [(f"dense LSTM({args.units})", args.units, "dense", None, None),
               (f"dense LSTM({args.small_units})", args.small_units, "dense", None, None)]
    configs += [(f"{m} {t:.0%}", args.units, m, t, None)
                for t in args.targets for m in args.methods]
    configs += [(f"default, {a} {t:.0%}", args.units, "default", t, {"allocation": a})
                for t in args.targets for a in args.allocations]
    configs += [(f"default, steps {k} {t:.0%}", args.units, "default", t,
                 {"step_scale": None if k == "none" else k})
                for t in args.targets for k in args.step_scales]
    todo = [(name, seed, (units, method, target, options))
            for seed in args.seeds for name, units, method, target, options in configs]

    def train(config, seed):
        units, method, target, options = config
        row = run_one(task, units, method, target, seed, args, options=options)
        row["task"], row["sizes"] = task.name, [len(task.x), len(task.x_valid), len(task.x_test)]
        row["cer"] = 1 - row["test_accuracy"]  # what train_rows prints
        return row

    common.run_and_publish(
        prefix, args, SAME_RUN, todo, train,
        lambda saved, pending: publish(prefix, command, args, saved, pending))
    return 0


if __name__ == "__main__":
    sys.exit(main())
