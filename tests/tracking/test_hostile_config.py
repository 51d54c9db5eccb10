"""Hostile input to the config loaders: whatever YAML document, file or `key=value` override a user hands over,
the answer is a valid config or a ConfigError (which `fitlens` turns into exit status 2 and one line), never
another exception, a hang or a traceback.

Property tests (hypothesis, derandomized so CI sees the same examples) build documents from the real schema
(every field name of RunConfig and SweepConfig, given values of every wrong type, out-of-range, huge, NaN,
unicode, empty) and from raw YAML fragments (anchors, aliases, tags, dates, unclosed brackets). Then one
example test per class of input that used to escape as another exception, and the command end to end.
"""

from __future__ import annotations

import dataclasses
import math
import re
import subprocess
import time
import types
import typing
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, currently_in_test_context, event, given, settings
from hypothesis import strategies as st

from lightning_modules.config import ConfigError, RunConfig
from tests.commands import FITLENS, env
from tracking.config import INT64, MAX_DEPTH, MAX_VALUES, config_from_dict, dump_yaml, load_config, parse_override
from tracking.sweep.space import tune_points
from tracking.sweep_config import (
    SweepConfig,
    apply,
    dump_sweep,
    load_sweep,
    sweep_from_dict,
)

FUZZ = settings(max_examples=300, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


# -- the schema's names, for documents that look like configs --------------------------------------------------

def _fields(cls: type, prefix: str = "") -> dict[str, Any]:
    """Every dotted field of a config dataclass -> its type hint (a dataclass for a section)."""
    hints = typing.get_type_hints(cls)
    found: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        found[prefix + f.name] = hints[f.name]
        if dataclasses.is_dataclass(hints[f.name]):
            found |= _fields(hints[f.name], f"{prefix}{f.name}.")
    return found


RUN_FIELDS = _fields(RunConfig)
SWEEP_FIELDS = {k: v for k, v in _fields(SweepConfig).items() if not k.startswith("base.")}
LEAVES = sorted(k for k, hint in RUN_FIELDS.items() if not dataclasses.is_dataclass(hint))
SECTIONS = sorted(k for k, hint in RUN_FIELDS.items() if dataclasses.is_dataclass(hint))
NAMES = sorted({part for key in [*RUN_FIELDS, *SWEEP_FIELDS] for part in key.split(".")})
DISTRIBUTIONS = ["loguniform", "loguniform_one_minus", "uniform", "randint", "choice", "grid"]

NASTY_TEXT = ["", " ", "nan", ".nan", "-.inf", "1e999", "0x1F", "0o17", "1_000", "~", "null", "yes", "off",
              "2024-02-30", "2001-13-45", "12:30:00", "<script>alert(1)</script>", "../../etc/passwd", "\x00",
              "\u202e", "é", "💥", "relu", "sgd", "mnist1d", "3e-4", "a" * 300, "optim.lr", "=", "[", "{"]
HUGE = [10**400, -(10**400), 2**63, -(2**63) - 1, 2**64, 2**32, -1, 0, 1, INT64[1], INT64[0]]
FLOATS = [math.nan, math.inf, -math.inf, 1e308, -1e308, 5e-324, -0.0, 0.5, 1.0, 1.0000000000000002]

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.sampled_from(HUGE), st.floats(), st.sampled_from(FLOATS),
    st.text(max_size=12), st.sampled_from(NASTY_TEXT), st.binary(max_size=4), st.dates(),
)
keys = st.one_of(st.sampled_from(NAMES), st.sampled_from(DISTRIBUTIONS), st.text(max_size=6),
                 st.integers(-3, 3), st.booleans(), st.none(), st.sampled_from(LEAVES))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(keys, inner, max_size=4)), max_leaves=12)


# How hostile a document is: "clean" values of each field's type inside the usual ranges (documents that load,
# so the round trips and cross-field checks get exercised), "typed" values of the right type at the edges
# (negative, huge, NaN, empty, near-miss names), "any" values of any type at all.
LEVELS = ["clean", "typed", "any"]


