"""The speech pipeline end to end through the public API: a manifest CSV of
WAV files -> tensorflow-io features -> CTC model pruned by the callback ->
CER/WER -> .tflite."""

import csv
import json
import wave

import keras
import numpy as np
import pytest

pytest.importorskip("tensorflow_io")
import tf_gradual_prune as tgp
from tf_gradual_prune import audio, models, speech, speech_data


def write_manifest(folder, waves, texts, name):
    folder.mkdir(exist_ok=True)
    with open(folder / f"{name}.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "transcript"])
        for i, (samples, text) in enumerate(zip(waves, texts)):
            with wave.open(str(folder / f"{name}_{i}.wav"), "wb") as w:
                w.setnchannels(1)
                w.setsampwidth(2)
                w.setframerate(8000)
                w.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
            writer.writerow([f"{name}_{i}.wav", text])
    return folder / f"{name}.csv"


def test_manifest_to_pruned_ctc_model_to_tflite(tmp_path):
    (waves, texts), (test_waves, test_texts) = speech_data.speech_digits(
        train_size=48, test_size=8, max_digits=3)
    train_csv = write_manifest(tmp_path / "audio", waves, texts, "train")
    test_csv = write_manifest(tmp_path / "audio", test_waves, test_texts, "test")

    features, transcripts, paths = audio.load_features(train_csv)
    test_features, test_transcripts, _ = audio.load_features(test_csv)
    assert transcripts == texts and len(paths) == 48
    assert features[0].shape[1] == 40
    alphabet = models.Alphabet.from_transcripts(transcripts + test_transcripts)
    train = audio.feature_dataset(features, [alphabet.encode(t) for t in transcripts],
                                  batch_size=8, shuffle_seed=0)
    test = audio.feature_dataset(test_features, [alphabet.encode(t) for t in test_transcripts],
                                 batch_size=8)
    steps = sum(1 for _ in train)

    keras.utils.set_random_seed(0)
    model = models.speech_model(40, len(alphabet), units=16, layers=1, conv_filters=16)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    schedule = tgp.RampedThresholdSchedule.for_training(4, steps, target_sparsity=0.8,
                                                        frequency=2)
    history = model.fit(train.repeat(), epochs=4, steps_per_epoch=steps, verbose=0, shuffle=False,
                        callbacks=[tgp.GradualPruning(schedule), models.ErrorRates(test, alphabet)])
    assert len(history.history["val_cer"]) == 4
    assert history.history["sparsity"][-1] == pytest.approx(0.8, abs=0.02)
    rates = models.error_rates(model, test, alphabet)
    assert rates["cer"] == pytest.approx(history.history["val_cer"][-1])

    frames = max(len(f) for f in test_features)
    sample = np.zeros((2, frames, 40), np.float32)
    for i in range(2):
        sample[i, : len(test_features[i])] = test_features[i]
    path = tmp_path / "speech.tflite"
    report = tgp.export_tflite(model, str(path), input_shape=(frames, 40), sample_inputs=sample,
                               metadata={"alphabet": alphabet.characters}, encoding="sparse")
    assert report.max_error <= 1e-4
    assert {t["format"] for t in report.tensors if t["keras_weight"] and "gru" in t["keras_weight"]
            and "bias" not in t["keras_weight"]} == {"sparse"}
    logits = tgp.LiteRTRunner(str(path)).run(sample)
    np.testing.assert_allclose(logits, model.predict(sample, verbose=0), atol=1e-4)
    assert json.loads(path.with_suffix(".json").read_text())["metadata"]["alphabet"] == (
        alphabet.characters)


@pytest.mark.slow
def test_pruned_recogniser_transcribes_a_held_out_fsdd_speaker(data_dir):
    """Real speech: strings from five FSDD speakers for training, the sixth
    speaker's for testing; a 80%-sparse BiGRU(64) recogniser must transcribe
    the unseen voice far better than chance (CER 1.0)."""
    task = speech.DigitStrings.load("fsdd", data_dir, train_size=1200, test_size=200,
                                    max_digits=5, verbose=False)
    train, steps = task.train_dataset(seed=0)
    keras.utils.set_random_seed(0)
    model = task.recogniser(units=64)
    schedule = tgp.RampedThresholdSchedule.for_training(12, steps, target_sparsity=0.8,
                                                        frequency=10)
    model.fit(train.repeat(), epochs=12, steps_per_epoch=steps, shuffle=False, verbose=0,
              callbacks=[tgp.GradualPruning(schedule)])
    assert tgp.sparsity_table(model, weights="recurrent").sparsity == pytest.approx(0.8, abs=0.01)
    rates = models.error_rates(model, task.test, task.alphabet)
    assert rates["cer"] < 0.3, rates


def test_digit_strings_featurise_label_and_batch_the_strings():
    task = speech.DigitStrings.load(train_size=12, test_size=4, max_digits=3, batch_size=4,
                                    verbose=False)
    assert len(task.x) == len(task.y) == len(task.texts) == 12
    assert len(task.x_test) == len(task.test_texts) == 4
    assert task.num_features == 40 and task.alphabet.characters == speech.DIGITS
    assert [task.alphabet.decode(y) for y in task.y] == task.texts
    train, steps = task.train_dataset(seed=3)
    again, _ = task.train_dataset(seed=3)
    batches = list(train)
    assert steps == len(batches) and sum(len(b[1]) for b in batches) == 12
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(batches, again))
    model = task.recogniser(units=8, layers=1, conv_filters=8)
    assert model.optimizer is not None
    logits = model(next(iter(task.test))[0])
    assert logits.shape[-1] == len(task.alphabet) + 1  # the labels and CTC's blank
