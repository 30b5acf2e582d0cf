"""`sociolab report`: one self-contained HTML file with a store's tables and pictures.

Its sections include a counterpart of each figure of the WarRoom study's generate_figures.py
(analysis/study_figures.py). Everything shown comes from one `analyze()` result, which is also
embedded in the page as JSON (`<script id="analysis" type="application/json">`), so the report's
numbers are by construction the ones `sociolab analyze --json` prints. Plots are matplotlib PNGs embedded as data URIs: the
file can be mailed to a colleague and opened offline.
"""

from __future__ import annotations

import html
import json
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote

from sociolab.base.errors import UserError

from . import study_figures as sf
from .credits import imported_notes
from .drift import drift_summary, has_drift, label
from .drift_plot import PANELS, draw_curves
from .htmlparts import Markup, esc, figure, nan0, num, pval, short, shorten, table
from .ratings import sql_str

SIM_NOTE = ("These runs were made on the sim backend: deterministic stand-ins with planted propensities. "
            "The report demonstrates the pipeline; it is not evidence about real models.")
SAMPLE_SIZE = 12
VIEW_PORT = 8700  # `sociolab view`'s default port (sociolab/view/server.py; a test keeps the two equal)


def build_report(con, result: dict[str, Any], view_port: int = VIEW_PORT) -> str:
    """The whole HTML page for an `analyze()` result computed on `con`. Each section links to the
    runs or messages behind it in `sociolab view` at 127.0.0.1:`view_port` (its default port)."""
    sections = [
        ("How these numbers were made", sf.pipeline_section(result), "/"),
        ("Runs and messages per series", series_table(result), "/"),
        ("Judge agreement per flag", agreement_section(result) + sf.confusion_table(result), "/messages"),
        ("Label aggregation: intersection vs union", sf.sensitivity_section(result), "/messages"),
        ("Behavioural profiles per model", profile_section(result) + sf.baseline_profile_section(result), "/"),
        ("Profile similarity by series", similarity_section(result) + sf.mean_similarity_figure(result)
         + sf.density_section(result), "/"),
        ("Series comparisons", comparisons_table(result), "/"),
        ("Profile shift with real names", sf.profile_shift_section(result), "/"),
        ("Flags over the rounds", sf.rounds_section(result), "/messages"),
        ("Compensation after a crash", compensation_section(result) + sf.compensation_figures(result),
         "/messages?errors=1"),
        ("Group behaviours absent in isolation", isolation_section(result) + sf.isolation_figure(result), "/"),
        ("A sample of coded messages", sample_section(con, result, view_port), "/messages"),
    ]
    drift = drift_summary(con) if has_drift(con) else None
    if drift is not None:
        sections.append(("Alignment drift", drift_section(drift), "/"))
    notes = provenance_notes(con)
    body = "".join(f"<section><h2>{html.escape(title)}</h2>{view_link(view_port, path)}{content}</section>"
                   for title, content, path in sections)
    settings = result["settings"]
    header = (f"<p class='meta'>Generated {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC · codebook "
              f"<code>{esc(settings['codebook_id'])}</code> · adjudication: {esc(settings['rule'])} · "
              f"{result['data']['runs']} runs, {result['data']['messages']} coded messages · judges: "
              f"{esc(', '.join(result['data']['judges']))}</p>")
    notes_html = "".join(f"<p class='note'>{html.escape(n)}</p>" for n in notes)
    payload = json.dumps(result, ensure_ascii=False).replace("</", "<\\/")
    drift_json = "" if drift is None else drift_script(drift)
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>sociolab report</title>"
            f"<style>{CSS}</style></head><body><h1>sociolab report</h1>{header}{notes_html}{body}"
            f"<script id='analysis' type='application/json'>{payload}</script>{drift_json}</body></html>")


