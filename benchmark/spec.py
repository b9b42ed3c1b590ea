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
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from benchmark.atomic import safe_file_stem
from benchmark.datasets import resolve_dataset_settings
from benchmark.evaluators import get_evaluator
from benchmark.optimizers import OptimizerName, ScheduleName
from registry import resolve_hyperparameters
from registry._typecheck import check_number, check_sizes, check_value, short_repr

MAX_YAML_BYTES = 1_000_000  # a spec or suite file is a few kB; larger input is refused unread
MAX_DEPTH = 32  # nesting levels of a spec; the real ones use 4
MAX_VALUES = 100_000  # values once YAML aliases are expanded (an alias bomb expands to 10**9)


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

    def __post_init__(self) -> None:
        # NOTE: each of these trains without error and records a wrong result as ok otherwise
        # (0 steps: an untrained model; a negative clip norm: gradient ascent).
        for key in ("lr", "adam_eps", "grad_clip_norm"):
            value = getattr(self, key)
            if value is not None and not value > 0:
                hint = " or null for no clipping" if key == "grad_clip_norm" else ""
                raise ValueError(
                    f"Expected `train.{key}` to be > 0, but got {value}; "
                    f"use a positive value{hint}."
                )
        if not all(0 <= beta < 1 for beta in self.adam_betas):
            raise ValueError(
                f"Expected `train.adam_betas` to lie in [0, 1), but got {list(self.adam_betas)}; "
                f"the usual values are [0.9, 0.999]."
            )
        zero_allowed = ("kl_warmup_steps", "checkpoint_every", "curve_nll_examples")
        check_sizes("train", self, zero_allowed=zero_allowed)


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
        return training_hash_of(self.to_dict())

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


TRAINING_KEYS = ("seed", "model", "dataset", "train", "plugins")  # what a checkpoint depends on


def training_hash_of(spec: dict[str, Any]) -> str:
    """Return `RunSpec.training_hash` of a resolved spec's plain data (``RunSpec.to_dict()``,
    as records and progress snapshots store it)."""
    return _sha256({key: spec[key] for key in TRAINING_KEYS})


def _sha256(data: Any) -> str:
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def resolve_spec(raw: dict[str, Any]) -> RunSpec:
    """Validate a raw spec mapping and return the frozen, fully resolved, hashed `RunSpec`.

    Importing the spec's ``plugins:`` runs their code (that is how they register models).

    Raises:
        ValueError: unknown or missing keys, unknown model/dataset/metric names (with hints),
            values out of range, and structures no spec has (alias bombs, deep nesting).
        TypeError: values of the wrong type.
    """
    check_spec_keys(raw)
    plugins = check_value("plugins", raw.get("plugins", []), tuple[str, ...])
    load_plugins(plugins)
    spec = RunSpec(
        name=check_run_name(raw["name"]),
        seed=check_seed("seed", raw.get("seed", 0)),
        model=_resolve_named("model", raw["model"], resolve_hyperparameters),
        dataset=_resolve_named("dataset", raw["dataset"], resolve_dataset_settings),
        train=check_value("train", raw.get("train", {}), TrainSpec),
        eval=_resolve_eval(raw.get("eval", {"elbo": {}})),
        plugins=plugins,
        suite=check_value("suite", raw.get("suite"), str | None),
    )
    _check_likelihood_fits_data(spec)
    return dataclasses.replace(spec, hash=_sha256(spec.to_dict()))


def check_spec_keys(raw: Any) -> None:
    """Raise unless `raw` is plain data of a bounded size with the top-level keys of a spec."""
    if not isinstance(raw, dict):
        raise TypeError(f"Expected a run spec to be a mapping, but got {type(raw).__name__}.")
    check_plain_data(raw, "the spec")
    unknown = sorted(str(key) for key in set(raw) - set(TOP_LEVEL_KEYS))
    if unknown:
        raise ValueError(
            f"Expected spec keys among {list(TOP_LEVEL_KEYS)}, but got unknown "
            f"{short_repr(unknown)}; check the spelling."
        )
    for key in ("name", "model", "dataset"):
        if key not in raw:
            raise ValueError(f"Expected the spec to set `{key}`, but it is missing.")


# One path component: no separators, no control characters, nothing Windows refuses.
_UNSAFE_NAME = re.compile(r'[\x00-\x1f\x7f/\\<>:"|?*]')


