"""Assembles docs/results.md from the figures in benchmarks/results/.

    python -m benchmarks.report [--quick]

Each section is the Markdown table a benchmark script saved, with the
command that reproduces it (from its JSON) and its plot, the reading of the
figures where docs/findings/<name>.md holds one, and the spot re-run of some
of its rows where `rerun.py` saved one. Sections whose
results are missing say so instead of showing stale numbers. With
`--quick`, the same from the smoke runs' `*_quick.*` files into
docs/results_quick.md (not committed).
"""

import argparse
import glob
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

from tf_gradual_prune import files

SECTIONS = [
    ("trajectory", "Diagnosis: what each mask update cuts, and what the loss does "
                   "(speech task, validation split)"),
    ("trajectory_jackson", "Diagnosis, second validation speaker (jackson): where the "
                           "geometric ramp sits"),
    ("trajectory_george", "Diagnosis, third validation speaker (george): where the "
                          "geometric ramp sits"),
    ("trajectory_jackson_freq", "Diagnosis, jackson: how many mask updates (20, 80 "
                                "or one per step)"),
    ("trajectory_george_freq", "Diagnosis, george: how many mask updates (20, 80 or "
                               "one per step)"),
    ("trajectory_jackson_steps", "Diagnosis, jackson: the default with fan-in step "
                                 "scaling (before it became the default)"),
    ("trajectory_george_steps", "Diagnosis, george: the default with fan-in step "
                                "scaling (before it became the default)"),
    ("trajectory_theo_steps", "A speaker no default was chosen on (theo), after the "
                              "choice: the default against dense, 90%"),
    ("trajectory_lucas_check", "The default as it stands against dense twins on a speaker no "
                               "benchmark had scored (lucas), digit strings of data seed 7, 90%"),
    ("trajectory_nicolas_check", "The same on nicolas, data seed 11"),
    ("speech", "Speech: FSDD digit strings, held-out speaker (CTC, CER)"),
    ("speech_masked", "Speech on the masked recogniser with the library's default: "
                      "larger and sparse against smaller and dense"),
    ("compare", "Pruning methods side by side (speech task)"),
    ("compare_1000", "Pruning methods side by side at a 1,000-step budget (speech task)"),
    ("compare_masked", "Pruning methods side by side on the masked recogniser (padding "
                       "skipped by the recurrent layers; speech task)"),
    ("classify", "Beyond FSDD: JapaneseVowels sequence classification, every method"),
    ("classify_ItalyPowerDemand", "Allocation: ItalyPowerDemand, one input feature "
                                  "(validation for the default's allocation)"),
    ("classify_BasicMotions", "BasicMotions (six motion sensors), 60 steps: the default "
                              "with and without step scaling, one-shot and L1"),
    ("classify_BasicMotions_150", "BasicMotions at 98%, 300 steps"),
    ("classify_GunPoint_150", "GunPoint (one input feature) at 98%, 450 steps"),
    ("classify_GunPoint_150_clip", "GunPoint at 98%, 450 steps, gradients clipped to norm 1, "
                                   "every method and a dense model with as many weights"),
    ("classify_ItalyPowerDemand_lr1e-2", "ItalyPowerDemand with Adam at 1e-2 (diagnosis: "
                                         "the pruned model learns too slowly at 1e-3)"),
    ("classify_BasicMotions_lr1e-2", "BasicMotions with Adam at 1e-2 (the same diagnosis)"),
    ("classify_ArrowHead_150", "After the choice, a problem no default was chosen on: "
                               "ArrowHead (one input feature) at 98%, 300 steps"),
    ("classify_PickupGestureWiimoteZ_100", "After the choice: PickupGestureWiimoteZ (one "
                                           "input feature) at 98%, 300 steps"),
    ("classify_OSULeaf_40", "After the choice: OSULeaf (one input feature) at 98%, 400 steps"),
    ("classify_ArrowHead_450", "ArrowHead at 98% with three times the steps (900)"),
    ("classify_PickupGestureWiimoteZ_300", "PickupGestureWiimoteZ at 98% with three times "
                                           "the steps (900)"),
    ("sensitivity", "Sensitivity of the ramped threshold to its hyperparameters (speech task)"),
    ("sensitivity_default", "Sensitivity of the default to its hyperparameters (speech task, "
                            "one at a time around for_training's setting)"),
    ("lm", "Beyond speech: Penn Treebank word-level language model (perplexity)"),
    ("lm_seeds", "Penn Treebank over three seeds: the default, one-shot, L1 and the dense "
                 "models, each seed against its own dense model"),
    ("lm_seed1", "Penn Treebank, seed 1 (one of the runs lm_seeds puts together)"),
    ("lm_seed2", "Penn Treebank, seed 2 (one of the runs lm_seeds puts together)"),
    ("lm_13", "Penn Treebank at Zaremba et al.'s full budget, 13 epochs: dense and the "
              "default at 90%"),
    ("lm_steps", "Penn Treebank: the default with fan-in step scaling, seed 0 "
                 "(validation experiment before it became the default)"),
    ("lm_timing_late", "Penn Treebank: the default with a later timing, 40% / 55% / 85% "
                       "(validation experiment)"),
    ("calibration", "Calibration: does the ramp land on the target sparsity?"),
    ("tflite", "TFLite: size and latency of sparse exports"),
    ("tflite_goal", "TFLite speed goal: blocks of weights, output groups (gathered) and "
                    "whole units, every interpreter setting"),
    ("training", "Training: what pruning costs per step"),
    ("training_focus", "Training, 512 units, 15 rounds of 30 steps on a quiet host"),
    ("training_focus_steps", "Training, 512 units, with the default's step scaling"),
    ("training_jax", "Training on JAX: what pruning costs per step (masks in the "
                     "optimizer's state)"),
    ("training_jax_steps", "Training on JAX, 512 units, with the default's step scaling"),
    ("tuning", "Tuning the schedule with keras-tuner: what it costs and what it buys"),
    ("tuning_pareto", "A size-aware search: the smallest .tflite export above an accuracy "
                      "floor, and the Pareto front"),
]


