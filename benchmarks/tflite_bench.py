"""Dense vs pruned `.tflite` models: file size and batch-1 latency, side by side.

For LSTM and GRU models (sequence 50, 64 features, one recurrent layer and a
Dense(10) head), prunes the recurrent kernels with `GradualPruning` (a one-step
schedule to the target sparsity), exports with `export_tflite`, and measures
in one process, with interleaved rounds, the median batch-1 single-thread
latency of each pruned model against its dense twin in the LiteRT
interpreter. Ratios are dense / pruned (higher is better).

    python benchmarks/tflite_bench.py [--quick]

Writes `tflite.json`, `tflite.md` and `tflite.png` into `--output-dir`
(default `benchmarks/results`).
"""

import argparse
import os
import sys
import tempfile
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from tqdm import tqdm  # noqa: E402

import tf_gradual_prune as tgp  # noqa: E402
from common import save_results  # noqa: E402
from tf_gradual_prune import files  # noqa: E402

TIMESTEPS, FEATURES = 50, 64


def build(kind, units):
    layer = {"lstm": keras.layers.LSTM, "gru": keras.layers.GRU}[kind]
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((TIMESTEPS, FEATURES)), layer(units), keras.layers.Dense(10)]
    )
    model.compile(optimizer="sgd", loss="mse")
    return model


def prune(model, sparsity, block):
    """Prunes the recurrent kernels to `sparsity` through the callback."""

    def one_step(step):
        return tf.equal(step, 1), tf.constant(sparsity, tf.float32)

    x = np.zeros((1, TIMESTEPS, FEATURES), "float32")
    y = np.zeros((1, 10), "float32")
    # lr 0: the step only triggers the pruning, it does not train.
    model.optimizer.learning_rate.assign(0.0)
    model.fit(x, y, epochs=1, verbose=0,
              callbacks=[tgp.GradualPruning(one_step, block_size=block)])
    return tgp.sparsity_table(model, weights="recurrent").sparsity


def export(model, folder, name, quantization):
    path = os.path.join(folder, name + ".tflite")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = tgp.export_tflite(model, path, quantization=quantization)
    recurrent = [t for t in report.tensors if "cell" in t["keras_weight"]]
    weight_bytes = sum(t["bytes"] for t in recurrent)
    float_bytes = sum(4 * int(np.prod(t["shape"])) for t in recurrent)
    return path, report, weight_bytes, float_bytes


def latencies(paths_delegates, rounds, repeats):
    """Interleaved rounds; the median over rounds of per-round medians."""
    sample = np.random.default_rng(0).normal(size=(1, TIMESTEPS, FEATURES)).astype("float32")
    runners = [tgp.LiteRTRunner(p, num_threads=1, delegate=d) for p, d in paths_delegates]
    per_round = [[] for _ in runners]
    for _ in range(rounds):
        for i, runner in enumerate(runners):
            per_round[i].append(runner.latency_ms(sample, repeats=repeats, warmup=3, rounds=1))
    return [float(np.median(r)) for r in per_round]


