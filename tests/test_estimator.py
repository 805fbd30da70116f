"""The scikit-learn-style Classifier: fit on arrays, predict, score, save/load, clone, cross_val_score."""

from __future__ import annotations

import numpy as np
import pytest

from mnistlab import Classifier
from mnistlab.errors import ConfigError, DataError
from cores import THREADS

sklearn = pytest.importorskip("sklearn")


@pytest.fixture(scope="module")
def digits():
    """3,000 MNIST training images and 1,000 test images as uint8 arrays (the embedded copy)."""
    from mnistlab.data.raw import load_raw

    raw = load_raw("mnist")
    return raw.train_x[:3000], raw.train_y[:3000], raw.test_x[:1000], raw.test_y[:1000]


def test_fits_uint8_arrays_and_scores_like_sklearn(digits):
    x, y, xt, yt = digits
    clf = Classifier("fastcnn", epochs=3, lr=0.15, label_smoothing=0.0, seed=0, threads=THREADS).fit(x, y)
    assert clf.score(xt, yt) > 0.90
    proba = clf.predict_proba(xt[:50])
    assert proba.shape == (50, 10)
    np.testing.assert_allclose(proba.sum(1), 1, atol=1e-5)
    np.testing.assert_array_equal(clf.predict(xt[:50]), clf.classes_[proba.argmax(1)])
    assert clf.score(xt, yt) == pytest.approx(np.mean(clf.predict(xt) == yt))


def test_string_labels_are_kept_and_flat_float_rows_work(digits):
    x, y, xt, yt = digits
    names = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"])
    flat = x.reshape(len(x), -1).astype(np.float32) / 255  # (N, 784) floats in [0, 1]
    clf = Classifier("softmax", epochs=2, lr=0.1, seed=0).fit(flat, names[y])
    assert set(clf.classes_) == set(names)
    preds = clf.predict(xt.reshape(len(xt), -1).astype(np.float32) / 255)
    assert preds.dtype.kind == "U" and np.mean(preds == names[yt]) > 0.8


def test_save_and_load_give_identical_predictions(digits, tmp_path):
    x, y, xt, _ = digits
    labels = np.where(y % 2 == 0, "even", "odd")
    clf = Classifier("mlp", hidden=(64,), epochs=1, seed=1).fit(x, labels)
    path = clf.save(tmp_path / "parity.safetensors")
    again = Classifier.load(path)
    np.testing.assert_array_equal(again.predict(xt), clf.predict(xt))
    np.testing.assert_allclose(again.predict_proba(xt), clf.predict_proba(xt), atol=1e-6)
    assert again.get_params()["hidden"] == (64,)


def test_same_seed_same_model_and_seed_matters(digits):
    x, y, xt, _ = digits
    a = Classifier("mlp", hidden=(32,), epochs=1, seed=3).fit(x[:1000], y[:1000]).predict_proba(xt[:100])
    b = Classifier("mlp", hidden=(32,), epochs=1, seed=3).fit(x[:1000], y[:1000]).predict_proba(xt[:100])
    c = Classifier("mlp", hidden=(32,), epochs=1, seed=4).fit(x[:1000], y[:1000]).predict_proba(xt[:100])
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_clone_and_cross_val_score(digits):
    from sklearn.base import clone
    from sklearn.model_selection import cross_val_score

    x, y, _, _ = digits
    clf = Classifier("softmax", epochs=2, lr=0.1)
    twin = clone(clf)
    assert twin is not clf and twin.get_params() == clf.get_params()
    scores = cross_val_score(clf, x[:1500], y[:1500], cv=3)
    assert scores.shape == (3,) and scores.min() > 0.75
    assert not hasattr(clf, "model_")  # cross_val_score fits clones, never the original


def test_set_params_and_bad_parameters(digits):
    x, y, _, _ = digits
    clf = Classifier("softmax")
    assert clf.set_params(epochs=1, lr=0.05).get_params()["lr"] == 0.05
    with pytest.raises(ConfigError, match="unknown Classifier option"):
        Classifier("softmax", learning_rate=0.1)
    with pytest.raises(ConfigError, match="unknown Classifier option"):
        clf.set_params(colour="red")
    with pytest.raises(DataError, match="shape"):
        Classifier("softmax").fit(np.zeros((4, 2, 2, 2, 2)), [0, 1, 0, 1])
    with pytest.raises(DataError, match="one label per image"):
        Classifier("softmax").fit(x[:10], y[:9])
    with pytest.raises(sklearn.exceptions.NotFittedError):
        Classifier("softmax").predict(x[:2])


def test_predict_proba_uses_the_views_a_saved_checkpoint_predicts_with(tmp_path):
    import numpy as np

    from mnistlab import Classifier
    from mnistlab.data.raw import load_raw
    from mnistlab.evaluation.predict import Predictor

    raw = load_raw("synthetic")
    clf = Classifier("fastcnn", steps=5, seed=0, threads=1).fit(raw.train_x, raw.train_y)
    plain = Classifier("fastcnn", steps=5, seed=0, threads=1, tta=False).fit(raw.train_x, raw.train_y)
    views, none = clf.predict_proba(raw.test_x), plain.predict_proba(raw.test_x)
    assert np.abs(views - none).max() > 1e-4  # same weights (same seed), different answers: the views are used
    clf.save(tmp_path / "c.safetensors")
    np.testing.assert_allclose(Predictor.from_checkpoint(tmp_path / "c.safetensors").probabilities(raw.test_x), views,
                               atol=1e-5)
