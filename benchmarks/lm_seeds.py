"""Penn Treebank over several seeds: the `lm_bench.py` runs of each seed side by side.

    python -m benchmarks.lm_bench --data-dir ../shared/data --seed 1 --name lm_seed1 \
        --methods default one_shot --targets 0.9 --large-units 0 --resume
    python -m benchmarks.lm_seeds [--runs lm lm_seed1 lm_seed2] [--name lm_seeds]

`lm_bench.py` trains one seed per run; this script reads the saved runs
(`benchmarks/results/<run>.json`, one seed each, every other setting that
changes what a row measures equal) and writes `<name>.{json,md,png}`: per
model, the validation and test perplexity as mean ± std over the seeds that
have it, every seed's test perplexity, and the cost against the dense model
*of the same seed* (mean of the per-seed ratios). Trains nothing.
"""

import argparse
import json
import os
import sys

import numpy as np

if not __package__:  # run as a file (python benchmarks/<name>.py): the package from the root
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import common, lm_bench

HERE = os.path.dirname(os.path.abspath(__file__))
#: The settings that may differ between the runs of one table.
PER_RUN = ("seed", "large_units", "small_units")


def load_runs(names, folder=os.path.join(HERE, "results")):
    """`[(settings, rows)]` of the runs `names` saved in `folder`, one seed
    each; ValueError when two runs share a seed or differ in what they
    measure."""
    runs, seeds = [], {}
    for name in names:
        path = os.path.join(folder, name + ".json")
        if not os.path.exists(path):
            raise ValueError(f"`--runs` names a run with no results file: {name!r} "
                             f"({path} does not exist)")
        with open(path) as f:
            saved = json.load(f)
        settings = saved["settings"]
        if settings["seed"] in seeds:
            raise ValueError(f"`--runs` has two runs of seed {settings['seed']}: "
                             f"{seeds[settings['seed']]!r} and {name!r}")
        seeds[settings["seed"]] = name
        if runs:
            first = runs[0][0]
            changed = [key for key in lm_bench.SAME_RUN
                       if key not in PER_RUN and settings.get(key) != first.get(key)]
            if changed:
                raise ValueError(f"`--runs`: {name!r} was run with other {', '.join(changed)} "
                                 f"than {names[0]!r}; the seeds of one table must differ "
                                 "in nothing else")
        runs.append((settings, saved["rows"]))
    return runs


def summarise(runs):
    """One entry per model name (in the order of first appearance): its rows
    by seed, mean ± std perplexities and the cost against each seed's dense
    row (the run's first)."""
    order, by_name = [], {}
    for settings, rows in runs:
        dense = rows[0]
        for row in rows:
            if row["name"] not in by_name:
                order.append(row["name"])
                by_name[row["name"]] = []
            by_name[row["name"]].append(dict(
                row, cost=row["test_perplexity"] / dense["test_perplexity"] - 1))
    summary = []
    for name in order:
        group = sorted(by_name[name], key=lambda r: r["seed"])
        entry = {"name": name, "method": group[0]["method"], "seeds": [r["seed"] for r in group],
                 "sparsity": float(np.mean([r["sparsity"] for r in group])),
                 "nonzeros": int(np.mean([r["nonzeros"] for r in group]))}
        shares = [r["matrices"] for r in group if r.get("matrices")]
        if shares:
            entry["matrices"] = {m: float(np.mean([s[m] for s in shares])) for m in shares[0]}
        for key in ("valid_perplexity", "test_perplexity", "cost"):
            values = np.array([r[key] for r in group])
            entry[key] = {"mean": float(values.mean()),
                          "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
                          "per_seed": [float(v) for v in values]}
        summary.append(entry)
    return summary


def table(summary, runs, names):
    settings = runs[0][0]
    seeds = sorted(s["seed"] for s, _ in runs)
    lines = [
        f"Penn Treebank, 2-layer LSTM({settings['units']}), Zaremba SGD, "
        f"{settings['epochs']} epochs, the runs {', '.join(names)} (seeds "
        f"{', '.join(map(str, seeds))}); mean ± std over the seeds a model was trained "
        "on. Cost: test perplexity against the dense model of the same seed, mean of "
        "the per-seed ratios. Pruned: LSTM kernels + output layer.",
        "",
        "| model | seeds | valid ppl | test ppl | test ppl per seed | cost vs dense "
        "| cost per seed | sparsity | non-zeros |",
        "|---|---:|---:|---:|---|---:|---|---:|---:|",
    ]
    for s in summary:
        valid, test, cost = s["valid_perplexity"], s["test_perplexity"], s["cost"]
        lines.append(
            f"| {s['name']} | {len(s['seeds'])} | {valid['mean']:.1f} ± {valid['std']:.1f} | "
            f"{test['mean']:.1f} ± {test['std']:.1f} | "
            f"{' / '.join(f'{v:.1f}' for v in test['per_seed'])} | "
            f"{cost['mean']:+.1%} ± {cost['std']:.1%} | "
            f"{' / '.join(f'{v:+.1%}' for v in cost['per_seed'])} | {s['sparsity']:.3f} | "
            f"{s['nonzeros']:,} |")
    allocated = [s for s in summary if s.get("matrices") and s["sparsity"] > 0]
    if allocated:
        lines += ["", "Where the zeros lie (sparsity of each matrix, mean over the seeds "
                  "that recorded it):", ""]
        for s in allocated:
            lines.append(f"- {s['name']}: " + ", ".join(
                f"{name} {share:.3f}" for name, share in s["matrices"].items()))
    lines += common.hosts_note([row for _, rows in runs for row in rows])
    return "\n".join(lines)


def plot(path, summary, target=0.05):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tf_gradual_prune import files

    shown = [s for s in summary if s["method"] != "dense" or s is not summary[0]]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for i, s in enumerate(shown):
        costs = np.array(s["cost"]["per_seed"]) * 100
        ax.plot(np.full(len(costs), i), costs, "o", alpha=0.6, color="C0")
        ax.plot([i - 0.25, i + 0.25], [costs.mean()] * 2, color="C3", lw=2)
    ax.axhline(0, color="gray", ls="--", lw=1)
    ax.axhline(target * 100, color="C2", ls=":", label=f"target +{target:.0%}")
    ax.set_xticks(range(len(shown)), [s["name"] for s in shown], rotation=30, ha="right",
                  fontsize=8)
    ax.set(ylabel="test perplexity vs same-seed dense (%)",
           title="PTB: cost of each model per seed (dots) and mean (bar)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    files.save_figure(fig, path)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", nargs="+", default=["lm", "lm_seed1", "lm_seed2"],
                        help="results files (names in benchmarks/results, one seed each)")
    parser.add_argument("--name", default="lm_seeds",
                        help="results file name in benchmarks/results")
    args = parser.parse_args(argv)
    try:
        runs = load_runs(args.runs)
    except ValueError as error:
        parser.error(str(error))
    summary = summarise(runs)
    markdown = table(summary, runs, args.runs)
    print(markdown)
    prefix = os.path.join(HERE, "results", args.name)
    common.save_results(prefix, common.command_line("lm_seeds.py", argv or sys.argv[1:]),
                        vars(args), summary, markdown)
    plot(prefix + ".png", summary)
    print(f"saved {prefix}.json, .md and .png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