def grid(quick):
    if quick:
        return [("lstm", 256, s, b, "float32") for s, b in [(0.9, 1), (0.9, 4), (0.9, 16)]] + [
            ("lstm", 256, 0.9, 16, "dynamic_int8")
        ]
    cases = []
    for kind in ("lstm", "gru"):
        for sparsity in (0.5, 0.8, 0.9, 0.95):
            for block in (1, 4, 16):
                cases.append((kind, 512, sparsity, block, "float32"))
        for units in (256, 512, 1024):
            cases.append((kind, units, 0.9, 16, "dynamic_int8"))
            if units != 512:
                cases.append((kind, units, 0.9, 16, "float32"))
    return cases


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--output-dir", default=os.path.join("benchmarks", "results"))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.repeats = 3, 10
    folder = tempfile.mkdtemp(prefix="tfgp_bench_")
    cases = grid(args.quick)
    dense_cache, rows = {}, []
    for kind, units, sparsity, block, quant in tqdm(cases, desc="export + measure"):
        key = (kind, units, quant)
        if key not in dense_cache:
            dense_cache[key] = export(build(kind, units), folder, f"dense_{kind}{units}_{quant}", quant)
        dense_path, dense_report, dense_weight_bytes, float_bytes = dense_cache[key]
        model = build(kind, units)
        reached = prune(model, sparsity, block)
        path, report, weight_bytes, _ = export(
            model, folder, f"{kind}{units}_{sparsity}_{block}_{quant}", quant
        )
        # Dense float under its default (XNNPACK); pruned under the setting
        # its export report recommends, and both under builtin kernels.
        dense_x, dense_b, pruned_rec, pruned_b = latencies(
            [(dense_path, dense_report.delegate), (dense_path, "none"),
             (path, report.delegate), (path, "none")],
            args.rounds, args.repeats,
        )
        float_dense = dense_cache.get((kind, units, "float32"))
        rows.append(
            dict(
                model=f"{kind.upper()}({units})", sparsity=sparsity, reached=reached,
                block=block, quantization=quant, delegate=report.delegate,
                file_bytes=report.size_bytes, dense_file_bytes=dense_report.size_bytes,
                weight_bytes=weight_bytes, dense_weight_bytes=dense_weight_bytes,
                float_weight_bytes=float_bytes,
                dense_ms=dense_x, dense_builtin_ms=dense_b,
                pruned_ms=pruned_rec, pruned_builtin_ms=pruned_b,
                max_error=report.max_error,
                has_float_dense=float_dense is not None,
            )
        )
    for r in rows:
        r["weight_ratio_vs_float"] = r["float_weight_bytes"] / r["weight_bytes"]
        r["file_ratio"] = r["dense_file_bytes"] / r["file_bytes"]
        r["speedup"] = r["dense_ms"] / r["pruned_ms"]
        r["speedup_builtin"] = r["dense_builtin_ms"] / r["pruned_builtin_ms"]
    lines = [
        "| model | quant | sparsity | block | file KiB (dense) | weights vs dense float | "
        "dense ms | pruned ms | speed-up | builtin-only dense / pruned ms | delegate |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['quantization']} | {r['reached']:.2f} | {r['block']} | "
            f"{r['file_bytes'] / 1024:,.0f} ({r['dense_file_bytes'] / 1024:,.0f}) | "
            f"{r['weight_ratio_vs_float']:.1f}x | {r['dense_ms']:.2f} | {r['pruned_ms']:.2f} | "
            f"{r['speedup']:.2f}x | {r['dense_builtin_ms']:.2f} / {r['pruned_builtin_ms']:.2f} "
            f"({r['speedup_builtin']:.2f}x) | {r['delegate']} |"
        )
    table = "\n".join(lines)
    print(table)
    prefix = os.path.join(args.output_dir, "tflite" + ("_quick" if args.quick else ""))
    save_results(
        prefix,
        "python benchmarks/tflite_bench.py" + (" --quick" if args.quick else ""),
        vars(args) | {"timesteps": TIMESTEPS, "features": FEATURES, "threads": 1, "batch": 1},
        rows,
        "Batch 1, 1 thread, median ms over interleaved rounds; dense float runs "
        "with XNNPACK, pruned with the delegate its export report recommends. "
        "'weights vs dense float': bytes of the recurrent kernels stored, against "
        "the same kernels dense in float32.\n\n" + table,
    )
    plot(prefix + ".png", rows)
    print(f"saved {prefix}.json, .md and .png")


def plot(path, rows):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    series = sorted({(r["model"], r["block"]) for r in rows
                     if r["quantization"] == "float32"})
    for model, block in series:
        got = sorted((r["reached"], r["speedup"]) for r in rows
                     if r["model"] == model and r["block"] == block
                     and r["quantization"] == "float32")
        if len(got) > 1:
            ax.plot(*zip(*got), marker="o", label=f"{model}, block {block}")
    ax.axhline(1.0, color="gray", linestyle=":")
    ax.set(xlabel="sparsity", ylabel="latency ratio dense / pruned (float32)",
           title="TFLite batch-1 speed-up from pruning")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    fig.tight_layout()
    files.save_figure(fig, path)


if __name__ == "__main__":
    sys.exit(main())
