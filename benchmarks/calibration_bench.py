"""Where does a calibrated `RampedThresholdSchedule` land, and at what cost?

For each task, trains one dense GRU and, from the same initial weights, one
pruned GRU per (calibration mode, target sparsity), with the paper's timing
(`RampedThresholdSchedule.paper`, masks updated every 20 steps). Reports the sparsity reached
against the target, and the test accuracy against the dense model's, side by
side from one run.

    python -m benchmarks.calibration_bench [--quick] [--data-dir ../shared/data]

Writes `calibration.json`, `calibration.md` and `calibration.png` into
`--output-dir` (default `benchmarks/results`).
"""

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
from tqdm import tqdm

import tf_gradual_prune as tgp
from tf_gradual_prune import datasets, files, speech_data

if not __package__:  # run as a file (python benchmarks/<name>.py): the package from the root
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import common


def load_tasks(args):
    tasks = {}
    if args.quick:
        tasks["synthetic"] = datasets.synthetic_sequences(
            num_samples=1200, timesteps=30, noise=1.5
        )
    else:
        tasks["synthetic"] = datasets.synthetic_sequences()
    data_dir = args.data_dir or os.environ.get(datasets.DATA_DIR_ENV)
    if data_dir and os.path.isdir(data_dir):
        tasks["fsdd"] = speech_data.fsdd_digits(data_dir, split="official")
    else:
        print("no data folder (--data-dir / TFGP_DATA_DIR): synthetic task only")
    return tasks


def train(data, schedule, args, seed):
    (x, y), (xt, yt) = data
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [
            keras.Input(x.shape[1:]),
            keras.layers.GRU(args.units),
            keras.layers.Dense(int(y.max()) + 1),
        ]
    )
    model.compile(
        keras.optimizers.Adam(3e-3),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    callbacks = [tgp.GradualPruning(schedule)] if schedule else []
    start = time.perf_counter()
    history = model.fit(
        x, y, batch_size=args.batch_size, epochs=args.epochs,
        validation_data=(xt, yt), callbacks=callbacks, verbose=0,
    )
    return {
        "accuracy": float(history.history["val_accuracy"][-1]),
        "sparsity": tgp.sparsity_table(model, weights="recurrent").sparsity,
        "seconds": time.perf_counter() - start,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--output-dir", default=os.path.join("benchmarks", "results"))
    parser.add_argument("--epochs", type=int, default=16)
    parser.add_argument("--units", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seeds", type=int, default=1)
    args = parser.parse_args(argv)
    targets = [0.9] if args.quick else [0.8, 0.9, 0.95]
    if args.quick:
        args.epochs, args.units = 8, 32
    modes = ["begin", "track"]
    tasks = load_tasks(args)

    runs = [
        (task, seed, mode, target)
        for task in tasks
        for seed in range(args.seeds)
        for mode, target in [(None, 0.0)]
        + [(m, t) for m in modes for t in targets]
    ]
    rows = []
    for task, seed, mode, target in tqdm(runs, desc="training runs"):
        (x, _), _ = tasks[task]
        schedule = None
        if mode:
            steps = int(np.ceil(len(x) / args.batch_size))
            schedule = tgp.RampedThresholdSchedule.paper(
                args.epochs, steps, target_sparsity=target, frequency=20,
                calibration=mode,
            )
        result = train(tasks[task], schedule, args, seed)
        rows.append(
            dict(task=task, seed=seed, calibration=mode or "dense",
                 target=target, **result)
        )

    dense = {(r["task"], r["seed"]): r["accuracy"] for r in rows if r["target"] == 0}
    for r in rows:
        r["accuracy_vs_dense"] = r["accuracy"] - dense[(r["task"], r["seed"])]
    lines = [
        "| task | calibration | target | reached sparsity | test accuracy | "
        "accuracy - dense | train s |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['task']} | {r['calibration']} | {r['target']:.2f} | "
            f"{r['sparsity']:.3f} | {r['accuracy']:.3f} | "
            f"{r['accuracy_vs_dense']:+.3f} | {r['seconds']:.0f} |"
        )
    table = "\n".join(lines)
    print(table)

    prefix = os.path.join(args.output_dir, "calibration" + ("_quick" if args.quick else ""))
    common.save_results(
        prefix,
        "python -m benchmarks.calibration_bench" + (" --quick" if args.quick else ""),
        vars(args), rows,
        f"Settings: {args.epochs} epochs, GRU({args.units}), batch "
        f"{args.batch_size}, seeds {args.seeds}.\n\n{table}",
    )
    plot(prefix + ".png", rows, targets)
    print(f"saved {prefix}.json, .md and .png")


def plot(path, rows, targets):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = sorted({r["task"] for r in rows})
    fig, axes = plt.subplots(1, len(tasks), figsize=(5 * len(tasks), 4), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        ax.plot([0.7, 1.0], [0.7, 1.0], color="gray", linestyle=":", label="target")
        for mode, marker in (("begin", "s"), ("track", "o")):
            got = [r for r in rows if r["task"] == task and r["calibration"] == mode]
            ax.scatter([r["target"] for r in got], [r["sparsity"] for r in got],
                       marker=marker, label=f"calibration={mode}")
        ax.set(title=task, xlabel="target sparsity", ylabel="reached sparsity",
               xlim=(0.7, 1.0), ylim=(0.5, 1.0))
        ax.legend()
    fig.tight_layout()
    files.save_figure(fig, path)


if __name__ == "__main__":
    main()
