"""Command line: `tf-gradual-prune demo` (also `python -m tf_gradual_prune`).

The demo is the paper's experiment in miniature: a Deep-Speech-2-style CTC
recogniser of spoken digit strings, trained from the same start dense,
pruned to 90% with the library's default schedule, and pruned to 90% with
the paper's rule; all three exported to `.tflite` and run in LiteRT, with one
table of error rate, sparsity, size and latency.

`demo --streaming` trains a unidirectional recogniser (dense and pruned),
exports both as streaming steps and transcribes held-out utterances chunk by
chunk in LiteRT, as an app would while the audio arrives.
"""

import argparse
import json
import os
import sys
import time
import warnings

from tf_gradual_prune import files

#: Settings of `--quick` (a smoke run of about two minutes on 2 cores).
QUICK = {"epochs": 4, "units": 32, "train_size": 300, "test_size": 60, "max_digits": 3}

#: The models the demo trains, in order: name -> how it is pruned.
MODELS = {"dense": "not pruned",
          "pruned": "the default, RampedThresholdSchedule.for_training",
          "paper": "the paper's rule, RampedThresholdSchedule.paper, calibration 'track'"}

#: The models `demo --streaming` trains (unidirectional).
STREAMING_MODELS = ("dense", "pruned")

#: The recogniser's front-end stride (input frames per output frame).
STRIDE = 3


def _parser():
    parser = argparse.ArgumentParser(
        prog="tf-gradual-prune",
        description="Gradual pruning of recurrent networks during training.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser(
        "demo",
        help="train, prune, export and time a speech recogniser, dense vs sparse",
        description=(
            "Trains the same DS2-style CTC recogniser of spoken digit strings "
            "three times from the same start: dense; pruned to "
            "--target-sparsity with the library's default schedule "
            "(for_training); and with the paper's rule (its timing and "
            "calibration), both on the recurrent kernels. Exports all three to "
            ".tflite, times them in LiteRT, prints one table and saves it, "
            "plots and the .tflite files in --output-dir."
        ),
    )
    demo.add_argument(
        "--data", choices=("synthetic", "fsdd"), default="synthetic",
        help="the embedded synthetic spoken digits (default) or FSDD recordings",
    )
    demo.add_argument("--data-dir", default=None,
                      help="folder holding fsdd/ (default: $TFGP_DATA_DIR)")
    demo.add_argument("--download", action="store_true",
                      help="with --data fsdd and no folder: download FSDD (cached)")
    demo.add_argument("--output-dir", default="tfgp_demo")
    demo.add_argument("--epochs", type=int, default=12)
    demo.add_argument("--units", type=int, default=128, help="GRU units per direction")
    demo.add_argument("--layers", type=int, default=2, help="bidirectional GRU layers")
    demo.add_argument("--target-sparsity", type=float, default=0.9)
    demo.add_argument("--block-size", type=_block_size, default=4,
                      help="prune blocks of this many input weights (1: unstructured), "
                           "or INPUTSxOUTPUTS, e.g. 1x32: one input read by 32 outputs, "
                           "which the export may store gathered (fast on XNNPACK)")
    demo.add_argument("--granularity", choices=("weights", "units"), default="weights",
                      help="prune weights in blocks (default) or whole hidden units, "
                           "which the export removes (a smaller dense model)")
    demo.add_argument("--frequency", type=int, default=None,
                      help="steps between mask updates (default: chosen from the length)")
    demo.add_argument("--train-size", type=int, default=1500, help="training utterances")
    demo.add_argument("--test-size", type=int, default=300, help="test utterances")
    demo.add_argument("--max-digits", type=int, default=5, help="digits per utterance, at most")
    demo.add_argument("--batch-size", type=int, default=32)
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--streaming", action="store_true",
                      help="train unidirectional models (dense and pruned), export them "
                           "as streaming steps and transcribe held-out audio chunk by chunk")
    demo.add_argument("--chunk-ms", type=int, default=100,
                      help="with --streaming: audio per call, rounded up to whole "
                           "frames and to a multiple of the front end's stride")
    demo.add_argument("--quick", action="store_true",
                      help="a smoke run: " + ", ".join(f"{k}={v}" for k, v in QUICK.items()))
    return parser


