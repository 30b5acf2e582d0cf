"""Sim judges in-process: messages coded per second through the whole judge runner.

Target (issue 3): at least 2,000 messages coded per second in-process. The runner is measured end
to end (prompt building, client, sim judge, strict parsing, batched DuckDB writes) on a store of
sim discussions; the baseline measured in the same run is the floor: bare `sim_reply` judge calls
on the same prompts, with nothing parsed or stored.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

from _common import machine, table, verdict  # noqa: E402  (sets up sys.path and offline litellm)

from sociolab.judges.codebook import load_codebook
from sociolab.judges.prompt import build_judge_messages, judge_metadata
from sociolab.judges.runner import JudgeConfig, judge_store, load_items
from sociolab.orchestrator.client import ClientSettings
from sociolab.config import load_plan
from sociolab.runner import execute
from sociolab.orchestrator.sim.agent import sim_reply
from sociolab.orchestrator.store import Store

SCENARIO = """
name: jb
repeats: 30
concurrency: 8
agents: {roster: warroom, exclude: [deepseek]}
params: {seed_message: "@all We need a food delivery app for a city of 500k. Budget 50k, 3 months.", rounds: 10}
sim: {stand_ins: true}
"""
JUDGES = ["sim/judge-gemini", "sim/judge-sonnet"]


def main() -> None:
    print(f"judges: {machine()}")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "s.yaml"
        path.write_text(SCENARIO)
        store = Store.open(Path(tmp) / "j.duckdb")
        asyncio.run(execute(load_plan(path), store))
        runs = list(store.series_by_run())
        items = load_items(store, runs, 8, set().union(*store.uncoded(runs).values()))
        n = len(items)
        codebook = load_codebook("warroom")
        t0 = time.perf_counter()
        for item in items:
            prompt = build_judge_messages(codebook, message_text=item.text, sender_name=item.sender_name,
                                          roster=item.roster, errored=item.errored, context=item.context)
            metadata = judge_metadata(codebook, items=[(item.message_id, item.sender_name, item.text)],
                                      roster=item.roster, errored=item.errored, batch=False)
            for judge in JUDGES:
                sim_reply(judge, prompt, seed=1, temperature=0.0, metadata=metadata)
        floor = time.perf_counter() - t0
        t0 = time.perf_counter()
        report = asyncio.run(judge_store(store, JudgeConfig(judges=JUDGES, client=ClientSettings())))
        full = time.perf_counter() - t0
        store.close()
    coded = sum(report.coded.values()) + sum(report.uncodable.values())
    print(table(["path", "message x judge codings", "seconds", "codings/s", "messages/s (both judges)"], [
        ["bare sim_reply judge calls (floor)", 2 * n, floor, 2 * n / floor, n / floor],
        ["judge runner -> DuckDB", coded, full, coded / full, n / full],
    ]))
    print(f"runner / floor time ratio: {full / floor:.2f}")
    print(verdict(">= 2,000 messages coded per second (per judge)", f"{coded / full:,.0f} codings/s, "
                  f"{n / full:,.0f} messages/s with both judges", coded / full >= 2000))


if __name__ == "__main__":
    main()
