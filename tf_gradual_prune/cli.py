"""Command line: `tf-gradual-prune demo` (also `python -m tf_gradual_prune`)."""

import argparse
import json
import os
import sys
import time

from tf_gradual_prune import files


def _parser():
    parser = argparse.ArgumentParser(
        prog="tf-gradual-prune",
        description="Gradual pruning of recurrent networks during training.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser(
        "demo",
        help="train a dense and a pruned recurrent classifier side by side",
        description=(
            "Trains the same GRU classifier twice from the same start: dense, "
            "and pruned to --target-sparsity with the ramped threshold. "
            "Prints one table and saves plots and models in --output-dir."
        ),
    )
    demo.add_argument(
        "--data", choices=("synthetic", "fsdd"), default="synthetic",
        help="the embedded synthetic task (default) or FSDD spoken digits",
    )
    demo.add_argument(
        "--data-dir", default=None,
        help="folder holding fsdd/ (default: $TFGP_DATA_DIR)",
    )
    demo.add_argument("--output-dir", default="tfgp_demo")
    demo.add_argument("--epochs", type=int, default=16)
    demo.add_argument("--units", type=int, default=128)
    demo.add_argument("--target-sparsity", type=float, default=0.9)
    demo.add_argument("--frequency", type=int, default=20)
    demo.add_argument("--batch-size", type=int, default=32)
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument(
        "--quick", action="store_true",
        help="a smoke run: few epochs, small model, small data",
    )
    return parser


class _Recorder:
    """Collects per-step sparsity and threshold from the logs."""

    def __init__(self):
        import keras

        self.steps, self.sparsity, self.threshold = [], [], []
        recorder = self

        class Callback(keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                recorder.steps.append(
                    int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))
                )
                recorder.sparsity.append(float(logs["sparsity"]))
                recorder.threshold.append(float(logs["threshold"]))

        self.callback = Callback()


def _load(args):
    from tf_gradual_prune import datasets

    if args.data == "fsdd":
        return datasets.fsdd_digits(args.data_dir)
    if args.quick:
        return datasets.synthetic_sequences(
            num_samples=1200, timesteps=30, noise=1.5, seed=args.seed
        )
    return datasets.synthetic_sequences(seed=args.seed)


def run_demo(args):
    """Runs the demo; returns the result rows (also saved as JSON)."""
    import keras
    import numpy as np

    import tf_gradual_prune as tgp

    if not 0 < args.target_sparsity < 1:
        raise SystemExit(
            f"--target-sparsity must be in (0, 1). Received: {args.target_sparsity}"
        )
    if args.quick:
        args.epochs, args.units = min(args.epochs, 6), min(args.units, 32)
    if args.epochs < 4:
        raise SystemExit(f"--epochs must be >= 4. Received: {args.epochs}")
    os.makedirs(args.output_dir, exist_ok=True)
    (x, y), (x_test, y_test) = _load(args)
    classes = int(max(y.max(), y_test.max())) + 1
    steps_per_epoch = int(np.ceil(len(x) / args.batch_size))
    print(
        f"data: {args.data}, {len(x)} training and {len(x_test)} test sequences "
        f"of shape {x.shape[1:]}, {classes} classes"
    )

    def build():
        keras.utils.set_random_seed(args.seed)
        model = keras.Sequential(
            [
                keras.Input(x.shape[1:]),
                keras.layers.GRU(args.units),
                keras.layers.Dense(classes),
            ]
        )
        model.compile(
            optimizer=keras.optimizers.Adam(3e-3),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
        )
        return model

    schedule = tgp.RampedThresholdSchedule.for_training(
        args.epochs, steps_per_epoch, target_sparsity=args.target_sparsity,
        frequency=args.frequency,
    )
    results, histories = [], {}
    recorder = _Recorder()
    for name, callbacks in (
        ("dense", []),
        ("pruned", [tgp.GradualPruning(schedule), recorder.callback]),
    ):
        print(f"\n== training the {name} model")
        model = build()
        start = time.perf_counter()
        history = model.fit(
            x, y, batch_size=args.batch_size, epochs=args.epochs,
            validation_data=(x_test, y_test), callbacks=callbacks, verbose=2,
        )
        seconds = time.perf_counter() - start
        table = tgp.sparsity_table(model, weights="recurrent")
        results.append(
            {
                "model": name,
                "test_accuracy": float(history.history["val_accuracy"][-1]),
                "recurrent_sparsity": table.sparsity,
                "recurrent_nonzeros": table.size - table.zeros,
                "parameters": int(model.count_params()),
                "train_seconds": seconds,
            }
        )
        histories[name] = history.history
        model.save(os.path.join(args.output_dir, f"{name}.keras"))
        if name == "pruned":
            print(table)
    _report(args, schedule, results, histories, recorder)
    return results


def _report(args, schedule, results, histories, recorder):
    lines = [
        "| model | test accuracy | recurrent sparsity | recurrent non-zeros "
        "| parameters | train s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r['model']} | {r['test_accuracy']:.4f} | "
            f"{r['recurrent_sparsity']:.3f} | {r['recurrent_nonzeros']:,} | "
            f"{r['parameters']:,} | {r['train_seconds']:.1f} |"
        )
    table = "\n".join(lines)
    print("\n" + table)
    out = args.output_dir
    summary = {
        "schedule": schedule.get_config(),
        "results": results,
        "history": histories,
        "args": vars(args),
    }
    files.write_atomic(os.path.join(out, "results.json"), json.dumps(summary, indent=2))
    files.write_atomic(os.path.join(out, "results.md"), table + "\n")
    _plot(os.path.join(out, "pruning_curves.png"), histories, recorder)
    print(f"\nsaved results.json, results.md, pruning_curves.png and models in {out}/")


def _plot(path, histories, recorder):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError(
            "The demo's plots need matplotlib: pip install 'tf-gradual-prune[plots]'"
        ) from None
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    axes[0].plot(recorder.steps, recorder.threshold, color="tab:red")
    axes[0].set(xlabel="optimizer step", ylabel="mean threshold", title="Threshold")
    axes[1].plot(recorder.steps, recorder.sparsity, color="tab:blue")
    axes[1].set(xlabel="optimizer step", ylabel="pruned share", title="Sparsity",
                ylim=(0, 1))
    for name, history in histories.items():
        epochs = range(1, len(history["val_accuracy"]) + 1)
        axes[2].plot(epochs, history["val_accuracy"], marker="o", label=name)
    axes[2].set(xlabel="epoch", ylabel="test accuracy", title="Accuracy")
    axes[2].legend()
    fig.tight_layout()
    files.save_figure(fig, path)


def main(argv=None):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = _parser().parse_args(argv)
    if args.command == "demo":
        run_demo(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
