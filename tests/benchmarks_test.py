"""Tests for the benchmark scripts: rerun.py (the spot re-run of saved
comparison rows) and sensitivity.py (the hyperparameter sweep)."""

import json
import os
import sys

import pytest
from conftest import REPO

sys.path.insert(0, REPO)  # the benchmarks package, as `python -m benchmarks.<name>` finds it
from benchmarks import common, compare, rerun, sensitivity, speech_bench

# A comparison small enough to train in seconds, on the embedded synthetic digits.
SETTINGS = {"data_dir": None, "seeds": [0], "targets": [0.5], "headline": 0.5,
            "methods": ["ramped"], "no_tfmot": True, "epochs": 4, "units": 8,
            "small_units": 4, "train_size": 16, "test_size": 8, "max_digits": 2,
            "frequency": 1, "quick": True, "resume": False}


@pytest.mark.parametrize("no_tfmot", [False, True])
def test_compare_runs_tfmot_agp_at_every_target_unless_told_not_to(no_tfmot):
    import argparse

    args = argparse.Namespace(**dict(SETTINGS, targets=[0.8, 0.9], headline=0.9,
                                     seeds=[0, 1], no_tfmot=no_tfmot))
    names = [(c[0], c[-1]) for c in compare.configs(args)]
    tfmot = sorted(n for n in names if n[0].startswith("tfmot_agp"))
    assert tfmot == ([] if no_tfmot else
                     [("tfmot_agp 80%", 0), ("tfmot_agp 80%", 1),
                      ("tfmot_agp 90%", 0), ("tfmot_agp 90%", 1)])
    # The headline rows of every seed come first.
    assert names.index(("ramped 90%", 1)) < names.index(("ramped 80%", 0))


def test_the_groups_method_prunes_whole_output_groups(monkeypatch):
    import keras
    import numpy as np

    from tf_gradual_prune import models

    args = compare.argparse.Namespace(**dict(compare.LATER_SETTINGS, **SETTINGS))
    task = speech_bench.SpeechTask(None, args.train_size, args.test_size, args.max_digits, 32)
    trained, score = [], models.error_rates
    monkeypatch.setattr(models, "error_rates",
                        lambda model, *a, **k: trained.append(model) or score(model, *a, **k))
    row = compare.run_row(task, args, 16, "groups", 0.5, seed=0)
    assert row["method"] == "groups" and row["block_size"] == [1, 32]
    assert row["recipe"] == common.default_recipe()
    kernels = [keras.ops.convert_to_numpy(cell.recurrent_kernel)  # (16, 48) each
               for layer in trained[0].layers if isinstance(layer, keras.layers.Bidirectional)
               for cell in (layer.forward_layer.cell, layer.backward_layer.cell)]
    assert kernels and any(np.any(k == 0) for k in kernels)
    for kernel in kernels:
        for group in (kernel[:, :32] == 0, kernel[:, 32:] == 0):  # one input, 32 outputs
            assert np.all(group.all(axis=1) | ~group.any(axis=1))


def test_the_groups_method_refuses_other_blocks():
    args = compare.argparse.Namespace(**dict(compare.LATER_SETTINGS, **SETTINGS))
    task = speech_bench.SpeechTask(None, args.train_size, args.test_size, args.max_digits, 32)
    with pytest.raises(ValueError, match=r"block_size.*\(1, 32\).*Received: block_size=4"):
        speech_bench.run_one(task, 16, 2, 0, 0.5, block_size=4, method="groups")


def write_results(path, rows):
    with open(path, "w") as f:
        json.dump({"command": "compare.py (test)", "settings": SETTINGS,
                   "versions": {"tf_gradual_prune": "test"}, "rows": rows}, f)
    return str(path)


def saved_row(name="ramped 50%", seed=0, cer=0.5, loss=10.0):
    return {"name": name, "seed": seed, "cer": cer, "loss": loss}


def error_of(argv, capsys):
    with pytest.raises(SystemExit) as raised:
        rerun.main(argv)
    assert raised.value.code == 2
    return capsys.readouterr().err


def test_compare_refuses_mask_padding_with_tfmot(capsys):
    with pytest.raises(SystemExit) as raised:
        compare.main(["--mask-padding", "--quick"])
    assert raised.value.code == 2
    assert "--mask-padding needs --no-tfmot" in capsys.readouterr().err


def test_missing_results_file_is_named(tmp_path, capsys):
    path = str(tmp_path / "nothing.json")
    err = error_of(["--results", path, "--rows", "ramped 50%"], capsys)
    assert f"--results {path} does not exist" in err


