import json
import os

import pytest

import tf_gradual_prune as tgp
from tf_gradual_prune import cli


def test_demo_quick_trains_exports_and_reports_every_model(tmp_path, capsys):
    out = tmp_path / "demo"
    assert cli.main(["demo", "--quick", "--output-dir", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| dense |" in printed and "| pruned |" in printed and "| paper |" in printed
    summary = json.loads((out / "results.json").read_text())
    rows = {row["model"]: row for row in summary["results"]}
    assert rows["dense"]["recurrent_sparsity"] == 0.0
    for name in ("pruned", "paper"):
        assert rows[name]["recurrent_sparsity"] == pytest.approx(0.9, abs=0.01)
        assert rows[name]["recurrent_nonzeros"] < rows["dense"]["recurrent_nonzeros"] / 5
        assert rows[name]["tflite_bytes"] < rows["dense"]["tflite_bytes"]
    assert summary["schedules"]["pruned"] == (
        tgp.RampedThresholdSchedule.for_training(
            summary["args"]["epochs"], summary["steps_per_epoch"], target_sparsity=0.9
        ).get_config())
    for row in rows.values():
        assert 0 <= row["cer"] <= 2 and row["latency_ms"] > 0
        assert len(summary["history"][row["model"]]["val_cer"]) == summary["args"]["epochs"]
    assert (out / "pruning_curves.png").stat().st_size > 10_000
    for name in ("dense", "pruned", "paper"):
        sidecar = json.loads((out / f"{name}.json").read_text())
        assert sidecar["metadata"]["alphabet"] == "0123456789 "
        assert (out / f"{name}.tflite").stat().st_size == rows[name]["tflite_bytes"]
    assert (out / "results.md").exists()
    assert not [f for f in os.listdir(out) if ".tmp" in f]


def test_demo_streaming_transcribes_chunk_by_chunk_like_the_offline_model(tmp_path, capsys):
    out = tmp_path / "demo"
    assert cli.main(["demo", "--streaming", "--quick", "--chunk-ms", "50",
                     "--granularity", "units", "--output-dir", str(out)]) == 0
    printed = capsys.readouterr().out
    # 50 ms = 5 frames, rounded up to the stride 3: 6 frames a call.
    assert "chunks of 6 frames (60 ms" in printed
    assert "transcribes a held-out utterance as it arrives" in printed
    assert "real-time factor" in printed
    summary = json.loads((out / "streaming.json").read_text())
    assert summary["chunk_frames"] == 6
    rows = {row["model"]: row for row in summary["results"]}
    assert set(rows) == {"dense", "pruned"}
    # Whole units of a GRU(32): the target is met to within a unit or so.
    assert rows["pruned"]["recurrent_sparsity"] == pytest.approx(0.9, abs=0.03)
    for row in rows.values():
        # The export streams what the Keras model computes offline.
        assert row["streamed_cer"] == pytest.approx(row["cer"], abs=0.02)
    assert rows["pruned"]["real_time_factor"] > 0
    # Pruned by whole units: the export removed the dead ones.
    shrunk = rows["pruned"]["shrunk_units"]
    assert len(shrunk) == 2 and all(after < before for before, after in shrunk.values())
    assert rows["dense"]["shrunk_units"] == {}
    assert "pruned: exported with" in printed
    for name in rows:
        sidecar = json.loads((out / f"{name}_streaming.json").read_text())
        assert sidecar["streaming"]["chunk_frames"] == 6
        assert sidecar["streaming"]["output_frames"] == 2
    assert (out / "streaming.md").exists() and (out / "streaming_curves.png").exists()


@pytest.mark.parametrize(
    "argv, match",
    [
        (["demo", "--target-sparsity", "1.5"], "target-sparsity must be in"),
        (["demo", "--epochs", "2"], "epochs must be >= 4"),
        (["demo", "--units", "0"], "units must be >= 1. Received: 0"),
        (["demo", "--streaming", "--chunk-ms", "0"], "chunk-ms must be >= 1. Received: 0"),
        (["demo", "--block-size", "1x0"], r"block-size must be >= 1.*Received: \(1, 0\)"),
    ],
)
def test_demo_bad_arguments(argv, match, tmp_path):
    with pytest.raises(SystemExit, match=match):
        cli.main(argv + ["--output-dir", str(tmp_path)])


def test_block_size_takes_an_integer_or_a_pair(capsys):
    assert cli._block_size("4") == 4 and cli._block_size("1x32") == (1, 32)
    with pytest.raises(SystemExit):
        cli.main(["demo", "--block-size", "1x2x3"])
    assert "INPUTSxOUTPUTS such as 1x32. Received: '1x2x3'" in capsys.readouterr().err


def test_unknown_data_choice_is_rejected(capsys):
    with pytest.raises(SystemExit):
        cli.main(["demo", "--data", "imagenet"])
    assert "invalid choice: 'imagenet'" in capsys.readouterr().err
