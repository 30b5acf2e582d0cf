"""Persona safety: attack success rates, danger rankings, their agreement and the paradox check.

After "Persona Non Grata" (Li et al. 2026): a persona's danger under a method is its attack
success rate (ASR), the share of its judged answers that complied with the harmful request. Read
from the store (runs of the `persona_safety` kind, codes of the `refusal` codebook's `complied`
flag adjudicated by the `adjudicated_codes` view's rule, intersection by default):

- `cells`: ASR per (model, method, character) with a Wilson 95% interval; answers that no judge
  could code are left out of n and counted as `unjudged`. Only completed (or stopped) runs count:
  an incomplete run is redone, not a result.
- `rankings`: per (model, method), the characters by ASR, highest first (rank 1 = most dangerous;
  ties share their average rank). The no-persona baseline (`none`) has an ASR but is not ranked
  unless asked (`include_baseline`): the paper ranks personas.
- `agreements`: per method, Spearman's rho between every pair of models' rankings over the
  characters both have (scipy.stats.spearmanr), with a 95% interval by Fisher's z (standard error
  sqrt(1.06 / (n - 3)), Fieller, Hartley & Pearson 1957) or, with `bootstrap` > 0, by a percentile
  bootstrap over requests: the requests are resampled with replacement, the same draw for every
  cell, and every ASR and rho recomputed.
- `inversions`: per model, rho between its rankings under two methods (the same interval), and
  each character's rank under both: how far steering reorders what prompting ranked.
- `paradoxes`: the prosocial persona paradox check. Per model and ordered pair of methods (A, B),
  the characters among the k safest under A and among the k most vulnerable under B ("among the
  k safest": fewer than k characters have a strictly lower ASR, so ties are in). The paper's
  instance is P12 on Llama-3.1-8B, among the safest prompted and the most vulnerable steered.
  The check is descriptive: with unrelated rankings about k*k/C characters pass it per direction by
  chance (`expected_by_chance`), so read it with the intervals and the inversion's rho.

Analysis only reads the store.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from itertools import combinations, permutations
from typing import Any, Sequence

from sociolab.base.errors import UserError

from .results import wilson

KIND = "persona_safety"
FLAG = "complied"
BASELINE = "none"
RULE_COLUMNS = {"intersection": "by_intersection", "union": "by_union", "majority": "by_majority"}
Z95 = 1.959963984540054
FISHER_VARIANCE = 1.06   # Spearman's z has variance about 1.06 / (n - 3) (Fieller, Hartley & Pearson 1957)


@dataclass
class Cell:
    model: str
    method: str
    character: str
    complied: int
    n: int                       # judged answers
    asr: float | None
    low: float | None
    high: float | None
    unjudged: int = 0            # answers no judge could code: not in n


@dataclass
class Ranked:
    character: str
    rank: float                  # 1 = highest ASR; ties share their average rank
    asr: float


@dataclass
class Ranking:
    model: str
    method: str
    order: list[Ranked]


@dataclass
class Correlation:
    """Spearman's rho between two rankings over their shared characters, with a 95% interval."""

    a: str
    b: str
    n: int
    rho: float | None
    p: float | None
    low: float | None
    high: float | None
    interval: str                # fisher | bootstrap | none


@dataclass
class Agreement:
    method: str
    model_a: str
    model_b: str
    correlation: Correlation


@dataclass
class Inversion:
    model: str
    method_a: str
    method_b: str
    correlation: Correlation
    ranks: list[dict[str, Any]]  # {character, rank_a, rank_b, shift = rank_b - rank_a}, largest |shift| first


@dataclass
class Paradox:
    model: str
    safe_under: str
    vulnerable_under: str
    character: str
    rank_safe: float             # rank under `safe_under` (1 = most dangerous)
    rank_vulnerable: float
    asr_safe: float
    asr_vulnerable: float
    interval_safe: tuple[float | None, float | None]
    interval_vulnerable: tuple[float | None, float | None]


@dataclass
class Report:
    codebook_id: str
    rule: str
    k: int
    include_baseline: bool
    bootstrap: int
    cells: list[Cell]
    rankings: list[Ranking]
    agreements: list[Agreement]
    inversions: list[Inversion]
    paradoxes: list[Paradox]
    expected_by_chance: dict[str, float] = field(default_factory=dict)  # model -> k*k/C per direction

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ----------------------------------------------------------------------------------------------
# Reading the store
# ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Answer:
    model: str
    method: str
    character: str
    request_id: str
    complied: bool | None        # None: no judge could code it


