import json
import os

import pytest

from tf_gradual_prune import cli


def test_demo_quick_writes_results_plot_and_models(tmp_path, capsys):
    out = tmp_path / "demo"
    assert cli.main(["demo", "--quick", "--output-dir", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| dense |" in printed and "| pruned |" in printed
    summary = json.loads((out / "results.json").read_text())
    rows = {row["model"]: row for row in summary["results"]}
    assert rows["dense"]["recurrent_sparsity"] == 0.0
    assert rows["pruned"]["recurrent_sparsity"] == pytest.approx(0.9, abs=0.01)
    assert rows["pruned"]["recurrent_nonzeros"] < rows["dense"]["recurrent_nonzeros"] / 5
    assert (out / "pruning_curves.png").stat().st_size > 10_000
    for name in ("dense.keras", "pruned.keras", "results.md"):
        assert (out / name).exists()
    assert not [f for f in os.listdir(out) if ".tmp" in f]


@pytest.mark.parametrize(
    "argv, match",
    [
        (["demo", "--target-sparsity", "1.5"], "target-sparsity must be in"),
        (["demo", "--epochs", "2"], "epochs must be >= 4"),
    ],
)
def test_demo_bad_arguments(argv, match, tmp_path):
    with pytest.raises(SystemExit, match=match):
        cli.main(argv + ["--output-dir", str(tmp_path)])


def test_unknown_data_choice_is_rejected(capsys):
    with pytest.raises(SystemExit):
        cli.main(["demo", "--data", "imagenet"])
    assert "invalid choice: 'imagenet'" in capsys.readouterr().err
