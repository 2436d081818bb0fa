"""Speech: dense vs ramped-threshold pruning of a DS2-style CTC recogniser.

    python -m benchmarks.speech_bench --data-dir ../shared/data [--seeds 0 1 2] [--quick]
    python -m benchmarks.speech_bench --data-dir ../shared/data --method default \
        --mask-padding --name speech_masked [--resume]

FSDD digit strings (1-7 digits), trained on five speakers and tested on the
held-out sixth (greedy CER and WER). Rows, each over every seed:

- dense model at `--units` (128) and at `--small-units` (64);
- the `--units` model pruned to 90% (`--method`: the paper's ramped
  threshold, calibrated, or the library's default);
- the `--large-units` (256) model pruned to the non-zero count of the small
  dense model (the paper's claim: bigger and sparse beats smaller and dense).

Sparsity applies to the recurrent kernels (input and recurrent, both
directions, every layer); the counts are of those kernels. `--mask-padding`
trains the recogniser that masks its padding (`speech_model`'s default)
instead of the unmasked first version the `speech` table was measured on.
Rows are saved as they finish; `--resume` reuses the saved rows of a run with
the same settings. Writes benchmarks/results/<name>.{json,md,png} (`--name`,
default `speech`; `<name>_quick.*` with --quick).
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


def recurrent_size(units, layers=2, conv_filters=128):
    """Recurrent-kernel weights of `speech_model(rnn="gru")` (both directions)."""
    total, inputs = 0, conv_filters
    for _ in range(layers):
        total += 2 * (inputs * 3 * units + units * 3 * units)
        inputs = 2 * units
    return total


#: The splits of `SpeechTask`: "test" trains on five speakers and scores the
#: sixth (the last in sorted order); "validation" leaves that sixth speaker
#: out entirely, trains on four and scores the fifth (or `held_out`), for
#: choosing defaults.
SPLITS = ("test", "validation")


class SpeechTask:
    """Featurised digit strings, shared by every run of one benchmark."""

    def __init__(self, data_dir, train_size, test_size, max_digits, batch_size, data_seed=0,
                 split="test", held_out=None):
        from tf_gradual_prune import speech, speech_data

        if split not in SPLITS:
            raise ValueError(f"`split` must be one of {SPLITS}. Received: split={split!r}")
        if held_out is not None and split != "validation":
            raise ValueError("`held_out` chooses the scored speaker of split='validation'. "
                             f"Received: held_out={held_out!r}, split={split!r}")
        source = "fsdd" if data_dir else "synthetic"
        if split == "test":
            (waves, texts), (test_waves, test_texts) = speech_data.speech_digits(
                source, data_dir=data_dir, train_size=train_size, test_size=test_size,
                max_digits=max_digits, seed=data_seed)
        else:
            recordings = (speech_data.fsdd_recordings(data_dir) if data_dir
                          else speech_data.synthetic_digit_recordings(seed=data_seed))
            speakers = sorted({r.speaker for r in recordings})
            if held_out is None:
                held_out = speakers[-2]
            elif held_out not in speakers[:-1]:
                raise ValueError(
                    f"`held_out` must be one of {speakers[:-1]} (the test split's speaker "
                    f"{speakers[-1]!r} is never used for validation). Received: "
                    f"held_out={held_out!r}")
            kept = [r for r in recordings if r.speaker != speakers[-1]]
            train, scored = speech_data.split_recordings(kept, "speaker", held_out)
            options = dict(max_digits=max_digits)
            waves, texts = speech_data.digit_strings(train, train_size, seed=data_seed, **options)
            test_waves, test_texts = speech_data.digit_strings(scored, test_size,
                                                            seed=data_seed + 1, **options)
        self.split, self.held_out, self.source = split, held_out, source
        # The library's speech recipe: features, labels, batches.
        self.strings = speech.DigitStrings((waves, texts), (test_waves, test_texts),
                                           batch_size=batch_size)
        self.alphabet, self.batch_size, self.test = (
            self.strings.alphabet, batch_size, self.strings.test)
        self.x, self.x_test, self.y, self.y_test = (
            self.strings.x, self.strings.x_test, self.strings.y, self.strings.y_test)

    def train_dataset(self, seed):
        """`(dataset, steps)`: `speech.DigitStrings.train_dataset`."""
        return self.strings.train_dataset(seed)


#: The pruning methods `run_one` knows.
METHODS = ("dense", "default", "ramped", "agp", "one_shot", "prune_retrain", "l1", "units",
           "groups")

#: The blocks of method "groups": one input read by 32 consecutive outputs
#: (a quarter of a gate of the 128-unit recogniser), the layout
#: `export_tflite` stores gathered.
GROUP_BLOCK = (1, 32)


class Trajectory:
    """What happens along one pruned training: the loss of every optimizer
    step, every matrix's sparsity after each mask update, and (with
    `task`) the CER on the first `batches` batches of the task's evaluation
    split at every epoch end (a subset: decoding all of it every epoch
    would double the training time).

    `callback(pruning)` returns the Keras callback to list after the
    `GradualPruning` one; `as_dict()` the record, JSON-ready.
    """

    def __init__(self, task=None, batches=5):
        self.task, self.batches = task, batches
        self.loss, self.updates, self.cer = [], [], []

    def callback(self, pruning):
        import keras
        import numpy as np

        from tf_gradual_prune import models

        record = self

        class Recorder(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                self.mean_before = 0.0

            def on_train_batch_end(self, batch, logs=None):
                # Keras logs the epoch's running mean; undo it for this batch.
                mean = float(logs["loss"])
                record.loss.append(mean * (batch + 1) - self.mean_before * batch)
                self.mean_before = mean
                step = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))
                if pruning is None:
                    return
                sparsity = [float(np.mean(keras.ops.convert_to_numpy(item.variable) == 0))
                            for _, items in pruning.groups for item in items]
                if not record.updates or sparsity != record.updates[-1][1]:
                    record.updates.append((step, sparsity))

            def on_epoch_end(self, epoch, logs=None):
                if record.task is not None:
                    step = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))
                    rates = models.error_rates(self.model,
                                               record.task.test.take(record.batches),
                                               record.task.alphabet)
                    record.cer.append((step, rates["cer"]))

        return Recorder()

    def as_dict(self, names):
        return {"loss": self.loss, "updates": self.updates, "cer": self.cer,
                "matrices": names}


def seeded_start(task, units, seed, regularizer=None, mask_padding=False):
    """What every row starts from: `(train, steps, model)`, the shuffled
    training set, its batches per epoch and the untrained recogniser
    (`mask_padding`: see `models.speech_model`).

    The seed comes first, then the training set (its shuffle takes the
    global seed too: set after it, a row would depend on the rows run before
    it), then the model; tfmot's twin (`tfmot_speech.run`) calls this too and
    starts from the same initial weights as our rows.
    """
    import keras

    from tf_gradual_prune import models

    keras.utils.set_random_seed(seed)
    train, steps = task.train_dataset(seed)
    # By default the first version of the model (no padding mask): the saved
    # rows of every results file but `compare_masked` were measured on it, so
    # a resumed run must build it too.
    model = models.speech_model(task.x[0].shape[1], len(task.alphabet), units=units,
                                regularizer=regularizer, mask_padding=mask_padding)
    return train, steps, model


def recovery_decay(schedule, total, rate=1e-3):
    """A learning rate constant at `rate` until `schedule`'s last mask update
    (or 70% of `total` steps without one) and cosine to 0 at `total`."""
    import keras

    last = getattr(schedule, "last_update_step", None)
    begin = last if last is not None else int(round(0.7 * total))
    return keras.optimizers.schedules.CosineDecay(
        rate, decay_steps=total - begin, alpha=0.0, warmup_target=rate, warmup_steps=begin)


def run_one(task, units, epochs, seed, target=None, block_size=1, frequency=20, verbose=2,
            method=None, rounds=3, l1=1e-5, timing=None, ramp_slope_ratio=None,
            calibration=None, trace=False, decay=False, options=None, mask_padding=False):
    """Trains one recogniser; returns a result row.

    Methods (`target` is the final sparsity of the recurrent kernels):

    - `"dense"` (or `target=None`): no pruning.
    - `"default"`: the library's default, `RampedThresholdSchedule.
      for_training(epochs, steps, target_sparsity=target)` and nothing else
      (`frequency`, `timing` and the rest do not apply).
    - `"ramped"` (default with a target): the paper's rule, with the paper's
      timing (`RampedThresholdSchedule.paper`), or with `timing`, the begin,
      ramp and end steps as fractions of the budget; φ/θ =
      `ramp_slope_ratio` (None: the paper's 1.5), `calibration` (None:
      "track", as the comparison's rows were measured), masks updated every
      `frequency` steps.
    - `"agp"`: Zhu & Gupta's cubic sparsity ramp (tfmot's `PolynomialDecay`)
      over the same window (2nd epoch to 50%), through our callback.
    - `"one_shot"`: dense until 50% of the budget, pruned once to the
      target by magnitude, fine-tuned for the rest.
    - `"prune_retrain"` (Han et al. 2015): the dense budget, then `rounds`
      rounds of pruning (to 1-(1-target)^(i/rounds)) and retraining for half
      the budget each: it costs `1 + rounds / 2` times the steps.
    - `"l1"`: an L1 penalty (`l1`) on the recurrent kernels throughout, pruned
      once to the target at 80% of the budget, fine-tuned for the rest.
    - `"units"`: the default schedule with `GradualPruning(...,
      granularity="units")`: whole hidden units pruned, so that the export
      is a smaller dense model (fast everywhere), at some cost in accuracy.
    - `"groups"`: the default schedule with `GradualPruning(...,
      block_size=GROUP_BLOCK)`: each group of 32 outputs keeps the same
      inputs, the layout the export stores gathered (fast on XNNPACK);
      `block_size` must then be 1 (the default) or `GROUP_BLOCK`.

    With `options` (method `"default"` only), the default schedule with
    these arguments changed (e.g. `{"regrow": True}`: masks recomputed from
    dense shadow weights; `{"allocation": "erk"}`); the row records them.

    With `decay`, the learning rate stays 1e-3 until the schedule's last mask
    update (a dense model: 70% of the budget, where the default's last cut
    falls) and then follows a cosine down to 0 at the end of the budget
    (`keras.optimizers.schedules.CosineDecay` with a constant warm-up).

    With `mask_padding`, the recogniser masks the padding (the model
    `speech_model` builds by default; its CER does not depend on how the
    test utterances are batched); the row records it.

    With `trace`, the row also holds `"trajectory"` (see `Trajectory`: the
    loss of every step, every matrix's sparsity after each mask update and
    the CER on `task.test` at every epoch end).
    """
    import keras

    import tf_gradual_prune as tgp
    from tf_gradual_prune import models

    method = method or ("dense" if target is None else "ramped")
    if method not in METHODS:
        raise ValueError(f"`method` must be one of {METHODS}. Received: method={method!r}")
    if method == "groups" and block_size not in (1, GROUP_BLOCK):
        raise ValueError(f"`block_size` must be 1 or {GROUP_BLOCK} with method='groups' (its "
                         f"blocks are {GROUP_BLOCK}). Received: block_size={block_size!r}")
    train, steps, model = seeded_start(
        task, units, seed, keras.regularizers.L1(l1) if method == "l1" else None, mask_padding)
    total_epochs = epochs + (rounds * (epochs // 2) if method == "prune_retrain" else 0)
    schedule = common.pruning_schedule(method, epochs, steps, target, frequency, rounds, timing,
                                ramp_slope_ratio, calibration, options)
    model.compile(optimizer=keras.optimizers.Adam(
        recovery_decay(schedule, total_epochs * steps) if decay else 1e-3))
    granularity = "units" if method == "units" else "weights"
    if method == "groups":
        block_size = GROUP_BLOCK
    callbacks = [] if schedule is None else [
        tgp.GradualPruning(schedule, block_size=block_size, granularity=granularity)]
    trajectory = Trajectory(task) if trace else None
    if trace:
        callbacks.append(trajectory.callback(callbacks[0] if callbacks else None))
    start = time.perf_counter()
    history = model.fit(train.repeat(), epochs=total_epochs, steps_per_epoch=steps,
                        callbacks=callbacks, verbose=verbose, shuffle=False)
    seconds = time.perf_counter() - start
    rates = models.error_rates(model, task.test, task.alphabet)
    table = tgp.sparsity_table(model, weights="recurrent")
    row = {
        "units": units, "seed": seed, "method": method, "target": target, "cer": rates["cer"],
        "wer": rates["wer"], "sparsity": table.sparsity,
        "nonzeros": table.size - table.zeros, "steps": total_epochs * steps,
        "train_seconds": seconds, "loss": float(history.history["loss"][-1]),
    }
    if schedule is not None:
        row["schedule"] = repr(schedule)
    if block_size != 1:
        row["block_size"] = list(block_size) if isinstance(block_size, tuple) else block_size
    if decay:
        row["decay"] = True
    if mask_padding:
        row["mask_padding"] = True
    row.update(options or {})
    if method in common.RECIPE_METHODS:
        row["recipe"] = common.default_recipe()
    if trace:
        names = [item.name for _, items in callbacks[0].groups for item in items] if (
            schedule is not None) else []
        row["trajectory"] = trajectory.as_dict(names)
    return row


def summarise(rows, key):
    groups = {}
    for row in rows:
        groups.setdefault(row["name"], []).append(row)
    out = []
    for name, group in groups.items():
        values = np.array([r[key] for r in group])
        out.append({
            "name": name, "n": len(group), "mean": float(values.mean()),
            "std": float(values.std(ddof=1)) if len(group) > 1 else 0.0,
            "sparsity": float(np.mean([r["sparsity"] for r in group])),
            "nonzeros": int(np.mean([r["nonzeros"] for r in group])),
            "wer": float(np.mean([r["wer"] for r in group])),
            "steps": group[0]["steps"],
            "seconds": float(np.mean([r["train_seconds"] for r in group])),
        })
    return out


def plot(path, summary):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tf_gradual_prune import files

    fig, ax = plt.subplots(figsize=(7, 4))
    for s in summary:
        ax.errorbar(s["nonzeros"], s["mean"], yerr=s["std"], fmt="o", capsize=4,
                    label=s["name"])
    ax.set(xscale="log", xlabel="recurrent non-zero weights", ylabel="held-out speaker CER",
           title="FSDD digit strings: error rate against non-zero weights")
    ax.legend(fontsize=8)
    fig.tight_layout()
    files.save_figure(fig, path)


#: Settings that change what a row measures (`--resume` checks them).
SAME_RUN = ("data_dir", "epochs", "units", "small_units", "large_units", "target", "method",
            "block_size", "frequency", "train_size", "test_size", "max_digits", "quick",
            "mask_padding")
#: What `--method` may prune the two sparse rows with.
TABLE_METHODS = ("ramped", "default")


def configs(args):
    """The table's rows as `(name, units, target)`: dense, pruned, small, large."""
    small = recurrent_size(args.small_units)
    large_target = 1 - small / recurrent_size(args.large_units)
    return [
        (f"dense GRU({args.units})", args.units, None),
        (f"{args.method} GRU({args.units}) {args.target:.0%}", args.units, args.target),
        (f"dense GRU({args.small_units})", args.small_units, None),
        (f"{args.method} GRU({args.large_units}) {large_target:.1%}", args.large_units,
         large_target),
    ]


def table(rows, args, source, pending):
    """The Markdown report of the rows so far, and their summary."""
    order = [name for name, *_ in configs(args)]
    rows = sorted(rows, key=lambda r: (order.index(r["name"]), r["seed"]))
    summary = summarise(rows, "cer")
    rule = ("the library's default (`RampedThresholdSchedule.for_training`)"
            if args.method == "default" else
            f"the paper's ramped threshold, masks updated every {args.frequency} steps")
    lines = [
        f"FSDD digit strings ({source}; 1-{args.max_digits} digits, "
        f"{args.train_size} training strings from five speakers, {args.test_size} test "
        f"strings from the held-out speaker), {args.epochs} epochs, seeds {args.seeds}; "
        f"{'padding masked (speech_model default); ' if args.mask_padding else ''}"
        f"pruned with {rule}; greedy decoding. Mean ± sample std over seeds.",
        "",
        "| model | n | CER | CER per seed | WER | recurrent sparsity | recurrent non-zeros "
        "| steps | train s |",
        "|---|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    for s in summary:
        per_seed = " / ".join(f"{r['cer']:.3f}" for r in rows if r["name"] == s["name"])
        lines.append(f"| {s['name']} | {s['n']} | {s['mean']:.4f} ± {s['std']:.4f} | "
                     f"{per_seed} | {s['wer']:.4f} | {s['sparsity']:.3f} | {s['nonzeros']:,} "
                     f"| {s['steps']} | {s['seconds']:.0f} |")
    found = {s["name"]: s for s in summary}
    dense, pruned, dense_small, pruned_large = (found.get(name) for name in order)
    lines.append("")
    if dense and pruned:
        lines.append(f"- {pruned['name']} vs {dense['name']}: CER "
                     f"{pruned['mean'] / dense['mean'] - 1:+.1%} relative (target: within "
                     "+10%).")
    if dense_small and pruned_large:
        lines.append(f"- {pruned_large['name']} ({pruned_large['nonzeros']:,} non-zeros) vs "
                     f"{dense_small['name']} ({dense_small['nonzeros']:,}): CER "
                     f"{pruned_large['mean']:.4f} vs {dense_small['mean']:.4f} (target: "
                     "lower).")
    lines += common.hosts_note(rows)
    lines += common.partial_note(pending)
    return "\n".join(lines), summary


def publish(prefix, command, args, source, rows, pending):
    """Saves the rows so far with their table and plot; returns the table."""
    markdown, summary = table(rows, args, source, pending)
    common.save_results(prefix, command, vars(args), rows, markdown)
    plot(prefix + ".png", summary)
    return markdown


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default=os.environ.get("TFGP_DATA_DIR"),
                        help="folder with fsdd/ (default $TFGP_DATA_DIR; none: synthetic)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--units", type=int, default=128)
    parser.add_argument("--small-units", type=int, default=64)
    parser.add_argument("--large-units", type=int, default=256)
    parser.add_argument("--target", type=float, default=0.9)
    parser.add_argument("--method", default="ramped", choices=TABLE_METHODS,
                        help="the paper's rule ('ramped', calibrated, every --frequency "
                             "steps) or the library's default")
    parser.add_argument("--block-size", type=int, default=1)
    parser.add_argument("--frequency", type=int, default=20,
                        help="steps between mask updates ('ramped' only)")
    parser.add_argument("--train-size", type=int, default=1200)
    parser.add_argument("--test-size", type=int, default=400)
    parser.add_argument("--max-digits", type=int, default=7)
    parser.add_argument("--mask-padding", action="store_true", default=None,
                        help="train and score the recogniser that masks the padding "
                             "(speech_model's default) instead of the unmasked first version")
    parser.add_argument("--name", default="speech",
                        help="results file name in benchmarks/results (default: speech)")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--resume", action="store_true",
                        help="reuse the saved rows of a run with the same settings")
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.epochs, args.train_size, args.test_size = args.seeds[:1], 4, 200, 50
        args.units, args.small_units, args.large_units, args.frequency = 32, 16, 64, 2
    task = SpeechTask(args.data_dir, args.train_size, args.test_size, args.max_digits, 32)
    prefix = os.path.join(HERE, "results", args.name + ("_quick" if args.quick else ""))
    command = common.command_line("speech_bench.py", argv or sys.argv[1:])
    todo = [(name, seed, (units, target)) for seed in args.seeds
            for name, units, target in configs(args)]

    def train(config, seed):
        units, target = config
        return run_one(task, units, args.epochs, seed, target, args.block_size,
                       args.frequency, method="dense" if target is None else args.method,
                       mask_padding=bool(args.mask_padding))

    rows = common.run_and_publish(prefix, args, SAME_RUN, todo, train,
                           lambda saved, pending: publish(prefix, command, args,
                                                          task.source, saved, pending))
    return 0 if np.all([np.isfinite(r["cer"]) for r in rows]) else 1


if __name__ == "__main__":
    sys.exit(main())
