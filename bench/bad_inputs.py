"""Bad inputs through the real CLI: how many are refused in one line, and what goes wrong otherwise.

Generates 665 distinct bad inputs (mutations of the library scenario, roster, judge
config and codebook files and of a published WarRoom transcript; broken YAML; special files;
bad options for every command; broken, foreign and locked DuckDB files; bad CSVs) and runs each
through `python -m sociolab` in a subprocess, in a fresh temp dir, a few at a time, each with a
timeout, a 2 GiB address-space cap and no route to the network. Every case is classified:

  handled   exit code 2 and exactly one stderr line, starting "error: "   (the product rule)
  failed    a traceback, an "error: unexpected ..." bug line, a run that failed with
            "(traceback in ...)", or death by a signal
  hang      still running at the timeout (killed)
  accepted  exit code 0: the input was not bad after all (e.g. a wrong type pydantic coerces)
  other     anything else: e.g. click's own usage error for an option that does not parse
            (exit 2, three lines "Usage: ... Error: ..."), or exit 1 (a run failed, a gate)

and, independently of its class:

  leftover  after a non-zero exit (not a timeout: a killed process cannot clean up), a new
            file in the case dir other than the log file
            (`*.log`, where tracebacks are documented to go) and other than a DuckDB file that
            holds sociolab rows (work done before the failure, which a rerun resumes): an
            empty or unreadable DuckDB file, a .wal, a partial output
  foreign   a DuckDB file of another program modified (bytes changed or a .wal appeared)
  lost      a good sociolab store copied in lost rows (a table's count went down, or it no
            longer opens), or a broken file the command refused was changed

Prints a table per family, then every failing case (command, input, first stderr lines), then
the cases refused in another form. The figures and what each family covers: docs/reliability.md.
Exit code 1 if any case failed, hung, left files, modified a foreign file or lost data.

    python bench/bad_inputs.py            # all 665 cases: 6-8 minutes on 2 cores
    python bench/bad_inputs.py --quick    # a sample of ~40, for smoke use
    python bench/bad_inputs.py --family csv --json results.json --keep /tmp/failures

Nothing calls the network: every run and judge uses sim stand-ins (`--sim`), and the children run
with API-key variables removed and HTTP(S)_PROXY pointing at a closed loopback port.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import copy
import csv
import hashlib
import io
import json
import os
import random
import re
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, machine, table  # noqa: E402  (sets LITELLM_* offline variables)

import duckdb  # noqa: E402
import yaml  # noqa: E402

TIMEOUT_S = 30.0
MEMORY_CAP = 2 * 1024 ** 3        # address space of each child: a memory bomb ends in MemoryError, not swap
FILE_CAP = 1024 ** 3              # largest file a child may write
LIBRARY_SCENARIOS = sorted((ROOT / "scenarios" / "library").glob("*.yaml"))
ROSTER = ROOT / "personas" / "library" / "warroom.yaml"
JUDGES = ROOT / "judges" / "library" / "judges.yaml"
CODEBOOK = ROOT / "judges" / "library" / "warroom.yaml"
TRANSCRIPTS = ROOT / "tests" / "fixtures" / "warroom" / "transcripts"
CODING_CSV = ROOT / "tests" / "fixtures" / "coding" / "human_coding_results.csv"
STORE_TABLES = ("runs", "agents", "messages", "llm_calls", "events", "codes", "human_codes", "outcomes",
                "tool_calls")

TINY = """\
name: t
kind: discussion
seed: 3
agents:
  roster: warroom
  only: [llama, kimi]
params:
  seed_message: "@all We need a plan."
  rounds: 2
sim: {stand_ins: true}
"""

GAMES = """\
name: g
kind: repeated_games
seed: 1
agents:
  roster: warroom
  only: [llama]
params: {rounds: 3, game: prisoners_dilemma, opponent: tit_for_tat}
sim: {stand_ins: true}
"""

# What a scalar is replaced by: (kind, value). "surrogate" is a lone UTF-16 surrogate, which YAML's
# "\ud800" escape produces and UTF-8 cannot encode.
WRONG = [
    ("string", "oops"), ("list", [1, "a"]), ("mapping", {"a": 1}), ("null", None), ("bool", True),
    ("negative", -7), ("zero", 0), ("huge", 10 ** 30), ("float", 2.5), ("nan", float("nan")),
    ("empty string", ""), ("long string", "x" * 100_000),
    ("unicode", "Ünïcødé 名前 🙂 \u202e\u200b"), ("surrogate", "\ud800"),
    ("markup", "[bold]x[/bold] [link=http://127.0.0.1:9]y[/link]"), ("newline", "two\nlines"),
]


# ---- cases ---------------------------------------------------------------------------------------

class Dir:
    """A directory in the case dir."""


@dataclass(frozen=True)
class Copy:
    """A copy of one of the fixtures (by its name in Fixtures: disc, games, foreign, ...)."""

    fixture: str


@dataclass(frozen=True)
class Link:
    """A symbolic link to `target`."""

    target: str


class Fifo:
    """A named pipe nobody writes to."""


@dataclass
class Case:
    family: str
    label: str                      # what is bad about the input
    args: list[str]                 # after `sociolab`; paths relative to the case dir
    files: dict[str, Any] = field(default_factory=dict)   # name -> str | bytes | Dir | Copy | Link | Fifo |
    #                                                      ("truncate", n) of the judged store | ("sqlite",)
    store: str | None = None        # a good store copied in under this name: must lose no rows
    foreign: str | None = None      # another program's DuckDB file: must not change
    keep: tuple[str, ...] = ()      # broken files the command must leave as they are when it refuses
    hold: str | None = None         # a file another process keeps open read-write during the case
    timeout: float = TIMEOUT_S

    def key(self) -> str:
        h = hashlib.sha256(json.dumps(self.args).encode())
        for name in sorted(self.files):
            spec = self.files[name]
            h.update(name.encode() + b"\0" + type(spec).__name__.encode())
            if isinstance(spec, (str, bytes)):
                h.update(spec.encode("utf-8", "surrogatepass") if isinstance(spec, str) else spec)
            elif isinstance(spec, (Copy, Link, tuple)):
                h.update(repr(spec).encode())
        h.update(repr((self.store, self.foreign, self.keep, self.hold)).encode())
        return h.hexdigest()

    def command(self) -> str:
        return "sociolab " + " ".join(shlex.quote(a if len(a) < 120 else a[:100] + f"...({len(a)} chars)")
                                      for a in self.args)


@dataclass
class Result:
    case: Case
    rc: int | None
    stdout: str
    stderr: str
    seconds: float
    verdict: str = ""
    leftovers: list[str] = field(default_factory=list)
    foreign_modified: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    kept_at: str | None = None

    @property
    def bad(self) -> bool:
        return self.verdict in ("failed", "hang", "bench error") or bool(self.leftovers or self.foreign_modified or self.lost)


# ---- fixtures ------------------------------------------------------------------------------------

@dataclass
class Fixtures:
    root: Path
    disc: Path = Path()          # a discussion store, judged by the sim judges
    games: Path = Path()         # a repeated-games store (outcomes for `results`)
    foreign: Path = Path()       # another program's DuckDB file
    foreign_sv: Path = Path()    # another program's DuckDB file with a generic schema_version table
    newer: Path = Path()         # a sociolab store claiming a schema version from the future
    sample_csv: Path = Path()    # a validation sample exported from disc, coded
    counts: dict[Path, dict[str, int]] = field(default_factory=dict)


def child_env() -> dict[str, str]:
    """The environment of every case: no API keys (names only are looked at), no route out."""
    secret = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|CREDENTIAL", re.I)
    env = {k: v for k, v in os.environ.items() if not secret.search(k)}
    dead = "http://127.0.0.1:9"
    env.update(LITELLM_LOCAL_MODEL_COST_MAP="True", LITELLM_OFFLINE_MODE="true", COLUMNS="200",
               HTTP_PROXY=dead, HTTPS_PROXY=dead, ALL_PROXY=dead, http_proxy=dead, https_proxy=dead,
               all_proxy=dead, NO_PROXY="", no_proxy="", PYTHONDONTWRITEBYTECODE="1")
    env.pop("SOCIOLAB_WARROOM_DIR", None)
    return env


ENV = child_env()
LAUNCH = ("import os, resource, sys; "
          f"resource.setrlimit(resource.RLIMIT_AS, ({MEMORY_CAP}, {MEMORY_CAP})); "
          f"resource.setrlimit(resource.RLIMIT_FSIZE, ({FILE_CAP}, {FILE_CAP})); "
          "os.execv(sys.executable, [sys.executable, '-m', 'sociolab', *sys.argv[1:]])")


def sociolab(args: list[str], cwd: Path, timeout: float) -> tuple[int | None, str, str, float]:
    """Run `sociolab ARGS` capped; on timeout kill its whole process group. rc None = timed out."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", LAUNCH, *args], cwd=cwd, env=ENV, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
        rc: int | None = proc.returncode
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        rc = None
    return rc, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"), time.perf_counter() - t0