def build_outcome_report(con, view_port: int = VIEW_PORT) -> str:
    """The page for a store whose messages nobody has judged yet (games, safety scenarios, social
    risks, alignment drift): its scored outcomes with intervals, and the alignment-drift curves when
    it has them. The judged sections appear once `sociolab judge` has coded the messages."""
    from .results import results

    rows = results(con)
    sections = [("Outcome rates per model and condition", outcome_section(rows), "/")] if rows else []
    drift = drift_summary(con) if has_drift(con) else None
    if drift is not None:
        sections.append(("Alignment drift", drift_section(drift), "/"))
    if not sections:
        raise UserError("the store holds no judge codes and no scored outcomes yet: run `sociolab judge` "
                        "(for a conversation) or a scenario that scores outcomes first")
    runs = con.execute("SELECT count(*) FROM runs").fetchone()[0]
    header = (f"<p class='meta'>Generated {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC · {runs} runs · no judge "
              f"codes yet: the judged sections (agreement, profiles, similarity) appear after <code>sociolab "
              f"judge</code></p>")
    notes_html = "".join(f"<p class='note'>{html.escape(n)}</p>" for n in provenance_notes(con))
    body = "".join(f"<section><h2>{html.escape(title)}</h2>{view_link(view_port, path)}{content}</section>"
                   for title, content, path in sections)
    drift_json = "" if drift is None else drift_script(drift)
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>sociolab report</title>"
            f"<style>{CSS}</style></head><body><h1>sociolab report</h1>{header}{notes_html}{body}"
            f"{drift_json}</body></html>")


def outcome_section(rows: list) -> str:
    """`sociolab results`' rows as a table and its forest plot (rates, proportions and means with 95% intervals)."""
    import base64
    import io

    from .results_plot import plot_results

    buffer = io.BytesIO()
    plot_results(rows, buffer)
    image = f"<img alt='outcome rates' src='data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()}'>"
    cells = [[r.metric, ", ".join(f"{k}={v}" for k, v in r.group.items()), r.summary, r.n, r.missing,
              "-" if r.value is None else num(r.value),
              "-" if r.low is None or r.high is None else f"[{num(r.low)}, {num(r.high)}]"] for r in rows]
    return table(["metric", "group", "summary", "n", "missing", "estimate", "95% CI"], cells) + image


def drift_script(drift: dict[str, Any]) -> str:
    """The drift numbers as `sociolab drift --json` prints them (default grouping), embedded like
    the analysis JSON: only in a report that has the "Alignment drift" section."""
    payload = json.dumps(drift, ensure_ascii=False).replace("</", "<\\/")
    return f"<script id='drift' type='application/json'>{payload}</script>"


def provenance_notes(con: Any) -> list[str]:
    """What the reader must know about where the data come from: sim runs are not evidence, and
    imported data are credited as their importer recorded it (`$.imported.credit` of runs.config)."""
    notes = []
    sim = con.execute("SELECT count(*) FROM agents WHERE provider = 'sim'").fetchone()[0]
    if sim:
        notes.append(SIM_NOTE)
    return notes + imported_notes(con)


def view_url(port: int, path: str) -> str:
    """A page of `sociolab view` (served on 127.0.0.1 only): `/`, `/run/<run_id>`, `/message/<id>`, `/messages`."""
    return html.escape(f"http://127.0.0.1:{port}{path}", quote=True)


def view_link(port: int, path: str) -> str:
    """The section's runs or messages in the viewer, which must be running on the same store."""
    return (f"<p class='view'><a href='{view_url(port, path)}'>Open in sociolab view</a> (start it first: "
            f"<code>sociolab view --db DB</code>, on port {port})</p>")


# ---- sections ------------------------------------------------------------------------------

def series_table(result: dict) -> str:
    rows = [[s["series"] or "-", s["runs"], s["runs_coded"], s["messages"], condition_text(s["condition"])]
            for s in result["series"]]
    return table(["series", "runs", "runs coded", "coded messages", "condition"], rows)


def condition_text(cond: dict | None) -> str:
    return ", ".join(f"{k}={v}" for k, v in (cond or {}).items() if v not in (None, "mixed"))