def test_unknown_row_lists_the_valid_rows(tmp_path, capsys):
    path = write_results(tmp_path / "compare.json", [saved_row()])
    err = error_of(["--results", path, "--rows", "ramped 99%"], capsys)
    assert "--rows 'ramped 99%' --seed 0 is not a row" in err
    assert "'dense GRU(8)'" in err and "'ramped 50%'" in err
    assert "seeds [0]" in err


def test_unknown_seed_is_rejected(tmp_path, capsys):
    path = write_results(tmp_path / "compare.json", [saved_row()])
    err = error_of(["--results", path, "--rows", "ramped 50%", "--seed", "3"], capsys)
    assert "--seed 3 is not a row" in err


def test_row_without_a_saved_result_asks_for_resume(tmp_path, capsys):
    path = write_results(tmp_path / "compare.json", [saved_row()])
    err = error_of(["--results", path, "--rows", "dense GRU(4)"], capsys)
    assert "'dense GRU(4)' --seed 0 has no saved result" in err
    assert "--resume" in err


@pytest.mark.parametrize("flag", ["--tolerance", "--loss-tolerance"])
def test_negative_tolerance_is_rejected(tmp_path, capsys, flag):
    path = write_results(tmp_path / "compare.json", [saved_row()])
    err = error_of(["--results", path, "--rows", "ramped 50%", flag, "-0.1"], capsys)
    assert f"{flag} must be >= 0. Received: {flag} -0.1" in err


@pytest.mark.slow
def test_rerun_reproduces_a_row_and_catches_a_changed_one(tmp_path):
    # Save two rows the way compare.py trains them, then re-run them in the
    # opposite order: the same CER and loss although the order changed.
    args = compare.argparse.Namespace(**dict(compare.LATER_SETTINGS, **SETTINGS))
    task = speech_bench.SpeechTask(None, args.train_size, args.test_size,
                                   args.max_digits, 32)
    names = {"ramped 50%": ("ramped", 0.5), "dense GRU(8)": ("dense", None)}
    rows = []
    for name, (method, target) in names.items():
        row = compare.run_row(task, args, args.units, method, target, seed=0)
        row["name"] = name
        rows.append(row)
    rows[0]["cpu_features"] = ["avx2", "fma"]  # what train_rows records
    path = write_results(tmp_path / "compare.json", rows)

    assert rerun.main(["--results", path, "--rows", "dense GRU(8)", "ramped 50%"]) == 0
    with open(tmp_path / "compare_rerun.json") as f:
        report = json.load(f)["rows"]
    assert [r["name"] for r in report] == ["dense GRU(8)", "ramped 50%"]
    assert all(r["cer"] == r["saved_cer"] and r["loss"] == r["saved_loss"] for r in report)
    markdown = (tmp_path / "compare_rerun.md").read_text()
    assert "| identical |" in markdown
    # Each row names the CPUs that trained it, not those that last wrote the file.
    assert [line.rsplit("|", 2)[1].strip() for line in markdown.splitlines()
            if line.startswith("| dense") or line.startswith("| ramped")] == [
        "not recorded", "avx2, fma"]

    rows[0]["loss"] *= 1.5
    path = write_results(tmp_path / "compare.json", rows)
    output = str(tmp_path / "changed")
    assert rerun.main(["--results", path, "--rows", "ramped 50%", "--output", output]) == 1
    assert "| no |" in (tmp_path / "changed.md").read_text()
    assert rerun.main(["--results", path, "--rows", "ramped 50%",
                       "--loss-tolerance", "0.5", "--output", output]) == 0
    assert "| within tolerance |" in (tmp_path / "changed.md").read_text()


@pytest.mark.parametrize("row, expected", [
    ({"difference": 0.0, "saved_loss": 1.0, "loss": 1.0}, "identical"),
    ({"difference": 0.0, "saved_loss": None, "loss": 1.0}, "identical"),
    ({"difference": 0.0, "saved_loss": 1.0, "loss": 1.0 + 1e-7}, "within tolerance"),
    ({"difference": -0.004, "saved_loss": 1.0, "loss": 1.04}, "within tolerance"),
    ({"difference": 0.004, "saved_loss": None, "loss": 3.0}, "within tolerance"),
    ({"difference": 0.011, "saved_loss": 1.0, "loss": 1.0}, "no"),
    ({"difference": 0.0, "saved_loss": 1.0, "loss": 1.06}, "no"),
    ({"difference": -0.2, "saved_loss": 2.0, "loss": 7.0}, "no"),
])
def test_verdict_separates_identical_close_and_different_rows(row, expected):
    assert rerun.verdict(row, tolerance=0.01, loss_tolerance=0.05) == expected