def check_run_name(name: Any) -> str:
    """Return `name` if it can name a run's files, or raise ValueError saying what to change.

    The name becomes part of the record's file name (`benchmark.atomic.safe_file_stem`, which
    also shortens long names keeping a hash), so it must be one path component: no ``/`` or
    ``\\``, no control or NUL characters, not starting with ``.`` (no ``..``), not blank.
    """
    name = check_value("name", name, str)
    bad = _UNSAFE_NAME.search(name)
    if bad or not name.strip() or name.startswith((".", "-")):
        why = f"contains {bad.group()!r}" if bad else "is blank or starts with '.' or '-'"
        suggestion = safe_file_stem(name.strip(". -") or "run")
        raise ValueError(
            f"Expected `name` to be one file-name component, but {short_repr(name)} {why}; "
            f"use letters, digits, '-', '_' or '.', e.g. {suggestion!r}."
        )
    return name


def check_seed(path: str, seed: Any) -> int:
    """Return `seed` if it is an integer in [0, 2**63), else raise naming `path`."""
    seed = check_value(path, seed, int)
    if seed < 0:
        raise ValueError(f"Expected `{path}` to be an integer >= 0, but got {seed}.")
    return seed


def _resolve_named(kind: str, block: Any, resolve: typing.Callable[..., dict]) -> dict[str, Any]:
    if not isinstance(block, dict) or "name" not in block:
        raise ValueError(
            f"Expected `{kind}` to be a mapping with a `name`, but got {short_repr(block)}; "
            f"e.g. `{kind}: {{name: ...}}` (`vaebench list {kind}s`)."
        )
    settings = {k: v for k, v in block.items() if k != "name"}
    return {"name": block["name"], **resolve(block["name"], settings)}


# Evaluator settings that may be 0 (no bootstrap); every other count must be >= 1.
EVAL_ZERO_ALLOWED = ("fid_bootstrap",)


def _resolve_eval(block: Any) -> dict[str, Any]:
    if not isinstance(block, dict):
        raise TypeError(
            f"Expected `eval` to map metric names to settings, but got {short_repr(block)}; "
            f"e.g. `eval: {{elbo: {{}}}}` (`vaebench list metrics`)."
        )
    resolved = {}
    for name in sorted(block, key=str):
        evaluator = get_evaluator(name)
        resolved[name] = check_value(f"eval.{name}", block[name] or {}, evaluator.config_type)
        check_sizes(f"eval.{name}", resolved[name], zero_allowed=EVAL_ZERO_ALLOWED)
    return resolved


BINARY_PREPROCESSINGS = ("dynamic_binarization", "static_binarization", "threshold")


def _check_likelihood_fits_data(spec: RunSpec) -> None:
    """Refuse a Bernoulli likelihood on data that are not binary, before any training.

    Otherwise torch.distributions' support check fails on the first batch with a message that
    prints the whole batch.
    """
    preprocessing = spec.dataset.get("preprocessing")
    if spec.model.get("likelihood") == "bernoulli" and preprocessing not in (
        None,
        *BINARY_PREPROCESSINGS,
    ):
        raise ValueError(
            f"Expected `model.likelihood: bernoulli` to model binary pixels, but "
            f"`dataset.preprocessing` is {preprocessing!r}; use a binarization "
            f"({', '.join(BINARY_PREPROCESSINGS)}) or another `model.likelihood`."
        )


def load_plugins(plugins: tuple[str, ...]) -> None:
    """Import plugin modules (dotted names or .py paths) that register extra models."""
    from benchmark.plugins import import_plugin

    for plugin in plugins:
        import_plugin(plugin)


