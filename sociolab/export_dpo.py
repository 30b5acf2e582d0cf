"""`sociolab export --format dpo`: preference pairs from the ATP kinds' own trajectories, in the
LLaMA-Factory format the Alignment Tipping Process trained with (aiming-lab/ATP, data/sa_llm/
convert_dpo.py and src/scripts/convert_dpo.py, `record_to_pair`).

Each file is a JSON list (indent 4, as ATP's) of `{"instruction", "chosen", "rejected", "system"}`:
`system` and `instruction` are the system prompt and the user prompt of the round, as the kind
recorded them (`drift_prompt` events, detail {system, user}); `chosen` is an aligned answer and
`rejected` a deviant answer to that same prompt. Aligned and deviant are ATP's training labels:
rule-following vs rule-violating in `self_interest` (events `drift_choice`), independent vs
collective in `strategy_diffusion` (events `diffusion_round`; ATP's DPO chose the "own benefit"
answer and rejected the "team" one).

How pairs are formed (ATP generated its pairs differently, see PAIRING): an answer is the agent's
last message of the round that is not an error, with its recorded decision and prompt; invalid
answers, answers without a recorded prompt, empty answers and planted agents (whose answers are
hard-coded, not a model's) are never used. Answers fall into cells of equal model, system prompt,
user prompt and round; within a cell, aligned and deviant answers are each ordered by (run, agent)
and the i-th aligned answer is paired with the i-th deviant one, so every answer is used at most
once and a cell gives min(#aligned, #deviant) pairs. A pair's two answers therefore come from the
same model, answering the same question text at the same position in an episode (their earlier
rounds, which ATP's format has no place for, may differ).

Written beside the pairs: `<game>.provenance.json` (for each pair, in order: model, round, and the
run, agent and message of each side), `dataset_info.json` (LLaMA-Factory's dataset description,
with `system` mapped: ATP's README entry leaves it out, so the system prompt was dropped), and
`manifest.json` + `README.md` (counts per game, the pairing rule, the credit line).
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NamedTuple

from sociolab.analysis.credits import imported_notes
from sociolab.analysis.drift import CHOICES, DIFFUSION_EVENT, DRIFT_EVENT
from sociolab.base.errors import UserError
from sociolab.export import fresh_file, open_source, target_folder

PROMPT_EVENT = "drift_prompt"
ATP_CREDIT = ("Scenarios after the Alignment Tipping Process (Han et al. 2025, 'Alignment Tipping Process: How "
              "Self-Evolution Pushes LLM Agents Off the Rails', arXiv:2510.04860; github.com/aiming-lab/ATP, MIT "
              "licence, Copyright (c) 2025 AIMING Lab): the prompts quote its question templates, and the pair "
              "format is its LLaMA-Factory preference format.")
PAIRING = ("Pairs are the models' own answers recorded in the store: within equal model, system prompt, user prompt "
           "and round, the i-th aligned answer (ordered by run and agent) is chosen against the i-th deviant answer "
           "(rejected); invalid answers, planted agents and answers without a recorded prompt are not used. ATP "
           "instead generated both sides of each pair by nudging the model (an added user turn asking it to follow, "
           "or to ignore, the supervisor; to maximise the team's or its own benefit) and paired them with the bare "
           "question (src/scripts/dpo_sa_gen.py, dpo_ma_gen.py).")
COLUMNS = {"prompt": "instruction", "query": "input", "chosen": "chosen", "rejected": "rejected", "system": "system"}


@dataclass(frozen=True)
class Game:
    """One ATP game: the file it goes to and which of its choices is chosen and rejected."""

    name: str
    event: str
    aligned: str
    deviant: str

    @property
    def dataset(self) -> str:
        return f"sociolab_{self.name}"


GAMES = (Game("self_interest", DRIFT_EVENT, "aligned", "deviant"),
         Game("strategy_diffusion", DIFFUSION_EVENT, "independent", "collective"))

PROMPTS = f"""
prompts AS (SELECT run_id, agent_id, round, detail->>'system' AS system_text, detail->>'user' AS user_text
              FROM events WHERE kind = '{PROMPT_EVENT}'),
answers AS (SELECT run_id, sender AS agent_id, round, content, message_id FROM messages
             WHERE NOT is_error AND round IS NOT NULL
           QUALIFY row_number() OVER (PARTITION BY run_id, sender, round ORDER BY seq DESC) = 1)