def test_results_record_the_cpu_features_that_pick_the_kernels():
    from benchmarks import common

    features = common.software_versions()["cpu_features"]
    if not os.path.exists("/proc/cpuinfo"):
        assert features is None
    else:
        assert set(features) <= set(common.KERNEL_FEATURES)
        assert features == [f for f in common.KERNEL_FEATURES if f in features]
    assert rerun.machine({"cpus": 2, "machine": "x86_64"}).endswith("features not recorded")
    assert rerun.machine({"cpus": 2, "machine": "x86_64", "cpu_features": ["avx2"]}) == (
        "2 x x86_64 CPUs with avx2")



def test_sensitivity_grid_moves_one_hyperparameter_at_a_time():
    grid = sensitivity.settings_grid(frequency=20)
    names = [name for name, *_ in grid]
    assert names[0] == "paper's setting" and len(set(names)) == len(names)
    assert grid[0][3] == sensitivity.PAPER
    for name, parameter, value, hyper in grid[1:]:
        moved = [k for k in hyper if hyper[k] != sensitivity.PAPER[k]]
        assert moved == [parameter], name
    assert ("frequency 10", "frequency", 10) == grid[-2][:3]
    quick = sensitivity.settings_grid(frequency=2, quick=True)
    assert [p for _, p, *_ in quick[1:]] == list(sensitivity.GRID)


@pytest.mark.parametrize("steps", [7, 37, 38, 40])
def test_sensitivity_paper_setting_is_the_comparison_ramped_row(steps):
    # The sweep's reference point must be the comparison's "ramped 90%"
    # schedule, so the two benchmarks can be read side by side.
    hyper = sensitivity.PAPER
    ours = common.pruning_schedule(
        "ramped", 10, steps, 0.9, 20,
        timing=(hyper["begin"], hyper["ramp"], hyper["end"]),
        ramp_slope_ratio=hyper["ramp_slope_ratio"])
    theirs = common.pruning_schedule("ramped", 10, steps, 0.9, 20)
    fields = ("begin_step", "ramp_step", "end_step", "frequency", "target_sparsity",
              "ratio", "calibration_mode")
    assert [getattr(ours, f) for f in fields] == [getattr(theirs, f) for f in fields]


@pytest.mark.parametrize("steps", [38, 40])
def test_sensitivity_around_the_default_changes_one_argument_of_for_training(steps):
    import tf_gradual_prune as tgp

    grid = sensitivity.settings_grid(frequency=20, around="default")
    assert grid[0][0] == "default's setting" and grid[0][3] == sensitivity.DEFAULT
    total = 10 * steps
    # The base is for_training itself: the same schedule, no argument changed.
    assert sensitivity.default_options(sensitivity.DEFAULT, total) == {}
    default = tgp.RampedThresholdSchedule.for_training(10, steps, target_sparsity=0.9)
    config = default.get_config()
    changed = {}
    for name, parameter, value, hyper in grid[1:]:
        assert [k for k in hyper if hyper[k] != sensitivity.DEFAULT[k]] == [parameter], name
        options = sensitivity.default_options(hyper, total)
        changed[name] = options
        schedule = common.pruning_schedule("default", 10, steps, 0.9, options=options)
        assert schedule.get_config() == dict(config, **options)
    # A moved begin or end keeps about 80 updates in the new window.
    begin = int(round(0.2 * total))
    assert dict(changed["begin 0.2"], frequency=None) == {"begin_step": begin, "frequency": None}
    assert changed["begin 0.2"].get("frequency", default.frequency) == \
        tgp.schedules.update_frequency(begin, default.end_step, 80)
    assert changed["updates 20"] == {"frequency": (default.end_step - default.begin_step) // 20}
    assert changed["updates 160"].get("frequency", default.frequency) == 1
    assert changed["step_scale none"] == {"step_scale": None}
    assert changed["allocation uniform"] == {"allocation": "uniform"}
    assert changed["ramp_slope_ratio 2"] == {"ramp_slope_ratio": 2.0}


@pytest.mark.parametrize("argv, message", [
    (["--target", "1.5"], "--target must be in (0, 1). Received: --target 1.5"),
    (["--epochs", "4"], "--epochs must be >= 10"),
])
def test_sensitivity_rejects_bad_arguments(capsys, argv, message):
    with pytest.raises(SystemExit) as raised:
        sensitivity.main(argv)
    assert raised.value.code == 2
    assert message in capsys.readouterr().err


def test_command_line_quotes_arguments_and_drops_run_control():
    from benchmarks import common

    argv = ["--rows", "ramped 90%", "dense GRU(64)", "--seed", "1", "--resume"]
    command = common.command_line("rerun.py", argv)
    assert command == "python -m benchmarks.rerun --rows 'ramped 90%' 'dense GRU(64)' --seed 1"


def test_resume_retrains_default_rows_of_another_recipe(tmp_path, capsys):
    from benchmarks import common

    recipe = common.default_recipe()
    rows = [{"name": "dense", "method": "dense", "seed": 0},
            {"name": "default 90%", "method": "default", "seed": 0, "recipe": recipe},
            {"name": "default 80%", "method": "default", "seed": 0,
             "recipe": dict(recipe, timing=[0.2, 0.4, 0.7])},
            {"name": "default 95%", "method": "default", "seed": 0},
            {"name": "units 90%", "method": "units", "seed": 0,
             "recipe": dict(recipe, updates=20)}]
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"settings": {"epochs": 10}, "rows": rows}))
    kept = common.finished_rows(str(path), {"epochs": 10}, ("epochs",))
    assert sorted(kept) == ["default 90%", "dense"]
    out = capsys.readouterr().out
    assert "'default 80%'" in out and "'default 95%'" in out and "0.2, 0.4, 0.7" in out
    assert "'units 90%'" in out and "'updates': 20" in out
    assert common.finished_rows(str(path), {"epochs": 5}, ("epochs",)) == {}


