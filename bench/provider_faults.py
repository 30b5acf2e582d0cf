"""Provider fault rates survived with 0 lost messages: discussions against faulty wire servers.

Why: real providers answer 429s, 5xx, dropped connections, stalls and garbled bodies. sociolab
promises that every call is retried when the error is transient, and that whatever still fails is
stored as an error, never as a silent default, with nothing lost (docs/architecture.md, "Errors are
never defaults", "Provider failures are not results"). The tests check each fault once; this
measures the promise at fault rates, through litellm's real translation code for each family.
It imports HEAD's sociolab (exported with `git archive`), not the working tree; `--worktree` to
measure the working tree.

Per provider family (the loopback servers of tests/wire/: OpenAI chat, Anthropic Messages,
Gemini, an OpenAI-compatible host) and fault rate, a 3-agent discussion suite (every agent on the
family's model) runs through the public API (`sociolab.run`) into a fresh DuckDB file, while the
server answers each request, with the given probability (seeded), with one fault drawn from
FAULTS: 429 with Retry-After, 500, 503 (529 for Anthropic), a connection closed or reset without
a reply, a reply slower than the client's timeout, a truncated JSON body. Then it counts:

* runs and their status: every run must be completed, or stored `incomplete`/`stopped`/`failed`
  with the error visible in its rows; an exception out of `sociolab.run` counts as a crash;
* agent messages expected (agents x rounds played) vs stored: lost = expected - stored;
* every agent message has exactly one llm_calls row; an error message has its error text and
  error_type; a non-error message has content (else: silent default);
* the requests the server saw vs the attempts stored (sum of llm_calls.attempts): unaccounted;
  the faults the server served vs the failed attempts stored; retries = attempts - calls.

    python bench/provider_faults.py          # 4 families x 4 rates x 6 runs x 4 rounds, ~1-2 min
    python bench/provider_faults.py --quick  # 4 families x 2 rates x 3 runs x 3 rounds, < 60 s
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable

import _common  # noqa: F401  (litellm env vars, repo on sys.path)
from _common import machine, table

import yaml
from kill_resume import export_head, revision
from tests.wire import Fault
from tests.wire.families import PLANTED_KEY, Family, family as family_named

sociolab: Any = None  # imported in main(), from HEAD's files unless --worktree

KEY_ENV = "SOCIOLAB_BENCH_WIRE_KEY"
TIMEOUT_S = 1.0
CLIENT = {"timeout_s": TIMEOUT_S, "max_attempts": 4, "initial_wait_s": 0.01, "max_wait_s": 0.3, "cache": False}
AGENTS = 3


# The four families of the issue, as the conformance tests name and serve them.
FAMILIES = [family_named(name) for name in ("openai", "anthropic", "gemini", "groq")]


def faults_for(family: Family) -> dict[str, Callable[[], Fault]]:
    overloaded = 529 if family.name == "anthropic" else 503
    return {"429+Retry-After": lambda: Fault(429, retry_after=0.1), "500": lambda: Fault(500),
            str(overloaded): lambda: Fault(overloaded), "closed": Fault.closed, "reset": Fault.reset,
            "timeout": lambda: Fault.slow(TIMEOUT_S + 0.5), "malformed": Fault.malformed}


def script(family: Family, rate: float, n: int, seed: int) -> list[tuple[str, Fault]]:
    """What the server answers its next n requests: a fault with probability `rate`, else normally."""
    rng, kinds = random.Random(seed), faults_for(family)
    out = []
    for _ in range(n):
        kind = rng.choice(sorted(kinds)) if rng.random() < rate else "ok"
        out.append((kind, kinds[kind]() if kind != "ok" else Fault()))
    return out


def suite(family: Family, url: str, runs: int, rounds: int) -> str:
    persona = {"model": family.model, "api_base": url, "api_key_env": KEY_ENV}
    return yaml.safe_dump({
        "name": "faults", "kind": "discussion", "seed": 9, "concurrency": 4,
        "agents": {"personas": [{"key": f"a{i}", **persona} for i in range(AGENTS)]},
        "params": {"seed_message": "@all Plan a food delivery app.", "rounds": rounds, "stagger_ms": 10,
                   "max_tokens": 200},
        "client": CLIENT, "series": {"X": {"runs": runs}}}, sort_keys=False)


def counts(db: Path) -> dict[str, int]:
    with sociolab.open(db) as results:
        q = lambda sql: results.connection.execute(sql).fetchone()[0]  # noqa: E731
        agent = "m.sender NOT IN ('user', 'system')"
        return {
            "runs": q("SELECT count(*) FROM runs"),
            "completed": q("SELECT count(*) FROM runs WHERE status = 'completed'"),
            "not completed": q("SELECT count(*) FROM runs WHERE status <> 'completed'"),
            "not completed, no error stored": q(
                "SELECT count(*) FROM runs r WHERE status <> 'completed' AND NOT EXISTS (SELECT 1 FROM "
                "messages m WHERE m.run_id = r.run_id AND m.is_error) AND NOT EXISTS (SELECT 1 FROM events e "
                "WHERE e.run_id = r.run_id AND e.kind = 'internal_error')"),
            "expected": q(f"SELECT coalesce(sum({AGENTS} * rounds_done), 0) FROM runs"),  # rounds played
            "planned": q(f"SELECT coalesce(sum({AGENTS} * rounds_planned), 0) FROM runs"),
            "completed short": q("SELECT count(*) FROM runs WHERE status = 'completed' AND rounds_done <> rounds_planned"),
            "stored": q(f"SELECT count(*) FROM messages m WHERE {agent}"),
            "errors": q(f"SELECT count(*) FROM messages m WHERE {agent} AND m.is_error"),
            "calls": q("SELECT count(*) FROM llm_calls"),
            "attempts": q("SELECT coalesce(sum(attempts), 0) FROM llm_calls"),
            "failed calls": q("SELECT count(*) FROM llm_calls WHERE error_type IS NOT NULL"),
            "ok attempts": q("SELECT count(*) FROM llm_calls WHERE error_type IS NULL"),
            "messages without exactly one call": q(
                f"SELECT count(*) FROM messages m WHERE {agent} AND (SELECT count(*) FROM llm_calls c "
                "WHERE c.message_id = m.message_id) <> 1"),
            "silent defaults": q(
                f"SELECT count(*) FROM messages m JOIN llm_calls c USING (message_id) WHERE {agent} AND "
                "CASE WHEN m.is_error THEN coalesce(m.error, '') = '' OR c.error_type IS NULL "
                "ELSE coalesce(trim(m.content), '') = '' OR c.error_type IS NOT NULL END"),
        }


def error_kinds(db: Path) -> dict[str, int]:
    with sociolab.open(db) as results:
        rows = results.connection.execute("SELECT error_type || ' (' || attempts || ' att.)', count(*) "
                                          "FROM llm_calls WHERE error_type IS NOT NULL GROUP BY 1").fetchall()
    return dict(rows)


def measure(family: Family, rate: float, runs: int, rounds: int, work: Path, seed: int) -> dict[str, Any]:
    planned = script(family, rate, 20 * runs * rounds * AGENTS, seed)
    db = work / f"{family.name.split()[0]}-{int(rate * 100)}.duckdb"
    row: dict[str, Any] = {"family": family.name, "rate": rate, "crash": ""}
    t0 = time.monotonic()
    with family.server() as srv:
        srv.push(*(fault for _, fault in planned))
        file = work / "suite.yaml"
        file.write_text(suite(family, srv.url, runs, rounds), encoding="utf-8")
        causes: Counter[str] = Counter()
        retried = lambda model, source, wait, exc: causes.update([type(exc).__name__])  # noqa: E731
        try:
            sociolab.run(file, db=db, on_retry=retried)
        except Exception as exc:  # noqa: BLE001 - a crash is what is counted here
            row["crash"] = f"{type(exc).__name__}: {exc}"[:200]
        served = len(planned) - srv.clear_faults()
        requests = len([r for r in srv.requests if r.body is not None])
        row.update(counts(db))
        row["error kinds"] = error_kinds(db)
        row["retry causes"] = dict(causes)
        sociolab.run(file, db=db)  # the rerun, fault-free: redoes what the faults left unfinished
        after = counts(db)
        row["after rerun"] = f"{after['completed']}/{after['runs']} runs, {after['stored']}/{after['planned']} msgs"
        row["rerun short"] = after["planned"] - after["stored"] + after["runs"] - after["completed"]
        row["server errors"] = len(srv.errors)
    row["wall_s"] = time.monotonic() - t0
    row["requests"] = requests
    row["faults served"] = sum(kind != "ok" for kind, _ in planned[:served])
    row["failed attempts"] = row["attempts"] - row["ok attempts"]
    row["lost"] = max(0, row["expected"] - row["stored"])
    row["unaccounted"] = max(0, requests - row["attempts"])  # the server saw calls the store lacks
    row["client-side"] = max(0, row["attempts"] - requests)   # failed before reaching the server
    return row


def report(rows: list[dict[str, Any]]) -> None:
    print(table(["family", "fault rate", "runs", "completed", "msgs expected", "stored", "errors", "lost",
                 "calls", "requests", "attempts", "retries", "faults served", "failed att.", "failed runs",
                 "crash/silent", "after a fault-free rerun", "wall s"],
                [[r["family"], f"{r['rate']:.0%}", r["runs"], r["completed"], r["expected"], r["stored"], r["errors"],
                  r["lost"], r["calls"], r["requests"], r["attempts"], r["attempts"] - r["calls"],
                  r["faults served"], r["failed attempts"], r["not completed"],
                  f"{bool(r['crash']) + r['silent defaults'] + r['messages without exactly one call']}",
                  r["after rerun"], f"{r['wall_s']:.1f}"] for r in rows]))
    for r in rows:
        problems = [f"{k}: {r[k]}" for k in ("crash", "not completed, no error stored", "silent defaults",
                                             "messages without exactly one call", "completed short", "rerun short",
                                             "server errors") if r[k]]
        if r["lost"] or r["unaccounted"] or r["faults served"] + r["client-side"] != r["failed attempts"]:
            problems.append(f"lost {r['lost']}, requests not in llm_calls {r['unaccounted']}, faults served "
                            f"{r['faults served']} + client-side {r['client-side']} vs failed attempts "
                            f"{r['failed attempts']}")
        if r["retry causes"]:
            print(f"  {r['family']} {r['rate']:.0%}: retried after {r['retry causes']}")
        if r["error kinds"]:
            print(f"  {r['family']} {r['rate']:.0%}: failed calls {r['error kinds']}")
        for p in problems:
            print(f"  PROBLEM {r['family']} {r['rate']:.0%}: {p}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="rates 0 and 50%%, 3 runs x 3 rounds per cell (< 60 s)")
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--keep", type=Path, help="keep the DuckDB files in this folder")
    parser.add_argument("--family", action="append", help="only these families (by name prefix)")
    parser.add_argument("--worktree", action="store_true", help="measure the working tree's sociolab, not HEAD's")
    args = parser.parse_args()
    global sociolab
    head = None if args.worktree else tempfile.TemporaryDirectory(prefix="provider_faults_head_")
    if head is not None:
        sys.path.insert(0, str(export_head(Path(head.name))))
    import sociolab as imported
    from sociolab.orchestrator.litellm_boot import get_litellm
    sociolab = imported
    os.environ[KEY_ENV] = PLANTED_KEY
    logging.basicConfig(level=logging.ERROR, format="  log %(levelname)s %(name)s: %(message)s")
    rates, runs, rounds = ([0.0, 0.5], 3, 3) if args.quick else ([0.0, 0.1, 0.3, 0.5], 6, 4)
    where = f"working tree at {revision()}" if args.worktree else f"commit {revision(False)}"
    print(f"provider_faults: {where} (sociolab from {Path(sociolab.__file__).parent.parent}), {machine()}")
    print(f"{AGENTS} agents x {rounds} rounds x {runs} runs per cell; client {CLIENT}")
    t0 = time.monotonic()
    rows = []
    get_litellm()  # its first import takes seconds: not inside the first call's timeout
    families = [f for f in FAMILIES if not args.family or any(f.name.startswith(n) for n in args.family)]
    with tempfile.TemporaryDirectory(prefix="provider_faults_") as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        for family in families:
            for i, rate in enumerate(rates):
                rows.append(measure(family, rate, runs, rounds, work, args.seed + i))
    report(rows)
    lost = sum(r["lost"] for r in rows)
    bad = sum(bool(r["crash"]) + r["silent defaults"] + r["messages without exactly one call"] + r["unaccounted"]
              + r["not completed, no error stored"] + r["completed short"] + r["rerun short"] for r in rows)
    print(f"\n{sum(r['faults served'] for r in rows)} faults served, {sum(r['stored'] for r in rows)} messages "
          f"stored of {sum(r['expected'] for r in rows)} expected: {lost} lost, {bad} unaccounted/silent/crashed "
          f"({time.monotonic() - t0:.0f} s; load avg now {os.getloadavg()[0]:.2f})")
    raise SystemExit(0 if lost == 0 and bad == 0 else 1)


if __name__ == "__main__":
    main()