class _SpecLoader(yaml.SafeLoader):
    """`yaml.SafeLoader` that refuses duplicate keys, which YAML would silently overwrite."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, typing.Hashable) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"found duplicate key {short_repr(key)}", key_node.start_mark
                )
            if isinstance(key, typing.Hashable):
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


def parse_yaml(text: str, where: str, *, path: str = "") -> Any:
    """Parse YAML `text` safely into plain data; every failure is one line naming `where`.

    Args:
        text: The YAML document.
        where: What it is, for messages (a file name, "the value of `--set k`").
        path: The spec key the document is the value of, for messages ("" for a whole file).

    Raises:
        ValueError: text over `MAX_YAML_BYTES`, a syntax error (with line and column), a
            duplicate key, nesting deeper than `MAX_DEPTH`, or an alias bomb.
    """
    if len(text) > MAX_YAML_BYTES:
        raise ValueError(
            f"Expected {where} to be at most {MAX_YAML_BYTES:,} characters of YAML, but it has "
            f"{len(text):,}; a spec is a few kB."
        )
    try:
        data = yaml.load(text, Loader=_SpecLoader)  # noqa: S506  a SafeLoader subclass
    except yaml.YAMLError as error:
        raise ValueError(
            f"Expected {where} to be valid YAML, but {_yaml_problem(error)}."
        ) from None
    except RecursionError:
        raise ValueError(
            f"Expected {where} to nest at most {MAX_DEPTH} levels deep, but it nests deeper."
        ) from None
    check_plain_data(data, where, path=path)
    return data


def _yaml_problem(error: yaml.YAMLError) -> str:
    """Return a YAML error as one short line: what went wrong and where."""
    problem = getattr(error, "problem", None) or str(error).splitlines()[0]
    mark = getattr(error, "problem_mark", None)
    at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"parsing failed{at}: {' '.join(str(problem).split())[:200]}"


def check_plain_data(data: Any, where: str, *, path: str = "") -> None:
    """Raise ValueError unless `data` is a small tree of plain values, as specs are.

    Plain values are mappings with string keys, lists, strings, booleans, null, int64 integers
    and finite floats. YAML can also express shared and recursive structures (anchors and
    aliases): a billion-laughs document parses in milliseconds into a few shared lists whose
    expansion has 10**9 values, which anything that walks it (hashing, error messages) would
    expand. Shared nodes are measured once here, so the check itself stays fast.
    """
    _measure(data, path, where, {}, set())


def _measure(value: Any, path: str, where: str, sizes: dict, ancestors: set) -> int:
    """Return the expanded value count of `value`; `sizes` memoizes shared nodes by id."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return 1  # NOTE: a resolved setting passed in by code (e.g. an `Architecture`)
    if not isinstance(value, dict | list | tuple):
        _check_scalar(value, path, where)
        return 1
    if id(value) in sizes:
        return sizes[id(value)]
    at = f" at `{path}`" if path else ""
    if id(value) in ancestors:
        raise ValueError(f"Expected {where} to hold no structure that contains itself{at}.")
    if len(ancestors) >= MAX_DEPTH:
        raise ValueError(
            f"Expected {where} to nest at most {MAX_DEPTH} levels deep, but it nests deeper{at}."
        )
    ancestors.add(id(value))
    size = 1
    for key, item in value.items() if isinstance(value, dict) else enumerate(value):
        if isinstance(value, dict) and not isinstance(key, str):
            raise ValueError(
                f"Expected the keys of {where} to be strings, but got {short_repr(key)}{at}; "
                f"quote the key."
            )
        child = f"{path}.{key}".lstrip(".") if isinstance(value, dict) else f"{path}[{key}]"
        size += _measure(item, child, where, sizes, ancestors)
        if size > MAX_VALUES:
            raise ValueError(
                f"Expected {where} to hold at most {MAX_VALUES:,} values once YAML aliases are "
                f"expanded, but it holds more{at}; write the values out instead of aliasing them."
            )
    ancestors.discard(id(value))
    sizes[id(value)] = size
    return size


def _check_scalar(value: Any, path: str, where: str) -> None:
    if value is not None and not isinstance(value, str | int | float):
        raise ValueError(
            f"Expected `{path}` in {where} to be a string, number, boolean or null, but got "
            f"{short_repr(value)} ({type(value).__name__}); quote it to make it a string."
        )
    check_number(path or "value", value)


def read_yaml(path: str | Path) -> Any:
    """Read a YAML file with a safe loader (`parse_yaml`), every failure one line naming it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Expected a spec file at {path}, but there is none.")
    if path.stat().st_size > MAX_YAML_BYTES:
        raise ValueError(
            f"Expected {path} to be at most {MAX_YAML_BYTES:,} bytes of YAML, but it has "
            f"{path.stat().st_size:,}; a spec is a few kB."
        )
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(
            f"Expected {path} to be UTF-8 text, but byte {error.object[error.start]:#04x} at "
            f"offset {error.start} is not UTF-8; save the file as UTF-8."
        ) from None
    return parse_yaml(text, str(path))


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Return a copy of `raw` with ``dotted.key=value`` overrides applied (values parsed as YAML).

    Overrides go into the spec before it is resolved, so they change its hash.
    """
    raw = copy.deepcopy(raw)
    for override in overrides:
        key, sep, value = override.partition("=")
        parts = key.split(".")
        if not sep or not all(part.strip() for part in parts):
            raise ValueError(
                f"Expected an override like `train.steps=100`, but got {short_repr(override)}."
            )
        node = raw
        for depth, part in enumerate(parts[:-1]):
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                where = ".".join(parts[: depth + 1])
                raise ValueError(
                    f"Expected `{where}` to be a mapping for override {short_repr(override)}, "
                    f"but it is {short_repr(node)}."
                )
        node[parts[-1]] = parse_yaml(value, f"the value of `--set {key[:100]}`", path=key)
    return raw


def load_spec(path: str | Path, *, seed: int | None = None, overrides: list[str] = ()) -> RunSpec:
    """Read, override and resolve a run spec file; `seed` replaces the file's seed."""
    raw = read_yaml(path)
    if not isinstance(raw, dict):
        raise ValueError(
            f"Expected {path} to hold a mapping of spec keys, but got {short_repr(raw)}."
        )
    raw = apply_overrides(raw, list(overrides))
    if seed is not None:
        raw["seed"] = seed
    return resolve_spec(raw)