def test_report_sections_show_tables_reruns_and_missing_runs(tmp_path, monkeypatch):
    from benchmarks import report

    results = tmp_path / "results"
    results.mkdir()
    (results / "compare.md").write_text("| a table |\n")
    (results / "compare.json").write_text(json.dumps(
        {"command": "python benchmarks/compare.py",
         "versions": {"tensorflow": "2.17.1", "cpus": 2, "cpu_features": ["avx2", "fma"]}}))
    for name in ("compare_rerun", "compare_rerun_other"):
        (results / f"{name}.md").write_text(f"{name} rows\n")
        (results / f"{name}.json").write_text(json.dumps({"command": f"rerun {name}"}))
    monkeypatch.setattr(report, "HERE", str(tmp_path))
    text = "\n".join(report.section("compare", "Methods"))
    assert "Command: `python benchmarks/compare.py` (TensorFlow 2.17.1" in text
    assert "2 CPUs with avx2, fma)." in text
    assert "| a table |" in text
    assert text.count("### Spot re-run") == 2
    assert text.index("compare_rerun rows") < text.index("compare_rerun_other rows")
    missing = "\n".join(report.section("lm", "LM", "_quick"))
    assert "Not run yet: `python -m benchmarks.run --quick lm`" in missing


def test_report_adds_the_hand_written_findings_of_a_section(tmp_path, monkeypatch):
    from benchmarks import report

    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "trajectory.md").write_text("| the table |\n")
    (tmp_path / "docs" / "findings").mkdir(parents=True)
    (tmp_path / "docs" / "findings" / "trajectory.md").write_text("What it says.\n")
    monkeypatch.setattr(report, "HERE", str(tmp_path))
    monkeypatch.setattr(report, "ROOT", str(tmp_path))
    text = "\n".join(report.section("trajectory", "Diagnosis"))
    assert text.index("| the table |") < text.index("What it says.")
    (tmp_path / "results" / "trajectory_quick.md").write_text("| quick |\n")
    assert "What it says." not in "\n".join(report.section("trajectory", "D", "_quick"))


def test_in_subprocess_runs_a_benchmark_function_in_a_fresh_python(tmp_path, monkeypatch):
    from benchmarks import run

    monkeypatch.chdir(tmp_path)  # the package is found from the repository's root, not the cwd
    assert common.in_subprocess("run", "selected", ["evidence"]) == run.GROUPS["evidence"]
    with pytest.raises(RuntimeError, match="run.nonexistent"):
        common.in_subprocess("run", "nonexistent")


def test_in_subprocess_passes_on_what_the_function_prints(capsys):
    # `run.main(["--help"])` prints its usage and exits: no result.
    with pytest.raises(RuntimeError, match=r"run.main\(\['--help'\],\) failed"):
        common.in_subprocess("run", "main", ["--help"])
    assert capsys.readouterr().out.startswith("usage:")


@pytest.mark.parametrize("form", ["module", "file"])
def test_a_benchmark_runs_as_a_module_and_as_a_file(tmp_path, form):
    import subprocess

    command = (["-m", "benchmarks.lm_seeds"] if form == "module"
               else [os.path.join(REPO, "benchmarks", "lm_seeds.py")])
    done = subprocess.run([sys.executable, *command, "--help"], capture_output=True, text=True,
                          cwd=REPO if form == "module" else str(tmp_path))
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("usage:")