def _block_size(text):
    """`--block-size`: `N` or `INPUTSxOUTPUTS` (e.g. `1x32`)."""
    parts = text.lower().split("x")
    if len(parts) > 2 or not all(p.strip().isdigit() for p in parts):
        raise argparse.ArgumentTypeError(
            f"must be an integer or INPUTSxOUTPUTS such as 1x32. Received: {text!r}")
    numbers = [int(p) for p in parts]
    return numbers[0] if len(numbers) == 1 else tuple(numbers)


def _check(args):
    if not 0 < args.target_sparsity < 1:
        raise SystemExit(f"--target-sparsity must be in (0, 1). Received: {args.target_sparsity}")
    if min(args.block_size if isinstance(args.block_size, tuple) else (args.block_size,)) < 1:
        raise SystemExit(f"--block-size must be >= 1 (each number of a pair too). "
                         f"Received: {args.block_size}")
    for name in ("epochs", "units", "layers", "frequency", "train_size",
                 "test_size", "max_digits", "batch_size", "chunk_ms"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise SystemExit(f"--{name.replace('_', '-')} must be >= 1. "
                             f"Received: {getattr(args, name)}")
    if args.epochs < 4:
        raise SystemExit(f"--epochs must be >= 4 (the paper's timing, trained beside the "
                         "default, needs them). "
                         f"Received: {args.epochs}")


class _Recorder:
    """Collects per-step sparsity and threshold from the pruning logs."""

    def __init__(self):
        import keras

        self.steps, self.sparsity, self.threshold = [], [], []
        recorder = self

        class Callback(keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                recorder.steps.append(
                    int(keras.ops.convert_to_numpy(self.model.optimizer.iterations)))
                recorder.sparsity.append(float(logs["sparsity"]))
                recorder.threshold.append(float(logs["threshold"]))

        self.callback = Callback()


def run_demo(args):
    """Runs the demo; returns the result rows (also saved as JSON)."""
    import keras
    import numpy as np

    import tf_gradual_prune as tgp
    from tf_gradual_prune import models, speech

    if args.quick:
        for name, value in QUICK.items():
            setattr(args, name, min(getattr(args, name), value))
    _check(args)
    os.makedirs(args.output_dir, exist_ok=True)
    print(f"== data: {args.data} digit strings (held-out speaker)")
    task = speech.DigitStrings.load(
        args.data, data_dir=args.data_dir, download=args.download,
        train_size=args.train_size, test_size=args.test_size,
        max_digits=args.max_digits, seed=args.seed, batch_size=args.batch_size)
    x, x_test, test_texts = task.x, task.x_test, task.test_texts
    features, alphabet, test = task.features, task.alphabet, task.test
    train, steps_per_epoch = task.train_dataset(seed=args.seed)
    train = train.repeat()  # epochs of one pass each
    print(f"{len(x)} training and {len(x_test)} test utterances, "
          f"{steps_per_epoch} steps an epoch")
    schedules = {
        "pruned": tgp.RampedThresholdSchedule.for_training(
            args.epochs, steps_per_epoch, target_sparsity=args.target_sparsity,
            frequency=args.frequency),
        # The paper's timing and ramp, calibrated on the live weights so that
        # it reaches the target too (its own calibration, "begin", falls short).
        "paper": tgp.RampedThresholdSchedule.paper(
            args.epochs, steps_per_epoch, target_sparsity=args.target_sparsity,
            frequency=args.frequency, calibration="track"),
    }
    frames = int(max(len(f) for f in x_test))
    sample = np.zeros((4, frames, x_test[0].shape[1]), np.float32)
    for i, f in enumerate(x_test[:4]):
        sample[i, : len(f)] = f
    unpadded = np.stack([f[: min(len(g) for g in x_test[:4])] for f in x_test[:4]])
    chunk = _chunk_frames(args, features) if args.streaming else None
    results, histories, recorders, streams = [], {}, {}, {}
    for name in STREAMING_MODELS if args.streaming else MODELS:
        print(f"\n== training the {name} model ({MODELS[name]}"
              f"{', unidirectional' if args.streaming else ''})")
        keras.utils.set_random_seed(args.seed)
        model = task.recogniser(units=args.units, layers=args.layers, conv_stride=STRIDE,
                                bidirectional=not args.streaming)
        callbacks = [models.ErrorRates(test, alphabet)]
        if name in schedules:
            print(schedules[name])
            recorders[name] = _Recorder()
            callbacks += [tgp.GradualPruning(
                schedules[name], granularity=args.granularity,
                block_size=args.block_size if args.granularity == "weights" else 1),
                          recorders[name].callback]
        start = time.perf_counter()
        history = model.fit(train, epochs=args.epochs, steps_per_epoch=steps_per_epoch,
                            shuffle=False, callbacks=callbacks, verbose=2)
        seconds = time.perf_counter() - start
        table = tgp.sparsity_table(model, weights="recurrent")
        if name in schedules:
            print(table)
        path = os.path.join(args.output_dir, f"{name}{'_streaming' if chunk else ''}.tflite")
        print(f"exporting {os.path.basename(path)} and timing it in LiteRT")
        metadata = {"alphabet": alphabet.characters, "blank": len(alphabet),
                    "features": features.get_config(), "frames": frames}
        # Streaming is checked on real frames only (a stream has no padding).
        shape = {"streaming": True, "chunk_frames": chunk, "sample_inputs": unpadded} \
            if chunk else {"input_shape": (frames, x[0].shape[1]), "sample_inputs": sample}
        with warnings.catch_warnings():
            # The dense model has nothing to store sparse: that is the point.
            warnings.filterwarnings("ignore", "Model .* no weight matrix")
            # The sparse file, whatever its speed at this size: the demo shows
            # both, and its latency column says what it costs. Output groups
            # (--block-size 1xN): the export's own choice, gathered where faster.
            groups = isinstance(args.block_size, tuple) and not chunk
            report = tgp.export_tflite(model, path, metadata=metadata,
                                       encoding="auto" if groups else "sparse", **shape)
        runner = (tgp.StreamingRunner if chunk else tgp.LiteRTRunner)(
            path, delegate=report.delegate)
        if chunk:
            streams[name] = runner
        weights = [w for w in model.weights if len(w.shape) >= 2]
        results.append({
            "model": name,
            "cer": float(history.history["val_cer"][-1]),
            "wer": float(history.history["val_wer"][-1]),
            "recurrent_sparsity": table.sparsity,
            "recurrent_nonzeros": table.size - table.zeros,
            "nonzero_parameters": int(sum(np.count_nonzero(keras.ops.convert_to_numpy(w))
                                          for w in weights)),
            "tflite_bytes": report.size_bytes,
            "latency_ms": runner.latency_ms(
                [sample[:1, :chunk]] + runner.states if chunk else sample[:1]),
            "delegate": report.delegate,
            "shrunk_units": report.shrunk["shrunk"],
            "train_seconds": seconds,
        })
        histories[name] = history.history
    if chunk:
        _stream(args, streams, results, (x_test, test_texts), alphabet, chunk, features)
        _stream_report(args, schedules, results, histories, recorders, steps_per_epoch,
                       chunk, features)
    else:
        _report(args, schedules, results, histories, recorders, steps_per_epoch, frames)
    return results


def _chunk_frames(args, features):
    """Frames per streaming call: `--chunk-ms` rounded up to whole frames
    and to a multiple of the front end's stride (3)."""
    frames = -(-args.chunk_ms // features.step_ms)
    chunk = -(-frames // STRIDE) * STRIDE
    print(f"streaming in chunks of {chunk} frames ({chunk * features.step_ms} ms; "
          f"--chunk-ms {args.chunk_ms} rounded up to whole {features.step_ms}-ms frames "
          f"and a multiple of the front end's stride {STRIDE})")
    return chunk


def _stream(args, streams, results, test, alphabet, chunk, features):
    """Streamed CER of every model over the test set, and one utterance
    transcribed chunk by chunk with its partial transcripts."""
    import numpy as np

    from tf_gradual_prune import models

    x_test, texts = test
    for row in results:
        runner = streams[row["model"]]
        hypotheses = []
        for frames in x_test:
            logits = runner.run_stream(frames)
            valid = -(-len(frames) // STRIDE)
            hypotheses.append(alphabet.decode(models.greedy_decode(logits[:, :valid])[0]))
        row["streamed_cer"] = models.error_rate(hypotheses, texts)
    name = results[-1]["model"]
    runner, frames = streams[name], x_test[0]
    print(f"\n== the {name} model transcribes a held-out utterance as it arrives "
          f"(LiteRT, {chunk * features.step_ms} ms a call; reference {texts[0]!r})")
    runner.reset()
    logits, seconds, shown = [], [], None
    for start in range(0, len(frames), chunk):
        piece = frames[start : start + chunk]
        piece = np.concatenate([piece, np.zeros((chunk - len(piece),) + piece.shape[1:],
                                                piece.dtype)])
        began = time.perf_counter()
        logits.append(runner.push(piece))
        seconds.append(time.perf_counter() - began)
        heard = min(start + chunk, len(frames))
        text = alphabet.decode(models.greedy_decode(
            np.concatenate(logits, axis=1)[:, : -(-heard // STRIDE)])[0])
        if text != shown:
            print(f"  {heard * features.step_ms / 1000:5.2f} s  {text!r}")
            shown = text
    audio = len(frames) * features.step_ms / 1000
    results[-1]["chunk_latency_ms"] = {"median": 1000 * float(np.median(seconds)),
                                       "max": 1000 * float(np.max(seconds))}
    results[-1]["real_time_factor"] = float(np.sum(seconds)) / audio
    print(f"  final {shown!r}; {len(seconds)} calls, {1000 * np.median(seconds):.2f} ms "
          f"median, {1000 * np.max(seconds):.2f} ms max per call; real-time factor "
          f"{results[-1]['real_time_factor']:.4f} (compute time / audio time)")


def _stream_report(args, schedules, results, histories, recorders, steps_per_epoch, chunk,
                   features):
    lines = [
        "| model | offline CER (Keras) | streamed CER (LiteRT) | recurrent sparsity "
        "| .tflite KiB | LiteRT ms per call | train s |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r['model']} | {r['cer']:.3f} | {r['streamed_cer']:.3f} | "
            f"{r['recurrent_sparsity']:.3f} | {r['tflite_bytes'] / 1024:,.0f} | "
            f"{r['latency_ms']:.3f} | {r['train_seconds']:.0f} |"
        )
    dense, pruned = results
    lines.append(
        f"\nUnidirectional models, streamed in {chunk}-frame calls "
        f"({chunk * features.step_ms} ms of audio each), batch 1, 1 thread. Offline CER: "
        "the Keras model over whole padded utterances; streamed: the LiteRT export "
        f"chunk by chunk. Pruned vs dense: {dense['tflite_bytes'] / pruned['tflite_bytes']:.1f}x "
        f"smaller file, {dense['latency_ms'] / pruned['latency_ms']:.2f}x the speed per call."
    )
    _publish(args, "streaming", lines, {"pruned": schedules["pruned"]}, results, histories,
             recorders, steps_per_epoch, [f"{r['model']}_streaming.tflite" for r in results],
             chunk_frames=chunk)


def _report(args, schedules, results, histories, recorders, steps_per_epoch, frames):
    lines = [
        "| model | CER | WER | recurrent sparsity | recurrent non-zeros "
        "| non-zero weights | .tflite KiB | LiteRT ms | train s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r['model']} | {r['cer']:.3f} | {r['wer']:.3f} | "
            f"{r['recurrent_sparsity']:.3f} | {r['recurrent_nonzeros']:,} | "
            f"{r['nonzero_parameters']:,} | {r['tflite_bytes'] / 1024:,.0f} | "
            f"{r['latency_ms']:.2f} | {r['train_seconds']:.0f} |"
        )
    dense, pruned, paper = results
    lines.append(
        f"\npruned: the default schedule (`for_training`); paper: the paper's rule "
        f"(`paper`). LiteRT latency: batch 1, {frames} frames ({frames / 100:.1f} s of "
        f"audio), 1 thread. Pruned vs dense: "
        f"{dense['tflite_bytes'] / pruned['tflite_bytes']:.1f}x smaller file, "
        f"{dense['latency_ms'] / pruned['latency_ms']:.2f}x the speed; CER "
        f"{pruned['cer']:.3f} (default) and {paper['cer']:.3f} (paper's rule) against "
        f"{dense['cer']:.3f} (dense)."
    )
    _publish(args, "results", lines, schedules, results, histories, recorders,
             steps_per_epoch, [f"{r['model']}.tflite" for r in results])


def _publish(args, stem, lines, schedules, results, histories, recorders, steps_per_epoch,
             exported, **extra):
    """Prints the table (with what the export shrank) and saves `<stem>.json`
    (schedules, results, histories, `extra`, arguments), `<stem>.md` and the
    curves beside the exported files."""
    out = args.output_dir
    summary = {
        "schedules": {name: s.get_config() for name, s in schedules.items()},
        "results": results,
        "history": histories,
        "steps_per_epoch": steps_per_epoch,
        **extra,
        "args": vars(args),
    }
    table = "\n".join(lines + _shrunk_lines(results))
    print("\n" + table)
    curves = "pruning_curves.png" if stem == "results" else f"{stem}_curves.png"
    files.write_atomic(os.path.join(out, f"{stem}.json"), json.dumps(summary, indent=2))
    files.write_atomic(os.path.join(out, f"{stem}.md"), table + "\n")
    _plot(os.path.join(out, curves), histories, recorders, steps_per_epoch)
    print(f"\nsaved {stem}.json, {stem}.md, {curves}, {', '.join(exported)} "
          f"(+ .json sidecars) in {out}/")


def _shrunk_lines(results):
    """What the export removed from models pruned by whole units."""
    return [
        f"\n{r['model']}: exported with "
        + ", ".join(f"{name} {before} -> {after} units" for name, (before, after)
                    in r["shrunk_units"].items())
        + " per direction (dead units removed: smaller dense layers)."
        for r in results if r.get("shrunk_units")
    ]


def _plot(path, histories, recorders, steps_per_epoch):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError(
            "The demo's plots need matplotlib: pip install 'tf-gradual-prune[plots]'"
        ) from None
    colours = dict(zip(MODELS, ("tab:gray", "tab:blue", "tab:orange")))
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for name, recorder in recorders.items():
        axes[0].plot(recorder.steps, recorder.threshold, label=name, color=colours[name])
        axes[1].plot(recorder.steps, recorder.sparsity, label=name, color=colours[name])
    axes[0].set(xlabel="optimizer step", ylabel="mean threshold", title="Threshold")
    axes[1].set(xlabel="optimizer step", ylabel="pruned share", title="Sparsity", ylim=(0, 1))
    axes[0].legend()
    axes[1].legend()
    for name, history in histories.items():
        steps = [steps_per_epoch * (i + 1) for i in range(len(history["val_cer"]))]
        axes[2].plot(steps, history["val_cer"], marker="o", label=name,
                     color=colours[name])
    axes[2].set(xlabel="optimizer step", ylabel="character error rate",
                title="Held-out speaker CER", ylim=(0, None))
    axes[2].legend()
    fig.tight_layout()
    files.save_figure(fig, path)


def main(argv=None):
    """The `tf-gradual-prune` command: parses `argv` (default: the process's
    arguments) and runs the sub-command (`demo`); returns the exit status."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = _parser().parse_args(argv)
    if args.command == "demo":
        run_demo(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
