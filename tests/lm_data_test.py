import os

import numpy as np
import pytest

from tf_gradual_prune import lm_data


def test_lm_batches_are_contiguous_streams_in_batch_order():
    ids = np.arange(1000)
    x, y = lm_data.lm_batches(ids, batch_size=4, steps=10)
    per_stream = 999 // 4  # 249 -> 24 batches of 10 steps
    assert x.shape == y.shape == (24 * 4, 10)
    np.testing.assert_array_equal(y, x + 1)
    # Row r of batch k continues row r of batch k-1 (a stateful model's state fits).
    for k in range(1, 24):
        np.testing.assert_array_equal(x[4 * k: 4 * k + 4, 0], x[4 * (k - 1): 4 * k, -1] + 1)
    np.testing.assert_array_equal(x[:4, 0], np.arange(4) * per_stream)
    with pytest.raises(ValueError, match="too few"):
        lm_data.lm_batches(np.arange(20), batch_size=4, steps=10)
    with pytest.raises(ValueError, match="steps=0"):
        lm_data.lm_batches(ids, steps=0)


def test_ptb_from_the_shared_folder(data_dir):
    corpus = lm_data.ptb(data_dir)
    assert len(corpus.vocabulary) == 10000
    # The standard word counts (with one <eos> per sentence).
    assert (len(corpus.train), len(corpus.valid), len(corpus.test)) == (929589, 73760, 82430)
    assert corpus.vocabulary[:3] == ["the", "<unk>", "<eos>"]
    assert corpus.words(corpus.valid[:4]) == "consumers may want to"


def test_ptb_rejects_a_damaged_copy(data_dir, tmp_path):
    import shutil

    for split in lm_data.PTB_SPLITS:
        shutil.copy(os.path.join(data_dir, "ptb", f"ptb.{split}.txt"), tmp_path)
    (tmp_path / "ptb.test.txt").unlink()
    with pytest.raises(ValueError, match="No PTB file 'ptb.test.txt'"):
        lm_data.ptb(str(tmp_path))
    shutil.copy(os.path.join(data_dir, "ptb", "ptb.test.txt"), tmp_path)
    with open(tmp_path / "ptb.valid.txt", "a") as f:
        f.write("one more line\n")
    with pytest.raises(ValueError, match="ptb.valid.txt.*not the reference"):
        lm_data.ptb(str(tmp_path))


def test_download_ptb_verifies_and_caches(data_dir, tmp_path):
    source = os.path.join(os.path.abspath(data_dir), "ptb")
    origin = "file://" + source + "/ptb.{split}.txt"
    folder = lm_data.download_ptb(str(tmp_path / "cache"), origin=origin)
    assert str(tmp_path) in folder
    corpus = lm_data.ptb(download=True, cache_dir=str(tmp_path / "cache"),
                          origin="file:///nonexistent/{split}")  # served from the cache
    assert len(corpus.train) == 929589
    with pytest.raises(ValueError, match="must contain"):
        lm_data.download_ptb(str(tmp_path), origin="file:///x.txt")