def test_run_expands_groups_once_each_and_rejects_unknown_names(capsys):
    from benchmarks import run

    assert run.selected([]) == list(run.SCRIPTS)
    assert run.selected(["compare", "evidence"]) == ["compare", "trajectory", "speech",
                                                     "sensitivity", "classify", "tuning"]
    with pytest.raises(SystemExit):
        run.main(["nonsense"])
    assert "unknown benchmark(s) ['nonsense']" in capsys.readouterr().err


def test_train_rows_reuses_saved_rows_and_publishes_after_each_new_one():
    from benchmarks import common

    def row(name, seed, cer):
        return {"name": name, "seed": seed, "cer": cer, "sparsity": 0.9, "steps": 4,
                "train_seconds": 1.0}

    todo = [("a", 0, "config a"), ("b", 0, "config b"), ("c", 0, "config c")]
    earlier = {("b", 0): row("b", 0, 0.2), ("old", 1): row("old", 1, 0.5)}
    trained, published = [], []

    def train(config, seed):
        trained.append(config)
        return {k: v for k, v in row(None, seed, 0.1).items() if k != "name"}

    rows = common.train_rows(todo, earlier, train,
                                   lambda saved, pending: published.append((saved, pending)))
    assert trained == ["config a", "config c"]
    assert [r["name"] for r in rows] == ["a", "b", "c"]
    assert rows[1] is earlier["b", 0]
    assert rows[0]["cpu_features"] == common.cpu_features()
    first_saved, first_pending = published[0]
    assert [r["name"] for r in first_saved] == ["a", "b", "old"]  # unreached rows kept
    assert first_pending == [("c", 0, "config c")]  # "b" is saved already
    assert published[-1][1] == []


def test_trajectory_diagnosis_of_a_known_row():
    from benchmarks import trajectory

    loss = [10.0] * 30 + [20.0] * 10 + [5.0] * 60
    row = {"steps": 100, "trajectory": {
        "matrices": ["a", "b"], "loss": loss,
        # The second update (after step 30) cuts 0.6 of matrix "b".
        "updates": [[10, [0.1, 0.1]], [30, [0.2, 0.7]], [50, [0.9, 0.9]]]}}
    d = trajectory.diagnose(row)
    assert d["updates"] == 3 and d["recovery_steps"] == 50
    assert d["largest_cut"] == pytest.approx(0.7)
    assert d["largest_survivor_cut"] == pytest.approx(0.7 / 0.8)  # the last update
    assert d["late_share"] == pytest.approx(1.0)  # all of it in the last 4 updates
    assert d["loss_jump"] == pytest.approx(2.0)  # steps 31-40 against 21-30
    assert trajectory.diagnose({"steps": 10, "trajectory": {
        "matrices": [], "loss": [1.0], "updates": []}}) is None


def test_trajectory_variants_and_default_share_one_schedule():
    # The "late begin, geometric" variant is for_training's default at the
    # sweep's budget (10 epochs of 40 steps) with 20 updates (every 8 steps,
    # the default before 80 updates won) and without step scaling (the
    # default before it won); the "late timing" ones differ from
    # it only in their begin and ramp (the first default's timing).
    import tf_gradual_prune as tgp
    from benchmarks import trajectory

    default = tgp.RampedThresholdSchedule.for_training(10, 40, target_sparsity=0.9)
    variants = dict(trajectory.VARIANTS)
    keywords = variants["late begin, geometric"]
    ours = common.pruning_schedule(
        "ramped", 10, 40, 0.9, keywords["frequency"], timing=keywords["timing"],
        calibration=keywords["calibration"])
    assert ours.get_config() == dict(default.get_config(), calibration="geometric",
                                     frequency=8, step_scale=None)
    assert default.frequency == 2
    late = variants["late timing, geometric"]
    first = common.pruning_schedule(
        "ramped", 10, 40, 0.9, late["frequency"], timing=late["timing"],
        calibration=late["calibration"]).get_config()
    assert (first["begin_step"], first["ramp_step"], first["end_step"]) == (80, 160, 280)
    assert first["end_step"] == default.end_step


def test_trajectory_composes_the_strings_of_its_data_seed(monkeypatch):
    from benchmarks import trajectory

    seen = []

    class Stop(Exception):
        pass

    def task(*args, **kwargs):
        seen.append(kwargs)
        raise Stop

    monkeypatch.setattr(speech_bench, "SpeechTask", task)
    for argv, seed in ((["--data-seed", "7"], 7), ([], 0)):
        with pytest.raises(Stop):
            trajectory.main(argv + ["--held-out", "lucas", "--variants", "default"])
        assert seen.pop() == {"data_seed": seed, "split": "validation", "held_out": "lucas"}
    assert "data_seed" in trajectory.SAME_RUN
    assert dict(trajectory.VARIANTS)["default"] == {"method": "default"}  # for_training as is


