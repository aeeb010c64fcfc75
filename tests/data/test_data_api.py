"""load_dataset on the embedded digits and synthetic data: splits, preprocessing, fingerprint, errors."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from automc.data import DATASETS, ArraySplit, DatasetSplits, load_dataset
from automc.data._base import resize_bilinear
from automc.errors import ConfigError


def _ids(split: ArraySplit) -> set[bytes]:
    return {row.tobytes() for row in split.x}


def _load_factory_arrays(x, y, **kwargs):
    """Run ``load_dataset`` on a real in-memory module whose ``load()`` returns ``(x, y)``."""
    import types

    module = types.ModuleType("_automc_test_arrays")
    module.load = lambda: (x, y)
    sys.modules[module.__name__] = module
    try:
        return load_dataset(f"{module.__name__}:load", seed=0, **kwargs)
    finally:
        del sys.modules[module.__name__]


def test_import_is_light():
    code = "import sys, automc.data; print(sorted({'mindspore', 'PIL', 'sklearn'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_digits_default_is_the_real_sklearn_set():
    s = load_dataset("digits", seed=0)
    assert isinstance(s, DatasetSplits)
    assert len(s.train) + len(s.val) + len(s.test) == 1797
    assert (len(s.val), len(s.test)) == (270, 270)
    assert s.input_shape == (1, 8, 8) and s.num_classes == 10
    assert s.class_names == tuple(str(i) for i in range(10))
    for split in (s.train, s.val, s.test):
        assert split.x.dtype == np.float32 and split.x.ndim == 4 and split.y.dtype == np.int32
    # raw pixels are 0..16, so the train mean/std are in that range
    assert 0 < s.mean[0] < 16 and 0 < s.std[0] < 16



def test_digits_are_read_through_scikit_learn_once_then_from_the_cache(tmp_path, monkeypatch):
    """A process that starts a search reads digits without importing scikit-learn (~3 s) once
    the machine has read them; the copy holds the same images, labels and names. A damaged copy
    is read again (in this process: scikit-learn is imported here already) and written anew."""
    from sklearn.datasets import load_digits as sk_load_digits

    from automc.data.digits import load_digits

    code = ("import sys; from automc.data.digits import load_digits; d = load_digits(); "
            "print('sklearn' in sys.modules, d.x.shape, d.x.dtype, int(d.y.sum()), ','.join(d.class_names))")
    env = {**os.environ, "AUTOMC_CACHE_DIR": str(tmp_path)}
    runs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env).stdout
            for _ in range(2)]
    sk = sk_load_digits()
    same = f"(1797, 1, 8, 8) uint8 {int(sk.target.sum())} {','.join(str(n) for n in sk.target_names)}"
    assert runs == [f"True {same}\n", f"False {same}\n"]
    (copy,) = (tmp_path / "data").glob("digits-sklearn-*.npz")
    with np.load(copy) as f:
        assert np.array_equal(f["x"], sk.images.astype(np.uint8)[:, None]) and np.array_equal(f["y"], sk.target)
    whole = copy.read_bytes()
    monkeypatch.setenv("AUTOMC_CACHE_DIR", str(tmp_path))
    for damaged in (b"", whole[: len(whole) // 2], b"broken"):  # empty, cut short, not an .npz
        copy.write_bytes(damaged)
        d = load_digits()
        assert np.array_equal(d.x, sk.images.astype(np.uint8)[:, None]) and np.array_equal(d.y, sk.target)
        assert d.class_names == tuple(str(n) for n in sk.target_names)
        with np.load(copy) as f:  # written anew (zip timestamps aside, the same copy)
            assert np.array_equal(f["x"], d.x) and np.array_equal(f["y"], d.y)


def test_splits_are_disjoint_stratified_and_seeded():
    a = load_dataset("digits", seed=0)
    b = load_dataset("digits", seed=0)
    c = load_dataset("digits", seed=1)
    for name in ("train", "val", "test"):
        np.testing.assert_array_equal(getattr(a, name).x, getattr(b, name).x)
        np.testing.assert_array_equal(getattr(a, name).y, getattr(b, name).y)
    assert not np.array_equal(a.test.y, c.test.y)
    assert _ids(a.test) != _ids(c.test)
    counts = np.bincount(a.test.y, minlength=10)
    assert counts.min() >= 26 and counts.max() <= 29  # 270 test samples, ~27 per class

    syn = load_dataset("synthetic", seed=5, num_samples=300)  # continuous noise: every image is unique
    train, val, test = _ids(syn.train), _ids(syn.val), _ids(syn.test)
    assert len(train | val | test) == 300 and not (train & val or train & test or val & test)


@pytest.mark.parametrize(("val", "test"), [(0.0, 0.5), (0.3, 0.1), (0.0, 0.0)])
def test_fractions_and_max_samples(val, test):
    s = load_dataset("digits", seed=3, val_fraction=val, test_fraction=test, max_samples=200)
    assert (len(s.val), len(s.test)) == (round(200 * val), round(200 * test))
    assert len(s.train) + len(s.val) + len(s.test) == 200


def test_resize_channels_and_normalisation_use_train_only():
    s = load_dataset("digits", seed=0, resize=(32, 24), channels=3)
    assert s.input_shape == (3, 32, 24) and s.train.x.shape[1:] == (3, 32, 24)
    np.testing.assert_allclose(s.train.x.mean(axis=(0, 2, 3)), 0, atol=1e-4)
    np.testing.assert_allclose(s.train.x.std(axis=(0, 2, 3)), 1, atol=1e-4)
    assert not np.allclose(s.test.x.mean(axis=(0, 2, 3)), 0, atol=1e-4)  # test stats are not used
    np.testing.assert_array_equal(s.train.x[:, 0], s.train.x[:, 2])  # grayscale repeated

    # undoing the normalisation gives the bilinear upscale of the raw pixels
    raw = load_dataset("digits", seed=0, resize=None)
    plain = raw.train.x * np.float32(raw.std[0]) + np.float32(raw.mean[0])
    up = resize_bilinear(plain, (32, 24))
    np.testing.assert_allclose(s.train.x[:, :1] * np.float32(s.std[0]) + np.float32(s.mean[0]), up, atol=1e-3)


def test_resize_matches_pillow_bilinear():
    from PIL import Image

    rng = np.random.default_rng(0)
    for (h, w), (oh, ow) in [((8, 8), (32, 32)), ((32, 30), (8, 11))]:
        img = (rng.random((h, w)) * 255).astype(np.float32)
        ref = np.asarray(Image.fromarray(img, mode="F").resize((ow, oh), Image.BILINEAR))
        np.testing.assert_allclose(resize_bilinear(img[None, None], (oh, ow))[0, 0], ref, atol=1e-3)


def test_rgb_to_grayscale_uses_luminance():
    x = np.zeros((20, 3, 4, 4), np.float32)
    x[:, 1] = 1.0
    splits = _load_factory_arrays(x, np.arange(20) % 2, channels=1)
    assert splits.input_shape == (1, 4, 4)
    assert splits.mean == pytest.approx((0.587,), abs=1e-6)


def test_arrays_are_read_only():
    s = load_dataset("synthetic", seed=0, num_samples=50)
    with pytest.raises(ValueError):
        s.train.x[0, 0, 0, 0] = 1.0
    with pytest.raises(ValueError):
        s.train.y[0] = 1


def test_fingerprint_is_stable_and_sensitive():
    fp = load_dataset("digits", seed=0, max_samples=300).fingerprint()
    assert fp == load_dataset("digits", seed=0, max_samples=300).fingerprint()
    assert len(fp) == 16 and int(fp, 16) >= 0
    others = {
        load_dataset("digits", seed=1, max_samples=300).fingerprint(),
        load_dataset("digits", seed=0, max_samples=300, resize=16).fingerprint(),
        load_dataset("digits", seed=0, max_samples=300, val_fraction=0.2).fingerprint(),
        load_dataset("synthetic", seed=0, num_samples=300).fingerprint(),
        load_dataset("synthetic", seed=0, num_samples=300, data_seed=1).fingerprint(),
    }
    assert fp not in others and len(others) == 5


def test_synthetic_is_deterministic_and_learnable():
    from sklearn.linear_model import LogisticRegression

    a = load_dataset("synthetic", seed=0, num_samples=600, num_classes=4, shape=[3, 6, 5], noise=1.0)
    b = load_dataset("synthetic", seed=0, num_samples=600, num_classes=4, shape=[3, 6, 5], noise=1.0)
    np.testing.assert_array_equal(a.train.x, b.train.x)
    assert a.input_shape == (3, 6, 5) and a.num_classes == 4
    assert np.bincount(a.train.y).min() > 0
    clf = LogisticRegression(max_iter=500).fit(a.train.x.reshape(len(a.train), -1), a.train.y)
    assert clf.score(a.test.x.reshape(len(a.test), -1), a.test.y) > 0.9


def test_user_factory_module_function(tmp_path, monkeypatch):
    (tmp_path / "my_user_data.py").write_text(
        textwrap.dedent(
            """
            import numpy as np
            from automc.data import RawDataset

            def load(*, n=40, size=5):
                rng = np.random.default_rng(0)
                x = rng.random((n, size, size)).astype(np.float32)  # (N, H, W): channel added
                y = np.arange(n) % 4
                xt, yt = rng.random((8, size, size)), np.arange(8) % 4
                return RawDataset(x, y, ("a", "b", "c", "d"), xt, yt)

            def load_tuple():
                return ((np.zeros((10, 1, 2, 2)), np.arange(10) % 2), (np.ones((4, 1, 2, 2)), np.arange(4) % 2))

            def load_channels_last():
                return np.zeros((10, 8, 8, 3)), np.zeros(10, int)

            not_callable = 3
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    s = load_dataset("my_user_data:load", seed=0, val_fraction=0.25, n=40, size=6)
    assert s.class_names == ("a", "b", "c", "d") and s.input_shape == (1, 6, 6)
    assert (len(s.train), len(s.val), len(s.test)) == (30, 10, 8)  # official test set, val from train

    t = load_dataset("my_user_data:load_tuple", seed=0, val_fraction=0.2)
    assert len(t.test) == 4 and t.class_names == ("0", "1")

    with pytest.raises(ConfigError, match="unknown argument.*'?bogus"):
        load_dataset("my_user_data:load", bogus=1)
    with pytest.raises(ConfigError, match="channels-last.*transpose"):
        load_dataset("my_user_data:load_channels_last")
    with pytest.raises(ConfigError, match="not callable"):
        load_dataset("my_user_data:not_callable")
    with pytest.raises(ConfigError, match="has no attribute 'nope'"):
        load_dataset("my_user_data:nope")
    with pytest.raises(ConfigError, match="cannot import module 'no_such_pkg_xyz.data'"):
        load_dataset("no_such_pkg_xyz.data:load")