def typed(hint: Any, level: str) -> st.SearchStrategy:
    """A value for a field of type `hint`, as hostile as `level`."""
    if level == "any":
        return values
    clean = level == "clean"
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Literal:
        return st.sampled_from(args) if clean else st.sampled_from([*args, *(a.upper() + "x" for a in args)])
    if origin in (typing.Union, types.UnionType):
        return st.one_of(*(typed(a, level) for a in args))
    if origin is list:
        return st.lists(typed(args[0], level), max_size=3)
    if origin is dict:
        return st.dictionaries(st.text(min_size=1, max_size=6), typed(float, level) if clean else values, max_size=2)
    if clean:
        return {int: st.integers(2, 4), float: st.floats(0.05, 0.95), bool: st.booleans(), type(None): st.none(),
                str: st.text(min_size=1, max_size=8).filter(lambda t: t.strip() == t)}.get(hint, values)
    return {
        int: st.one_of(st.integers(-2, 300), st.sampled_from(HUGE)),
        float: st.one_of(st.floats(-2, 2), st.sampled_from(FLOATS), st.sampled_from(["3e-4", "1e999", "abc"])),
        bool: st.booleans(),
        str: st.one_of(st.text(max_size=8), st.sampled_from(NASTY_TEXT)),
        type(None): st.none(),
    }.get(hint, values)


def _nested(draw: st.DrawFn, fields: dict[str, Any], chosen: list[str], level: str) -> dict[Any, Any]:
    """The dotted fields `chosen` as nested mappings, each given a value as hostile as `level`."""
    doc: dict[Any, Any] = {}
    for key in chosen:
        *parents, leaf = key.split(".")
        node = doc
        for part in parents:
            node = node.setdefault(part, {}) if isinstance(node.get(part, {}), dict) else {}
        if dataclasses.is_dataclass(fields[key]):
            node.setdefault(leaf, {})
        else:
            node[leaf] = draw(typed(fields[key], level))
    return doc


@st.composite
def run_documents(draw: st.DrawFn, level: str | None = None) -> dict[Any, Any]:
    """A run config document: real sections and fields; unless clean, sometimes a section that is not a mapping
    or an unknown key."""
    level = level or draw(st.sampled_from(LEVELS))
    doc = _nested(draw, RUN_FIELDS, draw(st.lists(st.sampled_from(sorted(RUN_FIELDS)), max_size=5)), level)
    if level != "clean" and draw(st.integers(0, 3)) == 0:
        doc[draw(st.sampled_from(SECTIONS))] = draw(values)  # a section that is not a mapping
    if level != "clean" and draw(st.integers(0, 3)) == 0:
        doc.update(draw(st.dictionaries(keys, values, max_size=2)))
    return doc


@st.composite
def space_entries(draw: st.DrawFn, level: str) -> tuple[Any, Any]:
    """(key, distribution) over a real key: choice or grid of values of its type, numeric bounds, or bundles of
    a section's settings; unless clean, sometimes bounds at the edges, odd keys or anything at all."""
    key = draw(st.sampled_from(LEAVES + SECTIONS) if level == "clean" else
               st.one_of(st.sampled_from(LEAVES), st.sampled_from(SECTIONS), keys))
    hint = RUN_FIELDS.get(key, Any) if isinstance(key, str) else Any
    kind = draw(st.sampled_from(DISTRIBUTIONS))
    if dataclasses.is_dataclass(hint):  # a section: bundles of its settings
        fields = sorted(k for k in RUN_FIELDS if k.startswith(key + "."))
        args: Any = [_nested(draw, RUN_FIELDS, draw(st.lists(st.sampled_from(fields), max_size=2)), level).get(key, {})
                     for _ in range(draw(st.integers(1, 2)))]
    elif kind in ("choice", "grid"):
        args = draw(st.lists(typed(hint, level), min_size=1, max_size=3))
    else:
        bound = (st.one_of(st.integers(2, 4), st.floats(0.05, 0.95)) if level == "clean" else
                 st.one_of(st.floats(-2, 1e3), st.integers(-2, 300), st.sampled_from([*FLOATS, *HUGE])))
        args = list(draw(st.tuples(bound, bound)))
        if level == "clean" or draw(st.booleans()):
            args = sorted(args, key=lambda b: (isinstance(b, float) and math.isnan(b), b))
    if level == "any" and draw(st.booleans()):
        return key, draw(values)
    return key, {kind: args}


