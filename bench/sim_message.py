"""Target: in-process sim path, one discussion message generated, recorded and stored in <= 1 ms
on this 2-core machine, and 3x faster than AutoGen's RoundRobinGroupChat with a replayed model
client, in two shapes:

  in flight   7 sim agents, 20 rounds, 6 runs, 4 runs in flight (sociolab's usual shape);
  sequential  7 sim agents, 10 rounds, 5 runs one after another (AutoGen's own shape: one team
              runs at a time, so nothing overlaps a run's start and final write).

End to end: the discussion suite goes through the real runner (`sociolab.runner.execute`) into a
real DuckDB file in a temp dir; wall time divided by the agent messages stored. Baselines
measured in the same run, interleaved with it:

  1. AutoGen AgentChat `RoundRobinGroupChat` of 7 `AssistantAgent`s on
     `autogen_ext.models.replay.ReplayChatCompletionClient`, replaying the very texts the sim wrote,
     for the same number of messages and the same concurrency (no storage: AutoGen keeps them in
     memory);
  2. bare `litellm.acompletion("sim/<model>")` on the same contexts (generation only, no storage);
  3. `sim_reply(...)` called directly on the same contexts (the floor: generation only).

    python bench/sim_message.py [--runs 6] [--rounds 20] [--seq-runs 5] [--seq-rounds 10] [--reps 5]
                                [--profile]    (--profile: cProfile of the sequential shape)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path

import _common  # noqa: F401  (sets LITELLM_LOCAL_MODEL_COST_MAP before litellm is imported)
from _common import machine, median, table, unavailable, verdict

TARGET_MS = 1.0
TARGET_SPEEDUP = 3.0

YAML = """\
name: bench-sim-message
kind: discussion
seed: 11
repeats: {runs}
concurrency: {concurrency}
agents:
  roster: warroom
  exclude: [deepseek]      # 7 agents, no crash
params:
  seed_message: >-
    @all We have a client who wants a food delivery mobile app for a city of 500k inhabitants.
    Budget: EUR50k, deadline: 3 months.
  rounds: {rounds}
  naming: anonymous
  scaffolding: full
  stagger_ms: 1200
  temperature: 0.8
sim:
  stand_ins: true
