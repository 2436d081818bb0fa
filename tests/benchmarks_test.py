"""Tests for benchmarks/rerun.py, the spot re-run of saved comparison rows."""

import json
import os
import sys

import pytest

from conftest import REPO

sys.path.insert(0, os.path.join(REPO, "benchmarks"))
import compare  # noqa: E402
import rerun  # noqa: E402
import speech_bench  # noqa: E402

# A comparison small enough to train in seconds, on the embedded synthetic digits.
SETTINGS = {"data_dir": None, "seeds": [0], "targets": [0.5], "headline": 0.5,
            "methods": ["ramped"], "no_tfmot": True, "epochs": 4, "units": 8,
            "small_units": 4, "train_size": 16, "test_size": 8, "max_digits": 2,
            "frequency": 1, "quick": True, "resume": False}


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
    args = compare.argparse.Namespace(**SETTINGS)
    task = speech_bench.SpeechTask(None, args.train_size, args.test_size,
                                   args.max_digits, 32)
    names = {"ramped 50%": ("ramped", 0.5), "dense GRU(8)": ("dense", None)}
    rows = []
    for name, (method, target) in names.items():
        row = compare.run_row(task, args, args.units, method, target, seed=0)
        row["name"] = name
        rows.append(row)
    path = write_results(tmp_path / "compare.json", rows)

    assert rerun.main(["--results", path, "--rows", "dense GRU(8)", "ramped 50%"]) == 0
    with open(tmp_path / "compare_rerun.json") as f:
        report = json.load(f)["rows"]
    assert [r["name"] for r in report] == ["dense GRU(8)", "ramped 50%"]
    assert all(r["cer"] == r["saved_cer"] and r["loss"] == r["saved_loss"] for r in report)
    assert "| yes |" in (tmp_path / "compare_rerun.md").read_text()

    rows[0]["loss"] *= 1.5
    path = write_results(tmp_path / "compare.json", rows)
    assert rerun.main(["--results", path, "--rows", "ramped 50%"]) == 1
    assert rerun.main(["--results", path, "--rows", "ramped 50%",
                       "--loss-tolerance", "0.5"]) == 0


def test_results_record_the_cpu_features_that_pick_the_kernels():
    import common

    features = common.software_versions()["cpu_features"]
    if not os.path.exists("/proc/cpuinfo"):
        assert features is None
    else:
        assert set(features) <= set(common.KERNEL_FEATURES)
        assert features == [f for f in common.KERNEL_FEATURES if f in features]
    assert rerun.machine({"cpus": 2, "machine": "x86_64"}).endswith("features not recorded")
    assert rerun.machine({"cpus": 2, "machine": "x86_64", "cpu_features": ["avx2"]}) == (
        "2 x x86_64 CPUs with avx2")