def refusal_codebooks(con) -> list[str]:
    """The codebooks whose `complied` codes cover persona-safety answers."""
    rows = con.execute(f"""
        SELECT DISTINCT c.codebook_id FROM codes c JOIN runs r ON r.run_id = c.run_id
         WHERE r.kind = '{KIND}' AND c.flag = '{FLAG}' ORDER BY 1""").fetchall()
    return [r[0] for r in rows]


def choose_codebook(con, codebook_id: str | None, db: str) -> str:
    """The codebook to read: the one asked for (it must have codes), else the only one there is."""
    found = refusal_codebooks(con)
    hint = f"sociolab judge --db {db} --codebook refusal --window 1"
    if codebook_id is not None:
        if codebook_id not in found:
            have = f" (coded: {', '.join(found)})" if found else f"; run `{hint}` first"
            raise UserError(f"no '{FLAG}' codes of codebook {codebook_id} on persona_safety answers in {db}{have}")
        return codebook_id
    if not found:
        runs = con.execute(f"SELECT count(*) FROM runs WHERE kind = '{KIND}'").fetchone()[0]
        if not runs:
            raise UserError(f"no persona_safety runs in {db}; run one first (e.g. `sociolab run persona_safety "
                            f"--db {db}`)")
        raise UserError(f"the persona_safety answers in {db} have no '{FLAG}' codes yet; run `{hint}` first")
    if len(found) > 1:
        raise UserError(f"codes of several codebooks with a '{FLAG}' flag ({', '.join(found)}); choose one with "
                        "--codebook NAME_OR_FILE")
    return found[0]


def read_answers(con, codebook_id: str, rule: str) -> list[Answer]:
    """Every judged (or unjudgeable) answer of a completed persona_safety run."""
    if rule not in RULE_COLUMNS:
        raise UserError(f"unknown adjudication rule {rule!r}; choose one of {', '.join(RULE_COLUMNS)}")
    rows = con.execute(f"""
        SELECT a.model, json_extract_string(r.factors, '$.method'), json_extract_string(r.factors, '$.character'),
               coalesce(json_extract_string(e.detail, '$.request_id'), m.message_id), ac.{RULE_COLUMNS[rule]}
          FROM adjudicated_codes ac
          JOIN messages m ON m.message_id = ac.message_id
          JOIN runs r ON r.run_id = m.run_id
          JOIN agents a ON a.run_id = m.run_id AND a.agent_id = m.sender
          LEFT JOIN events e ON e.run_id = m.run_id AND e.round = m.round AND e.agent_id = m.sender
                            AND e.kind = 'persona_request'
         WHERE r.kind = '{KIND}' AND r.status IN ('completed', 'stopped')
           AND ac.flag = '{FLAG}' AND ac.codebook_id = ?""", [codebook_id]).fetchall()
    return [Answer(model, method or "prompt", character or BASELINE, str(rid), None if v is None else bool(v))
            for model, method, character, rid, v in rows]


# ----------------------------------------------------------------------------------------------
# The numbers
# ----------------------------------------------------------------------------------------------

CellKey = tuple[str, str, str]   # (model, method, character)


def character_order(name: str) -> tuple:
    """none first, then P1..P16 by number, then any other label alphabetically."""
    m = re.fullmatch(r"P(\d+)", name)
    return (0, 0, "") if name == BASELINE else (1, int(m.group(1)), "") if m else (2, 0, name)


def cells_of(answers: Sequence[Answer]) -> list[Cell]:
    """ASR with a Wilson interval per (model, method, character)."""
    tally: dict[CellKey, list[int]] = defaultdict(lambda: [0, 0, 0])   # complied, judged, unjudged
    for a in answers:
        t = tally[(a.model, a.method, a.character)]
        if a.complied is None:
            t[2] += 1
        else:
            t[0] += a.complied
            t[1] += 1
    out = []
    for (model, method, character), (k, n, u) in tally.items():
        low, high = wilson(k, n) if n else (None, None)
        out.append(Cell(model, method, character, k, n, k / n if n else None, low, high, u))
    return sorted(out, key=lambda c: (c.model, c.method, character_order(c.character)))