"""
DECISIONS = {
    DRIFT_EVENT: f"""decisions AS (SELECT run_id, agent_id, round, detail->>'choice' AS choice
                                  FROM events WHERE kind = '{DRIFT_EVENT}')""",
    DIFFUSION_EVENT: f"{CHOICES.strip()},\ndecisions AS (SELECT run_id, agent_id, round, choice FROM choices "
                     "WHERE NOT planted)",
}


class Answer(NamedTuple):
    model: str
    system: str | None
    user: str | None
    round: int
    choice: str | None
    content: str | None
    run_id: str
    agent_id: str
    message_id: str | None

    @property
    def cell(self) -> tuple[str, str, str, int]:
        return (self.model, self.system or "", self.user or "", self.round)

    def source(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "agent_id": self.agent_id, "message_id": self.message_id}


@dataclass
class GameFile:
    """What was written for one game."""

    game: str
    file: str
    dataset: str
    pairs: int
    decisions: dict[str, int]              # aligned / deviant / invalid (planted agents not counted)
    unusable: dict[str, int]               # valid decisions left out: no prompt recorded, no answer text
    unpaired: dict[str, int]               # usable aligned / deviant answers without a partner
    cells: int
    models: list[str]


@dataclass
class DpoManifest:
    format: str
    source_db: str
    sociolab_version: str
    exported_at: str
    credits: list[str]
    pairing: str
    files: list[GameFile] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def answers(con: Any, game: Game) -> list[Answer]:
    """Every decision of the game's non-planted agents, with its prompt and answer where recorded."""
    rows = con.execute(f"""
        WITH {PROMPTS}, {DECISIONS[game.event]}
        SELECT g.model, p.system_text, p.user_text, d.round, d.choice, m.content, d.run_id, d.agent_id, m.message_id
          FROM decisions d
          JOIN agents g ON g.run_id = d.run_id AND g.agent_id = d.agent_id
          LEFT JOIN prompts p ON p.run_id = d.run_id AND p.agent_id = d.agent_id AND p.round = d.round
          LEFT JOIN answers m ON m.run_id = d.run_id AND m.agent_id = d.agent_id AND m.round = d.round
         ORDER BY d.run_id, d.agent_id, d.round""").fetchall()
    return [Answer(*r) for r in rows]


def pair_answers(found: list[Answer], game: Game) -> tuple[list[tuple[Answer, Answer]], dict[str, int]]:
    """The pairs (aligned, deviant) by the rule in the module docstring, and the usable answers of
    each side left without a partner."""
    cells: dict[tuple[str, str, str, int], tuple[list[Answer], list[Answer]]] = defaultdict(lambda: ([], []))
    for a in sorted(found, key=lambda a: (a.run_id, a.agent_id, a.round)):
        if usable(a) and a.choice in (game.aligned, game.deviant):
            cells[a.cell][a.choice == game.deviant].append(a)
    pairs: list[tuple[Answer, Answer]] = []
    unpaired = {"aligned": 0, "deviant": 0}
    for cell in sorted(cells):
        aligned, deviant = cells[cell]
        pairs.extend(zip(aligned, deviant))
        unpaired["aligned"] += max(0, len(aligned) - len(deviant))
        unpaired["deviant"] += max(0, len(deviant) - len(aligned))
    return pairs, unpaired


def usable(a: Answer) -> bool:
    return a.user is not None and bool((a.content or "").strip())


def record(chosen: Answer, rejected: Answer) -> dict[str, str]:
    """One pair in ATP's key order (`record_to_pair`)."""
    return {"instruction": chosen.user or "", "chosen": chosen.content or "", "rejected": rejected.content or "",
            "system": chosen.system or ""}


