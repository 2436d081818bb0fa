"""Beyond speech: word-level LSTM language models on Penn Treebank, dense vs sparse.

    python -m benchmarks.lm_bench --data-dir ../shared/data [--epochs 4] [--quick] [--resume]
    python -m benchmarks.lm_bench --data-dir ../shared/data --methods default --targets 0.9 \
        --default-timing 0.4 0.55 0.85 --name lm_timing --resume-from benchmarks/results/lm.json

Zaremba et al. 2014's "small" model (2 x LSTM(200), no dropout, SGD lr 1
with gradient-norm clipping at 5, batch 20 x 35 steps, stateful) trained
for `--epochs` (the paper: 13; the learning rate halves every epoch after
the first 4/13 of the budget, as theirs does after epoch 4). Rows, all at the
same budget and seed unless said:

- the dense model;
- a dense `--small-units` model, by default the largest with no more LSTM +
  output weights than the model keeps at 90% sparsity (25 units: 260,000
  against 264,000);
- the library's default (`RampedThresholdSchedule.for_training` with nothing
  else set), the paper's ramped threshold (its timing, "track" calibration,
  every `--frequency` steps), AGP (Zhu & Gupta's polynomial ramp, tfmot's
  `PolynomialDecay` through our callback, the paper's window), one-shot
  (dense for half the budget, cut once by magnitude to the target, trained
  on) and L1 (an `--l1` penalty on the pruned matrices throughout, cut once
  at 80% of the budget, trained on) at each `--targets` sparsity, on the
  LSTM kernels and the output layer (`--methods` chooses; a resumed run
  keeps the saved rows of the others); the same definitions as the speech
  comparison's (`common.pruning_schedule`);
- prune-and-retrain, only when `--methods` names it (`prune_retrain`): the
  dense budget, then 3 rounds of half the budget each, every round cutting
  by magnitude a third of the way (geometrically) to the target and
  training on at the learning rate the dense budget ended with: 2.5 times
  the steps;
- tfmot's own AGP, only when `--methods` names it (`tfmot_agp`): the same
  schedule applied by `tfmot.sparsity.keras.prune_low_magnitude` to a
  tf_keras twin of the model, from the same initial weights
  (`tfmot_lm.py`, in a process of its own);
- a `--large-units` model pruned (the paper's ramp) to the non-zero count of
  the dense small model's LSTM + output matrices (`--large-units 0`: none).

One seed per run (`--seed`, and a `--name` per seed); `lm_seeds.py` puts
the runs of several seeds side by side.

Every model is exported with `export_tflite` (float32, sparse encoding; a
stateless batch-1 twin over 35 words) and its size reported. Writes
benchmarks/results/lm.{json,md,png} (`lm_quick.*` with --quick).
"""

import argparse
import json
import math
import os
import sys
import tempfile
import time

import numpy as np

if not __package__:  # run as a file (python benchmarks/<name>.py): the package from the root
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import common

HERE = os.path.dirname(os.path.abspath(__file__))
PRUNED = ("recurrent", "dense")
#: The pruning methods, in the order of the table.
METHODS = ("default", "ramped", "agp", "tfmot_agp", "one_shot", "l1", "prune_retrain")
#: The methods a run trains only when `--methods` names them: prune-and-retrain
#: (2.5x the steps) and tfmot's AGP (a tf_keras process of its own).
OPT_IN = ("prune_retrain", "tfmot_agp")
#: The methods of a run without `--methods`.
SAME_BUDGET = tuple(m for m in METHODS if m not in OPT_IN)
#: Prune-and-retrain's rounds (each half the budget, after the dense budget).
ROUNDS = 3


def pruned_size(units, vocabulary, layers=2):
    """Weights in the LSTM kernels and the output matrix."""
    return layers * (units * 4 * units * 2) + units * vocabulary


def matched_units(units, vocabulary, sparsity=0.9):
    """The largest dense model with no more LSTM + output weights than a
    `units` model keeps at `sparsity`."""
    budget = (1 - sparsity) * pruned_size(units, vocabulary)
    small = 1
    while pruned_size(small + 1, vocabulary) <= budget:
        small += 1
    return small


def zaremba_sgd(epochs, steps, window, framework=None):
    """Zaremba et al.'s SGD for our mean-per-word loss.

    Their learning rate 1 and global gradient-norm clip 5 apply to the loss
    summed over the `window` unrolled steps (averaged over the batch), which
    is `window` times ours: so lr `window` and clip `5 / window` here, the
    same updates. Their decay, scaled to the budget: halve every epoch after
    round(4/13 of the epochs) (at least one epoch at the full rate).
    `framework`: the Keras module whose optimizer to build (default
    `keras`; `tfmot_lm` passes `tf_keras`).
    """
    import keras

    keras = framework or keras
    flat = max(1, round(epochs * 4 / 13))
    boundaries = [steps * e for e in range(flat, epochs)]
    values = [window * 0.5 ** i for i in range(len(boundaries) + 1)]
    rate = (keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values)
            if boundaries else float(window))
    return keras.optimizers.SGD(rate, global_clipnorm=5.0 / window)