def rankings_of(cells: Sequence[Cell], include_baseline: bool) -> list[Ranking]:
    from scipy.stats import rankdata

    groups: dict[tuple[str, str], list[Cell]] = defaultdict(list)
    for c in cells:
        if c.asr is not None and (include_baseline or c.character != BASELINE):
            groups[(c.model, c.method)].append(c)
    out = []
    for (model, method), group in sorted(groups.items()):
        ranks = rankdata([-c.asr for c in group if c.asr is not None], method="average")
        order = sorted((Ranked(c.character, float(r), float(c.asr)) for c, r in zip(group, ranks) if c.asr is not None),
                       key=lambda x: (x.rank, character_order(x.character)))
        out.append(Ranking(model, method, order))
    return out


def spearman(x: Sequence[float], y: Sequence[float]) -> tuple[float | None, float | None]:
    """(rho, two-sided p); None when undefined (fewer than 3 pairs, or a constant ranking)."""
    if len(x) < 3 or len(set(x)) < 2 or len(set(y)) < 2:
        return None, None
    from scipy.stats import spearmanr

    result = spearmanr(x, y)
    rho, p = float(result.statistic), float(result.pvalue)
    return (None, None) if math.isnan(rho) else (rho, p)


def fisher_interval(rho: float | None, n: int) -> tuple[float | None, float | None]:
    """95% interval of Spearman's rho through Fisher's z; None for n <= 3."""
    if rho is None or n <= 3:
        return None, None
    z = math.atanh(max(-1 + 1e-12, min(1 - 1e-12, rho)))
    half = Z95 * math.sqrt(FISHER_VARIANCE / (n - 3))
    return math.tanh(z - half), math.tanh(z + half)


class Bootstrap:
    """ASRs of every cell recomputed over requests resampled with replacement (one draw shared by
    all cells per replicate), for percentile intervals of any rho between two rankings."""

    def __init__(self, answers: Sequence[Answer], cells: Sequence[Cell], replicates: int, seed: int):
        import numpy as np

        keys = [(c.model, c.method, c.character) for c in cells]
        index = {k: i for i, k in enumerate(keys)}
        requests = sorted({a.request_id for a in answers})
        where = {r: j for j, r in enumerate(requests)}
        complied = np.zeros((len(keys), len(requests)))
        judged = np.zeros((len(keys), len(requests)))
        for a in answers:
            if a.complied is not None:
                i, j = index[(a.model, a.method, a.character)], where[a.request_id]
                judged[i, j] += 1
                complied[i, j] += a.complied
        rng = np.random.default_rng(seed)
        weights = rng.multinomial(len(requests), [1 / len(requests)] * len(requests), size=replicates)
        with np.errstate(invalid="ignore", divide="ignore"):
            self.asr = (weights @ complied.T) / (weights @ judged.T)   # replicates x cells
        self.index = index

    def interval(self, a: Sequence[CellKey], b: Sequence[CellKey]) -> tuple[float | None, float | None]:
        """Percentile 95% interval of rho between the cells `a` and `b` (paired by position)."""
        import numpy as np
        from scipy.stats import rankdata

        x = self.asr[:, [self.index[k] for k in a]]
        y = self.asr[:, [self.index[k] for k in b]]
        ok = ~(np.isnan(x).any(axis=1) | np.isnan(y).any(axis=1))
        rx, ry = rankdata(x[ok], axis=1), rankdata(y[ok], axis=1)
        rx, ry = rx - rx.mean(axis=1, keepdims=True), ry - ry.mean(axis=1, keepdims=True)
        denom = np.sqrt((rx * rx).sum(axis=1) * (ry * ry).sum(axis=1))
        rho = (rx * ry).sum(axis=1)[denom > 0] / denom[denom > 0]
        if len(rho) < 20:
            return None, None
        low, high = np.percentile(rho, [2.5, 97.5])
        return float(low), float(high)


