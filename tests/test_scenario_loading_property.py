"""Loading a scenario file either gives a plan or raises a UserError with a message, whatever the
file holds (issue 10). Hypothesis writes documents to a file and calls `load_plan` on it: random
nestings of mappings, lists and scalars whose keys come from the real schema (every field of
RunFile, rosters, personas, series and each built-in kind's params) or are random; the library
scenario files with keys deleted, values replaced, keys added or renamed; the same documents
written by hand with YAML tags, anchors and aliases (cycles included); and the library files' text
with bytes inserted, deleted or replaced. Any other exception fails the property.

Each call is bounded: 512 MiB more address space (a document asking for a huge plan ends in a
MemoryError the property reports, not in a machine out of memory) and 20 s (a hang ends in
TooSlow, raised where the code was). The same kinds of input through the real CLI, with the
figures: bench/bad_inputs.py and docs/reliability.md."""

from __future__ import annotations

import copy
import json
import os
import resource
import signal
import threading
import typing
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from sociolab.base.errors import UserError
from sociolab.config import RunFile, SeriesSpec, load_plan
from sociolab.personas.models import RosterSpec
from sociolab.scenarios.registry import builtin_kinds

REPO = Path(__file__).resolve().parents[1]
LIBRARY = sorted((REPO / "scenarios" / "library").glob("*.yaml"))
LIBRARY_TEXTS = [p.read_bytes() for p in LIBRARY]
LIBRARY_DOCS = [yaml.safe_load(t) for t in LIBRARY_TEXTS]


def schema_words() -> tuple[list[str], list[str]]:
    """(every key the schema knows, every Literal value it accepts), walking the pydantic models."""
    keys: set[str] = set()
    words: set[str] = set()
    todo: list[type[BaseModel]] = [RunFile, SeriesSpec, RosterSpec, *(k.Params for k in builtin_kinds().values())]
    seen: set[type] = set()

    def types_in(annotation: Any) -> Iterator[Any]:
        yield annotation
        for arg in typing.get_args(annotation):
            yield from types_in(arg)

    while todo:
        model = todo.pop()
        if model in seen:
            continue
        seen.add(model)
        for name, field in model.model_fields.items():
            keys.add(field.alias or name)
            for t in types_in(field.annotation):
                if isinstance(t, type) and issubclass(t, BaseModel):
                    todo.append(t)
                elif typing.get_origin(t) is typing.Literal:
                    words.update(str(a) for a in typing.get_args(t))
    return sorted(keys), sorted(words)


SCHEMA_KEYS, LITERALS = schema_words()
WORDS = LITERALS + sorted(builtin_kinds()) + [
    "warroom", "llama", "kimi", "qwen", "deepseek", "scout", "sim/x", "groq/llama-3.3-70b-versatile", "A", "B",
    "@all hello", "", " ", "[bold]x[/bold]", "a\x00b", "\ud800", "x" * 300, "scenario.yaml", ".", "/dev/null",
    "nonexistent.yaml", "1", "yes", "null", "~", "-1", "1e400", ".nan"]

KEYS = st.one_of(st.sampled_from(SCHEMA_KEYS), st.sampled_from(SCHEMA_KEYS), st.text(max_size=8),
                 st.integers(-3, 3), st.none(), st.booleans())
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(-3, 30),
    st.sampled_from([2 ** 31, 2 ** 63, -2 ** 63 - 1, 10 ** 11, 10 ** 30]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(st.characters(exclude_categories=()), max_size=12), st.sampled_from(WORDS))
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=5),
                      max_leaves=25)


def nodes(doc: Any, path: tuple = ()) -> Iterator[tuple]:
    """Every path in a document (the root is ())."""
    yield path
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from nodes(v, path + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from nodes(v, path + (i,))


@st.composite
def mutated_library_doc(draw: st.DrawFn) -> Any:
    """A library scenario, parsed, with one to four edits at random places."""
    doc = copy.deepcopy(draw(st.sampled_from(LIBRARY_DOCS)))
    for _ in range(draw(st.integers(1, 4))):
        paths = list(nodes(doc))
        path = paths[draw(st.integers(0, len(paths) - 1))]
        if not path:
            return draw(VALUES) if draw(st.booleans()) else doc
        parent = doc
        for part in path[:-1]:
            parent = parent[part]
        op = draw(st.sampled_from(["delete", "replace", "replace", "add", "rename"]))
        if op == "delete":
            del parent[path[-1]]
        elif op == "replace":
            parent[path[-1]] = draw(VALUES)
        elif op == "add" and isinstance(parent, dict):
            parent[draw(KEYS)] = draw(VALUES)
        elif op == "add":
            parent.insert(path[-1], draw(VALUES))
        elif isinstance(parent, dict):
            value = parent.pop(path[-1])
            parent[draw(KEYS)] = value
    return doc


SNIPPETS = st.one_of(st.sampled_from([b":", b": ", b"-", b"- ", b"[", b"]", b"{", b"}", b"\t", b"&a ", b"*a",
                                      b"!!", b"!!python/object:os.system ", b"'", b'"', b"#", b"\n", b"  ", b"? ",
                                      b"<<: ", b"---\n", b"\xff", b"\x00", b"\\ud800", b"%YAML 1.1\n", b"!!int ",
                                      b"!!float ", b"!!str ", b"!!binary ", b"!!timestamp ", b"!!set ", b"!!bool "]),
                     st.text(max_size=6).map(lambda s: s.encode("utf-8")), st.binary(max_size=4))


@st.composite
def edited_library_text(draw: st.DrawFn) -> bytes:
    """A library scenario's bytes with one to three snippets inserted, or bytes deleted or replaced."""
    raw = draw(st.sampled_from(LIBRARY_TEXTS))
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(raw)))
        cut = draw(st.integers(0, 8)) if draw(st.booleans()) else 0
        raw = raw[:at] + draw(SNIPPETS) + raw[at + cut:]
    return raw