def evaluate(model, x, y, batch_size):
    import keras

    from tf_gradual_prune import models

    for layer in model._flatten_layers():
        if isinstance(layer, keras.layers.RNN) and layer.stateful:
            layer.reset_state()
    metric = models.Perplexity()
    for start in range(0, len(x), batch_size):
        logits = model(x[start: start + batch_size], training=False)
        metric.update_state(y[start: start + batch_size], logits)
    return float(metric.result())


def export_size(model, vocabulary, units, steps):
    """Size of the float32 .tflite of a stateless batch-1 twin."""
    import tf_gradual_prune as tgp
    from tf_gradual_prune import models

    twin = models.language_model(vocabulary, units, steps=steps)
    twin.set_weights(model.get_weights())
    sample = np.random.default_rng(0).integers(0, vocabulary, (2, steps)).astype("int32")
    with tempfile.TemporaryDirectory() as folder:
        report = tgp.export_tflite(twin, os.path.join(folder, "lm.tflite"), sample_inputs=sample,
                                    encoding="sparse")
    return report.size_bytes


def pruned_matrices(model):
    """The matrices `PRUNED` selects: the LSTM kernels and the output kernel."""
    import keras

    matrices = []
    for layer in model._flatten_layers():
        if isinstance(layer, keras.layers.LSTM):
            matrices += [layer.cell.kernel, layer.cell.recurrent_kernel]
        elif isinstance(layer, keras.layers.Dense):
            matrices.append(layer.kernel)
    return matrices


