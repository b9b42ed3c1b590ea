"""Run specs: YAML in, a frozen, validated, fully resolved and hashed `RunSpec` out.

A run spec names a model, a dataset, a training budget, the metrics to evaluate and a seed:

```yaml
name: vae-digits
seed: 0
model: {name: vae, latent_dim: 8, architecture: {hidden: [128, 64]}}
dataset: {name: digits, preprocessing: dynamic_binarization}
train: {steps: 3000, batch_size: 64, lr: 1.0e-3}
eval: {elbo: {}, nll: {k: 1000}}
```

The ``model:`` and ``dataset:`` blocks are checked against the registered factory signatures,
``train:`` against `TrainSpec`, and each ``eval:`` key against its evaluator's config dataclass.
Unknown keys raise with the allowed keys; defaults are filled in, so the resolved spec lists
every setting and its sha256 (`spec_hash`) changes whenever anything that affects the run does.
"""

import copy
import dataclasses
import hashlib
import json
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from benchmark.datasets import resolve_dataset_settings
from benchmark.evaluators import get_evaluator
from benchmark.optimizers import OptimizerName, ScheduleName
from registry import resolve_hyperparameters
from registry._typecheck import check_value


@dataclass(frozen=True)
class TrainSpec:
    """The training budget, optimiser and schedule (`benchmark.optimizers`)."""

    steps: int = 2000  # optimisation steps (minibatches), not epochs
    batch_size: int = 64
    lr: float = 1e-3  # the rate of the `constant` schedule; `burda2016` sets its own per pass
    adam_betas: tuple[float, float] = (0.9, 0.999)
    adam_eps: float = 1e-8
    optimizer: OptimizerName = "adam"  # or `adam_burda2016`, Adam as released with IWAE
    lr_schedule: ScheduleName = "constant"  # or `burda2016`: 8 passes of 3^i epochs
    kl_warmup_steps: int = 0  # KL weight rises linearly from 0 to 1 over this many steps
    grad_clip_norm: float | None = None  # clip the global gradient norm; None = no clipping
    checkpoint_every: int = 500  # steps between resumable checkpoints; 0 = only at the end
    log_every: int = 100  # steps between points of the recorded training curve
    paper_steps: int | None = None  # the protocol's full budget; records state steps / this
    curve_nll_examples: int = 0  # test images scored by IS-NLL at the end of each pass; 0 = none
    curve_nll_k: int = 1000  # importance samples of those learning-curve NLLs
    compile: bool = False  # torch.compile the training step (`benchmark.perf train` measures it)


@dataclass(frozen=True)
class RunSpec:
    """A resolved run: every setting explicit. Build it with `resolve_spec`, not by hand."""

    name: str
    seed: int
    model: dict[str, Any]  # {"name": ..., **hyperparameters}
    dataset: dict[str, Any]  # {"name": ..., **settings}
    train: TrainSpec
    eval: dict[str, Any]  # evaluator name -> its config dataclass
    plugins: tuple[str, ...] = ()
    suite: str | None = None  # the suite this run was expanded from, if any
    hash: str = field(default="", compare=False)

    def to_dict(self) -> dict[str, Any]:
        """Return the resolved spec as plain JSON-able data (the hash excluded)."""
        data = _plain(dataclasses.asdict(self))
        data.pop("hash")
        return data

    @property
    def training_hash(self) -> str:
        """sha256 of what training depends on (seed, model, dataset, train, plugins).

        Checkpoints are named by it, so a change of evaluation settings re-evaluates the
        final weights instead of training again.
        """
        data = self.to_dict()
        return _sha256({key: data[key] for key in ("seed", "model", "dataset", "train", "plugins")})

    @property
    def config_hash(self) -> str:
        """sha256 of the spec without its seed: runs that differ only by seed share it."""
        data = self.to_dict()
        data.pop("seed")
        return _sha256(data)


TOP_LEVEL_KEYS = ("name", "seed", "model", "dataset", "train", "eval", "plugins", "suite")


