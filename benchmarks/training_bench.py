"""What pruning costs during training: ms per optimizer step, side by side.

For LSTM and GRU layers at several sizes (batch 32, 64 features, sequence
100 unless scanned), runs `fit` without and with `GradualPruning` (masks
re-applied after every step, updated every `--frequency` steps) in
interleaved rounds on the same machine, and reports the median ms/step of
each and their ratio with its spread over rounds. It also times one mask
update on its own, and, in a separate process (tfmot switches the process to
tf_keras), tfmot's `prune_low_magnitude` on the tf_keras twin of the model at
the same settings, as the anchor.

    python -m benchmarks.training_bench [--quick] [--backend jax] [--units 256 512]

Writes `training.json`, `training.md` and `training.png` into `--output-dir`.
"""

import argparse
import os
import resource
import sys
import time

if not __package__:  # run as a file (python benchmarks/<name>.py): the package from the root
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

BATCH, FEATURES = 32, 64


class _Timer:
    """A Keras callback factory that records the wall time of each step."""

    @staticmethod
    def make(keras):
        class StepTimer(keras.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.times = []

            def on_train_batch_begin(self, batch, logs=None):
                self._start = time.perf_counter()

            def on_train_batch_end(self, batch, logs=None):
                self.times.append(time.perf_counter() - self._start)

        return StepTimer()


def data(np, steps, seq):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(steps * BATCH, seq, FEATURES)).astype("float32")
    y = rng.integers(0, 10, size=steps * BATCH).astype("int32")
    return x, y