def run_one(corpus_batches, vocabulary, units, epochs, method, target, seed, args):
    import keras

    import tf_gradual_prune as tgp
    from tf_gradual_prune import models

    (x, y), _, _ = corpus_batches
    steps = len(x) // args.batch_size
    keras.utils.set_random_seed(seed)
    model = models.language_model(vocabulary, units, stateful=True,
                                  batch_size=args.batch_size, steps=args.steps)
    if method == "tfmot_agp":
        # tfmot trains a tf_keras twin from these initial weights in a process
        # of its own; its pruned weights come back into `model`.
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "weights.npz")
            np.savez(path, *model.get_weights())
            done = common.in_subprocess(
                "tfmot_lm", "run", args.data_dir, args.train_words, units, epochs, seed, target,
                args.frequency, args.batch_size, args.steps, path)
            with np.load(path) as saved:
                model.set_weights([saved[f"arr_{i}"] for i in range(len(saved.files))])
        return measure(model, corpus_batches, vocabulary, units, method, target, seed,
                       done["steps"], done["train_seconds"], args)
    if method == "l1":
        for matrix in pruned_matrices(model):
            matrix.regularizer = keras.regularizers.L1(args.l1)
    model.compile(optimizer=zaremba_sgd(epochs, steps, args.steps),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=[models.Perplexity()])
    callbacks = [models.ResetStates()]
    # The methods as every benchmark defines them (`common.pruning_schedule`);
    # prune-and-retrain trains on for 3 rounds of half the budget each, at
    # the learning rate the dense budget ended with.
    schedule = (None if method == "dense" else
                common.pruning_schedule(method, epochs, steps, target, args.frequency, ROUNDS))
    if schedule is not None:
        callbacks.append(tgp.GradualPruning(schedule, weights=PRUNED))
    trained = epochs + (ROUNDS * (epochs // 2) if method == "prune_retrain" else 0)
    start = time.perf_counter()
    model.fit(x, y, batch_size=args.batch_size, epochs=trained, shuffle=False,
              callbacks=callbacks, verbose=2)
    seconds = time.perf_counter() - start
    return measure(model, corpus_batches, vocabulary, units, method, target, seed,
                   trained * steps, seconds, args)


def measure(model, corpus_batches, vocabulary, units, method, target, seed, steps, seconds,
            args):
    """The row of a trained `model`: perplexities, sparsity, export size."""
    import tf_gradual_prune as tgp

    _, (xv, yv), (xt, yt) = corpus_batches
    table = tgp.sparsity_table(model, weights=PRUNED)
    return {
        "units": units, "method": method, "target": target, "seed": seed,
        "valid_perplexity": evaluate(model, xv, yv, args.batch_size),
        "test_perplexity": evaluate(model, xt, yt, args.batch_size),
        "sparsity": table.sparsity, "nonzeros": table.size - table.zeros,
        # Where the pruned weights lie (the allocation among the matrices).
        "matrices": {row["name"]: round(float(row["sparsity"]), 4) for row in table.rows},
        "parameters": int(model.count_params()),
        "tflite_bytes": export_size(model, vocabulary, units, args.steps),
        "steps": steps, "train_seconds": seconds,
        **({"recipe": common.default_recipe()} if method == "default" else {}),
        **({"l1": args.l1} if method == "l1" else {}),
    }


def plot(path, rows):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tf_gradual_prune import files

    fig, ax = plt.subplots(figsize=(7, 4))
    dense = [r for r in rows if r["method"] == "dense"]
    for method, marker in (("default", "D"), ("ramped", "o"), ("agp", "s"), ("tfmot_agp", "X"),
                           ("one_shot", "v"), ("l1", "^"), ("prune_retrain", "P")):
        points = sorted((r["sparsity"], r["test_perplexity"]) for r in rows
                        if r["method"] == method and r["name"].startswith(method))
        if points:
            ax.plot(*zip(*points), marker=marker, label=method)
    for r in dense:
        ax.axhline(r["test_perplexity"], color="gray", ls="--", label=r["name"])
    for r in rows:
        if r["name"].startswith("large"):
            ax.plot(r["sparsity"], r["test_perplexity"], "*", ms=12, label=r["name"])
    ax.set(xlabel="sparsity of LSTM + output matrices", ylabel="test perplexity",
           title="PTB word-level LM: perplexity against sparsity")
    ax.legend(fontsize=8)
    fig.tight_layout()
    files.save_figure(fig, path)


def table(rows, words, args, pending=()):
    """The Markdown table of `rows`, against the first (dense) row, and
    which `pending` configurations are still to train."""
    dense = rows[0]
    lines = [
        f"PTB word level ({words:,} training words), 2-layer LSTM, batch "
        f"{args.batch_size} x {args.steps} steps, stateful, Zaremba SGD (lr 1, global clip 5; "
        f"halved per epoch after {max(1, round(args.epochs * 4 / 13))}), no dropout; "
        f"{args.epochs} epochs ({dense['steps']:,} steps), seed {args.seed}. Pruned: LSTM "
        "kernels + output layer; the embedding stays dense.",
        "",
        "| model | valid ppl | test ppl | vs dense | sparsity | non-zeros (LSTM + output) "
        "| parameters | .tflite MiB | train min |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['name']} | {r['valid_perplexity']:.1f} | {r['test_perplexity']:.1f} | "
            f"{r['test_perplexity'] / dense['test_perplexity'] - 1:+.1%} | {r['sparsity']:.3f} | "
            f"{r['nonzeros']:,} | {r['parameters']:,} | {r['tflite_bytes'] / 2**20:.1f} | "
            f"{r['train_seconds'] / 60:.1f} |")
    recipes = sorted({json.dumps(r["recipe"], sort_keys=True) for r in rows if "recipe" in r})
    if recipes:
        lines += ["", "The default rows' recipe (timing = begin, ramp, end fractions of the "
                  "budget): " + "; ".join(recipes) + "."]
    total = sum(r["train_seconds"] for r in rows) / 60
    lines += ["", f"Training time summed over the rows: {total:.0f} min on "
              f"{os.cpu_count()} CPU cores."]
    lines += common.hosts_note(rows)
    lines += common.partial_note(pending)
    return "\n".join(lines)


# Settings that change what a row measures; --resume reuses a row only when
# all of them match.
SAME_RUN = ("epochs", "units", "large_units", "frequency", "batch_size", "steps", "seed",
            "quick")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default=os.environ.get("TFGP_DATA_DIR"))
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--units", type=int, default=200)
    parser.add_argument("--small-units", type=int, default=None,
                        help="a dense model this size as a baseline (default: as many "
                             "weights as --units keeps at 90%% sparsity; 0: none)")
    parser.add_argument("--large-units", type=int, default=400,
                        help="the larger model pruned to the small one's non-zero count; "
                             "0: no such row")
    parser.add_argument("--targets", type=float, nargs="+", default=[0.8, 0.9, 0.95])
    parser.add_argument("--methods", nargs="+", default=list(SAME_BUDGET), choices=METHODS,
                        help="pruning methods (default: all but " + " and ".join(OPT_IN)
                             + ", which run only when named)")
    parser.add_argument("--l1", type=float, default=1e-6,
                        help="the L1 penalty of the 'l1' method, per weight")
    parser.add_argument("--frequency", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=20)
    parser.add_argument("--steps", type=int, default=35)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true",
                        help="the first 60k training words, small models, 4 epochs")
    parser.add_argument("--resume", action="store_true",
                        help="reuse the rows of the saved results run with the same settings")
    parser.add_argument("--resume-from", nargs="+", default=[], metavar="JSON",
                        help="also reuse the rows of these results files (same settings)")
    parser.add_argument("--name", default=None,
                        help="results file name in benchmarks/results (default lm, or "
                             "lm_quick with --quick)")
    parser.add_argument("--default-timing", type=float, nargs=3, default=None,
                        metavar=("BEGIN", "RAMP", "END"),
                        help="validation experiments: train the 'default' rows with these "
                             "begin, ramp and end fractions of the budget instead of "
                             "schedules.DEFAULT_TIMING (the rows record the timing in their "
                             "recipe; use another --name)")
    parser.add_argument("--default-step-scale", default=None, choices=["fan_in", "none"],
                        help="validation experiments: train the 'default' rows with this "
                             "step scaling instead of schedules.DEFAULT_STEP_SCALE ('none': "
                             "off; the rows record it in their recipe; use another --name)")
    args = parser.parse_args(argv)
    if args.default_step_scale is not None:
        from tf_gradual_prune import schedules

        schedules.DEFAULT_STEP_SCALE = (None if args.default_step_scale == "none"
                                        else args.default_step_scale)
    if args.default_timing is not None:
        begin, ramp, end = args.default_timing
        if not 0 < begin <= ramp < end < 1:
            parser.error(f"--default-timing must be fractions 0 < BEGIN <= RAMP < END < 1; "
                         f"got {begin} {ramp} {end}")
        from tf_gradual_prune import schedules

        # for_training and common.default_recipe read the module's constant.
        schedules.DEFAULT_TIMING = (begin, ramp, end)
    from tf_gradual_prune import lm_data

    corpus = lm_data.ptb(args.data_dir)
    train = corpus.train
    args.train_words = None  # all of them
    if args.quick:
        args.train_words, args.units, args.large_units, args.frequency = 60000, 32, 64, 10
        args.targets, args.epochs = [0.9], 4
        train = train[:args.train_words]
    vocabulary = len(corpus.vocabulary)
    batches = tuple(lm_data.lm_batches(ids, args.batch_size, args.steps)
                    for ids in (train, corpus.valid, corpus.test))
    large_target = 1 - pruned_size(args.units, vocabulary) / pruned_size(
        args.large_units or args.units, vocabulary)
    configs = [(f"dense {args.units}", args.units, "dense", None)]
    if args.small_units is None:
        args.small_units = matched_units(args.units, vocabulary)
    if args.small_units:
        configs.append((f"dense {args.small_units}", args.small_units, "dense", None))
    for method in args.methods:
        # An L1 row's name carries its penalty: rows with another one are not reused.
        label = f"l1 {args.l1:g}" if method == "l1" else method
        for target in args.targets:
            configs.append((f"{label} {args.units} {target:.0%}", args.units, method, target))
    if args.large_units:
        configs.append((f"large {args.large_units} ramped {large_target:.1%}",
                        args.large_units, "ramped", large_target))
    prefix = os.path.join(HERE, "results", args.name or ("lm_quick" if args.quick else "lm"))
    command = common.command_line("lm_bench.py", argv or sys.argv[1:])
    earlier = {}
    for path in ([prefix + ".json"] if args.resume else []) + args.resume_from:
        earlier.update(common.finished_rows(path, vars(args), SAME_RUN))
    rows = []
    for i, (name, units, method, target) in enumerate(configs):
        if name in earlier:
            print(f"== {name}: reused from an earlier run with the same settings", flush=True)
            rows.append(earlier[name])
            continue
        print(f"== {name}", flush=True)
        row = run_one(batches, vocabulary, units, args.epochs, method, target, args.seed, args)
        row["name"] = name
        row["cpu_features"] = common.cpu_features()  # what decides the last bits
        rows.append(row)
        print(f"   valid {row['valid_perplexity']:.1f}  test {row['test_perplexity']:.1f}  "
              f"sparsity {row['sparsity']:.3f}  non-zeros {row['nonzeros']:,}  "
              f"tflite {row['tflite_bytes'] / 2**20:.1f} MiB  {row['train_seconds']:.0f} s",
              flush=True)
        # Saved after every row, so that an interrupted run resumes with --resume.
        saved = common.keep_unreached(rows, earlier)
        pending = [c for c in configs[i + 1:] if c[0] not in earlier]
        common.save_results(prefix, command, vars(args), saved,
                            table(saved, len(train), args, pending))
        plot(prefix + ".png", saved)
    # Rows of methods or targets this run did not select stay in the file.
    rows = common.keep_unreached(rows, earlier)
    markdown = table(rows, len(train), args)
    print("\n" + markdown)
    common.save_results(prefix, command, vars(args), rows, markdown)
    plot(prefix + ".png", rows)
    print(f"saved {prefix}.json, .md and .png")
    return 0 if all(math.isfinite(r["test_perplexity"]) for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