def store_counts(path: Path) -> dict[str, int] | None:
    """Rows per sociolab table, or None when the file does not open as a DuckDB database."""
    try:
        with duckdb.connect(str(path), read_only=True) as con:
            tables = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
            return {t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in STORE_TABLES if t in tables}
    except Exception:
        return None


def build_fixtures(root: Path) -> Fixtures:
    fx = Fixtures(root / "fixtures")
    d = fx.root
    d.mkdir(parents=True)
    (d / "tiny.yaml").write_text(TINY)
    (d / "games.yaml").write_text(GAMES)
    steps = [["run", "tiny.yaml", "--db", "disc.duckdb", "-q"], ["judge", "--db", "disc.duckdb", "--sim", "-q"],
             ["run", "games.yaml", "--db", "games.duckdb", "-q"],
             ["validate", "export", "--db", "disc.duckdb", "--n", "4", "-o", "sample.csv"]]
    for args in steps:
        rc, out, err, _ = sociolab(args, d, 120)
        if rc != 0:
            sys.exit(f"fixture step failed: sociolab {' '.join(args)}\n{out}\n{err}")
    fx.disc, fx.games, fx.sample_csv = d / "disc.duckdb", d / "games.duckdb", d / "sample.csv"
    rows = list(csv.reader(io.StringIO(fx.sample_csv.read_text())))
    coder = rows[0].index("coder")
    for n, row in enumerate(rows[1:]):  # a coder and a code in every flag column: a valid coded sample to break
        row[coder] = "ana"
        for i in range(coder + 1, len(row)):
            row[i] = "" if rows[0][i].endswith("_level") else ("true" if (i + n) % 3 == 0 else "")
    fx.sample_csv.write_text(write_csv(rows))
    fx.foreign = d / "foreign.duckdb"
    with duckdb.connect(str(fx.foreign)) as con:
        con.execute("CREATE TABLE measurements (x INTEGER, note VARCHAR)")
        con.execute("INSERT INTO measurements VALUES (1, 'theirs'), (2, 'also theirs')")
    fx.foreign_sv = d / "foreign_sv.duckdb"
    with duckdb.connect(str(fx.foreign_sv)) as con:
        con.execute("CREATE TABLE schema_version (version INTEGER)")
        con.execute("INSERT INTO schema_version VALUES (1)")
        con.execute("CREATE TABLE users (id INTEGER, name VARCHAR)")
        con.execute("INSERT INTO users VALUES (1, 'theirs')")
    fx.newer = d / "newer.duckdb"
    shutil.copy(fx.disc, fx.newer)
    with duckdb.connect(str(fx.newer)) as con:
        con.execute("INSERT INTO schema_version (version) VALUES (999)")
    for p in (fx.disc, fx.games, fx.newer):
        counts = store_counts(p)
        assert counts, p
        fx.counts[p] = counts
    return fx


# ---- mutations of YAML/JSON documents --------------------------------------------------------------

def shrink(text: str) -> str:
    """A library file with one run per series and at most 3 rounds, so an accepted mutation runs
    in a second or two (the text, comments and layout are otherwise the library's)."""
    text = re.sub(r"\b(repeats|runs): \d+", r"\1: 1", text)
    return re.sub(r"\brounds: \d+", "rounds: 3", text)


def dump(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=10 ** 9)


def walk(data: Any, path: tuple = ()) -> Iterator[tuple[tuple, Any]]:
    yield path, data
    if isinstance(data, dict):
        for k, v in data.items():
            yield from walk(v, path + (k,))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            yield from walk(v, path + (i,))


NAMED_ENTRIES = {"series", "models", "prices", "judges", "games", "cues", "level_cues", "names", "api_bases",
                 "api_key_envs"}


def shape(path: tuple) -> tuple:
    """A path with list indexes and user-chosen names (series, models, ...) as '*': one mutation per
    place in the schema, not one per series."""
    out = []
    for i, part in enumerate(path):
        if isinstance(part, int) or (i and path[i - 1] in NAMED_ENTRIES):
            out.append("*")
        else:
            out.append(part)
    return tuple(out)


def unique_paths(data: Any, leaves: bool) -> list[tuple]:
    seen, out = set(), []
    for path, value in walk(data):
        if not path or isinstance(path[-1], int) and not leaves:
            continue
        if leaves != (not isinstance(value, (dict, list))):
            continue
        if shape(path) not in seen:
            seen.add(shape(path))
            out.append(path)
    return out


def get_parent(data: Any, path: tuple) -> Any:
    for part in path[:-1]:
        data = data[part]
    return data


def deleted(data: Any, path: tuple) -> Any:
    out = copy.deepcopy(data)
    del get_parent(out, path)[path[-1]]
    return out


def replaced(data: Any, path: tuple, value: Any) -> Any:
    out = copy.deepcopy(data)
    get_parent(out, path)[path[-1]] = value
    return out


def renamed(data: Any, path: tuple, new: str) -> Any:
    out = copy.deepcopy(data)
    parent = get_parent(out, path)
    items = [(new if k == path[-1] else k, v) for k, v in parent.items()]
    parent.clear()
    parent.update(items)
    return out


def misspell(key: str, style: int) -> str:
    if style == 0 and len(key) >= 3:
        return key[0] + key[2] + key[1] + key[3:]
    if style == 1:
        return key.capitalize() if key != key.capitalize() else key.upper()
    if style == 2:
        return key + "s"
    return key.replace("_", "-") if "_" in key else key[:-1]


def where(path: tuple) -> str:
    return ".".join(f"[{p}]" if isinstance(p, int) else str(p) for p in path).replace(".[", "[")


REQUIRED_FIRST = ("name", "agents", "params", "kind", "judges", "flags", "personas", "conversation")


def mutations(data: Any, rng: random.Random, n_top: int, n_deep: int, n_misspell: int,
              wrong: list[tuple[str, Any]] = WRONG) -> Iterator[tuple[str, Any]]:
    """(label, mutated document): up to `n_top` top-level keys deleted (required-looking ones first)
    and `n_deep` deeper ones; each kind of wrong value in `wrong` at a different scalar; a few keys
    misspelt. Paths are drawn once per place in the schema (see `shape`)."""
    keys = unique_paths(data, leaves=False) + [p for p in unique_paths(data, leaves=True) if not isinstance(p[-1], int)]
    top = [p for p in keys if len(p) == 1]
    rng.shuffle(top)
    top.sort(key=lambda p: REQUIRED_FIRST.index(p[0]) if p[0] in REQUIRED_FIRST else len(REQUIRED_FIRST))
    deep = [p for p in keys if len(p) > 1]
    rng.shuffle(deep)
    for path in top[:n_top] + deep[:n_deep]:
        yield f"{where(path)} deleted", deleted(data, path)
    scalars = unique_paths(data, leaves=True)
    rng.shuffle(scalars)
    for i, (kind, value) in enumerate(wrong):
        if not scalars:
            break
        path = scalars[i % len(scalars)]
        yield f"{where(path)} -> {kind}", replaced(data, path, value)
    named = [p for p in keys if isinstance(p[-1], str)]
    rng.shuffle(named)
    for i, path in enumerate(named[:n_misspell]):
        new = misspell(path[-1], i % 4)
        yield f"{where(path)} misspelt '{new}'", renamed(data, path, new)


def half_of_wrong(i: int) -> list[tuple[str, Any]]:
    """Every other kind of wrong value, alternating between files: each kind lands in half the files."""
    return WRONG[i % 2::2]


# ---- families --------------------------------------------------------------------------------------

def run_args(name: str = "in.yaml", *extra: str) -> list[str]:
    return ["run", name, "--sim", "--db", "out.duckdb", "-q", *extra]


def family_library_scenarios(fx: Fixtures) -> list[Case]:
    cases = []
    for i, path in enumerate(LIBRARY_SCENARIOS):
        base = yaml.safe_load(shrink(path.read_text()))
        rng = random.Random(path.name)
        for label, doc in mutations(base, rng, n_top=4, n_deep=1, n_misspell=2, wrong=half_of_wrong(i)):
            cases.append(Case("library scenario mutations", f"{path.name}: {label}", run_args(),
                              {"in.yaml": dump(doc)}))
    return cases


def family_roster_judges_codebook(fx: Fixtures) -> list[Case]:
    cases = []
    scenario = TINY.replace("roster: warroom\n  only: [llama, kimi]", "roster: roster.yaml").replace(
        "rounds: 2", "rounds: 1")
    roster = yaml.safe_load(ROSTER.read_text())
    for label, doc in mutations(roster, random.Random("roster"), n_top=2, n_deep=2, n_misspell=2,
                                wrong=half_of_wrong(1)):
        cases.append(Case("roster/judges/codebook mutations", f"personas/library/warroom.yaml: {label}",
                          run_args(), {"in.yaml": scenario, "roster.yaml": dump(doc)}))
    judges = yaml.safe_load(JUDGES.read_text())
    for i, (label, doc) in enumerate(mutations(judges, random.Random("judges"), n_top=3, n_deep=1,
                                                         n_misspell=2, wrong=half_of_wrong(0))):
        args = (["judge", "--db", "s.duckdb", "--sim", "--config", "j.yaml", "-q"] if i % 3 else
                ["models", "check", "j.yaml", "--sim"])
        cases.append(Case("roster/judges/codebook mutations", f"judges/library/judges.yaml: {label}", args,
                          {"j.yaml": dump(doc), "s.duckdb": Copy("disc")}, store="s.duckdb"))
    codebook = yaml.safe_load(CODEBOOK.read_text())
    for label, doc in mutations(codebook, random.Random("codebook"), n_top=2, n_deep=3, n_misspell=2,
                                  wrong=half_of_wrong(1)):
        cases.append(Case("roster/judges/codebook mutations", f"judges/library/warroom.yaml (codebook): {label}",
                          ["judge", "--db", "s.duckdb", "--sim", "--codebook", "cb.yaml", "-q"],
                          {"cb.yaml": dump(doc), "s.duckdb": Copy("disc")}, store="s.duckdb"))
    return cases


