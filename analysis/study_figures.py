"""The report's counterparts of the WarRoom study's figures.

"Who Am I, and Who Else Is Here?" (H. El Kandoussi, 2026) draws eleven figures with
generate_figures.py (github.com/elkandoussihoussam/WarRoom, commit f8e4a16, CC BY 4.0). Each
section here draws the same quantity from an `analyze()` result, for any store, and names the
original it stands for (`ORIGINALS`), so a reader can set the two side by side. Where the study
fixes a series (A for its baseline, F for isolation, C for real names, B for clones), the section
takes the role from the store instead: the baseline is the first comparison's first series, the
isolation series are those with scaffolding `isolation`, the naming and clone contrasts are the
comparisons whose series differ in `naming` or `clones`. docs/fidelity/warroom_judging_analysis.md
lists each figure with its counterpart. No code of the original is used.
"""

from __future__ import annotations

import math

from .htmlparts import esc, figure, nan0, num, table

# original figure file -> what the report shows for it
ORIGINALS: dict[str, str] = {
    "fig0_pipeline.png": "How these numbers were made: judges, adjudication, compensation filter",
    "fig1_profiles.png": "Profiles per model in the baseline series (heatmap of the trait flags)",
    "fig2_isolation.png": "Alone vs in a group: profiles side by side, with each side's any-flag share",
    "fig3_compensation.png": "Who compensates (messages per model) and compensation depth (L1-L3)",
    "fig4_name_bias.png": "Profile shift per model between series that differ in naming, and their similarity",
    "fig5_heterogeneity.png": "Per-run similarity of series that differ in clones: box plots and densities",
    "fig6_ablation.png": "Mean similarity of the baseline and the series compared with it; clones as a line",
    "fig7_confusion.png": "Confusion counts of each judge pair per flag",
    "fig8_temporal.png": "Flag prevalence per round in the baseline series",
    "fig9_comp_series.png": "Compensating messages per crashed run, per series",
    "fig10_sensitivity.png": "Each flag's prevalence under intersection and under union of the judges",
}


def origin(name: str) -> str:
    return f"<p class='meta'>Counterpart of the study's <code>{name}</code> (generate_figures.py).</p>"


def traits(result: dict) -> list[str]:
    return list(result["profiles"]["trait_flags"])


def series_profiles(result: dict, series: str | None) -> list[dict]:
    return [m for m in result["profiles"]["by_series_model"] if m["series"] == series]


def condition(result: dict, series: str) -> dict:
    return next((s["condition"] for s in result["series"] if s["series"] == series), {})


def contrasts(result: dict, field: str) -> list[dict]:
    """The comparisons whose two series differ in one condition field (naming, clones, ...)."""
    return [c for c in result["comparisons"]
            if condition(result, c["a"]).get(field) != condition(result, c["b"]).get(field)]


# ---- fig0: the pipeline ---------------------------------------------------------------------

def pipeline_section(result: dict) -> str:
    s, d = result["settings"], result["data"]
    steps = [f"{d['runs']} runs, {d['messages']} coded agent messages",
             f"judges: {', '.join(d['judges']) or 'none'}",
             f"adjudication: {s['rule']} of the judges",
             f"compensation filter: {s.get('comp_filter', 'none')}",
             f"profiles over {', '.join(s['trait_flags'])}; similarity, comparisons, compensation, isolation"]
    return origin("fig0_pipeline.png") + "<p>" + " → ".join(esc(x) for x in steps) + "</p>"


# ---- fig1 / fig2: profile heatmaps ------------------------------------------------------------

def heatmap(ax, rows: list[dict], flags: list[str], title: str) -> None:
    grid = [[nan0(m["shares"].get(f)) for f in flags] for m in rows]
    ax.imshow(grid, cmap="YlOrRd", aspect="auto", vmin=0, vmax=max(0.6, *(max(r) for r in grid)))
    ax.set_xticks(range(len(flags)), flags)
    ax.set_yticks(range(len(rows)), [m["model_label"] for m in rows], fontsize=7)
    for i, row in enumerate(grid):
        for j, value in enumerate(row):
            ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=7)
    ax.set_title(title, fontsize=9)