def test_registry_names_and_errors():
    assert set(DATASETS.names()) == {"digits", "cifar10", "mnist", "fashion_mnist", "image_folder", "mindrecord",
                                     "synthetic"}
    with pytest.raises(ConfigError, match="unknown dataset 'cifar'; valid names: cifar10, digits"):
        load_dataset("cifar")
    with pytest.raises(ConfigError, match=r"unknown argument\(s\) path for dataset 'digits'; valid: seed"):
        load_dataset("digits", path="/tmp")
    with pytest.raises(ConfigError, match="unknown argument.*num_sample\\b.*valid: num_samples"):
        load_dataset("synthetic", num_sample=10)
    with pytest.raises(ConfigError, match="data.path is required for dataset 'cifar10'"):
        load_dataset("cifar10")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"val_fraction": 1.2}, r"data.val_fraction = 1.2; use a fraction in \[0, 1\)"),
        ({"test_fraction": -0.1}, "data.test_fraction"),
        ({"val_fraction": 0.5, "test_fraction": 0.5}, "keep their sum below 1"),
        ({"channels": 2}, "data.channels = 2; use 1"),
        ({"resize": (0, 4)}, "data.resize"),
        ({"resize": "big"}, "data.resize"),
        ({"max_samples": 0}, "data.max_samples"),
        ({"seed": "x"}, "seed = 'x'; use a non-negative integer"),
        ({"seed": -1}, "seed = -1"),
        ({"max_samples": 1, "test_fraction": 0.5}, None),  # 1 sample: test rounds to 0, still trainable
        ({"max_samples": 2, "val_fraction": 0.5, "test_fraction": 0.4}, "nothing left to train on"),
        ({"shape": [1, 8]}, r"data.shape must be \[channels, height, width\]"),
        ({"num_classes": 1}, "data.num_classes"),
    ],
)
def test_option_errors(kwargs, match):
    name = "synthetic" if {"shape", "num_classes"} & set(kwargs) else "digits"
    if match is None:
        assert len(load_dataset(name, **kwargs).train) == 1
        return
    with pytest.raises(ConfigError, match=match) as info:
        load_dataset(name, **kwargs)
    assert "\n" not in str(info.value)


def test_bad_factory_results():
    with pytest.raises(ConfigError, match="labels have shape"):
        _load_factory_arrays(np.zeros((4, 1, 2, 2)), np.zeros(3, int))
    with pytest.raises(ConfigError, match="use integer class ids"):
        _load_factory_arrays(np.zeros((4, 1, 2, 2)), np.array([0.5, 1, 0, 1]))
    with pytest.raises(ConfigError, match="images must be"):
        _load_factory_arrays(np.zeros((4, 3)), np.zeros(4, int))
