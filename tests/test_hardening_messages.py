"""Each bad setting is refused in one line that names the key, the value and the fix (issue 18,
items 4, 8, 10 and 16).

Property tests on `resolve_spec`, `load_spec` and `load_suite`: the error type, and that the
message holds the key, the offending value and a hint of what to write instead.
"""

import copy

import pytest
import yaml

from benchmark.spec import load_spec, resolve_spec
from benchmark.suite import load_suite

RAW = {
    "name": "m",
    "model": {"name": "vae", "latent_dim": 2},
    "dataset": {"name": "digits"},
    "train": {"steps": 5},
}


def changed(dotted: str, value) -> dict:
    raw = copy.deepcopy(RAW)
    node, *parts = [raw, *dotted.split(".")]
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return raw


@pytest.mark.parametrize(
    ("dotted", "value", "needles"),
    [
        ("train.lr", float("nan"), ["`train.lr`", "nan", "finite"]),
        ("train.lr", float("inf"), ["`train.lr`", "inf", "finite"]),
        ("seed", 2**63, ["`seed`", "9223372036854775808", "smaller"]),
        ("seed", -1, ["`seed`", "-1", ">= 0"]),
        ("model.name", ["vae"], ["`model.name`", "['vae']", "vaebench list models"]),
        ("model.name", {"a": 1}, ["`model.name`", "{'a': 1}", "vaebench list models"]),
        ("eval", {"nll": {"k": -5}}, ["`k`", "-5", "`eval.nll`", "positive"]),
        ("name", "a\x00b", ["`name`", "'a\\x00b'", "e.g. 'a_b'"]),
        ("name", "../../x", ["`name`", "'../../x'", "letters, digits"]),
        ("train.grad_clip_norm", -1.0, ["`train.grad_clip_norm`", "-1.0", "null for no clipping"]),
        ("train.steps", 0, ["`train.steps`", "0", "use 1 or more"]),
        ("train.log_every", 0, ["`train.log_every`", "0", "use 1 or more"]),
        ("model.latent_dim", -3, ["`model.latent_dim`", "-3", "use 1 or more"]),
        ("model.architecture", {"hidden": [64, 0]}, ["hidden[1]`", "0", "use 1 or more"]),
        ("train.adam_betas", [1.5, 0.9], ["`train.adam_betas`", "1.5", "[0.9, 0.999]"]),
        ("dataset.preprocessing", "continuous", ["`model.likelihood", "'continuous'", "use a"]),
        ("eval", ["elbo"], ["`eval`", "['elbo']", "e.g."]),
    ],
)
def test_bad_setting_message_names_key_value_and_fix(dotted, value, needles):
    """Property: the one-line message contains the key, the value and the fix."""
    with pytest.raises((ValueError, TypeError)) as raised:
        resolve_spec(changed(dotted, value))
    message = str(raw := raised.value)
    assert "\n" not in message, raw
    for needle in needles:
        assert needle in message, (needle, message)


def test_huge_value_is_printed_short():
    """Property: an error about a huge value prints a bounded excerpt, not the value."""
    with pytest.raises(TypeError) as raised:
        resolve_spec(changed("model.name", list(range(50_000))))
    assert len(str(raised.value)) < 400


def test_non_utf8_and_duplicate_keys_name_the_file(tmp_path):
    """Property: a non-UTF-8 file and a duplicate key are refused naming the file and place."""
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"name: caf\xe9\n")
    with pytest.raises(ValueError, match=r"latin1.yaml to be UTF-8 .*0xe9 at offset 9.*UTF-8"):
        load_spec(path)
    path = tmp_path / "dup.yaml"
    path.write_text("name: a\nmodel: {name: vae}\ndataset: {name: digits}\nname: b\n")
    with pytest.raises(
        ValueError, match=r"dup.yaml .*line 4, column 1: found duplicate key 'name'"
    ):
        load_spec(path)


@pytest.mark.parametrize(
    ("change", "needles"),
    [
        ({"defaults": ["train"]}, ["`defaults`", "['train']", "e.g."]),
        ({"runs": ["vae"]}, ["`runs[0]`", "'vae'", "e.g."]),
        ({"seeds": []}, ["seed", "none"]),
        ({"seeds": [2**63]}, ["`seeds", "9223372036854775808"]),
    ],
)
def test_bad_suite_message_names_key_value_and_fix(tmp_path, change, needles):
    """Property: a malformed suite is one line naming the key and the value."""
    suite = {"name": "s", "defaults": {"dataset": {"name": "digits"}}, "runs": [RAW], **change}
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(suite))
    with pytest.raises((ValueError, TypeError)) as raised:
        load_suite(str(path))
    for needle in needles:
        assert needle in str(raised.value), (needle, str(raised.value))