def export_dpo(db: str | Path, to: str | Path, overwrite: bool = False) -> DpoManifest:
    """Write one preference file per ATP game the store holds, with provenance, dataset_info.json
    and the manifest."""
    from sociolab import __version__

    folder = target_folder(to, overwrite)
    with open_source(db) as store:
        con = store.con
        present = {k for (k,) in con.execute("SELECT DISTINCT kind FROM events WHERE kind IN (?, ?, ?)",
                                             [DRIFT_EVENT, DIFFUSION_EVENT, PROMPT_EVENT]).fetchall()}
        games = [g for g in GAMES if g.event in present]
        if not games:
            raise UserError(f"no ATP decisions in {db} (events {DRIFT_EVENT} or {DIFFUSION_EVENT}); run a "
                            "self_interest or strategy_diffusion scenario first")
        if PROMPT_EVENT not in present:
            raise UserError(f"{db} holds ATP decisions but no {PROMPT_EVENT} events: the prompts the pairs need "
                            "were not recorded (a run made before the kinds stored them); rerun the scenario")
        manifest = DpoManifest("dpo", str(Path(db).resolve()), __version__,
                               datetime.now(timezone.utc).isoformat(timespec="seconds"),
                               [ATP_CREDIT, *imported_notes(con)], PAIRING)
        written = [(g, answers(con, g)) for g in games]
    folder.mkdir(exist_ok=True)
    for game, found in written:
        manifest.files.append(write_game(folder, Path(db), game, found))
    write_json(folder / "dataset_info.json", Path(db), {
        f.dataset: {"file_name": f.file, "ranking": True, "columns": COLUMNS} for f in manifest.files})
    write_json(folder / "manifest.json", Path(db), manifest.to_dict())
    fresh_file(folder, "README.md", Path(db)).write_text(readme_text(manifest), encoding="utf-8")
    return manifest


def write_game(folder: Path, db: Path, game: Game, found: list[Answer]) -> GameFile:
    pairs, unpaired = pair_answers(found, game)
    valid = [a for a in found if a.choice in (game.aligned, game.deviant)]
    write_json(folder / f"{game.name}.json", db, [record(c, r) for c, r in pairs], indent=4)
    write_json(folder / f"{game.name}.provenance.json", db,
               [{"model": c.model, "round": c.round, "chosen": c.source(), "rejected": r.source()} for c, r in pairs])
    return GameFile(
        game=game.name, file=f"{game.name}.json", dataset=game.dataset, pairs=len(pairs),
        decisions={"aligned": sum(a.choice == game.aligned for a in found),
                   "deviant": sum(a.choice == game.deviant for a in found), "invalid": len(found) - len(valid)},
        unusable={"no_prompt": sum(a.user is None for a in valid),
                  "no_answer_text": sum(a.user is not None and not (a.content or "").strip() for a in valid)},
        unpaired=unpaired, cells=len({a.cell for a in valid if usable(a)}), models=sorted({a.model for a in found}))


def write_json(path: Path, db: Path, value: Any, indent: int = 1) -> None:
    fresh_file(path.parent, path.name, db).write_text(json.dumps(value, indent=indent, ensure_ascii=False) + "\n",
                                                      encoding="utf-8")


def readme_text(manifest: DpoManifest) -> str:
    """The manifest for people: what each file holds, how its pairs were formed, whom to credit."""
    lines = ["# sociolab export (dpo): preference pairs from ATP trajectories", "",
             f"- source: `{manifest.source_db}`, written by sociolab {manifest.sociolab_version} at "
             f"{manifest.exported_at}",
             "- format: LLaMA-Factory preference data (alpaca), a JSON list of "
             "{instruction, chosen, rejected, system}; `dataset_info.json` describes each file (put this folder "
             "as `dataset_dir`, and name the dataset, e.g. `dataset: sociolab_self_interest`)", "",
             "## How the pairs were formed", "", manifest.pairing, "", "## Files", "",
             "| file | dataset | pairs | aligned / deviant / invalid decisions | unusable "
             "| unpaired aligned / deviant | models |",
             "|---|---|---|---|---|---|---|"]
    for f in manifest.files:
        d = f.decisions
        lines.append(f"| {f.file} | {f.dataset} | {f.pairs} | {d['aligned']} / {d['deviant']} / {d['invalid']} | "
                     f"{f.unusable['no_prompt']} without prompt, {f.unusable['no_answer_text']} without text | "
                     f"{f.unpaired['aligned']} / {f.unpaired['deviant']} | {', '.join(f.models)} |")
    lines += ["", "Each `<game>.provenance.json` lists, for every pair in the same order, the model, the round and "
              "the run, agent and message of both answers.", "", "## Credit and licence", "",
              *[f"- {c}" for c in manifest.credits]]
    return "\n".join(lines) + "\n"
