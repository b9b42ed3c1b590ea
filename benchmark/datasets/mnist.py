"""MNIST (LeCun et al. 1998): 28x28 handwritten digits, 60,000 training and 10,000 test images.

The default split follows Burda et al. (2016, Sec. 5): the last 400 official training images are
held out for validation, giving 59,600 / 400 / 10,000, with dynamic binarization.
"""

from benchmark.datasets import register_dataset
from benchmark.datasets.base import Dataset
from benchmark.datasets.idx import idx_image_dataset
from benchmark.datasets.preprocessing import Preprocessing


@register_dataset("mnist")
def mnist(
    *,
    data_root: str | None = None,
    preprocessing: Preprocessing = "dynamic_binarization",
    valid_size: int = 400,
    train_size: int | None = None,
    binarization_seed: int = 0,
) -> Dataset:
    """Load MNIST from its four IDX files (raw or .gz), read from the data root.

    Split: valid = the last `valid_size` images of ``train-images-idx3-ubyte`` (indices
    60000 - valid_size .. 59999); train = the images before them, or only the first `train_size`
    of them; test = all 10,000 of ``t10k-images-idx3-ubyte``. Images are ``(1, 28, 28)``, x = k/255.

    Args:
        data_root: Searched first, then ``$VAEBENCH_DATA``, then ``~/.cache/vaebench/mnist``.
        preprocessing: Default dynamic binarization, as in Burda et al. (2016).
        valid_size: Held-out training images (default 400, Burda et al.).
        train_size: Keep only the first `train_size` training images (reduced-budget runs).
        binarization_seed: Seed of static binarization.
    """
    return idx_image_dataset(
        "mnist",
        data_root=data_root,
        preprocessing=preprocessing,
        valid_size=valid_size,
        train_size=train_size,
        binarization_seed=binarization_seed,
    )