@st.composite
def sweep_documents(draw: st.DrawFn) -> dict[Any, Any]:
    """A sweep file: its own fields, a base run document and a space over real keys, as hostile as a level."""
    level = draw(st.sampled_from(LEVELS))
    fields = {k: v for k, v in SWEEP_FIELDS.items() if k not in ("base", "space")}
    doc = _nested(draw, fields, draw(st.lists(st.sampled_from(sorted(fields)), max_size=4)), level)
    if draw(st.booleans()):
        doc["base"] = draw(run_documents(level))
    if level == "any" and draw(st.integers(0, 4)) == 0:
        doc["space"] = draw(values)
    else:
        doc["space"] = dict(draw(st.lists(space_entries(level), min_size=1, max_size=3)))
    return doc


@st.composite
def overrides(draw: st.DrawFn) -> list[str]:
    """Command-line overrides: real dotted keys (and odd ones) = the YAML text of a value, or raw text."""
    level = draw(st.sampled_from(LEVELS))
    found = []
    for _ in range(draw(st.integers(0, 4))):
        key = draw(st.sampled_from(LEAVES) if level == "clean" else st.sampled_from(
            [*LEAVES, *SECTIONS, "optim.kwargs.x", "data.args.y", "model.depth.x", "a..b", ".x", "x.", "", " "]))
        value = draw(typed(RUN_FIELDS.get(key, Any), level).map(yaml_text) if level != "any" else
                     st.one_of(values.map(yaml_text), st.sampled_from(NASTY_TEXT), raw_yaml))
        found.append(f"{key}={value}")
    if level == "any" and draw(st.booleans()):
        found.append(draw(st.text(max_size=20)))
    return found


def yaml_text(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True, width=10**6).strip()


# Pieces of YAML syntax, glued at random: anchors, aliases (and alias bombs), tags, merges, directives.
FRAGMENTS = ["model:", "optim:", "data:", "train:", "space:", "base:", " depth: ", " lr: ", " width: ", "\n", "\n  ",
             "\t", "- ", "[", "]", "{", "}", ",", ": ", "&a ", "*a", "&b [*a, *a, *a, *a]", "<<: *a", "? ", "---",
             "...", "%YAML 1.1\n", "!!float ", "!!int ", "!!str ", "!!binary ", "!!timestamp ", "!!set ",
             "!!python/object/apply:os.system ['true']", "'", '"', "\\u0000", "\\ud800", "#", "|", ">", "2024-02-30",
             "1" + "0" * 500, "0x", ".nan", "-.inf", "relu", "~", "null", "é", "\x85", "\ufeff", "\x00", "=", "@"]
raw_yaml = st.lists(st.sampled_from(FRAGMENTS), max_size=14).map("".join)


def must_be_clean(err: ConfigError) -> None:
    """What `fitlens` prints: one line that names what is wrong, not a page of repr."""
    text = str(err)
    assert text and "\n" not in text and len(text) < 2000, text


def config_or_error(load: Any, *args: Any) -> Any:
    try:
        loaded = load(*args)
    except ConfigError as err:
        must_be_clean(err)
        loaded = None
    if currently_in_test_context():  # --hypothesis-show-statistics: both outcomes must be common
        event("ConfigError" if loaded is None else "valid")
    return loaded


# -- properties ------------------------------------------------------------------------------------------------

@FUZZ
@given(run_documents())
def test_any_run_document_gives_a_config_that_round_trips_or_a_config_error(doc: dict) -> None:
    cfg = config_or_error(config_from_dict, doc)
    if cfg is not None:  # valid: what config.yaml stores must load back to the same config
        assert config_from_dict(yaml.safe_load(dump_yaml(cfg))) == cfg


@FUZZ
@given(overrides())
def test_any_overrides_give_a_config_or_a_config_error(overrides: list[str]) -> None:
    cfg = config_or_error(load_config, None, overrides)
    if cfg is not None:
        assert config_from_dict(yaml.safe_load(dump_yaml(cfg))) == cfg


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("hostile")


@FUZZ
@given(text=st.one_of(raw_yaml, run_documents().map(yaml_text), st.text(max_size=40)),
       encoding=st.sampled_from(["utf-8", "utf-16", "latin-1"]))
def test_any_yaml_file_gives_a_config_or_a_config_error(folder: Path, text: str, encoding: str) -> None:
    path = folder / "config.yaml"
    path.write_bytes(text.encode(encoding, "replace" if encoding == "latin-1" else "surrogatepass"))
    config_or_error(load_config, path)
    config_or_error(load_sweep, path)


