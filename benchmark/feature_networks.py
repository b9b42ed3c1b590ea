"""Feature networks for FID, KID and precision/recall: a cached dataset classifier, or Inception-v3.

Published FIDs use Inception-v3 pool3 features (reference `estimators.md` §7), trained on ImageNet
photographs. For 8×8 digits, 28×28 Fashion-MNIST or 64×64 dSprites a small LeNet-style classifier
trained on the dataset's own labels is the practical alternative; its penultimate layer is the
embedding. Numbers from different networks are not comparable, so every result names the network
by its ``key``: the sha256 of its training spec and the data checksum.

The classifier is trained once with a fixed seed and cached under
``$VAEBENCH_CACHE/feature_networks/<key>/`` (default ``~/.cache/vaebench``). A changed spec or
dataset gives a new key, hence a new network. The weights file's sha256 is checked on every load;
a corrupt entry is retrained with a warning. Inception weights are never downloaded: they are read
from a local path (``$VAEBENCH_INCEPTION_WEIGHTS``).
"""

import hashlib
import io
import json
import os
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from benchmark.datasets.base import Dataset

CACHE_ENV = "VAEBENCH_CACHE"
INCEPTION_WEIGHTS_ENV = "VAEBENCH_INCEPTION_WEIGHTS"
INCEPTION_WEIGHTS_URL = (
    "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
    "weights-inception-2015-12-05-6726825d.pth"
)
CACHE_FORMAT_VERSION = 1  # bump when the saved layout or the training loop changes