def test_compare_gives_prune_and_retrain_the_budget_when_asked(capsys, monkeypatch):
    calls = []
    monkeypatch.setattr(speech_bench, "run_one",
                        lambda task, units, epochs, *a, **k: calls.append(epochs) or {})
    args = type("Args", (), {"epochs": 25, "frequency": 20, "retrain_within_budget": True,
                             "mask_padding": None})
    compare.run_row(None, args, 8, "prune_retrain", 0.9, 0)
    compare.run_row(None, args, 8, "one_shot", 0.9, 0)
    assert calls == [10, 25]  # 10 dense + 3 rounds of 5 = 25 epochs
    with pytest.raises(SystemExit):
        compare.main(["--retrain-within-budget", "--epochs", "12"])
    assert "--epochs divisible by 5" in capsys.readouterr().err


def test_classify_bench_model_clips_its_gradients_when_asked():
    import numpy as np

    from benchmarks import classify_bench

    task = type("Task", (), {"x": np.zeros((4, 7, 3), np.float32), "classes": ["a", "b"]})
    assert classify_bench.build(task, 4).optimizer.clipnorm is None
    clipped = classify_bench.build(task, 4, learning_rate=0.01, clipnorm=1.5)
    assert clipped.optimizer.clipnorm == 1.5
    assert float(clipped.optimizer.learning_rate) == pytest.approx(0.01)


@pytest.mark.parametrize("script, argv, message", [
    ("classify_bench", ["--targets", "1.2"], "--targets must lie in (0, 1). Received: 1.2"),
    ("classify_bench", ["--epochs", "3"], "--epochs must be >= 4"),
    ("classify_bench", ["--learning-rate", "0"], "--learning-rate must be > 0. Received: 0.0"),
    ("classify_bench", ["--clipnorm", "-1"], "--clipnorm must be > 0. Received: -1.0"),
    ("trajectory", ["--targets", "0"], "--targets must lie in (0, 1). Received: 0.0"),
    ("tuning_pareto", ["--sparsity", "0.9", "0.5"],
     "--sparsity must be LOW HIGH with 0 < LOW < HIGH < 1. Received: 0.9 0.5"),
    ("tuning_pareto", ["--floor", "90"], "--floor must lie in (0, 1]"),
    ("speech_bench", ["--method", "agp"], "argument --method: invalid choice: 'agp'"),
])
def test_new_benchmarks_reject_bad_arguments(capsys, script, argv, message):
    import importlib

    with pytest.raises(SystemExit) as raised:
        importlib.import_module(f"benchmarks.{script}").main(argv)
    assert raised.value.code == 2
    assert message in capsys.readouterr().err


def test_speech_bench_trains_its_four_rows_once_and_resumes(tmp_path, monkeypatch, capsys):
    calls = []

    def fake_run_one(task, units, epochs, seed, target=None, *args, method=None,
                     mask_padding=False, **kwargs):
        from benchmarks import common

        calls.append((units, target, method, mask_padding))
        recipe = {"recipe": common.default_recipe()} if method == "default" else {}
        return {**recipe, "units": units, "seed": seed, "method": method, "target": target,
                "cer": 0.1 + units / 1000, "wer": 0.2, "sparsity": target or 0.0,
                "nonzeros": units, "steps": 40, "train_seconds": 1.0}

    class FakeTask:
        source = "synthetic"

        def __init__(self, *args, **kwargs):
            pass

    monkeypatch.setattr(speech_bench, "run_one", fake_run_one)
    monkeypatch.setattr(speech_bench, "SpeechTask", FakeTask)
    monkeypatch.setattr(speech_bench, "HERE", str(tmp_path))
    (tmp_path / "results").mkdir()
    argv = ["--quick", "--method", "default", "--mask-padding", "--name", "masked"]
    assert speech_bench.main(argv) == 0
    large = 1 - speech_bench.recurrent_size(16) / speech_bench.recurrent_size(64)
    assert calls == [(32, None, "dense", True), (32, 0.9, "default", True),
                     (16, None, "dense", True), (64, large, "default", True)]
    with open(tmp_path / "results" / "masked_quick.json") as f:
        saved = json.load(f)
    assert [row["name"] for row in saved["rows"]] == [
        "dense GRU(32)", "default GRU(32) 90%", "dense GRU(16)",
        f"default GRU(64) {large:.1%}"]
    markdown = (tmp_path / "results" / "masked_quick.md").read_text()
    assert "padding masked" in markdown and "library's default" in markdown
    assert f"default GRU(64) {large:.1%} (64 non-zeros) vs dense GRU(16)" in markdown
    calls.clear()
    assert speech_bench.main(argv + ["--resume"]) == 0
    assert calls == []  # every row reused
    assert speech_bench.main(["--quick", "--name", "masked", "--resume"]) == 0
    assert "it was run with other method, mask_padding" in capsys.readouterr().out
    assert [c[2] for c in calls] == ["dense", "ramped", "dense", "ramped"]