def _plain(value: Any) -> Any:
    """Convert dataclasses and tuples to dicts and lists, recursively."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _plain(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _sha256(data: Any) -> str:
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def resolve_spec(raw: dict[str, Any]) -> RunSpec:
    """Validate a raw spec mapping and return the frozen, fully resolved, hashed `RunSpec`.

    Raises:
        ValueError: unknown or missing keys, unknown model/dataset/metric names (with hints).
        TypeError: values of the wrong type.
    """
    if not isinstance(raw, dict):
        raise TypeError(f"Expected a run spec to be a mapping, but got {type(raw).__name__}.")
    unknown = sorted(set(raw) - set(TOP_LEVEL_KEYS))
    if unknown:
        raise ValueError(
            f"Expected spec keys among {list(TOP_LEVEL_KEYS)}, but got unknown {unknown}."
        )
    for key in ("name", "model", "dataset"):
        if key not in raw:
            raise ValueError(f"Expected the spec to set `{key}`, but it is missing.")
    plugins = check_value("plugins", raw.get("plugins", []), tuple[str, ...])
    load_plugins(plugins)
    spec = RunSpec(
        name=check_value("name", raw["name"], str),
        seed=check_value("seed", raw.get("seed", 0), int),
        model=_resolve_named("model", raw["model"], resolve_hyperparameters),
        dataset=_resolve_named("dataset", raw["dataset"], resolve_dataset_settings),
        train=check_value("train", raw.get("train", {}), TrainSpec),
        eval=_resolve_eval(raw.get("eval", {"elbo": {}})),
        plugins=plugins,
        suite=check_value("suite", raw.get("suite"), str | None),
    )
    return dataclasses.replace(spec, hash=_sha256(spec.to_dict()))


def _resolve_named(kind: str, block: Any, resolve: typing.Callable[..., dict]) -> dict[str, Any]:
    if not isinstance(block, dict) or "name" not in block:
        raise ValueError(f"Expected `{kind}` to be a mapping with a `name`, but got {block!r}.")
    settings = {k: v for k, v in block.items() if k != "name"}
    return {"name": block["name"], **resolve(block["name"], settings)}


def _resolve_eval(block: Any) -> dict[str, Any]:
    if not isinstance(block, dict):
        raise TypeError(f"Expected `eval` to map metric names to settings, but got {block!r}.")
    resolved = {}
    for name in sorted(block):
        evaluator = get_evaluator(name)
        resolved[name] = check_value(f"eval.{name}", block[name] or {}, evaluator.config_type)
    return resolved


def load_plugins(plugins: tuple[str, ...]) -> None:
    """Import plugin modules (dotted names or .py paths) that register extra models."""
    from benchmark.plugins import import_plugin

    for plugin in plugins:
        import_plugin(plugin)


def read_yaml(path: str | Path) -> Any:
    """Read a YAML file with `yaml.safe_load`, turning parse errors into clear ValueErrors."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Expected a spec file at {path}, but there is none.")
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ValueError(
            f"Expected {path} to be valid YAML, but parsing failed:\n{error}"
        ) from None


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Return a copy of `raw` with ``dotted.key=value`` overrides applied (values parsed as YAML).

    Overrides go into the spec before it is resolved, so they change its hash.
    """
    raw = copy.deepcopy(raw)
    for override in overrides:
        key, sep, value = override.partition("=")
        if not sep or not key:
            raise ValueError(f"Expected an override like `train.steps=100`, but got {override!r}.")
        node = raw
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"Expected `{part}` in override {override!r} to be a mapping.")
        node[leaf] = yaml.safe_load(value)
    return raw


def load_spec(path: str | Path, *, seed: int | None = None, overrides: list[str] = ()) -> RunSpec:
    """Read, override and resolve a run spec file; `seed` replaces the file's seed."""
    raw = read_yaml(path)
    if not isinstance(raw, dict):
        raise ValueError(f"Expected {path} to hold a mapping of spec keys, but got {raw!r}.")
    raw = apply_overrides(raw, list(overrides))
    if seed is not None:
        raw["seed"] = seed
    return resolve_spec(raw)
