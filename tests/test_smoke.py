import h5py
import numpy as np

from extract.cifar import load_cifar10


def test_tiny_cache_holds_fixture_labels_in_order(tiny_cache, cifar_fixture):
    data = load_cifar10(cifar_fixture)
    with h5py.File(tiny_cache) as f:
        assert f["train/features"].shape == (100, 512)
        assert f["test/features"].shape == (20, 512)
        np.testing.assert_array_equal(f["train/labels"][()], data.splits["train"].labels)
        np.testing.assert_array_equal(f["test/labels"][()], data.splits["test"].labels)