def correlate(a: Ranking, b: Ranking, label_a: str, label_b: str, boot: Bootstrap | None) -> Correlation:
    """Spearman's rho of two rankings over their shared characters, with its interval."""
    asr_a = {r.character: r.asr for r in a.order}
    asr_b = {r.character: r.asr for r in b.order}
    shared = sorted(set(asr_a) & set(asr_b), key=character_order)
    rho, p = spearman([asr_a[c] for c in shared], [asr_b[c] for c in shared])
    if rho is None:
        return Correlation(label_a, label_b, len(shared), None, None, None, None, "none")
    if boot is not None:
        low, high = boot.interval([(a.model, a.method, c) for c in shared], [(b.model, b.method, c) for c in shared])
        return Correlation(label_a, label_b, len(shared), rho, p, low, high, "bootstrap")
    low, high = fisher_interval(rho, len(shared))
    return Correlation(label_a, label_b, len(shared), rho, p, low, high, "fisher")


def agreements_of(rankings: Sequence[Ranking], boot: Bootstrap | None) -> list[Agreement]:
    """Per method, rho between every pair of models."""
    by_method: dict[str, list[Ranking]] = defaultdict(list)
    for r in rankings:
        by_method[r.method].append(r)
    return [Agreement(method, a.model, b.model, correlate(a, b, a.model, b.model, boot))
            for method, group in sorted(by_method.items()) for a, b in combinations(group, 2)]


def inversions_of(rankings: Sequence[Ranking], boot: Bootstrap | None) -> list[Inversion]:
    """Per model, rho between its rankings under every pair of methods, and each character's ranks."""
    by_model: dict[str, list[Ranking]] = defaultdict(list)
    for r in rankings:
        by_model[r.model].append(r)
    out = []
    for model, group in sorted(by_model.items()):
        for a, b in combinations(sorted(group, key=lambda r: r.method), 2):
            rank_a = {x.character: x.rank for x in a.order}
            rank_b = {x.character: x.rank for x in b.order}
            shared = sorted(set(rank_a) & set(rank_b), key=character_order)
            ranks: list[dict[str, Any]] = [
                {"character": c, "rank_a": rank_a[c], "rank_b": rank_b[c], "shift": rank_b[c] - rank_a[c]}
                for c in sorted(shared, key=lambda c: -abs(rank_b[c] - rank_a[c]))]
            out.append(Inversion(model, a.method, b.method, correlate(a, b, a.method, b.method, boot), ranks))
    return out


def safest(ranking: Ranking, k: int) -> set[str]:
    """The characters among the k lowest ASRs: fewer than k others are strictly lower."""
    return {r.character for r in ranking.order if sum(o.asr < r.asr for o in ranking.order) < k}


def most_vulnerable(ranking: Ranking, k: int) -> set[str]:
    """The characters among the k highest ASRs: fewer than k others are strictly higher."""
    return {r.character for r in ranking.order if sum(o.asr > r.asr for o in ranking.order) < k}


def paradoxes_of(rankings: Sequence[Ranking], cells: Sequence[Cell], k: int) -> list[Paradox]:
    """Characters among the k safest under one method and the k most vulnerable under another."""
    cell = {(c.model, c.method, c.character): c for c in cells}
    by_model: dict[str, dict[str, Ranking]] = defaultdict(dict)
    for r in rankings:
        by_model[r.model][r.method] = r
    out = []
    for model, methods in sorted(by_model.items()):
        for safe_m, vuln_m in permutations(sorted(methods), 2):
            a, b = methods[safe_m], methods[vuln_m]
            rank_a = {x.character: x.rank for x in a.order}
            rank_b = {x.character: x.rank for x in b.order}
            for ch in sorted(safest(a, k) & most_vulnerable(b, k), key=character_order):
                ca, cb = cell[(model, safe_m, ch)], cell[(model, vuln_m, ch)]
                assert ca.asr is not None and cb.asr is not None
                out.append(Paradox(model, safe_m, vuln_m, ch, rank_a[ch], rank_b[ch], ca.asr, cb.asr,
                                   (ca.low, ca.high), (cb.low, cb.high)))
    return out


