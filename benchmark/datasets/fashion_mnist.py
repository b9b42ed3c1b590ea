"""Fashion-MNIST (Xiao et al. 2017): 28x28 Zalando article images in MNIST's IDX format.

The default split follows Cremer et al. (2018): 55,000 training / 5,000 validation images, here
the last 5,000 of the official training file, and the official 10,000 test images. On Debian and
Ubuntu, ``apt-get install dataset-fashion-mnist`` installs the files to
/usr/share/datasets/fashion-mnist, which is searched.
"""

from benchmark.datasets import register_dataset
from benchmark.datasets.base import Dataset
from benchmark.datasets.idx import idx_image_dataset
from benchmark.datasets.preprocessing import Preprocessing

APT_FIX = (
    "on Debian/Ubuntu: `sudo apt-get install dataset-fashion-mnist` "
    "(installs to /usr/share/datasets/fashion-mnist)"
)


@register_dataset("fashion_mnist")
def fashion_mnist(
    *,
    data_root: str | None = None,
    preprocessing: Preprocessing = "dynamic_binarization",
    valid_size: int = 5000,
    train_size: int | None = None,
    binarization_seed: int = 0,
) -> Dataset:
    """Load Fashion-MNIST from its four IDX files (raw or .gz), read from the data root.

    Split: valid = the last `valid_size` images of ``train-images-idx3-ubyte`` (indices
    60000 - valid_size .. 59999); train = the images before them, or only the first `train_size`
    of them; test = all 10,000 of ``t10k-images-idx3-ubyte``. Images are ``(1, 28, 28)``, x = k/255.

    Args:
        data_root: Searched first, then ``$VAEBENCH_DATA``, /usr/share/datasets/fashion-mnist and
            ``~/.cache/vaebench/fashion_mnist``.
        preprocessing: Default dynamic binarization; Cremer et al. (2018) used ``threshold``.
        valid_size: Held-out training images (default 5,000, Cremer et al.).
        train_size: Keep only the first `train_size` training images (reduced-budget runs).
        binarization_seed: Seed of static binarization.
    """
    return idx_image_dataset(
        "fashion_mnist",
        data_root=data_root,
        preprocessing=preprocessing,
        valid_size=valid_size,
        train_size=train_size,
        binarization_seed=binarization_seed,
        extra_fixes=(APT_FIX,),
    )