def baseline_profile_section(result: dict) -> str:
    base = result["rounds"]["series"]
    rows = series_profiles(result, base)
    if not rows:
        return origin("fig1_profiles.png") + "<p>No baseline series with coded messages.</p>"
    return origin("fig1_profiles.png") + figure(
        lambda ax, r: heatmap(ax, r, traits(result), f"Profiles per model, series {base}"), rows,
        alt=ORIGINALS["fig1_profiles.png"])


def any_flag_rate(result: dict, series: str) -> float:
    return next((s["any_flag_rate"] for s in result["isolation"]["by_series"] if s["series"] == series), math.nan)


def isolation_figure(result: dict) -> str:
    alone = result["isolation"]["isolation_series"]
    base = result["rounds"]["series"]
    if not alone or base is None or base in alone:
        return ""
    sides = [(s, series_profiles(result, s)) for s in (alone[0], base)]

    def draw(axes, data) -> None:
        for ax, (s, rows) in zip(axes, data):
            heatmap(ax, rows, traits(result), f"{s}: {100 * nan0(any_flag_rate(result, s)):.1f}% flagged")

    return origin("fig2_isolation.png") + figure(draw, sides, size=(10, 3.8), panels=2,
                                                 alt=ORIGINALS["fig2_isolation.png"])


# ---- fig3 / fig9: compensation ----------------------------------------------------------------

def compensation_figures(result: dict) -> str:
    comp = result["compensation"]
    if not comp.get("by_model"):
        return ""

    def who_and_depth(axes, c) -> None:
        models = [m for m in c["by_model"] if m["comp"]] or c["by_model"]
        axes[0].barh([m["model_label"] for m in models], [m["comp"] for m in models])
        axes[0].set_xlabel("compensating messages")
        axes[0].set_title("Who compensates?", fontsize=9)
        axes[1].bar(["L1 mention", "L2 takeover", "L3 redistribute"], [c["levels"][k] for k in ("L1", "L2", "L3")])
        axes[1].set_title("Compensation depth", fontsize=9)

    def per_series(ax, rows) -> None:
        ax.bar([r["series"] or "-" for r in rows], [r["comp"] / r["runs"] if r["runs"] else 0 for r in rows])
        ax.set_ylabel("compensating messages per crashed run")

    return (origin("fig3_compensation.png")
            + figure(who_and_depth, comp, size=(10, 3.6), panels=2, alt=ORIGINALS["fig3_compensation.png"])
            + origin("fig9_comp_series.png")
            + figure(per_series, comp["by_series"], alt=ORIGINALS["fig9_comp_series.png"]))


# ---- fig4 / fig5 / fig6: similarity -----------------------------------------------------------

def profile_shift_section(result: dict) -> str:
    out = ""
    for c in contrasts(result, "naming"):
        a = {m["model_label"]: m for m in series_profiles(result, c["a"])}
        b = {m["model_label"]: m for m in series_profiles(result, c["b"])}
        shared = sorted(set(a) & set(b))
        if not shared:
            continue
        deltas = {m: [nan0(b[m]["shares"].get(f)) - nan0(a[m]["shares"].get(f)) for f in traits(result)]
                  for m in shared}

        def draw(ax, d, c=c) -> None:
            for model, values in d.items():
                ax.plot(traits(result), values, "o-", alpha=0.7, label=model)
            ax.axhline(0, color="grey", ls="--", lw=0.8)
            ax.set_ylabel(f"share in {c['b']} − share in {c['a']}")
            ax.legend(fontsize=6)

        out += figure(draw, deltas, alt=ORIGINALS["fig4_name_bias.png"]) + table(
            ["series", "mean similarity"], [[c["a"], num(c["mean_a"])], [c["b"], num(c["mean_b"])]])
    return origin("fig4_name_bias.png") + (out or "<p>No compared series differ in naming.</p>")


def per_run(result: dict, series: str) -> list[float]:
    return [r["similarity"] for s in result["series"] if s["series"] == series
            for r in s["per_run"] if r["similarity"] is not None]