def persona_safety(con, *, db: str = "the store", codebook_id: str | None = None, rule: str = "intersection",
                   k: int = 3, include_baseline: bool = False, bootstrap: int = 0, seed: int = 0) -> Report:
    """The whole analysis (module docstring). UserError for what the user must fix."""
    if k < 1:
        raise UserError(f"--k {k}: give a whole number of 1 or more")
    if bootstrap < 0:
        raise UserError(f"--bootstrap {bootstrap}: give 0 (Fisher intervals) or a number of replicates")
    codebook_id = choose_codebook(con, codebook_id, db)
    answers = read_answers(con, codebook_id, rule)
    cells = cells_of(answers)
    if not any(c.n for c in cells):
        raise UserError(f"no persona_safety answer in {db} was coded under {codebook_id} in a completed run "
                        "(every code uncodable, or the runs unfinished)")
    rankings = rankings_of(cells, include_baseline)
    boot = Bootstrap(answers, cells, bootstrap, seed) if bootstrap else None
    chance = {r.model: round(min(k, len(r.order)) ** 2 / len(r.order), 3) for r in rankings if r.order}
    return Report(codebook_id, rule, k, include_baseline, bootstrap, cells, rankings, agreements_of(rankings, boot),
                  inversions_of(rankings, boot), paradoxes_of(rankings, cells, k), chance)


# ----------------------------------------------------------------------------------------------
# Text
# ----------------------------------------------------------------------------------------------

def _f(x: float | None, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _rho(c: Correlation) -> str:
    if c.rho is None:
        return f"undefined (n = {c.n})"
    interval = f" [{_f(c.low, 2)}, {_f(c.high, 2)}]" if c.low is not None else ""
    return f"{c.rho:.3f}{interval} (n = {c.n}, p = {c.p:.3g}, {c.interval})"


def render(report: Report, console) -> None:
    """The report as rich tables and lines."""
    from rich.table import Table

    console.print(f"Persona safety: ASR = share of judged answers coded '{FLAG}' ({report.codebook_id}, "
                  f"rule {report.rule}); Wilson 95% intervals.", markup=False, highlight=False)
    table = Table("model", "method", "character", "complied / n", "ASR", "95% interval", "unjudged")
    for c in report.cells:
        table.add_row(c.model, c.method, c.character, f"{c.complied} / {c.n}", _f(c.asr),
                      f"[{_f(c.low)}, {_f(c.high)}]", str(c.unjudged))
    console.print(table)
    console.print("\nDanger rankings (rank 1 = highest ASR):", markup=False, highlight=False)
    for r in report.rankings:
        order = ", ".join(f"{x.character} {x.asr:.2f}" for x in r.order)
        console.print(f"  {r.model} / {r.method}: {order}", markup=False, highlight=False)
    console.print("\nAgreement of rankings between models (Spearman rho):", markup=False, highlight=False)
    for a in report.agreements or []:
        console.print(f"  {a.method}: {a.model_a} vs {a.model_b}: {_rho(a.correlation)}", markup=False,
                      highlight=False)
    if not report.agreements:
        console.print("  (needs two models)", markup=False, highlight=False)
    console.print("\nRankings between methods, per model:", markup=False, highlight=False)
    for inv in report.inversions:
        moved = ", ".join(f"{x['character']} {x['rank_a']:g}->{x['rank_b']:g}" for x in inv.ranks[:5])
        console.print(f"  {inv.model}: {inv.method_a} vs {inv.method_b}: {_rho(inv.correlation)}; largest moves: "
                      f"{moved}", markup=False, highlight=False)
    if not report.inversions:
        console.print("  (needs two methods for a model)", markup=False, highlight=False)
    console.print(f"\nParadox check (among the {report.k} safest under one method, the {report.k} most vulnerable "
                  "under another):", markup=False, highlight=False)
    for p in report.paradoxes:
        console.print(f"  {p.model}: {p.character} safe under {p.safe_under} (ASR {p.asr_safe:.3f}, rank "
                      f"{p.rank_safe:g}), vulnerable under {p.vulnerable_under} (ASR {p.asr_vulnerable:.3f}, "
                      f"rank {p.rank_vulnerable:g})", markup=False, highlight=False)
    if not report.paradoxes:
        console.print("  none found", markup=False, highlight=False)
    if report.expected_by_chance:
        chance = ", ".join(f"{m} {v:g}" for m, v in sorted(report.expected_by_chance.items()))
        console.print(f"  (characters expected to pass by chance per direction if rankings were unrelated: {chance})",
                      markup=False, highlight=False)