@dataclass(frozen=True)
class FeatureNetworkSpec:
    """How a dataset feature network is trained; with the data checksum, its cache key.

    The dataset's settings are not listed: any setting that changes the raw data changes the
    checksum, and the others (e.g. binarization) do not reach the network, which sees raw images.
    """

    dataset: str  # registry name of the dataset whose labelled train split trains the network
    architecture: Literal["lenet"] = "lenet"  # two conv/pool blocks, then a dense feature layer
    channels: tuple[int, int] = (32, 64)  # widths of the two 3x3 conv layers
    num_features: int = 128  # width of the penultimate (feature) layer
    epochs: int = 10  # passes over the train split
    batch_size: int = 128
    lr: float = 1e-3  # Adam
    seed: int = 0  # initialisation and shuffling

    def __post_init__(self) -> None:
        for name in ("num_features", "epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"Expected `{name}` to be >= 1, but got {getattr(self, name)}.")
        if self.lr <= 0:
            raise ValueError(f"Expected `lr` to be > 0, but got {self.lr}.")


@dataclass(frozen=True)
class FeatureNetwork:
    """A frozen image embedding for sample-quality metrics.

    Attributes:
        name: ``lenet`` or ``inception_v3``.
        key: sha256 identifying the exact network (spec + data, or the weights file).
        module: Maps images ``(N, C, H, W)`` in [0, 1] to features ``(N, num_features)``.
        num_features: Feature width F.
        info: Training facts: test accuracy, spec, data checksum, training time.
    """

    name: str
    key: str
    module: nn.Module
    num_features: int
    info: dict[str, Any]

    def describe(self) -> dict[str, Any]:
        """Return what a result records about its feature network."""
        return {
            "name": self.name,
            "key": self.key,
            "id": f"{self.name}-{self.key[:12]}",
            "test_accuracy": self.info.get("test_accuracy"),
        }


class LeNet(nn.Module):
    """A LeNet-style classifier for 1- or 3-channel images of side >= 4 (8×8, 28×28, 64×64)."""

    def __init__(
        self,
        data_shape: tuple[int, ...],
        num_classes: int,
        channels: tuple[int, int],
        num_features: int,
    ) -> None:
        super().__init__()
        if len(data_shape) != 3 or min(data_shape[1:]) < 4:
            raise ValueError(
                f"Expected `data_shape` to be (C, H, W) with H, W >= 4, "
                f"but got {tuple(data_shape)}."
            )
        c, h, w = data_shape
        # Cap the pooled grid at 7×7 so 64×64 inputs do not need a huge dense layer.
        grid = (min(h // 4, 7), min(w // 4, 7))
        self.features = nn.Sequential(
            nn.Conv2d(c, channels[0], 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(channels[0], channels[1], 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.AdaptiveAvgPool2d(grid),
            nn.Flatten(),  # (N, channels[1] * grid_h * grid_w)
            nn.Linear(channels[1] * grid[0] * grid[1], num_features),
            nn.ReLU(),
        )
        self.classifier = nn.Linear(num_features, num_classes)
        self.num_features = num_features

    def forward(self, x: Tensor) -> Tensor:
        """Return class logits ``(N, num_classes)``."""
        return self.classifier(self.features(x))


def spec_key(spec: FeatureNetworkSpec, dataset_checksum: str) -> str:
    """Return the cache key: sha256 of the canonical JSON of the spec, data checksum and format."""
    payload = {
        "spec": asdict(spec),
        "dataset_checksum": dataset_checksum,
        "format_version": CACHE_FORMAT_VERSION,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def default_cache_dir() -> Path:
    """Return ``$VAEBENCH_CACHE``, or ``~/.cache/vaebench`` when it is unset."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "vaebench")


def _labelled_split(dataset: Dataset, split: str) -> tuple[Tensor, Tensor]:
    if split not in dataset.labels or split not in dataset.splits:
        raise ValueError(
            f"Expected dataset {dataset.name!r} to have labels for its {split!r} split, but it has "
            f"labels for {sorted(dataset.labels)}. Use `feature_network: inception` instead."
        )
    return dataset.splits[split], dataset.labels[split].long()


@torch.no_grad()
def classifier_accuracy(
    model: nn.Module, x: Tensor, labels: Tensor, batch_size: int = 1000
) -> float:
    """Return the fraction of `x` that `model` classifies as `labels`."""
    model.eval()
    correct = sum(
        (model(xb).argmax(1) == yb).sum().item()
        for xb, yb in zip(x.split(batch_size), labels.split(batch_size), strict=True)
    )
    return correct / len(x)


def train_feature_network(
    spec: FeatureNetworkSpec, dataset: Dataset
) -> tuple[LeNet, dict[str, Any]]:
    """Train the classifier of `spec` on the dataset's train labels and record its test accuracy.

    Training uses the raw images (grey levels in [0, 1]), which is also what sample-quality
    evaluation feeds the network. Cross-entropy, Adam, fixed seed; deterministic on one machine.

    Returns:
        The trained classifier in eval mode, and its info (accuracies, sizes, time, checksum).
    """
    if spec.dataset != dataset.name:
        raise ValueError(
            f"Expected the spec's `dataset` to be {dataset.name!r}, but got {spec.dataset!r}."
        )
    x, labels = _labelled_split(dataset, "train")
    num_classes = int(labels.max()) + 1
    generator = torch.Generator().manual_seed(spec.seed)
    start = time.perf_counter()
    with torch.random.fork_rng():
        torch.manual_seed(spec.seed)
        model = LeNet(dataset.data_shape, num_classes, spec.channels, spec.num_features)
    optimizer = torch.optim.Adam(model.parameters(), lr=spec.lr)
    for _ in range(spec.epochs):
        model.train()
        for index in torch.randperm(len(x), generator=generator).split(spec.batch_size):
            loss = F.cross_entropy(model(x[index]), labels[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    x_test, labels_test = _labelled_split(dataset, "test")
    info = {
        "spec": asdict(spec),
        "dataset_checksum": dataset.checksum,
        "data_shape": list(dataset.data_shape),
        "num_classes": num_classes,
        "num_train": len(x),
        "num_test": len(x_test),
        "train_accuracy": classifier_accuracy(model, x, labels),
        "test_accuracy": classifier_accuracy(model, x_test, labels_test),
        "train_seconds": time.perf_counter() - start,
        "torch_version": torch.__version__,
    }
    return model.eval(), info


def load_or_train_feature_network(
    spec: FeatureNetworkSpec, dataset: Dataset, cache_dir: str | Path | None = None
) -> FeatureNetwork:
    """Return the cached feature network of `spec` on `dataset`, training and caching it if needed.

    Args:
        spec: Training spec; any change gives a new cache entry.
        dataset: The labelled dataset the network is trained on.
        cache_dir: Cache root; defaults to `default_cache_dir()`.
    """
    key = spec_key(spec, dataset.checksum)
    directory = Path(cache_dir or default_cache_dir()) / "feature_networks" / key
    loaded = _load_cached(directory)
    if loaded is None:
        model, info = train_feature_network(spec, dataset)
        info = _save_cached(directory, model, info)
    else:
        model, info = loaded
    return _as_feature_network(model, info, key)


def _as_feature_network(model: LeNet, info: dict[str, Any], key: str) -> FeatureNetwork:
    model.eval().requires_grad_(False)
    return FeatureNetwork("lenet", key, model.features, model.num_features, info)


def _write_atomic(path: Path, data: bytes) -> None:
    # Write beside the target and rename, so a crash never leaves a half-written file there.
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", delete=False) as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(f.name, path)


def _save_cached(directory: Path, model: LeNet, info: dict[str, Any]) -> dict[str, Any]:
    directory.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    weights = buffer.getvalue()
    info = {**info, "weights_sha256": hashlib.sha256(weights).hexdigest()}
    _write_atomic(directory / "weights.pt", weights)
    # NOTE: info.json is written last: its presence marks a complete entry.
    _write_atomic(directory / "info.json", json.dumps(info, indent=2, sort_keys=True).encode())
    return info


def _load_cached(directory: Path) -> tuple[LeNet, dict[str, Any]] | None:
    info_path, weights_path = directory / "info.json", directory / "weights.pt"
    if not info_path.exists():
        return None
    try:
        info = json.loads(info_path.read_text())
        weights = weights_path.read_bytes()
        if hashlib.sha256(weights).hexdigest() != info["weights_sha256"]:
            raise ValueError("the weights file does not match its recorded sha256")
        spec = info["spec"]
        model = LeNet(
            tuple(info["data_shape"]),
            info["num_classes"],
            tuple(spec["channels"]),
            spec["num_features"],
        )
        model.load_state_dict(torch.load(io.BytesIO(weights), weights_only=True))
    except (OSError, ValueError, KeyError, RuntimeError, json.JSONDecodeError) as error:
        warnings.warn(
            f"Corrupt feature-network cache at {directory} ({error}); retraining.",
            RuntimeWarning,
            stacklevel=3,
        )
        return None
    return model, info


class InceptionFeatures(nn.Module):
    """Inception-v3 pool3 features (2048) of images in [0, 1], grey images repeated to RGB."""

    def __init__(self, inception: nn.Module) -> None:
        super().__init__()
        self.inception = inception
        self.num_features = 2048

    def forward(self, x: Tensor) -> Tensor:
        x = x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x  # (N, 3, H, W)
        # torch-fidelity's network takes uint8 images and resizes them to 299×299 itself.
        return self.inception((x.clamp(0, 1) * 255).round().to(torch.uint8))


def inception_feature_network(weights_path: str | Path | None = None) -> FeatureNetwork:
    """Return torch-fidelity's Inception-v3 (pool3) from local weights; never downloads.

    Args:
        weights_path: The ``pt_inception-2015-12-05`` weights file; defaults to
            ``$VAEBENCH_INCEPTION_WEIGHTS``.
    """
    how = (
        f"On a machine with internet run `pip install torch-fidelity` and "
        f"`curl -L -o pt_inception-2015-12-05-6726825d.pth {INCEPTION_WEIGHTS_URL}`, then set "
        f"{INCEPTION_WEIGHTS_ENV}=/path/to/pt_inception-2015-12-05-6726825d.pth. vaebench never "
        f"downloads weights; otherwise use `feature_network: dataset`."
    )
    path = weights_path or os.environ.get(INCEPTION_WEIGHTS_ENV)
    if not path or not Path(path).is_file():
        raise ValueError(
            f"Expected Inception-v3 weights at a local path (`weights_path` or "
            f"${INCEPTION_WEIGHTS_ENV}), but got {path!r}. {how}"
        )
    try:
        from torchmetrics.image.fid import NoTrainInceptionV3

        inception = NoTrainInceptionV3(
            name="inception-v3-compat",
            features_list=["2048"],
            feature_extractor_weights_path=str(path),
        )
    except ModuleNotFoundError as error:
        raise ModuleNotFoundError(f"Inception-v3 features need torch-fidelity. {how}") from error
    key = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    return FeatureNetwork(
        "inception_v3",
        key,
        InceptionFeatures(inception),
        2048,
        {"weights_path": str(path), "test_accuracy": None},
    )