def density_section(result: dict) -> str:
    from scipy.stats import gaussian_kde

    pairs = [c for c in contrasts(result, "clones") if len(per_run(result, c["a"])) > 1
             and len(per_run(result, c["b"])) > 1]

    def draw(ax, c) -> None:
        xs = [i / 200 for i in range(201)]
        for s in (c["a"], c["b"]):
            values = per_run(result, s)
            label = f"{s} (mean {num(sum(values) / len(values), 2)})"
            try:
                ax.fill_between(xs, gaussian_kde(values)(xs), alpha=0.35, label=label)
            except (ValueError, ArithmeticError):       # identical values: no density to draw
                ax.axvline(values[0], label=s)
        ax.set_xlabel("per-run mean pairwise cosine")
        ax.legend(fontsize=8)

    shown = "".join(figure(draw, c, alt=ORIGINALS["fig5_heterogeneity.png"]) for c in pairs)
    return origin("fig5_heterogeneity.png") + "<p>Box plots: see Profile similarity by series.</p>" + (
        shown or "<p>No compared series differ in clones.</p>")


def mean_similarity_figure(result: dict) -> str:
    base = result["rounds"]["series"]
    order = [base] + [c["b"] for c in result["comparisons"] if c["a"] == base]
    means = {s["series"]: s["similarity"]["mean"] for s in result["series"]}
    shown = [s for s in dict.fromkeys(order) if s is not None and means.get(s) is not None
             and not condition(result, s).get("clones")]
    clones = [s for s in means if condition(result, s).get("clones") is True and means[s] is not None]
    if not shown:
        return ""

    def draw(ax, data) -> None:
        ax.bar(data, [means[s] for s in data])
        for s in clones:
            ax.axhline(means[s], color="#C00000", ls="--", label=f"{s} (clones)")
        ax.set_ylim(0, 1.05)
        ax.set_ylabel("mean per-run similarity")
        if clones:
            ax.legend(fontsize=8)

    return origin("fig6_ablation.png") + figure(draw, shown, alt=ORIGINALS["fig6_ablation.png"])


# ---- fig7 / fig8 / fig10: judges and flags ----------------------------------------------------

def confusion_table(result: dict) -> str:
    rows = [[r["flag"], r["judge_a"], r["judge_b"], r["ff"], r["ft"], r["tf"], r["tt"]]
            for r in result["agreement"]["by_flag"]]
    return origin("fig7_confusion.png") + table(
        ["flag", "judge a", "judge b", "a 0, b 0", "a 0, b 1", "a 1, b 0", "a 1, b 1"], rows)


def rounds_section(result: dict) -> str:
    by_round = result["rounds"]["by_round"]
    if not by_round:
        return origin("fig8_temporal.png") + "<p>No coded rounds.</p>"
    flags = traits(result) + [f for f in ("comp",) if f in result["profiles"]["flags"]]

    def draw(ax, rows) -> None:
        for f in flags:
            ax.plot([r["round"] for r in rows], [nan0(r["rates"].get(f)) for r in rows], "o--" if f == "comp" else "o-",
                    label=f, markersize=3)
        ax.set_xlabel(f"round (series {result['rounds']['series']})")
        ax.set_ylabel("flag prevalence")
        ax.legend(fontsize=7, ncol=3)

    return origin("fig8_temporal.png") + figure(draw, by_round, alt=ORIGINALS["fig8_temporal.png"])


def sensitivity_section(result: dict) -> str:
    rows = result["sensitivity"]

    def draw(ax, data) -> None:
        xs = range(len(data))
        ax.bar([x - 0.18 for x in xs], [100 * nan0(r["intersection"]) for r in data], 0.32, label="intersection")
        ax.bar([x + 0.18 for x in xs], [100 * nan0(r["union"]) for r in data], 0.32, label="union")
        ax.set_xticks(list(xs), [r["flag"] for r in data])
        ax.set_ylabel("prevalence (%)")
        ax.legend(fontsize=8)

    return origin("fig10_sensitivity.png") + (figure(draw, rows, alt=ORIGINALS["fig10_sensitivity.png"])
                                               if rows else "") + table(
        ["flag", "coded", "intersection", "union"],
        [[r["flag"], r["n"], num(r["intersection"]), num(r["union"])] for r in rows])
