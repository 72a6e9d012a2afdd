"""The images shipped inside the package (workloads/data/, provenance in its SOURCES.md): file
names only, so readers without torch (store.search's target) can find them."""

BUNDLED = {
    "cifar10": "cifar10_test_first1000_uint8_nhwc.npz",
    "mnist": "mnist_test_first1000_uint8_nhw.npz",
}
BUNDLED_SIZE = 1000  # the first 1000 images of each test split
