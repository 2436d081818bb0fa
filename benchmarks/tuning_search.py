"""A keras-tuner search of the ramp hyperparameters, with a sensitivity report.

Searches begin/ramp/end fractions, φ/θ and the update frequency (and the
GRU's width) for a 90%-sparse GRU classifier, with the target-aware
objective; then retrains the best schedule from scratch and checks that it
reaches the target and the metric the search reported.

    python benchmarks/tuning_search.py [--quick] [--data-dir ../shared/data]

Writes `tuning_trials.csv/.json`, `tuning_sensitivity.png`,
`tuning_best_schedule.json` and `tuning.md` into `--output-dir`.
"""

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import keras_tuner  # noqa: E402

import tf_gradual_prune as tgp  # noqa: E402
from tf_gradual_prune import datasets  # noqa: E402
from tf_gradual_prune import files  # noqa: E402
from tf_gradual_prune import tuning  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--target-sparsity", type=float, default=0.9)
    parser.add_argument("--output-dir", default=os.path.join("benchmarks", "results"))
    args = parser.parse_args(argv)
    data_dir = args.data_dir or os.environ.get(datasets.DATA_DIR_ENV)
    if args.quick:
        args.trials, args.epochs = 3, 6
        (x, y), (xv, yv) = datasets.synthetic_sequences(num_samples=1200, timesteps=30, noise=1.5)
        task = "synthetic (quick)"
    elif data_dir and os.path.isdir(data_dir):
        (x, y), (xv, yv) = datasets.fsdd_digits(data_dir, split="official")
        task = "FSDD digits, official split"
    else:
        (x, y), (xv, yv) = datasets.synthetic_sequences()
        task = "synthetic"
    classes = int(y.max()) + 1

    def build_model(hp):
        model = keras.Sequential(
            [keras.Input(x.shape[1:]),
             keras.layers.GRU(hp.Choice("units", [64, 128] if not args.quick else [16, 32])),
             keras.layers.Dense(classes)]
        )
        model.compile(keras.optimizers.Adam(3e-3),
                      keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=["accuracy"])
        return model

    hypermodel = tuning.PrunedHyperModel(
        build_model, target_sparsity=args.target_sparsity,
        space=tuning.SearchSpace(frequency=(10, 20, 50)),
    )
    workdir = tempfile.mkdtemp(prefix="tfgp_tuner_")
    tuner = keras_tuner.RandomSearch(
        hypermodel, objective=tuning.OBJECTIVE, max_trials=args.trials,
        directory=workdir, project_name="search", seed=0,
    )
    start = time.perf_counter()
    tuner.search(x, y, epochs=args.epochs, batch_size=64,
                 validation_data=(xv, yv), verbose=1)
    search_seconds = time.perf_counter() - start
    os.makedirs(args.output_dir, exist_ok=True)
    prefix = os.path.join(args.output_dir, "tuning" + ("_quick" if args.quick else ""))
    rows = tuning.save_trials(tuner, prefix + "_trials")
    tuning.sensitivity_plot(tuner, prefix + "_sensitivity.png")
    schedule = hypermodel.best_schedule(tuner)
    best_hp = tuner.get_best_hyperparameters(1)[0]
    best_row = max(rows, key=lambda r: r["pruning_score"] if r["pruning_score"] is not None else -1e9)

    keras.utils.set_random_seed(0)
    model = build_model(best_hp)
    history = model.fit(x, y, epochs=args.epochs, batch_size=64, validation_data=(xv, yv),
                        callbacks=[tgp.GradualPruning(schedule)], verbose=0)
    retrained = {
        "val_accuracy": float(history.history["val_accuracy"][-1]),
        "sparsity": tgp.sparsity_table(model, weights="recurrent").sparsity,
    }
    shutil.rmtree(workdir, ignore_errors=True)
    files.write_atomic(
        prefix + "_best_schedule.json",
        json.dumps({"schedule": schedule.get_config(), "hyperparameters": best_hp.values,
                    "retrained": retrained, "search_seconds": search_seconds}, indent=2),
    )

    reached = sum(r["sparsity"] is not None and r["sparsity"] + 1e-3 >= args.target_sparsity
                  for r in rows)
    lines = [
        f"Task: {task}; {len(rows)} trials of {args.epochs} epochs, target sparsity "
        f"{args.target_sparsity}; search time {search_seconds:.0f} s on this machine.",
        "",
        f"Trials that reached the target: {reached} of {len(rows)}.",
        "",
        "| | val accuracy | sparsity |",
        "|---|---:|---:|",
        f"| best trial in the search (last epoch) | {best_row['val_accuracy']:.4f} | "
        f"{best_row['sparsity']:.4f} |",
        f"| best schedule retrained from scratch | {retrained['val_accuracy']:.4f} | "
        f"{retrained['sparsity']:.4f} |",
        "",
        f"Best schedule: `{schedule!r}`; hyperparameters: `{best_hp.values}`",
        "",
        "All trials:",
        "",
        "| trial | begin | ramp | end | φ/θ | freq | units | val accuracy | sparsity |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if r["val_accuracy"] is None:
            lines.append(f"| {r['trial']} | failed: {r['status']} |||||||")
            continue
        lines.append(
            f"| {r['trial']} | {r['begin_fraction']:.3f} | {r['ramp_fraction']:.3f} | "
            f"{r['end_fraction']:.3f} | {r['ramp_slope_ratio']:.2f} | {r['frequency']} | "
            f"{r['units']} | {r['val_accuracy']:.4f} | {r['sparsity']:.4f} |"
        )
    text = "\n".join(lines)
    print(text)
    files.write_atomic(prefix + ".md", text + "\n")
    print(f"saved {prefix}_trials.csv/.json, _sensitivity.png, _best_schedule.json, .md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