def measure_ours(kind, units, seq, rounds, steps, frequency, step_scale=None):
    """Interleaved plain / pruned fits; per-round median ms/step of each.
    `step_scale`: the schedule's (`"fan_in"`: the default recipe's steps)."""
    import keras
    import numpy as np

    import tf_gradual_prune as tgp

    def build():
        layer = {"lstm": keras.layers.LSTM, "gru": keras.layers.GRU}[kind]
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((seq, FEATURES)), layer(units),
                                  keras.layers.Dense(10)])
        model.compile(keras.optimizers.Adam(1e-3),
                      keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        return model

    x, y = data(np, steps, seq)
    plain, pruned = build(), build()
    schedule = tgp.RampedThresholdSchedule(
        begin_step=1, ramp_step=10 * steps, end_step=10**6, frequency=frequency,
        start_slope=1e-4, ramp_slope=1e-4, step_scale=step_scale,
    )
    pruning = tgp.GradualPruning(schedule)
    medians = {"plain": [], "pruned": []}
    totals = {"plain": [], "pruned": []}
    for round_ in range(rounds + 1):  # round 0 warms up (tracing)
        for name, model, callbacks in (("plain", plain, []), ("pruned", pruned, [pruning])):
            timer = _Timer.make(keras)
            model.fit(x, y, batch_size=BATCH, epochs=1, verbose=0, callbacks=callbacks + [timer])
            if round_:
                medians[name].append(1000 * float(np.median(timer.times)))
                # Every step, the mask updates included.
                totals[name].append(1000 * float(np.sum(timer.times)))
    # One mask update on its own: read the weights, a threshold pass over
    # every matrix, masks and weights written back.
    group = pruning._groups[0]
    update = tgp.schedules.MaskUpdate("threshold", [1e-6] * len(group.items))
    times = []
    for _ in range(11):
        start = time.perf_counter()
        group.apply(update, group._values())
        times.append(time.perf_counter() - start)
    times = times[1:]
    return {
        "backend": keras.backend.backend(),
        "plain_ms": medians["plain"], "pruned_ms": medians["pruned"],
        "plain_total_ms": totals["plain"], "pruned_total_ms": totals["pruned"],
        "mask_update_ms": 1000 * float(np.median(times)),
        "pruned_sparsity": tgp.sparsity_table(pruned, weights="recurrent").sparsity,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def measure_tfmot(kind, units, seq, rounds, steps, frequency):
    """The same on the tf_keras twin, with tfmot's wrapper (own process)."""
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
    import numpy as np
    import tensorflow_model_optimization as tfmot
    import tf_keras

    def build(prune):
        layer = {"lstm": tf_keras.layers.LSTM, "gru": tf_keras.layers.GRU}[kind](units)
        if prune:
            schedule = tfmot.sparsity.keras.PolynomialDecay(
                0.0, 0.9, begin_step=1, end_step=10 * steps * (rounds + 1), frequency=frequency
            )
            layer = tfmot.sparsity.keras.prune_low_magnitude(layer, pruning_schedule=schedule)
        tf_keras.utils.set_random_seed(0)
        model = tf_keras.Sequential([tf_keras.Input((seq, FEATURES)), layer,
                                     tf_keras.layers.Dense(10)])
        model.compile(tf_keras.optimizers.Adam(1e-3),
                      tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        return model

    x, y = data(np, steps, seq)
    plain, pruned = build(False), build(True)
    medians = {"plain": [], "pruned": []}
    for round_ in range(rounds + 1):
        for name, model, callbacks in (
            ("plain", plain, []),
            ("pruned", pruned, [tfmot.sparsity.keras.UpdatePruningStep()]),
        ):
            timer = _Timer.make(tf_keras)
            model.fit(x, y, batch_size=BATCH, epochs=1, verbose=0, callbacks=callbacks + [timer])
            if round_:
                medians[name].append(1000 * float(np.median(timer.times)))
    return {"plain_ms": medians["plain"], "pruned_ms": medians["pruned"]}


def summarise(result):
    import numpy as np

    ratios = np.array(result["pruned_ms"]) / np.array(result["plain_ms"])
    out = {
        "plain_ms": float(np.median(result["plain_ms"])),
        "pruned_ms": float(np.median(result["pruned_ms"])),
        "ratio": float(np.median(ratios)),
        "ratio_min": float(ratios.min()),
        "ratio_max": float(ratios.max()),
    }
    if "pruned_total_ms" in result:
        out["total_ratio"] = float(
            np.sum(result["pruned_total_ms"]) / np.sum(result["plain_total_ms"]))
    return out


def main(argv=None):
    from benchmarks import common

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--frequency", type=int, default=20)
    parser.add_argument("--no-tfmot", action="store_true")
    parser.add_argument("--backend", choices=["tensorflow", "jax", "torch"], default=None,
                        help="Keras backend of our runs (default: KERAS_BACKEND or "
                             "tensorflow); tfmot's anchor runs on TensorFlow only")
    parser.add_argument("--units", type=int, nargs="*", default=None,
                        help="only these hidden sizes (default: 256 512 1024)")
    parser.add_argument("--kinds", nargs="*", choices=["lstm", "gru"], default=None,
                        help="only these layers (default: both)")
    parser.add_argument("--seqs", type=int, nargs="*", default=None,
                        help="only these sequence lengths (default: 100, and 50 and 200 "
                             "for LSTM(512))")
    parser.add_argument("--step-scale", choices=["none", "fan_in"], default="none",
                        help="the pruned runs' step scaling ('fan_in': as the default "
                             "recipe, one more copy of each matrix per step)")
    parser.add_argument("--name", default="training", help="output file prefix")
    parser.add_argument("--output-dir", default=os.path.join("benchmarks", "results"))
    args = parser.parse_args(argv)
    from tqdm import tqdm

    backend = args.backend or os.environ.get("KERAS_BACKEND", "tensorflow")
    os.environ["KERAS_BACKEND"] = backend  # for the subprocesses
    if backend != "tensorflow":
        args.no_tfmot = True

    if args.quick:
        args.rounds, args.steps = 2, 4
        cases = [("lstm", 64, 50)]
    else:
        cases = [(k, u, 100) for k in ("lstm", "gru") for u in (256, 512, 1024)]
        cases += [("lstm", 512, s) for s in (50, 200)]
        cases = [c for c in cases if (not args.units or c[1] in args.units)
                 and (not args.kinds or c[0] in args.kinds)
                 and (not args.seqs or c[2] in args.seqs)]
    rows = []
    for kind, units, seq in tqdm(cases, desc="configurations"):
        row = {"model": f"{kind.upper()}({units})", "seq": seq, "backend": backend}
        ours = common.in_subprocess("training_bench", "measure_ours", kind, units, seq,
                                    args.rounds, args.steps, args.frequency,
                                    None if args.step_scale == "none" else args.step_scale)
        row.update(summarise(ours))
        row["mask_update_ms"] = ours["mask_update_ms"]
        row["peak_rss_mib"] = ours["peak_rss_mib"]
        row["raw"] = ours
        if not args.no_tfmot and seq == 100 or (args.quick and not args.no_tfmot):
            anchor = common.in_subprocess("training_bench", "measure_tfmot", kind, units, seq,
                                          args.rounds, args.steps, args.frequency)
            row["tfmot"] = summarise(anchor)
            row["raw_tfmot"] = anchor
        rows.append(row)

    lines = [
        f"Keras backend {backend}; batch {BATCH}, {FEATURES} features, Adam; masks re-applied "
        f"every step and updated every {args.frequency} steps"
        + ("; steps scaled (`step_scale=\"fan_in\"`)" if args.step_scale == "fan_in" else "")
        + f"; median of {args.rounds} interleaved rounds of {args.steps} steps (per-round "
        "median ms/step). The total ratio sums every timed step, mask updates and each "
        "`fit`'s first step included; `for_training` updates about 80 times per run (every "
        "50 steps in a run of 10,000).",
        "",
        "| model | seq | plain ms/step | pruning ms/step | ratio (min-max) | total ratio | "
        "mask update ms | tfmot ratio on tf_keras (plain / pruned ms) | peak RSS MiB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        anchor = r.get("tfmot")
        anchor_text = (
            f"{anchor['ratio']:.3f} ({anchor['plain_ms']:.1f} / {anchor['pruned_ms']:.1f})"
            if anchor else "-"
        )
        lines.append(
            f"| {r['model']} | {r['seq']} | {r['plain_ms']:.1f} | {r['pruned_ms']:.1f} | "
            f"{r['ratio']:.3f} ({r['ratio_min']:.3f}-{r['ratio_max']:.3f}) | "
            f"{r['total_ratio']:.3f} | "
            f"{r['mask_update_ms']:.2f} | {anchor_text} | {r['peak_rss_mib']:.0f} |"
        )
    table = "\n".join(lines)
    print(table)
    prefix = os.path.join(args.output_dir, args.name + ("_quick" if args.quick else ""))
    common.save_results(
        prefix,
        "python -m " + " ".join(["benchmarks.training_bench"] + sys.argv[1:]),
        vars(args), rows, table,
    )
    plot(prefix + ".png", rows)
    print(f"saved {prefix}.json, .md and .png")


def plot(path, rows):
    import matplotlib

    from tf_gradual_prune import files

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for kind in ("LSTM", "GRU"):
        got = sorted(
            (int(r["model"].split("(")[1][:-1]), r) for r in rows
            if r["model"].startswith(kind) and r["seq"] == 100
        )
        if not got:
            continue
        sizes = [u for u, _ in got]
        axes[0].plot(sizes, [r["plain_ms"] for _, r in got], marker="o", label=f"{kind} plain")
        axes[0].plot(sizes, [r["pruned_ms"] for _, r in got], marker="s", linestyle="--",
                     label=f"{kind} + GradualPruning")
        axes[1].plot(sizes, [r["ratio"] for _, r in got], marker="o", label=f"{kind} ours")
        if all("tfmot" in r for _, r in got):
            axes[1].plot(sizes, [r["tfmot"]["ratio"] for _, r in got], marker="x",
                         linestyle=":", label=f"{kind} tfmot (tf_keras)")
    axes[0].set(xlabel="hidden units", ylabel="ms per step", title="Step time (seq 100)")
    axes[1].axhline(1.02, color="gray", linestyle=":", label="1.02 target")
    axes[1].set(xlabel="hidden units", ylabel="pruning / plain", title="Step-time ratio")
    for ax in axes:
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.tight_layout()
    files.save_figure(fig, path)


if __name__ == "__main__":
    sys.exit(main())