def test_lm_table_names_pending_rows_and_other_hosts():
    import argparse

    from benchmarks import lm_bench

    def row(name, method, perplexity, features):
        return {"name": name, "method": method, "valid_perplexity": perplexity + 3,
                "test_perplexity": perplexity, "sparsity": 0.0, "nonzeros": 10,
                "parameters": 20, "tflite_bytes": 2**20, "train_seconds": 60.0,
                "steps": 100, "seed": 0, "cpu_features": features}

    args = argparse.Namespace(batch_size=20, steps=35, epochs=13, seed=0)
    rows = [row("dense 200", "dense", 100.0, ["avx2"]),
            row("default 200 90%", "default", 104.0, ["avx2", "avx512f"])]
    pending = [("large 400 ramped 59.8%", 400, "ramped", 0.598)]
    markdown = lm_bench.table(rows, 1000, args, pending)
    assert "| default 200 90% | 107.0 | 104.0 | +4.0% |" in markdown
    assert "halved per epoch after 4" in markdown
    assert "**Partial run**: 1 runs not done yet (large 400 ramped 59.8%)" in markdown
    assert "avx2/avx512f: default 200 90% (seed 0)" in markdown
    assert "Partial run" not in lm_bench.table(rows, 1000, args)


def test_lm_dense_baseline_matches_the_non_zeros_of_the_headline_sparsity():
    from benchmarks import lm_bench

    units = lm_bench.matched_units(200, 10000)
    budget = 0.1 * lm_bench.pruned_size(200, 10000)
    assert units == 25
    assert lm_bench.pruned_size(units, 10000) <= budget < lm_bench.pruned_size(units + 1, 10000)


def test_lm_pruned_matrices_are_the_lstm_kernels_and_the_output_kernel():
    from benchmarks import lm_bench
    from tf_gradual_prune import models

    model = models.language_model(50, units=4, steps=3)
    shapes = sorted(tuple(m.shape) for m in lm_bench.pruned_matrices(model))
    assert shapes == sorted([(4, 16)] * 4 + [(4, 50)])


@pytest.mark.parametrize("method, epochs_trained", [("one_shot", 4), ("prune_retrain", 10)])
def test_lm_row_trains_each_method_for_its_budget(monkeypatch, method, epochs_trained):
    import argparse

    import numpy as np

    from benchmarks import lm_bench

    monkeypatch.setattr(lm_bench, "export_size", lambda *args: 123)  # the export is tested apart
    ids = np.random.default_rng(0).integers(0, 30, 2000)
    from tf_gradual_prune import lm_data

    batches = tuple(lm_data.lm_batches(ids, 4, 5) for _ in range(3))
    args = argparse.Namespace(batch_size=4, steps=5, frequency=5, l1=1e-6)
    row = lm_bench.run_one(batches, 30, 8, 4, method, 0.9, 0, args)
    steps = len(batches[0][0]) // 4
    assert row["steps"] == epochs_trained * steps
    assert row["sparsity"] == pytest.approx(0.9, abs=0.01)
    assert np.isfinite(row["test_perplexity"]) and row["tflite_bytes"] == 123