def agreement_section(result: dict) -> str:
    agreement = result["agreement"]
    pairs = table(["judge a", "judge b", "mean kappa", "flags", "undefined", "n"],
                  [[p["judge_a"], p["judge_b"], num(p["mean_kappa"]), p["flags"], p["flags_undefined"], p["n"]]
                   for p in agreement["pairs"]])
    by_flag = table(["flag", "judge a", "judge b", "n", "kappa", "% agreement", "prevalence a", "prevalence b"],
                    [[r["flag"], r["judge_a"], r["judge_b"], r["n"], num(r["kappa"]),
                      num(100 * r["percent_agreement"] if r["percent_agreement"] is not None else None, 1),
                      num(r["prevalence_a"]), num(r["prevalence_b"])] for r in agreement["by_flag"]])
    if not agreement["by_flag"]:
        return "<p>Only one judge coded these messages: no agreement to show.</p>" + pairs
    return pairs + figure(plot_kappa, agreement["by_flag"]) + by_flag


def profile_section(result: dict) -> str:
    profiles = result["profiles"]
    flags = profiles["flags"]
    rows = [[p["model_label"], p["runs"], p["messages"], *(num(p["shares"].get(f)) for f in flags)]
            for p in profiles["by_model"]]
    if not rows:
        return "<p>No coded agent messages.</p>"
    return figure(plot_profiles, profiles) + table(["model", "runs", "messages", *flags], rows)


def similarity_section(result: dict) -> str:
    rows = [[s["series"] or "-", s["similarity"]["n"], num(s["similarity"]["mean"]), num(s["similarity"]["median"]),
             num(s["similarity"]["sd"]), num(s["similarity"]["iqr"])] for s in result["series"]]
    with_values = [s for s in result["series"] if any(r["similarity"] is not None for r in s["per_run"])]
    plot = figure(plot_similarity, with_values) if with_values else ""
    return plot + table(["series", "runs", "mean cosine", "median", "sd", "IQR"], rows)


def comparisons_table(result: dict) -> str:
    rows = [[c.get("label") or f"{c['a']} vs {c['b']}", c["n_a"], c["n_b"], num(c["mean_a"]), num(c["mean_b"]),
             num(c["u"], 1), pval(c["p"]), num(c["r_z"]), num(c["r"]), pval(c["p_perm"]), pval(c["p_holm"])]
            for c in result["comparisons"]]
    if not rows:
        return "<p>No pair of series to compare in this store.</p>"
    return table(["comparison", "runs a", "runs b", "mean a", "mean b", "U", "p", "r = Z/√N",
                  "r (rank-biserial)", "p (perm.)", "p (Holm)"], rows)


def compensation_section(result: dict) -> str:
    comp = result["compensation"]
    if comp.get("note") and not comp.get("by_round"):
        return f"<p>{esc(comp['note'])}</p>"
    summary = (f"<p>Compensation filter: {esc(comp.get('comp_filter', 'none'))}. {comp['runs_with_crash']} runs "
               f"with a crashed agent; {comp['comp_messages']} of "
               f"{comp['post_crash_messages']} messages after the crash compensate (share {num(comp['share'])}); "
               f"levels: {esc(', '.join(f'{k} {v}' for k, v in comp['levels'].items()))}.</p>")
    by_model = table(["model", "messages after crash", "compensating", "share"],
                     [[m.get("model_label") or m.get("model"), m.get("messages"), m.get("comp"), num(m.get("share"))]
                      for m in comp.get("by_model", [])])
    return summary + (figure(plot_compensation, comp["by_round"]) if comp.get("by_round") else "") + by_model


def isolation_section(result: dict) -> str:
    iso = result["isolation"]
    if iso.get("note") and not iso.get("flags"):
        return f"<p>{esc(iso['note'])}</p>"
    rows = [[f["flag"], num(f["group_rate"]), num(f["isolation_rate"]), num(f["difference"]),
             "yes" if f.get("group_only") else ""] for f in iso.get("flags", [])]
    anyf = iso["any_flag"]
    rows.append([f"any of {', '.join(anyf['flags'])}", num(anyf["group_rate"]), num(anyf["isolation_rate"]),
                 num(anyf["difference"]), ""])
    by_series = table(["series", "alone", "messages", "with any flag", "share"],
                      [[s["series"], "yes" if s["isolation"] else "", s["messages"], s["any_flag"],
                        num(s["any_flag_rate"])] for s in iso.get("by_series", [])])
    return table(["flag", "rate in groups", "rate alone", "difference", "only in groups"], rows) + by_series