def section(name, title, suffix=""):
    """The Markdown lines of one benchmark's section; `suffix` picks the
    files (`"_quick"`: the smoke run's)."""
    results = os.path.join(HERE, "results")
    lines = [f"## {title}", ""]
    stem = name + suffix
    md, meta = os.path.join(results, f"{stem}.md"), os.path.join(results, f"{stem}.json")
    if not os.path.exists(md):
        quick = " --quick" if suffix else ""
        return lines + [f"Not run yet: `python -m benchmarks.run{quick} {name}`.", ""]
    if os.path.exists(meta):
        with open(meta) as f:
            info = json.load(f)
        versions = info.get("versions", {})
        features = versions.get("cpu_features")
        cpus = f"{versions.get('cpus', '?')} CPUs" + (
            f" with {', '.join(features)}" if features else "")
        lines += [f"Command: `{info.get('command', '')}` "
                  f"(TensorFlow {versions.get('tensorflow', '?')}, Keras "
                  f"{versions.get('keras', '?')}, {cpus}).", ""]
    with open(md) as f:
        lines += [f.read().strip(), ""]
    pngs = [f"{stem}.png", f"{stem}_sensitivity.png"] + sorted(
        os.path.basename(p) for p in glob.glob(os.path.join(results, f"{stem}_*_sensitivity.png")))
    for png in pngs:
        if os.path.exists(os.path.join(results, png)):
            lines += [f"![{name}](../benchmarks/results/{png})", ""]
    findings = os.path.join(ROOT, "docs", "findings", f"{name}.md")
    if not suffix and os.path.exists(findings):
        # What the figures say, written by hand: docs/findings/<name>.md.
        with open(findings) as f:
            lines += [f.read().strip(), ""]
    for rerun in sorted(glob.glob(os.path.join(results, f"{stem}_rerun*.md"))):
        with open(rerun[:-len(".md")] + ".json") as f:
            command = json.load(f)["command"]
        with open(rerun) as f:
            lines += ["### Spot re-run", "", f"Command: `{command}`.", "", f.read().strip(), ""]
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="from the smoke runs' files, into docs/results_quick.md")
    args = parser.parse_args(argv)
    suffix = "_quick" if args.quick else ""
    lines = ["# Results" + (" of the smoke runs (--quick: not figures to quote)"
                            if args.quick else ""), "",
             f"Generated by `python -m benchmarks.report{' --quick' if args.quick else ''}` "
             "from `benchmarks/results/`; each section names the command that measured it. "
             "Raw figures, settings, seeds and software versions are in the JSON file "
             "beside each table.", ""]
    for name, title in SECTIONS:
        lines += section(name, title, suffix)
    path = os.path.join(ROOT, "docs", f"results{suffix}.md")
    files.write_atomic(path, "\n".join(lines))
    print("wrote", path)


if __name__ == "__main__":
    sys.exit(main())
