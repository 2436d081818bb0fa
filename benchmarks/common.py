"""The code every benchmark shares: what each saves beside its figures, the
pruning methods they compare (`pruning_schedule`), and the resumable loop
that trains their rows one by one (`run_and_publish`)."""

import json
import os
import platform
import shlex
import subprocess
import sys

from tf_gradual_prune import files

#: The repository's root, from where `python -m benchmarks.<name>` runs.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

def software_versions():
    import keras
    import tensorflow as tf

    import tf_gradual_prune

    return {
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "tf_gradual_prune": tf_gradual_prune.__version__,
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "cpu_features": cpu_features(),
    }


#: Instruction-set extensions that decide which oneDNN kernels TensorFlow
#: runs, and so the last bits of a training run's floating-point results.
KERNEL_FEATURES = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile")


def cpu_features():
    """The `KERNEL_FEATURES` this CPU has, from /proc/cpuinfo (None where
    there is no such file)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f
                          if line.startswith("flags")), [])
    except OSError:
        return None
    return [name for name in KERNEL_FEATURES if name in flags]


def hosts_note(rows):
    """Markdown lines that say which rows were trained on CPUs with other
    `KERNEL_FEATURES` (empty when all rows share them): their last bits
    differ, and their training times do not compare."""
    groups = {}
    for row in rows:
        features = "/".join(row.get("cpu_features") or ["unknown"])
        groups.setdefault(features, {}).setdefault(row["name"], []).append(row.get("seed"))
    if len(groups) < 2:
        return []
    most = max(groups, key=lambda k: sum(len(v) for v in groups[k].values()))
    parts = [f"{features}: " + ", ".join(
        f"{name} (seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, sorted(seeds)))})"
        for name, seeds in names.items())
        for features, names in groups.items() if features != most]
    return ["", f"Trained on CPUs with other kernels than the rest ({most}), so their last "
            f"bits differ and their training times do not compare: {'; '.join(parts)}."]


#: Options that decide which saved rows a run reuses, not what a row measures.
RUN_CONTROL = ("--resume", "--resume-from")


def command_line(script, argv):
    """The command that reproduces a script's figures, for its results file.

    `script` is the file name in benchmarks/ (`python -m benchmarks.<its
    stem>` runs it from the repository's root); `argv` its arguments without
    the run-control options (`RUN_CONTROL`, with their values): a resumed
    run's rows are those of the same command run from scratch.
    """
    kept, dropping = [], False
    for arg in argv:
        if arg.startswith("--"):
            dropping = arg.split("=")[0] in RUN_CONTROL
        if not dropping:
            kept.append(arg)
    module = "benchmarks." + os.path.splitext(script)[0]
    return " ".join(["python", "-m", module] + [shlex.quote(a) for a in kept])


def save_results(prefix, command, settings, rows, markdown):
    """Writes `prefix.json` (rows, settings, versions) and `prefix.md`."""
    os.makedirs(os.path.dirname(os.path.abspath(prefix)), exist_ok=True)
    meta = {
        "command": command,
        "settings": settings,
        "versions": software_versions(),
        "rows": rows,
    }
    files.write_atomic(prefix + ".json", json.dumps(meta, indent=2))
    files.write_atomic(prefix + ".md", markdown + "\n")


#: The methods whose schedule is `for_training`'s: their rows record the
#: `default_recipe()` they were trained with.
RECIPE_METHODS = ("default", "units", "groups")


def default_recipe():
    """What the library's default (`for_training` with nothing else set)
    means today; saved with every `"default"` row (its `"recipe"`), so that
    `--resume` retrains those rows once the default changes."""
    from tf_gradual_prune import schedules

    recipe = {"timing": list(schedules.DEFAULT_TIMING), "updates": schedules.DEFAULT_UPDATES,
              "calibration": schedules.DEFAULT_CALIBRATION,
              "allocation": schedules.DEFAULT_ALLOCATION}
    # Named only when on: rows from before step scaling existed stay valid.
    if schedules.DEFAULT_STEP_SCALE is not None:
        recipe["step_scale"] = schedules.DEFAULT_STEP_SCALE
    return recipe


def partial_note(pending):
    """The table's closing lines while `pending` rows (tuples whose first
    item is the row's name) are still to train."""
    if not pending:
        return []
    names = sorted({name for name, *_ in pending})
    return ["", f"**Partial run**: {len(pending)} runs not done yet ({', '.join(names)}); "
            "finish them with `--resume`."]


def finished_rows(path, settings, same_run, key=lambda row: row["name"]):
    """Rows saved at `path` by an earlier run, for `--resume`.

    Returns `{key(row): row}` when every setting named in `same_run` (the
    ones that change what a row measures) equals `settings`' value, else
    `{}` (and says why). Rows of the methods built on the default recipe
    (`RECIPE_METHODS`) trained with another `default_recipe()` are left out
    (and named).
    """
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        earlier = json.load(f)
    changed = [name for name in same_run if earlier["settings"].get(name) != settings[name]]
    if changed:
        print(f"not resuming from {path}: it was run with other {', '.join(changed)}",
              flush=True)
        return {}
    recipe = default_recipe()
    stale = [row for row in earlier["rows"]
             if row.get("method") in RECIPE_METHODS and row.get("recipe") != recipe]
    for row in stale:
        print(f"not reusing {row['name']!r} (seed {row.get('seed')}) from {path}: it was "
              f"trained with another default recipe ({row.get('recipe')})", flush=True)
    return {key(row): row for row in earlier["rows"] if not any(row is r for r in stale)}


def in_subprocess(module, function, *args):
    """Runs `benchmarks.<module>.function(*args)` in a fresh Python.

    For code that must not share a process with this one (tfmot on
    tf_keras). Returns the function's JSON-serialisable result. What the
    function prints (e.g. Keras' progress) is passed on as it comes; its
    standard error is shown only if it fails.
    """
    import tempfile

    code = (
        "import json, sys; sys.path.insert(0, sys.argv[1]); "
        f"from benchmarks import {module} as m; "
        f"print('RESULT' + json.dumps(m.{function}(*json.loads(sys.argv[2]))))"
    )
    result = None
    # Standard error goes to a file: a pipe nobody reads could fill and stall the child.
    with tempfile.TemporaryFile("w+") as errors:
        with subprocess.Popen([sys.executable, "-c", code, ROOT, json.dumps(args)],
                              stdout=subprocess.PIPE, stderr=errors, text=True) as child:
            for line in child.stdout:
                if line.startswith("RESULT"):
                    result = json.loads(line[len("RESULT"):])
                else:
                    print(line, end="", flush=True)
        if result is not None:
            return result
        errors.seek(0)
        raise RuntimeError(f"{module}.{function}{tuple(args)} failed:\n{errors.read()[-3000:]}")


def keep_unreached(rows, earlier, key=lambda row: row["name"]):
    """`rows` plus the `earlier` rows (from `finished_rows`) not among them.

    What a resumed run saves before it is through: rows it has not reached
    yet stay in the file, so stopping it again loses nothing.
    """
    done = {key(row) for row in rows}
    return rows + [row for k, row in earlier.items() if k not in done]


class StepSparsity:
    """A `step -> (should_prune, sparsity)` schedule that prunes each matrix
    to `sparsity` at the given steps only ({step: sparsity}); with the
    callback's monotone masks, the pruned weights stay zero afterwards."""

    def __init__(self, points):
        self.points = {int(k): float(v) for k, v in points.items()}

    def __call__(self, step):
        sparsity = self.points.get(int(step))
        return sparsity is not None, 0.0 if sparsity is None else sparsity


def pruning_schedule(method, epochs, steps, target, frequency=20, rounds=3, timing=None,
                     ramp_slope_ratio=None, calibration=None, options=None):
    """The schedule of one of the speech benchmark's `METHODS` (see
    `speech_bench.run_one`), the definitions every benchmark shares, for `epochs` of
    `steps` optimizer steps; None for `"dense"`. `options` (a dict of
    `RampedThresholdSchedule` arguments, e.g. `{"regrow": True}`) apply to
    `"default"` only: its schedule with them changed."""
    import tensorflow_model_optimization as tfmot

    import tf_gradual_prune as tgp

    total = epochs * steps
    if method in RECIPE_METHODS:
        schedule = tgp.RampedThresholdSchedule.for_training(epochs, steps, target_sparsity=target)
        if options:
            schedule = tgp.RampedThresholdSchedule.from_config(
                dict(schedule.get_config(), **options))
        return schedule
    if method == "ramped" and timing is None:
        return tgp.RampedThresholdSchedule.paper(
            epochs, steps, target_sparsity=target, frequency=frequency,
            ramp_slope_ratio=ramp_slope_ratio, calibration=calibration or "track")
    if method == "ramped":
        return tgp.RampedThresholdSchedule(
            *(int(round(f * total)) for f in timing), frequency=frequency,
            target_sparsity=target, ramp_slope_ratio=ramp_slope_ratio,
            calibration=calibration or "track")
    if method == "agp":
        return tfmot.sparsity.keras.PolynomialDecay(
            0.0, target, begin_step=steps, end_step=total // 2, power=3, frequency=frequency)
    if method == "one_shot":
        return StepSparsity({total // 2: target})
    if method == "prune_retrain":
        retrain = (epochs // 2) * steps
        return StepSparsity({total + i * retrain: 1 - (1 - target) ** ((i + 1) / rounds)
                                    for i in range(rounds)})
    if method == "l1":
        return StepSparsity({int(0.8 * total): target})
    return None


def row_key(row):
    """A row's identity across runs: a configuration's name and a seed."""
    return row["name"], row["seed"]


def train_rows(todo, earlier, train, publish):
    """Trains rows one after the other, saving after each; returns them.

    `todo` lists `(name, seed, config)` in run order. A row in `earlier`
    (`{row_key: row}`, from `finished_rows` for `--resume`) is reused,
    not trained. `train(config, seed)` returns a new row (its `name` and
    the `cpu_features` of the machine that trained it are set here). After
    each row, `publish(rows, pending)` gets the rows so far
    (with the `earlier` rows not reached yet) and the `todo` items still to
    train.
    """
    rows = []
    for i, (name, seed, config) in enumerate(todo):
        if (name, seed) in earlier:
            rows.append(earlier[name, seed])
            print(f"== {name}, seed {seed}: reused from the saved results", flush=True)
            continue
        print(f"== [{i + 1}/{len(todo)}] {name}, seed {seed}", flush=True)
        row = train(config, seed)
        row["name"] = name
        row["cpu_features"] = cpu_features()  # what decides the last bits
        rows.append(row)
        print(f"   CER {row['cer']:.4f}  sparsity {row['sparsity']:.3f}  steps "
              f"{row['steps']}  {row['train_seconds']:.0f} s", flush=True)
        pending = [t for t in todo[i + 1:] if t[:2] not in earlier]
        publish(keep_unreached(rows, earlier, key=row_key), pending)
    return rows


def run_and_publish(prefix, args, same_run, todo, train, publish):
    """The resumable loop of a benchmark script, start to end.

    With `args.resume`, the rows saved at `prefix.json` by a run with the
    same `same_run` settings are reused; the other `todo` rows are trained
    one by one (`train_rows`), and `publish(rows, pending)` saves the table
    after each and at the end. Rows of the saved file that this run did not
    select (other methods, targets or variants) stay in it. Returns the rows.
    """
    earlier = (finished_rows(prefix + ".json", vars(args), same_run, key=row_key)
               if args.resume else {})
    rows = train_rows(todo, earlier, train, publish)
    rows = keep_unreached(rows, earlier, key=row_key)
    print("\n" + publish(rows, []))
    print(f"saved {prefix}.json, .md and .png")
    return rows