def drift_section(drift: dict) -> str:
    """ATP's two curves with their Wilson bands, the tipping rounds and the planted-agent contrasts
    (analysis/drift.py; the numbers are `sociolab drift --json`'s, embedded as `#drift`)."""
    intro = ("<p>Alignment drift over rounds (ATP): the violation rate of <code>self_interest</code> agents and the "
             "collective share of the non-planted agents of <code>strategy_diffusion</code>, by model and condition; "
             "invalid answers are left out of n (the tables of <code>sociolab drift</code> count them). Rounds from 0.</p>")
    plots = "".join(figure(draw_curves, (drift[key], ylabel), alt=f"{key} curve")
                    for key, ylabel in PANELS if drift[key])
    tips = table(["group", "runs", "tipped", "share", "95% CI", "mean round", "95% CI", "rounds", "not tipped"],
                 [[label(t["group"]), t["runs"], t["tipped"], num(t["share"]), interval(t["share_low"], t["share_high"]),
                   num(t["mean"], 2), interval(t["low"], t["high"], 2),
                   ", ".join(f"{k}: {v}" for k, v in t["rounds"].items()),
                   ", ".join(f"{k}: {v}" for k, v in t["not_tipped"].items())] for t in drift["tipping"]])
    planted = table(["group", "stratum", "planted", "from round", "with: rate (n)", "without: rate (n)",
                     "difference (points)", "Newcombe 95% CI"],
                    [[label(c["group"]), ", ".join(f"{k}={v}" for k, v in c["stratum"].items()), c["planted"],
                      c["from_round"], f"{num(c['rate_with'])} ({c['n_with']})",
                      f"{num(c['rate_without'])} ({c['n_without']})", f"{c['diff_pp']:+.1f}",
                      f"[{c['low_pp']:+.1f}, {c['high_pp']:+.1f}]"] for c in drift["planted"]])
    return (intro + plots + ("<h3>Tipping rounds</h3>" + tips if drift["tipping"] else "")
            + ("<h3>Planted agents</h3>" + planted if drift["planted"] else ""))


def interval(low: float | None, high: float | None, digits: int = 3) -> str:
    return "" if low is None or high is None else f"[{num(low, digits)}, {num(high, digits)}]"


def sample_ids(con, codebook_id: str, n: int = SAMPLE_SIZE) -> list[str]:
    """The ids of the n messages with codes under the codebook that come first in hash(message_id)
    order (the report's sample). The candidates are the first messages in that order (a top-k of
    ids, never the whole table); those with codes are kept; with fewer than n, more candidates."""
    total = con.execute("SELECT count(*) FROM messages").fetchone()[0]
    k = 8 * n
    while True:
        rows = con.execute(f"""
            WITH cand AS (SELECT message_id, hash(message_id) AS h FROM messages ORDER BY h LIMIT {k})
            SELECT message_id FROM cand
             WHERE message_id IN (SELECT message_id FROM codes
                                   WHERE codebook_id = ? AND message_id IN (SELECT message_id FROM cand))
             ORDER BY h LIMIT {n}""", [codebook_id]).fetchall()
        if len(rows) >= n or k >= total:
            return [r[0] for r in rows]
        k *= 8


def sample_section(con, result: dict, view_port: int = VIEW_PORT) -> str:
    rule = {"intersection": "by_intersection", "union": "by_union", "majority": "by_majority"}[result["settings"]["rule"]]
    codebook_id = result["settings"]["codebook_id"]
    ids = sample_ids(con, codebook_id)
    # the ids as literals: DuckDB pushes a literal IN list into the adjudicated_codes view's scan
    # of the codes (a list parameter is not pushed down, and the view would group every code)
    listed = ", ".join(sql_str(i) for i in ids) or "NULL"
    rows = [] if not ids else con.execute(f"""
        SELECT m.run_id, m.round, m.sender_name, m.content, m.message_id,
               string_agg(ac.flag, ', ' ORDER BY ac.flag) FILTER (WHERE ac.{rule}) AS flags
          FROM messages m JOIN adjudicated_codes ac USING (message_id)
         WHERE ac.codebook_id = ? AND m.message_id IN ({listed}) AND ac.message_id IN ({listed})
         GROUP BY m.message_id, m.run_id, m.round, m.sender_name, m.content
         ORDER BY hash(m.message_id) LIMIT {SAMPLE_SIZE}""", [codebook_id]).fetchall()
    return table(["run", "round", "sender", "message", f"flags ({result['settings']['rule']})", "view"],
                 [[r[0], r[1], r[2], shorten(r[3]), r[5] or "",
                   Markup(f"<a href='{view_url(view_port, '/message/' + quote(r[4], safe='/'))}'>open</a>")]
                  for r in rows])