def family_transcripts(fx: Fixtures) -> list[Case]:
    source = TRANSCRIPTS / "F" / "warroom-F-run08.json"
    data = json.loads(source.read_text())
    cases = []

    def add(label: str, content: str | bytes, name: str = "warroom-F-run08.json") -> None:
        cases.append(Case("warroom transcripts (import)", f"F-run08.json: {label}",
                          ["import", "warroom", "tr", "--db", "out.duckdb"], {"tr": Dir(), "tr/F": Dir(),
                                                                            f"tr/F/{name}": content}))

    for label, doc in mutations(data, random.Random("transcript"), n_top=3, n_deep=5, n_misspell=2,
                                  wrong=half_of_wrong(1)):
        add(label, json.dumps(doc, ensure_ascii=True))
    text = source.read_text()
    add("truncated at half", text[: len(text) // 2])
    add("empty file", "")
    add("a JSON list", "[1, 2]")
    add("JSON null", "null")
    add("nested 100000 deep", "[" * 100_000 + "]" * 100_000)
    add("binary garbage", random.Random(1).randbytes(4000))
    add("Latin-1 bytes", text.replace("é", "\u00e9").encode("latin-1", "replace"))
    add("messages is a string", json.dumps({**data, "conversation": {**data["conversation"], "messages": "x"}}))
    add("a message without text", json.dumps({**data, "conversation": {**data["conversation"], "messages": [
        {k: v for k, v in m.items() if k != "text"} for m in data["conversation"]["messages"]]}}))
    add("file name without a run number", text, name="warroom-F.json")
    cases.append(Case("warroom transcripts (import)", "a folder with no transcripts",
                      ["import", "warroom", "tr", "--db", "out.duckdb"], {"tr": Dir(), "tr/readme.txt": "hi"}))
    cases.append(Case("warroom transcripts (import)", "a file instead of a folder",
                      ["import", "warroom", "tr.json", "--db", "out.duckdb"], {"tr.json": text}))
    cases.append(Case("warroom transcripts (import)", "the same run twice (two folders)",
                      ["import", "warroom", "tr", "--db", "out.duckdb"],
                      {"tr": Dir(), "tr/F": Dir(), "tr/G": Dir(), "tr/F/warroom-F-run08.json": text,
                       "tr/G/warroom-F-run08.json": text}))
    return cases


def alias_bomb(levels: int) -> str:
    """A flow-style YAML value of `levels` nested lists of nine aliases each: 9**levels leaves once expanded."""
    text = "&b0 [" + ", ".join(["lol"] * 9) + "]"
    for i in range(1, levels + 1):
        text = f"&b{i} [{text}, " + ", ".join([f"*b{i - 1}"] * 8) + "]"
    return text


def family_yaml_structure(fx: Fixtures) -> list[Case]:
    """Broken YAML and odd-but-parseable YAML, on the tiny scenario and the shrunk library files."""
    fam = "YAML structure"
    quick = shrink((ROOT / "scenarios" / "library" / "quickstart.yaml").read_text())
    war = shrink((ROOT / "scenarios" / "library" / "warroom.yaml").read_text())
    cases: list[Case] = []

    def add(label: str, text: str | bytes, *extra: str) -> None:
        cases.append(Case(fam, label, run_args("in.yaml", *extra), {"in.yaml": text}))

    # invalid syntax at various places
    snippets = ["  bad: [unclosed", "\tname: tab-indented", "key: 'unterminated", ": no key", "- a list item",
                "}", "  rounds: 6: 7", "@reserved: x", "`backtick: x", "x: *undefined_alias", "  - - -",
                "{{{{", "key: \"bad escape \\q\"", "? complex"]
    for i, snippet in enumerate(snippets):
        base_name, base = (("quickstart", quick), ("warroom", war))[i % 2]
        lines = base.splitlines()
        at = (i * 7 + 3) % len(lines)
        add(f"{base_name}.yaml (shrunk) with {snippet!r} inserted at line {at + 1}",
            "\n".join(lines[:at] + [snippet] + lines[at:]) + "\n")
    # duplicate keys
    add("seed twice", TINY.replace("seed: 3", "seed: 3\nseed: 4"))
    add("params.rounds twice", TINY.replace("  rounds: 2", "  rounds: 2\n  rounds: 3"))
    add("a key twice in a flow mapping", TINY.replace("{stand_ins: true}", "{stand_ins: true, stand_ins: false}"))
    add("name twice, quoted differently", TINY.replace("name: t", "name: t\n'name': u"))
    add("series A twice (warroom)", war.replace("  B:\n", "  A:\n", 1))
    add("agents twice", TINY + "agents: {roster: warroom}\n")
    # nesting
    add("params value: a list 101 deep", TINY.replace("  rounds: 2", "  rounds: 2\n  x: " + "[" * 101 + "]" * 101))
    add("params value: a mapping 101 deep", TINY.replace("  rounds: 2", "  rounds: 2\n  x: " + "{a: " * 101 + "1"
                                                        + "}" * 101))
    add("block mapping nested 150 deep", TINY + "".join("  " * i + f"k{i}:\n" for i in range(150)) + "  " * 150
        + "v: 1\n")
    add("seed_message a list 99 deep (under the bound)", TINY.replace('"@all We need a plan."',
                                                                      "[" * 99 + "]" * 99))
    add("description: 200,000 nested brackets", TINY + "description: " + "[" * 200_000 + "]" * 200_000 + "\n")
    # alias bombs ("billion laughs"): nine levels, each a list of nine references to the level below
    add("alias bomb under an unknown top-level key", TINY + "bomb: " + alias_bomb(8) + "\n")
    add("alias bomb as params.seed_message", TINY.replace('"@all We need a plan."', alias_bomb(8)))
    add("alias bomb as cross levels", TINY + "cross: {order: " + alias_bomb(8) + "}\n")
    add("a recursive alias (an anchor inside itself)", TINY.replace("only: [llama, kimi]", "only: &a [llama, *a]"))
    add("a recursive alias at the top level", "&a [*a]\n")
    add("merge key with a scalar", TINY.replace("params:\n", "params:\n  <<: 5\n"))
    add("merge key with a list of scalars", TINY.replace("params:\n", "params:\n  <<: [1, 2]\n"))
    # tags
    add("!!python/object/apply tag", TINY.replace("seed: 3", "seed: !!python/object/apply:os.system ['true']"))
    add("!!python/name tag", TINY.replace("name: t", "name: !!python/name:os.system"))
    add("!!binary name", TINY.replace("name: t", "name: !!binary aGVsbG8="))
    add("!!set agents.only", TINY.replace("only: [llama, kimi]", "only: !!set {llama, kimi}"))
    add("!!timestamp name", TINY.replace("name: t", "name: 2026-01-01 10:00:00"))
    add("!!omap params", TINY.replace('params:\n  seed_message: "@all We need a plan."\n  rounds: 2',
                                      'params: !!omap [seed_message: "@all We need a plan.", rounds: 2]'))
    add("unknown local tag", TINY.replace("seed: 3", "seed: !env SEED"))
    add("!!int on text", TINY.replace("seed: 3", "seed: !!int abc"))
    add("!!float on text", TINY.replace("rounds: 2", "rounds: !!float x"))
    add("!!bool on null", TINY.replace("rounds: 2", "rounds: !!bool null"))
    add("!!timestamp on a number", TINY.replace("rounds: 2", "rounds: !!timestamp 7"))
    # documents and top-level shapes
    add("two documents", TINY + "---\n" + TINY)
    add("a document end marker and more", TINY + "...\nname: u\n")
    add("top level is a list", "- " + TINY.replace("\n", "\n  "))
    add("top level is a scalar", "just some text\n")
    add("top level is null", "~\n")
    add("only comments", "# nothing here\n# at all\n")
    add("only a document marker", "---\n")
    # keys that are not strings
    add("an integer key", TINY + "1: x\n")
    add("a null key", TINY + "~: x\n")
    add("a yes/no key (YAML 1.1 bool)", TINY + "yes: x\n")
    add("a complex key", TINY + "? [a, b]\n: c\n")
    add("a 100,000-character key", TINY + "k" * 100_000 + ": 1\n")
    add("a key with markup", TINY + "'[bold]x[/bold]': 1\n")
    add("a key with a newline", TINY + "\"a\\nb\": 1\n")
    add("a look-alike key (Cyrillic a in 'name')", TINY.replace("name: t", "n\u0430me: t"))
    add("params.seed_message as an integer key mapping", TINY.replace('"@all We need a plan."', "{1: 2}"))
    # special numbers
    for label, old, new in [
        ("rounds: .nan", "rounds: 2", "rounds: .nan"), ("temperature: -.inf", "rounds: 2", "rounds: 2\n  temperature: -.inf"),
        ("seed: .nan", "seed: 3", "seed: .nan"), ("seed: 1e400", "seed: 3", "seed: 1e400"),
        ("seed: 2**63", "seed: 3", f"seed: {2 ** 63}"), ("seed: 10**400", "seed: 3", "seed: 1" + "0" * 400),
        ("rounds: 0x3 (YAML 1.1 hex)", "rounds: 2", "rounds: 0x3"), ("rounds: '2' (a quoted number)", "rounds: 2",
                                                                      "rounds: '2'"),
        ("rounds: 2.5", "rounds: 2", "rounds: 2.5"), ("stagger_ms: -1", "rounds: 2", "rounds: 2\n  stagger_ms: -1"),
        ("max_tokens: 0", "rounds: 2", "rounds: 2\n  max_tokens: 0"),
        ("temperature: 'warm' (text)", "rounds: 2", "rounds: 2\n  temperature: 'warm'"),
    ]:
        add(label, TINY.replace(old, new, 1))
    # counts that ask for a lot
    add("repeats: 10**11", TINY.replace("seed: 3", "seed: 3\nrepeats: 100000000000"))
    add("a series with runs: 10**11", TINY + "series: {A: {runs: 100000000000}}\n")
    add("seeds: [1, 1] (the same seed twice)", TINY.replace("seed: 3", "seed: 3\nseeds: [1, 1]"))
    add("seeds: [] (no seeds)", TINY.replace("seed: 3", "seed: 3\nseeds: []"))
    add("cross: 8 keys x 10 levels (10**8 series)", TINY + "cross:\n" + "".join(
        f"  k{i}: [{', '.join(map(str, range(10)))}]\n" for i in range(8)))
    add("cross: a level that is a mapping", TINY + "cross: {order: [{a: 1}, fixed]}\n")
    add("cross: the same level twice", TINY + "cross: {order: [fixed, fixed]}\n")
    add("concurrency: 10**9", TINY.replace("seed: 3", "seed: 3\nconcurrency: 1000000000"))
    add("clones n: 10**6", TINY.replace("only: [llama, kimi]", "clones: {of: llama, n: 1000000}"))
    add("clones n: 1", TINY.replace("only: [llama, kimi]", "clones: {of: llama, n: 1}"))
    add("clones of an unknown persona", TINY.replace("only: [llama, kimi]", "clones: {of: nobody, n: 3}"))
    # names, series, agents
    add("name with a slash", TINY.replace("name: t", "name: a/b"))
    add("name of 5,000 characters", TINY.replace("name: t", "name: " + "n" * 5000))
    add("series named with a slash", TINY + "series: {'A/B': {runs: 1}}\n")
    add("series named ''", TINY + "series: {'': {runs: 1}}\n")
    add("series named null", TINY + "series: {~: {runs: 1}}\n")
    add("series named [bold]", TINY + "series: {'[bold]A': {runs: 1}}\n")
    add("series: {} (no series)", TINY + "series: {}\n")
    add("series A: null", TINY + "series: {A: null}\n")
    add("series runs: 0", TINY + "series: {A: {runs: 0}}\n")
    add("only: [llama, llama]", TINY.replace("only: [llama, kimi]", "only: [llama, llama]"))
    add("exclude everyone", TINY.replace("only: [llama, kimi]", "only: [llama]\n  exclude: [llama]"))
    add("names: two agents, one name", TINY.replace("only: [llama, kimi]", "only: [llama, kimi]\n  names: "
                                                    "{llama: Bob, kimi: Bob}").replace("rounds: 2",
                                                                                      "rounds: 2\n  naming: custom"))
    add("crash of an unknown agent", TINY.replace("only: [llama, kimi]", "only: [llama, kimi]\n  crashes: "
                                                  "[{agent: nobody, from_round: 1}]"))
    add("crash from_round: -1", TINY.replace("only: [llama, kimi]", "only: [llama, kimi]\n  crashes: "
                                             "[{agent: llama, from_round: -1}]"))
    add("crash mode: sometimes", TINY.replace("only: [llama, kimi]", "only: [llama, kimi]\n  crashes: "
                                              "[{agent: llama, mode: sometimes}]"))
    add("inline persona with an api_key", TINY.replace("only: [llama, kimi]", "personas: [{key: x, model: sim/x, "
                                                       "api_key: sk-not-a-real-key}]"))
    add("inline persona key clashes with the roster", TINY.replace("only: [llama, kimi]", "personas: [{key: llama, "
                                                                   "model: sim/x}]"))
    add("inline persona with an empty model", TINY.replace("roster: warroom\n  only: [llama, kimi]",
                                                           "personas: [{key: x, model: ''}]"))
    for label, roster in [("roster: a missing file", "nope.yaml"), ("roster: ''", "''"),
                          ("roster: /dev/zero", "/dev/zero"), ("roster: /etc/passwd", "/etc/passwd"),
                          ("roster: the folder itself", "."), ("roster: the scenario file itself", "in.yaml"),
                          ("roster: a 300-character name", "r" * 300), ("roster: a NUL character", '"a\\0b"'),
                          ("roster: 5000 path parts", "/".join(["a"] * 5000))]:
        add(label, TINY.replace("roster: warroom", f"roster: {roster}"))
    add("kind: unknown", TINY.replace("kind: discussion", "kind: nonsense"))
    add("kind: ''", TINY.replace("kind: discussion", "kind: ''"))
    add("kind of games with discussion params", TINY.replace("kind: discussion", "kind: repeated_games"))
    add("client.max_attempts: 0", TINY + "client: {max_attempts: 0}\n")
    add("client.timeout_s: -1", TINY + "client: {timeout_s: -1}\n")
    add("client.limits.in_flight: 0", TINY + "client: {limits: {in_flight: 0}}\n")
    add("client.models pattern '['", TINY + "client: {models: {'[': {in_flight: 1}}}\n")
    add("prices: a negative price", TINY + "prices: {'sim/*': {input_per_mtok: -1, output_per_mtok: 1}}\n")
    add("sim.models: a propensity of 5", TINY.replace("sim: {stand_ins: true}", "sim: {stand_ins: true, models: "
                                                      "{llama-3.3-70b-versatile: {greet: 5}}}"))
    add("sim.models: an unknown propensity", TINY.replace("sim: {stand_ins: true}", "sim: {stand_ins: true, models: "
                                                          "{llama-3.3-70b-versatile: {teleport: 0.5}}}"))
    add("analysis compares a series with itself", TINY + "series: {A: {runs: 1}, B: {runs: 1}}\nanalysis: "
        "{comparisons: [{a: A, b: A}]}\n")
    # text and encodings
    add("seed_message with a NUL", TINY.replace('"@all We need a plan."', '"@all \\0 plan"'))
    add("seed_message of 5 MB", TINY.replace('"@all We need a plan."', "x" * 5_000_000))
    add("seed_message with a lone surrogate", TINY.replace('"@all We need a plan."', '"\\ud800"'))
    add("persona personality with a lone surrogate", TINY.replace("only: [llama, kimi]", "personas: [{key: x, "
                                                                  "model: sim/x, personality: \"\\udfff\"}]"))
    add("a byte-order mark first", "\ufeff" + TINY)
    add("CRLF line endings", TINY.replace("\n", "\r\n"))
    add("old Mac CR line endings", TINY.replace("\n", "\r"))
    add("UTF-16 with BOM", TINY.encode("utf-16"))
    add("Latin-1 bytes in a comment", TINY.encode() + "# caf\u00e9\n".encode("latin-1"))
    add("a C1 control character", TINY.replace("@all", "@all\x85\x9b"))
    add("a 16 MiB + 1 file", TINY + "#" * (16 * 1024 * 1024 + 1) + "\n")
    add("15 MiB of comments (under the bound)", TINY + ("# " + "c" * 1000 + "\n") * 15_000)
    add("--series naming a series the file lacks", TINY, "--series", "Z")
    return cases


def family_special_files(fx: Fixtures) -> list[Case]:
    """Every file a command reads, given as: nothing, an empty file, garbage, a directory, /dev/zero, ..."""
    fam = "special files and paths"
    garbage = random.Random(7).randbytes(5000)
    variants: list[tuple[str, str, dict[str, Any]]] = [
        ("a missing file", "missing.x", {}),
        ("an empty file", "f.x", {"f.x": b""}),
        ("binary garbage", "f.x", {"f.x": garbage}),
        ("non-UTF-8 text", "f.x", {"f.x": "caf\u00e9: 1\n".encode("latin-1")}),
        ("UTF-16 text", "f.x", {"f.x": "name: x\n".encode("utf-16")}),
        ("a directory", "f.x", {"f.x": Dir()}),
        ("/dev/zero", "/dev/zero", {}),
        ("/dev/null", "/dev/null", {}),
        ("a symlink loop", "f.x", {"f.x": Link("f.x")}),
        ("a dangling symlink", "f.x", {"f.x": Link("gone")}),
        ("a 300-character file name", "n" * 300 + ".x", {}),
        ("a file name with a newline", "a\nb.x", {}),
        ("a file name with markup", "[bold]f[/bold].x", {}),
    ]
    consumers: list[tuple[str, Callable[[str], list[str]], dict[str, Any], str | None]] = [
        ("run FILE", lambda p: ["run", p, "--sim", "--db", "out.duckdb", "-q"], {}, None),
        ("judge --config FILE", lambda p: ["judge", "--db", "s.duckdb", "--sim", "--config", p, "-q"],
         {"s.duckdb": Copy("disc")}, "s.duckdb"),
        ("judge --codebook FILE", lambda p: ["judge", "--db", "s.duckdb", "--sim", "--codebook",
                                              p if "/" in p else "./" + p, "-q"],
         {"s.duckdb": Copy("disc")}, "s.duckdb"),
        ("models check FILE", lambda p: ["models", "check", p, "--sim"], {}, None),
        ("agents.roster FILE", lambda p: ["run", "in.yaml", "--sim", "--db", "out.duckdb", "-q"], {}, None),
        ("validate import FILE", lambda p: ["validate", "import", p, "--db", "s.duckdb"],
         {"s.duckdb": Copy("disc")}, "s.duckdb"),
        ("agreement --csv FILE", lambda p: ["agreement", "--csv", p, "--raters", "human,gemini"], {}, None),
        ("import warroom DIR", lambda p: ["import", "warroom", p, "--db", "out.duckdb"], {}, None),
    ]
    everywhere = {"a missing file", "an empty file", "binary garbage", "non-UTF-8 text", "a directory", "/dev/zero",
                  "a 300-character file name", "a file name with a newline"}
    cases = []
    for consumer, make_args, extra_files, store in consumers:
        for label, path, files in variants:
            if label not in everywhere and consumer != "run FILE":
                continue  # the other variants only for `run FILE`: one reader serves every YAML input
            files = {**extra_files, **files}
            if consumer == "agents.roster FILE":
                files["in.yaml"] = TINY.replace("roster: warroom\n  only: [llama, kimi]",
                                                f"roster: {json.dumps(path)}")
            cases.append(Case(fam, f"{consumer}: {label}", make_args(path), files, store=store))
    cases.append(Case(fam, "run FILE: a named pipe nobody writes to", run_args("p.yaml"), {"p.yaml": Fifo()},
                      timeout=15))
    cases.append(Case(fam, "run FILE: /dev/urandom", run_args("/dev/urandom")))
    cases.append(Case(fam, "run FILE: /proc/self/mem", run_args("/proc/self/mem")))
    cases.append(Case(fam, "run FILE: a file of 17 MiB", run_args(), {"in.yaml": TINY + "#" * (17 * 2 ** 20)}))
    return cases


def family_cli_arguments(fx: Fixtures) -> list[Case]:
    fam = "CLI arguments"
    cases: list[Case] = []
    disc = {"s.duckdb": Copy("disc")}
    games = {"g.duckdb": Copy("games")}
    tiny = {"in.yaml": TINY}

    def on_disc(label: str, args: list[str], files: dict[str, Any] | None = None) -> None:
        cases.append(Case(fam, label, args, {**disc, **(files or {})}, store="s.duckdb"))

    def on_games(label: str, args: list[str]) -> None:
        cases.append(Case(fam, label, args, dict(games), store="g.duckdb"))

    def opts(*pairs: str) -> list[tuple[str, list[str]]]:
        """'--n -1' -> ('--n -1', ['--n', '-1']); a value may be empty: '--series '."""
        return [(p, p.split(" ", 1)) for p in pairs]

    # run
    for label, extra in opts("--concurrency 0", "--concurrency 1000000000", "--concurrency abc", "--max-cost -1",
                             "--max-cost nan", "--max-cost abc", "--series Z", "--series "):
        cases.append(Case(fam, f"run {label}", run_args("in.yaml", *extra), dict(tiny)))
    cases.append(Case(fam, "run: an unknown option", run_args("in.yaml", "--fast"), dict(tiny)))
    cases.append(Case(fam, "run: an extra argument", run_args("in.yaml", "extra.yaml"), dict(tiny)))
    for label, db, files in [("--db a folder", "d.duckdb", {"d.duckdb": Dir()}), ("--db /dev/full", "/dev/full", {}),
                             ("--db in a missing folder", "no/such/x.duckdb", {}), ("--db /dev/null", "/dev/null", {}),
                             ("--db ''", "", {}), ("--db the scenario file itself", "in.yaml", {})]:
        cases.append(Case(fam, f"run {label}", ["run", "in.yaml", "--sim", "--db", db, "-q"], {**tiny, **files},
                          keep=("in.yaml",) if db == "in.yaml" else ()))
    cases.append(Case(fam, "run --dry-run --series Z", run_args("in.yaml", "--dry-run", "--series", "Z"), dict(tiny)))
    cases.append(Case(fam, "run --fresh of a bad file on a good store",
                      ["run", "in.yaml", "--sim", "--db", "s.duckdb", "--fresh", "-q"],
                      {**disc, "in.yaml": TINY.replace("rounds: 2", "rounds: 0")}, store="s.duckdb"))
    cases.append(Case(fam, "run: a changed file on a completed store (no --fresh)",
                      ["run", "in.yaml", "--sim", "--db", "s.duckdb", "-q"],
                      {**disc, "in.yaml": TINY.replace("rounds: 2", "rounds: 3")}, store="s.duckdb"))
    # global options
    on_disc("sql with --log-file /dev/full", ["--log-file", "/dev/full", "sql", "SELECT 1", "--db", "s.duckdb"])
    on_disc("sql with --log-file a folder", ["--log-file", "logs", "sql", "SELECT 1", "--db", "s.duckdb"],
            {"logs": Dir()})
    cases.append(Case(fam, "run of a bad file with --log-file /dev/full", ["--log-file", "/dev/full", *run_args()],
                      {"in.yaml": TINY.replace("rounds: 2", "rounds: -2")}))
    cases.append(Case(fam, "run of a bad file with --log-file in a missing folder",
                      ["--log-file", "no/such/x.log", *run_args()], {"in.yaml": TINY.replace("rounds: 2", "rounds: -2")}))
    # judge
    for label, extra in opts("--window -1", "--window 1000000", "--window abc", "--batch 0", "--batch 1000000",
                             "--judges ", "--judges [bold]x", "--codebook nope", "--config missing.yaml", "--runs [",
                             "--runs zzz*", "--series Z", "--max-cost -1"):
        on_disc(f"judge {label}", ["judge", "--db", "s.duckdb", "--sim", "-q", *extra])
    cases.append(Case(fam, "judge --db a missing file", ["judge", "--db", "none.duckdb", "--sim", "-q"]))
    cases.append(Case(fam, "judge --dry-run --db a missing file", ["judge", "--db", "none.duckdb", "--sim",
                                                                   "--dry-run"]))
    # agreement
    for label, extra in opts("--n-boot 0", "--n-boot 1000000000", "--n-boot abc", "--judges nope", "--codebook nope",
                             "--flags nope", "--raters a,b", "--seed -1", f"--seed {2 ** 64}"):
        on_disc(f"agreement {label}", ["agreement", "--db", "s.duckdb", *extra])
    cases.append(Case(fam, "agreement --db a missing file", ["agreement", "--db", "none.duckdb"]))
    cases.append(Case(fam, "agreement on a store with no codes", ["agreement", "--db", "g.duckdb"], dict(games),
                      store="g.duckdb"))
    # analyze / report
    for label, extra in opts("--rule nope", "--compare A", "--compare A:B:C", "--compare A:A", "--compare X:Y",
                             "--n-perm -1", "--n-perm 1000000000", "--n-perm abc", "--codebook nope", "--seed -1"):
        on_disc(f"analyze {label}", ["analyze", "--db", "s.duckdb", *extra])
    cases.append(Case(fam, "analyze --db a missing file", ["analyze", "--db", "none.duckdb"]))
    for label, extra, files in [("-o /dev/full", ["-o", "/dev/full"], {}), ("-o a folder", ["-o", "out"], {"out": Dir()}),
                                ("-o in a missing folder", ["-o", "no/such/r.html"], {}), ("-o ''", ["-o", ""], {}),
                                ("--n-perm -1", ["--n-perm", "-1", "-o", "r.html"], {}),
                                ("-o the store itself", ["-o", "s.duckdb"], {})]:
        on_disc(f"report {label}", ["report", "--db", "s.duckdb", *extra], files)
    # results
    for gate in ["", "x", "cooperation_rate <", "cooperation_rate << 0.5", "nope < 0.5",
                 "cooperation_rate < 0.5 model=nope", "cooperation_rate < 0.5 nope=1", "cooperation_rate < nan",
                 "cooperation_rate < 0.5 model", "[bold] < 1"]:
        on_games(f"results --fail-if {gate!r}", ["results", "--db", "g.duckdb", "--fail-if", gate])
    for label, extra in opts("--by nope", "--by ,", "--metrics nope"):
        on_games(f"results {label}", ["results", "--db", "g.duckdb", *extra])
    on_disc("results: a gate on a store with no outcomes", ["results", "--db", "s.duckdb", "--fail-if",
                                                            "cooperation_rate < 0.5"])
    # sql
    for query in ["", "SELEC 1", "DROP TABLE runs", "COPY runs TO 'x.csv'", "ATTACH 'x.duckdb' AS x",
                  "SELECT * FROM read_csv('/etc/passwd')", "INSTALL httpfs", "SELECT 1; DROP TABLE runs",
                  "SET threads = 1", "SELECT * FROM nope", "EXPORT DATABASE 'out'", "SELECT * FROM 'x.csv'",
                  "SELECT ?"]:
        on_disc(f"sql {query!r}", ["sql", query, "--db", "s.duckdb"])
    for label, extra in opts("--format xml", "--limit 0", "--limit abc"):
        on_disc(f"sql {label}", ["sql", "SELECT 1", "--db", "s.duckdb", *extra])
    cases.append(Case(fam, "sql --db a missing file", ["sql", "SELECT 1", "--db", "none.duckdb"]))
    # validate export / import
    for label, extra, files in [("--n 0", ["--n", "0"], {}), ("--n 10**9", ["--n", "1000000000"], {}),
                                ("--stratify nope", ["--stratify", "nope"], {}), ("--context -1", ["--context", "-1"], {}),
                                ("--context 10**6", ["--context", "1000000"], {}),
                                ("-o /dev/full", ["-o", "/dev/full"], {}), ("-o a folder", ["-o", "out"], {"out": Dir()}),
                                ("-o in a missing folder", ["-o", "no/such/v.csv"], {}),
                                ("--codebook nope", ["--codebook", "nope"], {}),
                                ("-o the store itself", ["-o", "s.duckdb"], {})]:
        on_disc(f"validate export {label}", ["validate", "export", "--db", "s.duckdb", *extra], files)
    cases.append(Case(fam, "validate export --db a missing file", ["validate", "export", "--db", "none.duckdb"]))
    for label, extra in [("--coder ''", ["--coder", ""]), ("--coder '[bold]x'", ["--coder", "[bold]x"]),
                         ("--codebook nope", ["--codebook", "nope"]),
                         ("--codebook safety (other flags)", ["--codebook", "safety"])]:
        on_disc(f"validate import {label}", ["validate", "import", "v.csv", "--db", "s.duckdb", *extra],
                {"v.csv": Copy("sample_csv")})
    # import
    for label, args in [("an unknown study", ["import", "nope", "tr", "--db", "out.duckdb"]),
                        ("study ''", ["import", "", "tr", "--db", "out.duckdb"]),
                        ("no folder", ["import", "warroom"]),
                        ("a missing folder", ["import", "warroom", "none", "--db", "out.duckdb"])]:
        cases.append(Case(fam, f"import {label}", args, {"tr": Dir()}))
    # models check
    for label, args in [("no file and no --model", ["models", "check"]),
                        ("--model ''", ["models", "check", "--model", ""]),
                        ("--model sim/", ["models", "check", "--model", "sim/"]),
                        ("--model '[bold]sim/x'", ["models", "check", "--model", "[bold]sim/x"]),
                        ("a bad scenario file", ["models", "check", "in.yaml", "--sim"])]:
        cases.append(Case(fam, f"models check {label}", args, {"in.yaml": TINY.replace("rounds: 2", "rounds: x")}))
    # replicate
    for label, args, files in [("no study", ["replicate"], {}), ("an unknown study", ["replicate", "nope", "--sim"], {}),
                               ("--series Z", ["replicate", "warroom", "--sim", "--series", "Z"], {}),
                               ("-o a folder", ["replicate", "warroom", "--sim", "--series", "F", "-o", "out"],
                                {"out": Dir()}),
                               ("-o in a missing folder", ["replicate", "warroom", "--sim", "--series", "F", "-o",
                                                           "no/such/r.html"], {}),
                               ("--db a folder", ["replicate", "warroom", "--sim", "--series", "F", "--db", "d"],
                                {"d": Dir()}),
                               ("-o /dev/full", ["replicate", "warroom", "--sim", "--series", "F", "-o", "/dev/full"],
                                {})]:
        cases.append(Case(fam, f"replicate {label}", args, files, timeout=90))
    # serve-sim refuses bad settings before it listens (port 0: nothing fixed is taken if it did listen)
    for label, extra in opts("--fail-rate 2", "--port 70000", "--host 8.8.8.8"):
        cases.append(Case(fam, f"serve-sim {label}", ["serve-sim", *extra, *([] if "port" in label else ["--port", "0"])],
                          timeout=10))
    cases.append(Case(fam, "an unknown command", ["frobnicate"]))
    return cases


FULL_DB_COMMANDS = {"run", "judge", "sql", "validate import", "import warroom"}
SHORT_DB_VARIANTS = {"binary garbage", "a store truncated to half", "another program's DuckDB file",
                     "another program's DuckDB file with a schema_version table", "a store from a newer sociolab (schema v999)",
                     "a good store locked by another process"}


def family_duckdb_files(fx: Fixtures) -> list[Case]:
    """Every command that takes --db, given a broken, foreign, locked or odd database file."""
    fam = "DuckDB files"
    garbage = random.Random(3).randbytes(200_000)
    commands: list[tuple[str, list[str], dict[str, Any]]] = [
        ("run", ["run", "in.yaml", "--sim", "-q"], {"in.yaml": TINY}),
        ("judge", ["judge", "--sim", "-q"], {}),
        ("agreement", ["agreement"], {}),
        ("analyze", ["analyze"], {}),
        ("report", ["report", "-o", "r.html"], {}),
        ("results", ["results"], {}),
        ("sql", ["sql", "SELECT count(*) FROM runs"], {}),
        ("validate export", ["validate", "export", "-o", "v.csv"], {}),
        ("validate import", ["validate", "import", "v.csv"], {"v.csv": Copy("sample_csv")}),
        ("import warroom", ["import", "warroom", str(TRANSCRIPTS)], {}),
        ("replicate", ["replicate", "warroom", "--sim", "--series", "F", "-o", "r.html"], {}),
    ]
    cases = []
    for cmd, args, files in commands:
        variants: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
            ("a 0-byte file", {"x.duckdb": b""}, {"keep": ()}),
            ("binary garbage", {"x.duckdb": garbage}, {"keep": ("x.duckdb",)}),
            ("a store truncated to 20,000 bytes", {"x.duckdb": ("truncate", 20_000)}, {"keep": ("x.duckdb",)}),
            ("a store truncated to half", {"x.duckdb": ("truncate", 0.5)}, {"keep": ("x.duckdb",)}),
            ("a store missing its last 4 KiB", {"x.duckdb": ("truncate", -4096)}, {"keep": ("x.duckdb",)}),
            ("a text file", {"x.duckdb": "hello, not a database\n"}, {"keep": ("x.duckdb",)}),
            ("a SQLite database", {"x.duckdb": ("sqlite",)}, {"keep": ("x.duckdb",)}),
            ("another program's DuckDB file", {"x.duckdb": Copy("foreign")}, {"foreign": "x.duckdb"}),
            ("another program's DuckDB file with a schema_version table", {"x.duckdb": Copy("foreign_sv")},
             {"foreign": "x.duckdb"}),
            ("a store from a newer sociolab (schema v999)", {"x.duckdb": Copy("newer")}, {"keep": ("x.duckdb",)}),
            ("a folder", {"x.duckdb": Dir()}, {}),
            ("a good store with a garbage .wal", {"x.duckdb": Copy("disc"), "x.duckdb.wal": garbage[:30_000]},
             {"keep": ("x.duckdb", "x.duckdb.wal")}),
            ("a good store locked by another process", {"x.duckdb": Copy("disc")},
             {"store": "x.duckdb", "hold": "x.duckdb"}),
            ("a symlink to /dev/zero", {"x.duckdb": Link("/dev/zero")}, {}),
        ]
        for label, vfiles, kw in variants:
            if cmd not in FULL_DB_COMMANDS and label not in SHORT_DB_VARIANTS:
                continue  # the read-only commands share one opening path: a few variants each
            timeout = 90 if cmd == "replicate" else TIMEOUT_S
            cases.append(Case(fam, f"{cmd} --db {label}", [*args, "--db", "x.duckdb"], {**files, **vfiles},
                              timeout=timeout, **kw))
    return cases


def write_csv(rows: list[list[str]]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue()


def family_csv(fx: Fixtures) -> list[Case]:
    fam = "CSV files"
    cases: list[Case] = []

    def vimport(label: str, content: str | bytes, *extra: str) -> None:
        cases.append(Case(fam, f"validate import: {label}", ["validate", "import", "v.csv", "--db", "s.duckdb", *extra],
                          {"v.csv": content, "s.duckdb": Copy("disc")}, store="s.duckdb"))

    def agree(label: str, content: str | bytes, raters: str = "human,gemini,sonnet", *extra: str) -> None:
        cases.append(Case(fam, f"agreement --csv: {label}", ["agreement", "--csv", "c.csv", "--raters", raters,
                                                             "--n-boot", "50", *extra], {"c.csv": content}))

    # validate import: edits of a coded sample exported from the fixture store (cells with newlines)
    rows = list(csv.reader(io.StringIO(fx.sample_csv.read_text())))
    head, body = rows[0], rows[1:]
    coder, flag = head.index("coder"), head.index("coder") + 1

    def cell(r: int, c: int, value: str) -> list[list[str]]:
        out = copy.deepcopy(rows)
        out[r][c] = value
        return out

    good = write_csv(rows)
    vimport("an empty file", b"")
    vimport("header only", write_csv([head]))
    vimport("a row twice", write_csv(rows + [body[0]]))
    vimport("a column twice", write_csv([r + [r[flag]] for r in [head] + body]))
    vimport("no id column", write_csv([["x"] + head[1:]] + body))
    vimport("no coder column and no --coder", write_csv([r[:coder] + r[coder + 1:] for r in rows]))
    vimport("no column for a flag", write_csv([r[:flag] + r[flag + 1:] for r in rows]))
    vimport("a flag value 'maybe'", write_csv(cell(1, flag, "maybe")))
    vimport("a flag value of 100,000 characters", write_csv(cell(1, flag, "t" * 100_000)))
    vimport("a level out of range", write_csv(cell(1, head.index("comp_level"), "9")))
    vimport("an unknown message id", write_csv(cell(1, 0, "zzz/001#1")))
    vimport("an empty id", write_csv(cell(1, 0, "")))
    vimport("two coders, one message coded twice by one", write_csv(rows + [body[0][:coder] + ["bo"]
                                                                            + body[0][coder + 1:], body[0]]))
    vimport("a Latin-1 byte in a cell", good.replace(",ana,", ",an\u00e9,", 1).encode("latin-1", "replace"))
    vimport("binary garbage", random.Random(5).randbytes(3000))
    vimport("semicolons instead of commas", write_csv(rows).replace(",", ";"))
    vimport("an unterminated quote", good.replace("\n", '\n"', 1))
    vimport("a 5 MB cell", write_csv(cell(1, head.index("text"), "y" * 5_000_000)))
    vimport("a NUL byte in a cell", good.replace(",ana,", ",a\0a,", 1))
    vimport("an unknown extra column", write_csv([head + ["extra"]] + [r + ["1"] for r in body]))
    vimport("a row with fewer fields", write_csv([head, body[0][:3]] + body[1:]))
    vimport("a row with more fields", write_csv([head, body[0] + ["1", "2"]] + body[1:]))
    vimport("a byte-order mark first", "\ufeff" + good)
    vimport("the study's agreement CSV instead", CODING_CSV.read_bytes())
    vimport("a coder name with markup and a newline", write_csv(cell(1, coder, "[bold]a\nb")))
    vimport("UTF-16", good.encode("utf-16"))
    coding = CODING_CSV.read_text()
    crow = coding.splitlines()
    agree("an empty file", b"")
    agree("header only", crow[0] + "\n")
    agree("a row twice (duplicate id)", "\n".join(crow + [crow[1]]) + "\n")
    agree("a column twice", "\n".join([crow[0] + ",human_phatic"] + [r + ",1" for r in crow[1:]]) + "\n")
    agree("a Latin-1 byte", coding.replace("LLaMA", "LL\u00e9MA", 1).encode("latin-1", "replace"))
    agree("a rater with no columns", coding, "human,gemini,nobody")
    agree("--raters ',,'", coding, ",,")
    agree("a value 'maybe'", coding.replace(",true,", ",maybe,", 1))
    agree("a row with fewer fields", "\n".join(crow[:1] + [crow[1].rsplit(",", 5)[0]] + crow[2:]) + "\n")
    agree("an unterminated quote", "\n".join(crow[:1] + ['"' + crow[1]] + crow[2:]) + "\n")
    agree("no id column", coding.replace("id,", "key,", 1))
    agree("binary garbage", random.Random(6).randbytes(3000))
    agree("--flags nope", coding, "human,gemini,sonnet", "--flags", "nope")
    agree("a 5 MB cell", "\n".join(crow + [crow[1].replace(",A,", ',"' + "z" * 5_000_000 + '",', 1)]) + "\n")
    agree("no rows with any flag column", "id,series\n1,A\n")
    agree("a NUL byte", coding.replace(",true,", ",tr\0ue,", 1))
    agree("all ratings empty", "\n".join([crow[0]] + [",".join(r.split(",")[:4] + [""] * (len(r.split(",")) - 4))
                                                      for r in crow[1:]]) + "\n")
    return cases


FAMILIES: dict[str, Callable[[Fixtures], list[Case]]] = {
    "library": family_library_scenarios,
    "configs": family_roster_judges_codebook,
    "transcripts": family_transcripts,
    "yaml": family_yaml_structure,
    "files": family_special_files,
    "cli": family_cli_arguments,
    "duckdb": family_duckdb_files,
    "csv": family_csv,
}


# ---- running one case ------------------------------------------------------------------------------

def materialize(case: Case, d: Path, fx: Fixtures) -> None:
    fixtures = {"disc": fx.disc, "games": fx.games, "foreign": fx.foreign, "foreign_sv": fx.foreign_sv,
                "newer": fx.newer, "sample_csv": fx.sample_csv}
    for name, spec in sorted(case.files.items(), key=lambda kv: kv[0].count("/")):
        path = d / name
        if isinstance(spec, Dir):
            path.mkdir(parents=True, exist_ok=True)
        elif isinstance(spec, Copy):
            shutil.copy(fixtures[spec.fixture], path)
        elif isinstance(spec, Link):
            os.symlink(spec.target, path)
        elif isinstance(spec, Fifo):
            os.mkfifo(path)
        elif isinstance(spec, tuple) and spec[0] == "truncate":
            raw = fx.disc.read_bytes()
            n = spec[1]
            path.write_bytes(raw[: int(len(raw) * n)] if isinstance(n, float) else raw[:n])
        elif isinstance(spec, tuple) and spec[0] == "sqlite":
            import sqlite3

            con = sqlite3.connect(path)
            con.execute("CREATE TABLE notes (x TEXT)")
            con.execute("INSERT INTO notes VALUES ('theirs')")
            con.commit()
            con.close()
        elif isinstance(spec, bytes):
            path.write_bytes(spec)
        else:
            path.write_bytes(spec.encode("utf-8", "surrogatepass"))


def snapshot(d: Path) -> dict[str, tuple[str, str]]:
    """relative path -> (kind, sha256 of a regular file), without following links or opening FIFOs."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(d):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = str(p.relative_to(d))
            st = p.lstat()
            if stat.S_ISREG(st.st_mode):
                out[rel] = ("file", hashlib.sha256(p.read_bytes()).hexdigest())
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", "")
            else:
                out[rel] = ("other", "")
    return out


def holds_sociolab_rows(path: Path) -> bool:
    """A DuckDB file with rows in a sociolab table (runs, codes, events, ...): work a rerun resumes."""
    counts = store_counts(path)
    return bool(counts) and any(counts.values())


def hold_open(path: Path) -> subprocess.Popen:
    """Another process with the database open read-write (DuckDB locks the file)."""
    code = "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('held', flush=True); time.sleep(300)"
    proc = subprocess.Popen([sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE, env=ENV,
                            start_new_session=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == b"held"
    return proc


def classify(rc: int | None, out: str, err: str) -> str:
    lines = err.strip().splitlines()
    text = out + err
    if rc is None:
        return "hang"
    if ("Traceback (most recent call last)" in text or "--- Logging error ---" in text
            or any(line.startswith("error: unexpected") for line in lines) or "(traceback in " in err
            or "a bug in sociolab" in err or rc < 0 or rc not in (0, 1, 2)):
        return "failed"
    if rc == 2 and len(lines) == 1 and lines[0].startswith("error: "):
        return "handled"
    if rc == 0:
        return "accepted"
    return "other"


def run_case(case: Case, fx: Fixtures, work: Path, index: int, keep_dir: Path | None) -> Result:
    d = work / f"case{index:04d}"
    d.mkdir()
    materialize(case, d, fx)
    before = snapshot(d)
    holder = hold_open(d / case.hold) if case.hold else None
    try:
        rc, out, err, seconds = sociolab(case.args, d, case.timeout)
    finally:
        if holder is not None:
            holder.kill()
            holder.wait()
    result = Result(case, rc, out, err, seconds, classify(rc, out, err))
    after = snapshot(d)
    if rc not in (0, None):  # a killed (timed-out) command cannot clean up: its files count as the hang
        for rel in sorted(set(after) - set(before)):
            p = d / rel
            if rel.endswith(".log") or (after[rel][0] == "file" and holds_sociolab_rows(p)
                                        and not rel.endswith(".wal")):
                continue
            size = p.lstat().st_size
            result.leftovers.append(f"{rel} ({after[rel][0]}, {size:,} bytes)")
    if case.foreign:
        if before.get(case.foreign) != after.get(case.foreign):
            result.foreign_modified.append(f"{case.foreign} changed")
        if f"{case.foreign}.wal" in after and f"{case.foreign}.wal" not in before:
            result.foreign_modified.append(f"{case.foreign}.wal created")
    if rc != 0:
        for name in case.keep:
            if before.get(name) != after.get(name):
                result.lost.append(f"{name} was changed by a command that refused it")
    if case.store:
        src = fx.disc if case.files.get(case.store) == Copy("disc") else fx.games
        counts = store_counts(d / case.store)
        if counts is None:
            result.lost.append(f"{case.store} no longer opens")
        else:
            for t, n in fx.counts[src].items():
                if counts.get(t, 0) < n:
                    result.lost.append(f"{case.store}: {t} {n} -> {counts.get(t, 0)} rows")
    if result.bad and keep_dir is not None:
        dest = keep_dir / f"case{index:04d}"
        shutil.copytree(d, dest, symlinks=True, ignore_dangling_symlinks=True,
                        ignore=lambda _d, names: [n for n in names if not (Path(_d) / n).is_file()
                                                  and not (Path(_d) / n).is_dir()])
        (dest / "COMMAND.txt").write_text(case.command() + "\n" + case.label + "\n")
        result.kept_at = str(dest)
    shutil.rmtree(d, ignore_errors=True)
    return result


def code_version() -> str:
    """The commit measured, and how many of sociolab's tracked files differ from it (edits in
    progress); tests, docs and bench scripts are not the code measured."""
    outside = [":(exclude)tests", ":(exclude)docs", ":(exclude)bench", ":(exclude)*.md"]
    try:
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no", "--", ".",
                                *outside], capture_output=True, text=True, timeout=10).stdout.splitlines()
        digest = hashlib.sha256(subprocess.run(["git", "-C", str(ROOT), "diff", "--", ".", *outside],
                                               capture_output=True, timeout=30).stdout).hexdigest()[:8]
    except (OSError, subprocess.SubprocessError):
        return "unknown (no git)"
    return f"commit {head or '?'}" + (f" + {len(dirty)} modified tracked file(s) (diff {digest})" if dirty else "")


def guarded(case: Case, fx: Fixtures, work: Path, index: int, keep_dir: Path | None) -> Result:
    """run_case, with a problem of the bench itself reported as such rather than ending the bench."""
    try:
        return run_case(case, fx, work, index, keep_dir)
    except Exception as exc:  # noqa: BLE001
        return Result(case, -999, "", f"bench error: {type(exc).__name__}: {exc}", 0.0, "bench error")


# ---- main ----------------------------------------------------------------------------------------

def all_cases(families: list[str], fx: Fixtures) -> tuple[list[Case], int]:
    cases, seen, dupes = [], set(), 0
    for name in families:
        for case in FAMILIES[name](fx):
            key = case.key()
            if key in seen:
                dupes += 1
                continue
            seen.add(key)
            cases.append(case)
    return cases, dupes


def quick_sample(cases: list[Case], n: int) -> list[Case]:
    rng = random.Random(0)
    by_family: dict[str, list[Case]] = {}
    for c in cases:
        by_family.setdefault(c.family, []).append(c)
    out = []
    for fam, items in by_family.items():
        k = max(2, round(n * len(items) / len(cases)))
        out += rng.sample(items, min(k, len(items)))
    return out


def first_lines(text: str, n: int = 3, width: int = 300) -> list[str]:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return [line if len(line) <= width else line[:width] + f"... ({len(line)} chars)" for line in lines[:n]]


def report(results: list[Result], wall: float, workers: int) -> int:
    fams: dict[str, list[Result]] = {}
    for r in results:
        fams.setdefault(r.case.family, []).append(r)
    cols = ["family", "cases", "handled", "failed", "hangs", "accepted", "other", "leftovers", "foreign mod.",
            "lost"]

    def row(name: str, rs: list[Result]) -> list:
        count = lambda v: sum(r.verdict == v for r in rs)  # noqa: E731
        return [name, len(rs), count("handled"), count("failed"), count("hang"), count("accepted"), count("other"),
                sum(bool(r.leftovers) for r in rs), sum(bool(r.foreign_modified) for r in rs),
                sum(bool(r.lost) for r in rs)]

    rows = [row(name, rs) for name, rs in fams.items()] + [row("total", results)]
    print()
    print(table(cols, rows))
    print(f"\n{len(results)} distinct cases in {wall:.0f} s with {workers} at a time "
          f"(median {sorted(r.seconds for r in results)[len(results) // 2]:.2f} s per case); {machine()}")

    bad = [r for r in results if r.bad]
    if bad:
        print(f"\n==== {len(bad)} failing case(s): traceback/bug line, hang, leftover, foreign file modified or "
              "data lost ====")
        for r in bad:
            what = [r.verdict] if r.verdict in ("failed", "hang", "bench error") else []
            what += [f"leftover: {x}" for x in r.leftovers] + [f"foreign: {x}" for x in r.foreign_modified]
            what += [f"lost: {x}" for x in r.lost]
            print(f"\n[{r.case.family}] {r.case.label}\n  $ {r.case.command()}\n  -> exit {r.rc}"
                  f"{' (killed at the %.0f s timeout)' % r.case.timeout if r.rc is None else ''}, "
                  f"{r.seconds:.1f} s: {'; '.join(what)}")
            for line in first_lines(r.stderr, 4) or first_lines(r.stdout, 2):
                print(f"  | {line}")
            if r.kept_at:
                print(f"  inputs kept in {r.kept_at}")
    other = [r for r in results if r.verdict == "other" and not r.bad]
    if other:
        print(f"\n---- {len(other)} case(s) refused or stopped, but not as one 'error: ' line with exit 2 ----")
        for r in other:
            lines = first_lines(r.stderr, 4, 200) or first_lines(r.stdout, 2, 200)
            print(f"[{r.case.family}] {r.case.label}: exit {r.rc}, {len(r.stderr.strip().splitlines())} stderr "
                  f"line(s): {' / '.join(lines)[:400]}")
    print(f"\nverdict: {len(bad)} failing case(s) of {len(results)}" + (" -- see above" if bad else ""))
    return 1 if bad else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a stratified sample of ~40 cases (smoke use)")
    parser.add_argument("--workers", type=int, default=(os.cpu_count() or 2) + 1, help="cases run at once")
    parser.add_argument("--family", action="append", choices=sorted(FAMILIES), help="only this family (repeatable)")
    parser.add_argument("--json", type=Path, help="write every case's result here")
    parser.add_argument("--keep", type=Path, help="copy the inputs of failing cases into this folder")
    parser.add_argument("--list", action="store_true", help="list the cases and exit")
    opts = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="sociolab-bad-inputs-"))
    version = code_version()
    try:
        t0 = time.perf_counter()
        fx = build_fixtures(work)
        cases, dupes = all_cases(opts.family or list(FAMILIES), fx)
        if opts.quick:
            cases = quick_sample(cases, 40)
        if opts.list:
            for c in cases:
                print(f"[{c.family}] {c.label}\n    {c.command()}")
            print(f"{len(cases)} cases ({dupes} duplicates dropped)")
            return 0
        print(f"{time.strftime('%Y-%m-%d %H:%M')}, sociolab at {version}")
        print(f"bad inputs through the CLI: {len(cases)} distinct cases ({dupes} duplicate(s) dropped), "
              f"{opts.workers} at a time, {TIMEOUT_S:.0f} s timeout per case (replicate: 90 s); fixtures built in "
              f"{time.perf_counter() - t0:.1f} s; {machine()}", flush=True)
        keep_dir = opts.keep or work.parent / (work.name + "-failures")
        keep_dir.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        results: list[Result | None] = [None] * len(cases)
        done = 0
        with concurrent.futures.ThreadPoolExecutor(opts.workers) as pool:
            futures = {pool.submit(guarded, c, fx, work, i, keep_dir): i for i, c in enumerate(cases)}
            for fut in concurrent.futures.as_completed(futures):
                results[futures[fut]] = fut.result()
                done += 1
                if done % 50 == 0 or done == len(cases):
                    print(f"  {done}/{len(cases)} cases, {time.perf_counter() - t0:.0f} s", flush=True)
        wall = time.perf_counter() - t0
        final = [r for r in results if r is not None]
        code = report(final, wall, opts.workers)
        if code_version() != version:
            print(f"WARNING: the code changed during the run ({version} -> {code_version()}): re-run for "
                  "figures of one version")
        if opts.json:
            opts.json.write_text(json.dumps([{
                "family": r.case.family, "label": r.case.label, "command": r.case.command(), "rc": r.rc,
                "verdict": r.verdict, "seconds": round(r.seconds, 2), "stderr": r.stderr[-3000:],
                "stdout": r.stdout[-1000:], "leftovers": r.leftovers, "foreign_modified": r.foreign_modified,
                "lost": r.lost, "kept_at": r.kept_at} for r in final], indent=1, ensure_ascii=False))
        if not any(keep_dir.iterdir()):
            keep_dir.rmdir()
        return code
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
