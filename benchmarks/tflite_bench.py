"""Dense vs pruned `.tflite` models: file size and batch-1 latency, side by side.

For LSTM and GRU models (sequence 50, 64 features, one recurrent layer and a
Dense(10) head), prunes the recurrent kernels with `GradualPruning` (a one-step
schedule to the target sparsity), exports with `export_tflite`, and measures
in one process, with interleaved rounds, the median batch-1 single-thread
latency of each pruned model against its dense twin in the LiteRT
interpreter. Ratios are dense / pruned (higher is better).

    python -m benchmarks.tflite_bench [--quick]
    python -m benchmarks.tflite_bench --goal [--quick]

`--goal` measures the speed goal of issue 22 instead: LSTM(512) and
GRU(512) at 80/90/95%, pruned in blocks of 4 weights, in blocks of one input
and 32 or 128 outputs (exported gathered, `gathering`) or by whole units
(exported as smaller dense layers), every model under XNNPACK and builtin
kernels at 1 and 4 threads, each against the dense model's fastest setting
(`tflite_goal.json`, `.md`, `.png`).

Writes `tflite.json`, `tflite.md` and `tflite.png` into `--output-dir`
(default `benchmarks/results`).
"""

import argparse
import os
import sys
import tempfile
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import tensorflow as tf
from tqdm import tqdm

import tf_gradual_prune as tgp
from tf_gradual_prune import files

if not __package__:  # run as a file (python benchmarks/<name>.py): the package from the root
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import common

TIMESTEPS, FEATURES = 50, 64


def build(kind, units):
    layer = {"lstm": keras.layers.LSTM, "gru": keras.layers.GRU}[kind]
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((TIMESTEPS, FEATURES)), layer(units), keras.layers.Dense(10)]
    )
    model.compile(optimizer="sgd", loss="mse")
    return model


def prune(model, sparsity, block, granularity="weights"):
    """Prunes the recurrent kernels to `sparsity` through the callback."""

    def one_step(step):
        return tf.equal(step, 1), tf.constant(sparsity, tf.float32)

    x = np.zeros((1, TIMESTEPS, FEATURES), "float32")
    y = np.zeros((1, 10), "float32")
    # lr 0: the step only triggers the pruning, it does not train.
    model.optimizer.learning_rate.assign(0.0)
    model.fit(x, y, epochs=1, verbose=0,
              callbacks=[tgp.GradualPruning(one_step, block_size=block,
                                            granularity=granularity)])
    return tgp.sparsity_table(model, weights="recurrent").sparsity


def export(model, folder, name, quantization, encoding="sparse"):
    path = os.path.join(folder, name + ".tflite")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = tgp.export_tflite(model, path, quantization=quantization, encoding=encoding)
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


#: Interpreter settings of the goal table: (delegate, threads).
SETTINGS = [("xnnpack", 1), ("none", 1), ("xnnpack", 4), ("none", 4)]

#: The goal table's pruning layouts: `block_size` and the export's encoding
#: ("auto" for the output groups: the export then picks the gathered form
#: itself, or says why not).
LAYOUTS = {
    "blocks of 4": (4, "sparse"),
    "blocks of 16": (16, "sparse"),
    "groups of 32": ((1, 32), "auto"),
    "groups of 128": ((1, 128), "auto"),
    "units": (1, "sparse"),
}