# ---- plots ---------------------------------------------------------------------------------

def plot_kappa(ax, by_flag: list[dict]) -> None:
    pairs = sorted({(r["judge_a"], r["judge_b"]) for r in by_flag})
    flags = sorted({r["flag"] for r in by_flag})
    width = 0.8 / len(pairs)
    for i, pair in enumerate(pairs):
        values = {r["flag"]: r["kappa"] for r in by_flag if (r["judge_a"], r["judge_b"]) == pair}
        ax.bar([x + i * width for x in range(len(flags))], [nan0(values.get(f)) for f in flags], width,
               label=f"{short(pair[0])} vs {short(pair[1])}")
    ax.set_xticks([x + width * (len(pairs) - 1) / 2 for x in range(len(flags))], flags)
    ax.set_ylabel("Cohen's kappa")
    ax.set_ylim(min(0, ax.get_ylim()[0]), 1)
    ax.axhline(0.6, color="grey", lw=0.8, ls="--")
    ax.legend(fontsize=8)


def plot_profiles(ax, profiles: dict) -> None:
    flags = profiles["flags"]
    models = profiles["by_model"]
    grid = [[nan0(m["shares"].get(f)) for f in flags] for m in models]
    image = ax.imshow(grid, cmap="viridis", aspect="auto", vmin=0, vmax=max(1e-9, max(max(r) for r in grid)))
    ax.set_xticks(range(len(flags)), flags)
    ax.set_yticks(range(len(models)), [m["model_label"] for m in models])
    for i, row in enumerate(grid):
        for j, value in enumerate(row):
            ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=7, color="white" if value < 0.5 else "black")
    ax.figure.colorbar(image, ax=ax, label="share of messages")


def plot_similarity(ax, series: list[dict]) -> None:
    data = [[r["similarity"] for r in s["per_run"] if r["similarity"] is not None] for s in series]
    labels = [s["series"] or "-" for s in series]
    ax.boxplot(data, showfliers=False)
    ax.set_xticks(range(1, len(labels) + 1), labels)
    for i, values in enumerate(data, start=1):
        ax.scatter([i + 0.08 * ((k % 5) - 2) for k in range(len(values))], values, s=10, alpha=0.6)
    ax.set_ylabel("mean pairwise cosine similarity (per run)")
    ax.set_xlabel("series")


def plot_compensation(ax, by_round: list[dict]) -> None:
    rounds = [r["round_after"] for r in by_round]
    bottom = [0.0] * len(rounds)
    for level in ("L1", "L2", "L3", "unspecified"):
        values = [(r.get(level) or 0) / r["messages"] if r["messages"] else 0 for r in by_round]
        if any(values):
            ax.bar(rounds, values, bottom=bottom, label=level)
            bottom = [b + v for b, v in zip(bottom, values)]
    ax.set_xlabel("rounds after the crash")
    ax.set_ylabel("share of messages compensating")
    ax.legend(fontsize=8)


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1000px;margin:2em auto;
color:#1d1d1f;line-height:1.45;padding:0 1em}
h1{margin-bottom:.2em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.8em 0;font-size:.88em;width:100%}
th,td{border:1px solid #e0e0e0;padding:.3em .5em;text-align:left;vertical-align:top}
th{background:#f5f5f7}tr:nth-child(even) td{background:#fafafa}
img{max-width:100%;display:block;margin:.8em 0}.meta{color:#555;font-size:.9em}
.note{background:#fff4d6;border-left:4px solid #e0a800;padding:.5em .8em}
code{background:#f0f0f0;padding:0 .25em}
.view{font-size:.85em;color:#555;margin:.2em 0}
"""