"""


def write_plan(tmp: Path, runs: int, rounds: int, concurrency: int) -> Path:
    path = tmp / f"bench-{runs}x{rounds}x{concurrency}.yaml"
    path.write_text(YAML.format(runs=runs, rounds=rounds, concurrency=concurrency))
    return path


def run_sociolab(plan_path: Path, db: Path) -> tuple[float, float, int]:
    """(seconds in execute, seconds incl. open+close, agent messages stored)."""
    from sociolab.config import load_plan
    from sociolab.runner import execute
    from sociolab.orchestrator.store import Store

    plan = load_plan(plan_path)
    t0 = time.perf_counter()
    store = Store.open(db)
    t1 = time.perf_counter()
    asyncio.run(execute(plan, store))
    t2 = time.perf_counter()
    store.close()
    t3 = time.perf_counter()
    import duckdb

    con = duckdb.connect(str(db), read_only=True)
    n = con.execute("SELECT count(*) FROM messages WHERE sender NOT IN ('user', 'system') "
                    "AND NOT is_error").fetchone()[0]
    con.close()
    return t2 - t1, t3 - t0, n


def transcripts(db: Path) -> list[dict]:
    """Per run: system prompts, models, names and the stored messages in order (for the baselines)."""
    import duckdb

    con = duckdb.connect(str(db), read_only=True)
    agents = con.execute("SELECT run_id, agent_id, name, model, system_prompt, position FROM agents "
                         "ORDER BY run_id, position").fetchall()
    msgs = con.execute("SELECT run_id, seq, sender, sender_name, content FROM messages "
                       "ORDER BY run_id, seq").fetchall()
    con.close()
    runs: dict[str, dict] = {}
    for run_id, agent_id, name, model, prompt, _ in agents:
        runs.setdefault(run_id, {"agents": [], "messages": []})["agents"].append(
            {"id": agent_id, "name": name, "model": model, "prompt": prompt})
    for run_id, _seq, sender, sender_name, content in msgs:
        runs[run_id]["messages"].append((sender, sender_name, content))
    return list(runs.values())


def contexts(run: dict) -> list[tuple[str, list[dict], int]]:
    """(model, OpenAI messages the speaker saw, seed) for every agent message of a run."""
    by_id = {a["id"]: a for a in run["agents"]}
    out = []
    for k, (sender, _name, _content) in enumerate(run["messages"]):
        if sender not in by_id:
            continue
        agent = by_id[sender]
        ctx = [{"role": "system", "content": agent["prompt"]}] if agent["prompt"] else []
        for s, n, c in run["messages"][:k]:
            if s == "user":
                ctx.append({"role": "user", "content": c})
            elif s == sender:
                ctx.append({"role": "assistant", "content": c})
            else:
                ctx.append({"role": "user", "content": f"[{n}]: {c}"})
        out.append((agent["model"], ctx, 1000 + k))
    return out


async def autogen_baseline(runs: list[dict], concurrency: int) -> tuple[float, int]:
    from autogen_agentchat.agents import AssistantAgent
    from autogen_agentchat.conditions import MaxMessageTermination
    from autogen_agentchat.teams import RoundRobinGroupChat
    from autogen_ext.models.replay import ReplayChatCompletionClient

    def team_for(run: dict):
        agents = []
        for i, a in enumerate(run["agents"]):
            said = [c for s, _n, c in run["messages"] if s == a["id"]] or ["ok"]
            agents.append(AssistantAgent(f"agent_{i}", system_message=a["prompt"] or None,
                                         model_client=ReplayChatCompletionClient(said)))
        n = sum(1 for s, _n, _c in run["messages"] if s != "user")
        return RoundRobinGroupChat(agents, termination_condition=MaxMessageTermination(n + 1)), n

    teams = [team_for(r) for r in runs]  # built outside the timing, like load_plan for sociolab
    limit = asyncio.Semaphore(concurrency)
    produced = []

    async def one(team):
        async with limit:
            result = await team.run(task=runs[0]["messages"][0][2])
            produced.append(len(result.messages) - 1)

    t0 = time.perf_counter()
    await asyncio.gather(*(one(t) for t, _ in teams))
    return time.perf_counter() - t0, sum(produced)


async def litellm_baseline(calls: list[tuple[str, list[dict], int]]) -> float:
    from sociolab.orchestrator.litellm_boot import get_litellm

    litellm = get_litellm()
    for model, ctx, seed in calls[:20]:  # warm-up
        await litellm.acompletion(model=model, messages=ctx, seed=seed, temperature=0.8, max_tokens=1024,
                                  max_retries=0)
    t0 = time.perf_counter()
    for model, ctx, seed in calls:
        await litellm.acompletion(model=model, messages=ctx, seed=seed, temperature=0.8, max_tokens=1024,
                                  max_retries=0)
    return time.perf_counter() - t0


def sim_reply_floor(calls: list[tuple[str, list[dict], int]]) -> float:
    from sociolab.orchestrator.sim.agent import sim_reply

    t0 = time.perf_counter()
    for model, ctx, seed in calls:
        sim_reply(model, ctx, seed=seed, temperature=0.8, max_tokens=1024)
    return time.perf_counter() - t0


def profile_sociolab(plan_path: Path, tmp: Path, top: int = 25) -> None:
    import cProfile
    import pstats

    prof = cProfile.Profile()
    prof.enable()
    run_sociolab(plan_path, tmp / "profile.duckdb")
    prof.disable()
    stats = pstats.Stats(prof)
    print(f"\n--- cProfile of one sociolab measurement, sequential shape (top {top} by own time; the "
          "store thread is not profiled: the main thread's wait for it shows as select/poll) ---")
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumtime").print_stats("orchestrator|scenarios|personas", top)


class Shape:
    """One benchmark shape: its plan, and the per-message times of each side, rep by rep."""

    def __init__(self, tmp: Path, name: str, runs: int, rounds: int, concurrency: int):
        self.name, self.runs, self.rounds, self.concurrency = name, runs, rounds, concurrency
        self.tmp = tmp
        self.plan = write_plan(tmp, runs, rounds, concurrency)
        self.soc: list[float] = []
        self.soc_incl: list[float] = []
        self.ag: list[float] = []
        self.n_msgs = 0
        self.transcripts: list[dict] | None = None

    @property
    def label(self) -> str:
        return f"{self.name}: {self.runs} runs x {self.rounds} rounds, {self.concurrency} in flight"

    def measure(self, rep: int, have_autogen: bool) -> bool:
        """One rep of each side, sociolab first (its transcripts feed the AutoGen replay);
        returns whether AutoGen is still available."""
        db = self.tmp / f"{self.name}-rep{rep}.duckdb"
        t_exec, t_incl, self.n_msgs = run_sociolab(self.plan, db)
        self.soc.append(t_exec / self.n_msgs)
        self.soc_incl.append(t_incl / self.n_msgs)
        if self.transcripts is None:
            self.transcripts = transcripts(db)
        if not have_autogen:
            return False
        try:
            t, n = asyncio.run(autogen_baseline(self.transcripts, self.concurrency))
        except Exception as exc:
            unavailable(f"AutoGen run failed ({type(exc).__name__}: {exc})")
            return False
        self.ag.append(t / n)
        return True

    def rows(self) -> list[list]:
        ms = median(self.soc) * 1000

        def row(name: str, xs: list[float]) -> list:
            return [name, self.n_msgs, f"{median(xs) * 1000:.3f}", f"{min(xs) * 1000:.3f}",
                    f"{median(xs) * 1000 / ms:.2f}"]
        out = [row(f"[{self.name}] sociolab runner -> DuckDB (execute)", self.soc),
               row(f"[{self.name}] sociolab incl. Store.open/close", self.soc_incl)]
        if self.ag:
            out.append(row(f"[{self.name}] AutoGen RoundRobinGroupChat + Replay", self.ag))
        return out

    def verdicts(self) -> list[str]:
        lines = [f"{self.label} -- sociolab per rep, ms/message: {', '.join(f'{x * 1000:.3f}' for x in self.soc)}"]
        if self.ag:
            speedup = median(self.ag) / median(self.soc)
            lines.append(f"  AutoGen per rep, ms/message: {', '.join(f'{x * 1000:.3f}' for x in self.ag)}; "
                         f"ratio AutoGen / sociolab {speedup:.2f}x")
            lines.append(verdict(f"[{self.name}] speedup vs AutoGen >= {TARGET_SPEEDUP:g}x",
                                 f"{speedup:.2f}x ({median(self.soc) * 1000:.3f} vs {median(self.ag) * 1000:.3f} "
                                 f"ms/message; best reps {min(self.ag) / min(self.soc):.2f}x)",
                                 speedup >= TARGET_SPEEDUP))
        return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=6, help="in-flight shape: runs")
    ap.add_argument("--rounds", type=int, default=20, help="in-flight shape: rounds")
    ap.add_argument("--concurrency", type=int, default=4, help="in-flight shape: runs in flight")
    ap.add_argument("--seq-runs", type=int, default=5, help="sequential shape: runs, one after another")
    ap.add_argument("--seq-rounds", type=int, default=10, help="sequential shape: rounds")
    ap.add_argument("--reps", type=int, default=5, help="measurements of each side (median reported)")
    ap.add_argument("--profile", action="store_true", help="also print a cProfile of the sequential shape")
    args = ap.parse_args()
    print(f"sim_message: {machine()}; 7 sim agents; {args.reps} reps, shapes interleaved")
    with tempfile.TemporaryDirectory(prefix="sociolab-bench-") as d:
        tmp = Path(d)
        shapes = [Shape(tmp, "in flight", args.runs, args.rounds, args.concurrency),
                  Shape(tmp, "sequential", args.seq_runs, args.seq_rounds, 1)]
        run_sociolab(write_plan(tmp, 1, 2, 1), tmp / "warmup.duckdb")  # imports, first-use costs

        try:
            import autogen_agentchat  # noqa: F401
            import autogen_ext.models.replay  # noqa: F401
            have_autogen = True
        except Exception as exc:
            unavailable(f"AutoGen ({type(exc).__name__}: {exc}); pip install autogen-agentchat autogen-ext")
            have_autogen = False

        for rep in range(args.reps):  # interleave sides and shapes, so load from other processes hits all
            for shape in shapes if rep % 2 == 0 else shapes[::-1]:
                have_autogen = shape.measure(rep, have_autogen)
        inflight, sequential = shapes
        calls = [c for r in inflight.transcripts or [] for c in contexts(r)]
        try:
            t_lite = asyncio.run(litellm_baseline(calls)) / len(calls)
        except Exception as exc:
            unavailable(f"litellm ({type(exc).__name__}: {exc})")
            t_lite = None
        t_floor = sim_reply_floor(calls) / len(calls)

        ms = median(inflight.soc) * 1000
        rows = inflight.rows() + sequential.rows()
        if t_lite is not None:
            rows.append(["[in flight contexts] bare litellm.acompletion(sim/*), no store", len(calls),
                         f"{t_lite * 1000:.3f}", f"{t_lite * 1000:.3f}", f"{t_lite * 1000 / ms:.2f}"])
        rows.append(["[in flight contexts] sim_reply() alone (floor), no store", len(calls),
                     f"{t_floor * 1000:.3f}", f"{t_floor * 1000:.3f}", f"{t_floor * 1000 / ms:.2f}"])
        print(table(["path", "messages", "median ms/msg", "best ms/msg", "x sociolab in flight"], rows))
        print(verdict(f"[in flight] <= {TARGET_MS:g} ms/message", f"{ms:.3f} ms (best rep "
                      f"{min(inflight.soc) * 1000:.3f} ms)", ms <= TARGET_MS))
        for shape in shapes:
            print("\n".join(shape.verdicts()))
        if not inflight.ag and t_lite is not None:
            print(verdict("faster than bare litellm (AutoGen unavailable)", f"{t_lite / median(inflight.soc):.2f}x",
                          t_lite >= median(inflight.soc)))
        print(f"load average at the end: {os.getloadavg()[0]:.2f}")
        if args.profile:
            profile_sociolab(sequential.plan, tmp)


if __name__ == "__main__":
    os.chdir(_common.ROOT)  # the roster library is found relative to the project
    main()