TAGS = ["!!int", "!!float", "!!str", "!!bool", "!!null", "!!binary", "!!timestamp", "!!set", "!!seq", "!!map",
        "!!omap", "!local", "!!python/name:os.system", "!!python/object/apply:os.system"]


@st.composite
def tagged_yaml(draw: st.DrawFn) -> bytes:
    """A generated or mutated library document written out by hand in flow style, with YAML's own
    devices on some nodes: a tag (standard or not: `seed: !!int "abc"`, `rounds: !!timestamp 7`), an
    anchor, an alias to an earlier anchor (which may be the node's own ancestor: a cycle)."""
    doc = draw(st.one_of(st.dictionaries(KEYS, VALUES, max_size=8), mutated_library_doc()))
    anchors: list[str] = []

    def scalar(v: Any) -> str:
        if isinstance(v, float) and (v != v or v in (float("inf"), float("-inf"))):
            return ".nan" if v != v else (".inf" if v > 0 else "-.inf")
        return json.dumps(v)  # JSON's string escapes are YAML's double-quoted escapes

    def emit(v: Any) -> str:
        roll = draw(st.integers(0, 11))
        if roll == 0 and anchors:
            return "*" + draw(st.sampled_from(anchors))
        prefix = ""
        if roll in (1, 2, 3):
            prefix = draw(st.sampled_from(TAGS)) + " "
        elif roll == 4:
            anchors.append(f"a{len(anchors)}")
            prefix = f"&{anchors[-1]} "
        if isinstance(v, dict):
            return prefix + "{" + ", ".join(f"{scalar(k)}: {emit(x)}" for k, x in v.items()) + "}"
        if isinstance(v, list):
            return prefix + "[" + ", ".join(emit(x) for x in v) + "]"
        return prefix + scalar(v)

    return emit(doc).encode("utf-8", "surrogatepass")


def serialised(doc: Any, how: str) -> bytes:
    if how == "json":
        return json.dumps(doc, ensure_ascii=False).encode("utf-8", "surrogatepass")
    text = yaml.safe_dump(doc, allow_unicode=True, sort_keys=False, default_flow_style=how == "flow")
    return text.encode("utf-8", "surrogatepass")


DOCUMENTS = st.one_of(
    st.builds(serialised, st.dictionaries(KEYS, VALUES, max_size=8), st.sampled_from(["block", "flow", "json"])),
    st.builds(serialised, VALUES, st.sampled_from(["block", "json"])),
    st.builds(serialised, mutated_library_doc(), st.sampled_from(["block", "block", "flow", "json"])),
    tagged_yaml(),
    edited_library_text())


class TooSlow(Exception):
    """load_plan ran past the time bound (a hang, e.g. walking a recursive alias)."""


@contextmanager
def bounded(seconds: float = 20.0, memory: int = 512 * 1024 ** 2) -> Iterator[None]:
    """At most `memory` more bytes of address space (a MemoryError past it) and `seconds` of wall
    time (TooSlow, raised where the code is) while the block runs. The time bound needs the main
    thread, where pytest and pytest-xdist run tests; elsewhere only the memory bound applies."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    with open("/proc/self/statm") as f:
        size = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    cap = min(x for x in (size + memory, soft, hard) if x != resource.RLIM_INFINITY)
    timed = threading.current_thread() is threading.main_thread()

    def too_slow(signum: int, frame: Any) -> None:
        raise TooSlow(f"load_plan took more than {seconds:.0f} s")

    previous = signal.signal(signal.SIGALRM, too_slow) if timed else None
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    try:
        if timed:
            signal.setitimer(signal.ITIMER_REAL, seconds)
        yield
    finally:
        if timed:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous if previous is not None else signal.SIG_DFL)
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large])
@given(content=DOCUMENTS, sim=st.booleans())
def test_a_scenario_file_loads_or_raises_a_user_error(tmp_path, content, sim):
    path = tmp_path / "scenario.yaml"
    path.write_bytes(content)
    try:
        with bounded():
            load_plan(path, sim=sim)
    except UserError as exc:
        assert str(exc).strip(), "a UserError without a message"