def goal(args):
    """The speed goal's table: LSTM(512) and GRU(512), float32, pruned in
    blocks of 4 weights or by whole units (shrunk to a smaller dense layer
    at export), each model timed under every setting; per thread count, the
    speed-up is the dense model's fastest setting over the pruned model's."""
    folder = tempfile.mkdtemp(prefix="tfgp_bench_")
    cases = []
    for kind in ("lstm", "gru"):
        cases += [(kind, "dense", 0.0, "float32"), (kind, "dense", 0.0, "dynamic_int8")]
        for sparsity in ((0.9,) if args.quick else (0.8, 0.9, 0.95)):
            cases += [(kind, method, sparsity, "float32")
                      for method in ("blocks of 4", "groups of 32", "groups of 128", "units")]
        # int8 weights with float activations need blocks of 16 to stay sparse.
        cases += [(kind, "blocks of 16", 0.9, "dynamic_int8"),
                  (kind, "groups of 128", 0.9, "dynamic_int8"),
                  (kind, "units", 0.9, "dynamic_int8")]
    units = 256 if args.quick else 512
    models = []
    for kind, method, sparsity, quant in tqdm(cases, desc="export"):
        model = build(kind, units)
        reached = 0.0
        block, encoding = LAYOUTS.get(method, (1, "sparse"))
        if method != "dense":
            reached = prune(model, sparsity, block, "units" if method == "units" else "weights")
        path, report, weight_bytes, _ = export(
            model, folder, f"{kind}_{method.replace(' ', '')}_{sparsity}_{quant}", quant,
            encoding)
        models.append(dict(model=f"{kind.upper()}({units})", method=method, sparsity=sparsity,
                           quantization=quant, reached=reached, file_bytes=report.size_bytes,
                           recommended=report.delegate, max_error=report.max_error,
                           encoding=report.encoding, shrunk=report.shrunk["shrunk"],
                           path=path))
    sample = np.random.default_rng(0).normal(size=(1, TIMESTEPS, FEATURES)).astype("float32")
    runners = {}
    for i, m in enumerate(models):
        for setting in SETTINGS:
            if m["quantization"] != "float32" and m["method"].startswith("blocks") and (
                    setting[0] == "xnnpack"):
                continue  # sparse int8 under XNNPACK: rejected or wrong (see STACK)
            runners[(i, setting)] = tgp.LiteRTRunner(m["path"], num_threads=setting[1],
                                                     delegate=setting[0])
    times = {key: [] for key in runners}
    for _ in tqdm(range(args.rounds), desc="interleaved rounds"):
        for key, runner in runners.items():
            times[key].append(runner.latency_ms(sample, repeats=args.repeats, warmup=3, rounds=1))
    rows = []
    for i, m in enumerate(models):
        m = dict(m)
        del m["path"]
        m["ms"] = {f"{d}/{t}": float(np.median(times[(i, (d, t))])) if (i, (d, t)) in times
                   else float("nan") for d, t in SETTINGS}
        rows.append(m)
    dense = {(r["model"], r["quantization"]): r for r in rows if r["method"] == "dense"}
    for r in rows:
        base = dense[(r["model"], "float32")]
        same = dense[(r["model"], r["quantization"])]
        for threads in (1, 4):
            own = {d: r["ms"][f"{d}/{threads}"] for d in ("xnnpack", "none")
                   if np.isfinite(r["ms"][f"{d}/{threads}"])}
            r[f"best_{threads}"] = min(own, key=own.get)
            mine = own[r[f"best_{threads}"]]
            for name, ref in (("speedup", base), ("speedup_same_quant", same)):
                r[f"{name}_{threads}"] = min(
                    v for k, v in ref["ms"].items() if k.endswith(f"/{threads}")) / mine
        r["file_ratio"] = base["file_bytes"] / r["file_bytes"]
    lines = [
        "| model | weights | pruning | sparsity | kept units | .tflite KiB (x smaller) | "
        "ms xnnpack/1 | ms builtin/1 | ms xnnpack/4 | ms builtin/4 | speed-up, 1 thread | "
        "speed-up, 4 threads | vs dense of the same weights, 1 / 4 threads | "
        "export: encoding, delegate |",
        "|---|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        kept = ", ".join(f"{after}" for before, after in r["shrunk"].values()) or "-"
        lines.append(
            f"| {r['model']} | {r['quantization']} | {r['method']} | {r['reached']:.2f} | "
            f"{kept} | {r['file_bytes'] / 1024:,.0f} ({r['file_ratio']:.1f}x) | "
            + " | ".join("-" if not np.isfinite(r["ms"][f"{d}/{t}"])
                         else f"{r['ms'][f'{d}/{t}']:.3f}" for d, t in SETTINGS)
            + f" | {r['speedup_1']:.2f}x ({r['best_1']}) | {r['speedup_4']:.2f}x "
            f"({r['best_4']}) | {r['speedup_same_quant_1']:.2f}x / "
            f"{r['speedup_same_quant_4']:.2f}x | {r['encoding']}, {r['recommended']} |"
        )
    table = "\n".join(lines)
    print(table)
    prefix = os.path.join(args.output_dir, "tflite_goal" + ("_quick" if args.quick else ""))
    common.save_results(
        prefix,
        "python -m benchmarks.tflite_bench --goal" + (" --quick" if args.quick else ""),
        vars(args) | {"timesteps": TIMESTEPS, "features": FEATURES, "batch": 1,
                      "cpu_count": os.cpu_count()},
        rows,
        f"Batch 1, sequence {TIMESTEPS}, {FEATURES} features; median ms over "
        f"{args.rounds} interleaved rounds of {args.repeats} runs, every model under every "
        "setting (XNNPACK or builtin kernels, 1 or 4 threads; sparse int8 builtin only: "
        "XNNPACK rejects or miscomputes it). Speed-up: the dense float32 model's fastest "
        "setting at that thread count over the pruned model's fastest (named); then the "
        "same against the dense model with the same weights (float32 or dynamic int8). "
        "'units': `GradualPruning(granularity=\"units\")`, the dead units removed "
        "at export (a smaller dense layer; kept units listed). 'blocks of 4': "
        "`block_size=4`, stored block-sparse. 'groups of 32' / 'of 128': "
        "`block_size=(1, 32)` / `(1, 128)` (one input read by 32 or 128 consecutive "
        "outputs), exported with `encoding=\"auto\"`, which picks the gathered form "
        "(`gathering`) where it is at least 5% faster (the encoding column says which "
        f"it wrote). This host has {os.cpu_count()} cores: "
        "4 threads oversubscribe it.\n\n" + table,
    )
    plot_goal(prefix + ".png", rows)
    print(f"saved {prefix}.json, .md and .png")


def plot_goal(path, rows):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for ax, threads in zip(axes, (1, 4)):
        for model in sorted({r["model"] for r in rows}):
            for method, style in (("blocks of 4", "o--"), ("groups of 32", "^-."),
                                  ("groups of 128", "v-."), ("units", "s-")):
                got = sorted((r["sparsity"], r[f"speedup_{threads}"]) for r in rows
                             if r["model"] == model and r["method"] == method
                             and r["quantization"] == "float32")
                if got:
                    ax.plot(*zip(*got), style, label=f"{model}, {method}")
        ax.axhline(1.0, color="gray", linestyle=":")
        ax.set(xlabel="target sparsity", title=f"{threads} thread(s)", yscale="log")
    axes[0].set_ylabel("speed-up over the fastest dense export")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    files.save_figure(fig, path)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--goal", action="store_true",
                        help="the speed goal's table: LSTM/GRU(512), blocks vs units, "
                             "every interpreter setting, 1 and 4 threads")
    parser.add_argument("--output-dir", default=os.path.join("benchmarks", "results"))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.repeats = 3, 10
    if args.goal:
        return goal(args)
    folder = tempfile.mkdtemp(prefix="tfgp_bench_")
    cases = grid(args.quick)
    dense_cache, rows = {}, []
    for kind, units, sparsity, block, quant in tqdm(cases, desc="export + measure"):
        key = (kind, units, quant)
        if key not in dense_cache:
            dense_cache[key] = export(build(kind, units), folder,
                                      f"dense_{kind}{units}_{quant}", quant)
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
    common.save_results(
        prefix,
        "python -m benchmarks.tflite_bench" + (" --quick" if args.quick else ""),
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