@FUZZ
@given(sweep_documents())
def test_any_sweep_document_gives_a_sweep_that_samples_and_round_trips_or_a_config_error(doc: dict) -> None:
    sweep = config_or_error(sweep_from_dict, doc)
    if sweep is None:
        return
    for point in tune_points(sweep, 2):  # every draw of a valid sweep is a valid run config
        assert isinstance(apply(sweep.base, point), RunConfig)
    assert sweep_from_dict(yaml.safe_load(dump_sweep(sweep))) == sweep


# -- each class of input that once escaped as another exception ------------------------------------------------

@pytest.mark.parametrize("text", [
    "2024-02-30",  # YAML's date pattern, but no date: it was a ValueError out of yaml.safe_load
    "!!float abc",  # an explicit tag that cannot hold: the text after it
    "!!int 0x",
])
def test_scalars_that_look_like_dates_or_numbers_but_are_not_stay_text(text: str) -> None:
    assert load_config(None, [f"run_name={text}"]).run_name == text.split()[-1]


@pytest.mark.parametrize(("override", "message"), [
    ("model.depth=1" + "0" * 400, "model.depth = <an integer of 401+ digits>: expected an integer that fits in "
                                  "64 bits (from -9223372036854775808 to 9223372036854775807)"),
    ("optim.lr=1" + "0" * 400, "optim.lr = <an integer of 401+ digits>: expected a finite number"),  # OverflowError
    ("model.depth=1" + "0" * 5000, "model.depth = '1000000000"),  # beyond int()'s 4300 digits: read as text
    (f"data.n_samples={2**63}", "data.n_samples = 9223372036854775808: expected an integer that fits in 64 bits"),
    ("train.seed=-1", "train.seed = -1 is out of range; allowed: >= 0 and <= 4294967295"),  # Lightning's ValueError
    (f"data.seed={2**32}", "data.seed = 4294967296 is out of range; allowed: >= 0 and <= 4294967295"),
    ("model.width=" + "[" * 3000 + "]" * 3000, "model.width = '[[[[[[[[[[[[[["),  # RecursionError in the parser
    ("optim.kwargs.x=&a [*a]", f"override 'optim.kwargs.x' nests more than {MAX_DEPTH} levels deep"),  # a cycle
    ("run_name=\udcff", "override 'run_name': the text '\\udcff' is not valid Unicode"),  # argv bytes, not UTF-8
])
def test_huge_numbers_seeds_deep_nesting_and_bad_unicode_are_config_errors(override: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(None, [override])
    must_be_clean(caught.value)
    assert str(caught.value).startswith(message), str(caught.value)


def _bomb(levels: int) -> str:
    """YAML whose aliases expand to 9 ** levels integers in 30 lines (the "billion laughs")."""
    lines = ["optim:", "  kwargs:", "    l0: &l0 [1, 1, 1, 1, 1, 1, 1, 1, 1]"]
    lines += [f"    l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, levels)]
    return "\n".join([*lines, f"model: {{width: *l{levels - 1}}}"]) + "\n"


@pytest.mark.parametrize(("name", "text", "message"), [
    ("bomb.yaml", _bomb(10), f"holds more than {MAX_VALUES} values (counting each use of a YAML alias)"),
    ("cycle.yaml", "optim: {kwargs: &k {x: *k}}\n", f"nests more than {MAX_DEPTH} levels deep"),
    ("deep.yaml", "model: {width: " + "[" * 5000 + "]" * 5000 + "}\n", "is not valid YAML: nested more than"),
    ("date.yaml", "data: {path: 2001-13-45}\n", None),  # text that looks like a date: a valid config
    ("latin1.yaml", "run_name: caf\xe9\n", "is not UTF-8 text"),
    ("broken.yaml", "model: [1, 2\nx: 3\n", "is not valid YAML: while parsing a flow sequence in"),
])
def test_files_that_expand_nest_or_decode_badly_are_refused_at_once(tmp_path: Path, name: str, text: str,
                                                                     message: str | None) -> None:
    path = tmp_path / name
    path.write_bytes(text.encode("latin-1" if name.startswith("latin1") else "utf-8"))
    start = time.monotonic()
    if message is None:
        assert load_config(path).data.path == "2001-13-45"
    else:
        with pytest.raises(ConfigError, match=re.escape(message)) as caught:
            load_config(path)
        must_be_clean(caught.value)
    assert time.monotonic() - start < 5  # a billion values would take minutes (or all the memory) to repr


def test_a_directory_and_an_override_without_a_value_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path)
    with pytest.raises(ConfigError, match="must look like section.key=value"):
        parse_override("\udcff")


@pytest.mark.parametrize(("doc", "message"), [
    ({"space": {1: {"choice": [1]}}}, "space: the key 1 is not a dotted run-config key"),  # was an AttributeError
    ({"space": {"optim.lr": {"uniform": [-1e308, 1e308]}}}, "the range high - low overflows"),  # numpy OverflowError
    ({"space": {"model.width": {"randint": [1, 2**70]}}}, "randint bounds must lie from"),  # numpy ValueError
    ({"space": {"optim.lr": {"randint": [1, 2**63 - 1]}}}, "randint bounds must lie from"),
])
def test_sweep_spaces_that_cannot_be_sampled_are_config_errors(doc: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        sweep_from_dict(doc)


# -- end to end ------------------------------------------------------------------------------------------------

HOSTILE_FILES = {
    "unknown.yaml": (b"model: {dept: 3}\n", "unknown key 'model.dept' (did you mean 'model.depth'?)"),
    "wrong-type.yaml": (b"optim: {lr: [fast]}\n", "optim.lr = ['fast']: expected a number"),
    "huge.yaml": (b"model: {depth: 1" + b"0" * 400 + b"}\n", "model.depth = <an integer of 401+ digits>"),
    "seed.yaml": (b"train: {seed: -1}\n", "train.seed = -1 is out of range"),
    "bomb.yaml": (_bomb(10).encode(), f"holds more than {MAX_VALUES} values"),
    "cycle.yaml": (b"optim: {kwargs: &k {x: *k}}\n", "nests more than"),
    "deep.yaml": (b"model: {width: " + b"[" * 5000 + b"]" * 5000 + b"}\n", "is not valid YAML"),
    "binary.yaml": (b"\xff\xfe\x00\x00model", "is not UTF-8 text"),
    "list.yaml": (b"- model\n- data\n", "must hold a mapping of sections, got ['model', 'data']"),
    "pickle.yaml": (b"model: !!python/object/apply:os.system ['touch pwned']\n", "is not valid YAML"),
}


def test_fitlens_train_with_a_hostile_config_exits_2_with_one_line(tmp_path: Path) -> None:
    for name, (content, _) in HOSTILE_FILES.items():
        (tmp_path / name).write_bytes(content)
    for name, (_, message) in HOSTILE_FILES.items():
        proc = subprocess.run([FITLENS, "train", "--config", name], cwd=tmp_path, env=env(), capture_output=True,
                              timeout=120)
        err = proc.stderr.decode("utf-8", "replace")
        assert proc.returncode == 2, f"{name}: exit {proc.returncode}\n{err[-3000:]}"
        assert err.count("\n") == 1 and err.startswith("fitlens: config error: "), f"{name}: {err}"
        assert message in err and "Traceback" not in err, f"{name}: {err}"
    # bytes that are not UTF-8 on the command line reach Python as lone surrogates
    proc = subprocess.run([FITLENS, "train", b"run_name=caf\xe9"], cwd=tmp_path, env=env(), capture_output=True,
                          timeout=120)
    assert proc.returncode == 2 and proc.stderr.count(b"\n") == 1, proc.stderr
    assert b"override 'run_name': the text 'caf\\udce9' is not valid Unicode" in proc.stderr
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "mlflow.db").exists()  # no run was created


def test_fitlens_sweep_with_a_hostile_sweep_file_exits_2_with_one_line(tmp_path: Path) -> None:
    (tmp_path / "sweep.yaml").write_text("space: {1: {choice: [1]}, optim.lr: {uniform: [-1.0e+308, 1.0e+308]}}\n")
    proc = subprocess.run([FITLENS, "sweep", "--config", "sweep.yaml", "max_concurrent=1"], cwd=tmp_path,
                          env=env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith("fitlens: config error: space: the key 1 is not a dotted run-config key"), \
        proc.stderr