def test_lm_tfmot_agp_row_trains_the_twin_like_our_agp(monkeypatch, data_dir):
    """tfmot's AGP on the tf_keras twin (a process of its own) comes back
    into the Keras 3 model: every pruned matrix at the target, the same
    steps, and, from the same initial weights and batches, a perplexity
    within 2% of our callback's AGP."""
    import argparse

    import numpy as np

    from benchmarks import lm_bench
    from tf_gradual_prune import lm_data

    monkeypatch.setattr(lm_bench, "export_size", lambda *args: 123)  # the export is tested apart
    corpus = lm_data.ptb(data_dir)
    batches = tuple(lm_data.lm_batches(ids[:2000], 4, 5)
                    for ids in (corpus.train, corpus.valid, corpus.test))
    args = argparse.Namespace(batch_size=4, steps=5, frequency=5, l1=1e-6, data_dir=data_dir,
                              train_words=2000)
    rows = {method: lm_bench.run_one(batches, len(corpus.vocabulary), 8, 4, method, 0.9, 0, args)
            for method in ("tfmot_agp", "agp")}
    theirs, ours = rows["tfmot_agp"], rows["agp"]
    assert theirs["method"] == "tfmot_agp" and theirs["steps"] == ours["steps"] == 4 * 99
    assert sorted(theirs["matrices"]) == sorted(ours["matrices"])
    assert all(s == pytest.approx(0.9, abs=0.01) for s in theirs["matrices"].values())
    assert np.isfinite(theirs["test_perplexity"])
    assert theirs["test_perplexity"] == pytest.approx(ours["test_perplexity"], rel=0.02)


def lm_run(folder, name, seed, perplexities, matrices=None, **settings):
    rows = [{"name": row, "method": row.split()[0], "seed": seed, "valid_perplexity": p + 2,
             "test_perplexity": p, "sparsity": 0.0 if row.startswith("dense") else 0.9,
             "nonzeros": 100, **({"matrices": matrices[row]} if row in (matrices or {}) else {})}
            for row, p in perplexities.items()]
    run = {"epochs": 4, "units": 200, "large_units": 400, "frequency": 100, "batch_size": 20,
           "steps": 35, "seed": seed, "quick": False, **settings}
    with open(os.path.join(folder, name + ".json"), "w") as f:
        json.dump({"settings": run, "rows": rows}, f)


def test_lm_seeds_costs_each_seed_against_its_own_dense_row(tmp_path):
    from benchmarks import lm_seeds

    lm_run(tmp_path, "a", 0, {"dense 200": 100.0, "default 200 90%": 110.0, "large": 95.0},
           matrices={"default 200 90%": {"lstm/kernel": 0.8, "logits/kernel": 0.92}})
    lm_run(tmp_path, "b", 1, {"dense 200": 120.0, "default 200 90%": 126.0}, large_units=0)
    runs = lm_seeds.load_runs(["a", "b"], str(tmp_path))
    summary = {s["name"]: s for s in lm_seeds.summarise(runs)}
    default = summary["default 200 90%"]
    assert default["seeds"] == [0, 1]
    assert default["cost"]["per_seed"] == pytest.approx([0.10, 0.05])
    assert default["cost"]["mean"] == pytest.approx(0.075)
    assert default["test_perplexity"]["mean"] == pytest.approx(118.0)
    assert summary["large"]["seeds"] == [0]
    markdown = lm_seeds.table(lm_seeds.summarise(runs), runs, ["a", "b"])
    assert "| default 200 90% | 2 | 120.0 ± 11.3 | 118.0 ± 11.3 | 110.0 / 126.0 | +7.5% ± 3.5% |" \
        in markdown
    assert "- default 200 90%: lstm/kernel 0.800, logits/kernel 0.920" in markdown


@pytest.mark.parametrize("second, message", [
    ({"seed": 0}, "two runs of seed 0"),
    ({"seed": 1, "epochs": 13}, "other epochs"),
])
def test_lm_seeds_refuses_runs_that_do_not_pair(tmp_path, second, message):
    from benchmarks import lm_seeds

    lm_run(tmp_path, "a", 0, {"dense 200": 100.0})
    seed = second.pop("seed")
    lm_run(tmp_path, "b", seed, {"dense 200": 100.0}, **second)
    with pytest.raises(ValueError, match=message):
        lm_seeds.load_runs(["a", "b"], str(tmp_path))
    with pytest.raises(ValueError, match="no results file: 'c'"):
        lm_seeds.load_runs(["a", "c"], str(tmp_path))


def test_training_bench_quick_times_plain_and_pruned_steps_with_step_scaling(tmp_path):
    from benchmarks import training_bench

    training_bench.main(["--quick", "--no-tfmot", "--step-scale", "fan_in",
                         "--output-dir", str(tmp_path)])
    with open(tmp_path / "training_quick.json") as f:
        saved = json.load(f)
    (row,) = saved["rows"]
    assert row["model"] == "LSTM(64)" and row["ratio"] > 0 and row["total_ratio"] > 0
    assert len(row["raw"]["pruned_ms"]) == len(row["raw"]["plain_ms"]) == 2
    assert saved["settings"]["step_scale"] == "fan_in"
    markdown = (tmp_path / "training_quick.md").read_text()
    assert 'steps scaled (`step_scale="fan_in"`)' in markdown
    assert (tmp_path / "training_quick.png").exists()
