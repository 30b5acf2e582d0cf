"""A population on a feed, after "Molt Dynamics": agents post, reply, react, follow and repost.

Each tick a heavy-tailed share of the population is active (Pareto activity weights, exponent
`activity_alpha`); each active agent sees its bounded feed (posts of the agents it follows, popular
posts, replies to its own posts; at most `feed_size` items) and acts. Every action is a row of the
`actions` table (docs/schema.md), written column-wise with each tick's commit, never a message per
action. Two modes (`params.agents`):

- `model`: each active agent is one model call through `ctx.client` (a real model or the sim) with
  its feed as the prompt and a JSON action as the answer (`{"action": "repost", "item": 12}`); the
  reply is a message, an unreadable or impossible action an `invalid_action` event and an action of
  kind `invalid` (no effect). For small populations (each call costs a call).
- `sim_population`: no model calls at all. The population's behaviour is drawn directly from the
  sim's planted propensities of the roster's (sim) model in vectorised numpy code: activity
  weights, six structural roles with their action mixes, cascade sizes from a discrete power law
  (`cascade_alpha`), cooperative tasks resolved by a quorum with `task_group_success` against a
  single-agent attempt with `task_solo_success`. It exists to exercise the measures and the
  storage at scale (100,000 agents), and is never evidence about models.

Agent state is arrays indexed by agent (roles, weights, follow edges as two int arrays); no
Python object per agent. Measures: analysis/population.py, `sociolab population` (docs/population.md).
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from sociolab.orchestrator.sim.metadata import PopulationTurn
from sociolab.orchestrator.sim.naming import is_sim
from sociolab.orchestrator.sim.propensities import ROLE_SHARES, Propensities, propensities_for
from sociolab.orchestrator.sink import Message
from sociolab.personas.models import Persona, RosterSpec

from .base import Agent, Outcome, RunContext, Scenario, system_messages

# action codes: the `action_kinds` table of the store (orchestrator/store.py, schema v6)
KINDS = ("post", "reply", "react", "follow", "repost", "task", "contribute", "resolve", "solo_ok", "solo_fail",
         "invalid")
CODE = {name: i for i, name in enumerate(KINDS)}
ROLES = tuple(ROLE_SHARES)  # periphery, broadcaster, conversationalist, amplifier, connector, coordinator
# what each role does when active (sim_population): weights over post, reply, react, follow, task, contribute
ROLE_MIX = np.array([
    [0.01, 0.01, 0.96, 0.02, 0.00, 0.00],   # periphery: reads and reacts (the homogeneous periphery)
    [0.80, 0.05, 0.05, 0.05, 0.05, 0.00],   # broadcaster
    [0.05, 0.80, 0.10, 0.05, 0.00, 0.00],   # conversationalist
    [0.05, 0.05, 0.80, 0.05, 0.00, 0.05],   # amplifier (and reposts, ROLE_REPOST)
    [0.05, 0.05, 0.05, 0.85, 0.00, 0.00],   # connector
    [0.05, 0.05, 0.05, 0.05, 0.40, 0.40],   # coordinator
])
MIX_KINDS = np.array([CODE["post"], CODE["reply"], CODE["react"], CODE["follow"], CODE["task"],
                      CODE["contribute"]], dtype=np.uint8)
ROLE_ACTIVITY = np.array([1.0, 5.0, 5.0, 5.0, 5.0, 5.0])  # structural roles are the active core
ROLE_ACTIONS = np.array([0.2, 6.0, 6.0, 6.0, 6.0, 6.0])   # extra actions per active tick (Poisson mean)
ROLE_REPOST = np.array([0.05, 1.0, 1.0, 30.0, 1.0, 1.0])   # weight as a reposter in a cascade
MAX_CASCADE = 100_000


class PopulationParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    agents: Literal["model", "sim_population"] = Field(
        "model", description="model: each active agent is a model call; sim_population: behaviour drawn from the "
                             "sim's planted propensities in vectorised code, no model calls (docs/population.md)")
    size: int = Field(50, ge=2, le=10_000_000, description="number of agents in the population")
    ticks: int = Field(5, ge=1, le=1000, description="number of ticks")
    active_share: float = Field(0.1, gt=0, le=1, description="mean share of agents active in a tick")
    activity_alpha: float | None = Field(None, gt=1, le=10, description="Pareto exponent of activity weights "
                                                                        "(default: the sim model's, else 2.0)")
    feed_size: int = Field(8, ge=1, le=100, description="items an agent's feed shows at most")
    quorum: int = Field(3, ge=1, description="distinct contributors a task needs before a group can resolve it")
    temperature: float = Field(0.7, ge=0, le=2)
    max_tokens: int | None = Field(200, ge=1)


class Population(Scenario):
    kind = "population"
    Params = PopulationParams
    params: PopulationParams

    def rounds_planned(self) -> int:
        return self.params.ticks

    def factors(self) -> dict:
        return {"population_mode": self.params.agents, "population_size": self.params.size}

    def place_agents(self, personas: list[Persona], roster: RosterSpec) -> list[Agent]:
        if self.params.agents == "sim_population" and len(personas) != 1:
            raise ValueError("agents: sim_population draws the whole population from one sim model: give one persona")
        return [Agent(agent_id=p.key, position=i + 1, name=roster.names.get(p.key, p.key), persona=p,
                      system_prompt=SYSTEM) for i, p in enumerate(personas)]

    async def run(self, ctx: RunContext) -> Outcome:
        if self.params.agents == "sim_population":
            return await self.run_sim_population(ctx)
        return await self.run_models(ctx)

    # ---- sim_population: vectorised -------------------------------------------------------------

    async def run_sim_population(self, ctx: RunContext) -> Outcome:
        model = ctx.agents[0].model
        if not is_sim(model):
            raise ValueError(f"agents: sim_population needs a sim model (sim/...), not {model!r}: it makes no "
                             "model calls; use agents: model for real models")
        props = propensities_for(model, ctx.client.sim_settings())
        world = SimWorld(self.params, props, np.random.default_rng(ctx.seed))
        for t in range(self.params.ticks):
            tick = world.tick(t)
            ctx.sink.actions(t, tick["agent"], tick["kind"], tick["target"], tick["item"])
            await ctx.sink.commit_round(t + 1)
        closing = world.close_tasks()
        ctx.sink.actions(self.params.ticks - 1, closing["agent"], closing["kind"], closing["target"], closing["item"])
        acted = np.zeros(self.params.size, bool)
        for block in world.acted:
            acted[block] = True
        shares = np.bincount(world.role[acted], minlength=len(ROLES)) / max(1, int(acted.sum()))
        for role, share in zip(ROLES, shares):  # the truth the role measure should recover
            ctx.sink.outcome(f"planted_share_{role}", float(share), among="agents with at least one action")
        record_task_outcomes(ctx, world.tasks_posted, int((closing["kind"] == CODE["resolve"]).sum()),
                             int((closing["kind"] == CODE["solo_ok"]).sum()))
        return Outcome("completed", self.params.ticks)

    # ---- model: one call per active agent -----------------------------------------------------

    async def run_models(self, ctx: RunContext) -> Outcome:
        p = self.params
        rng = np.random.default_rng(ctx.seed)
        feed = Feed(p.size, p.feed_size)
        weights = activity_weights(rng, p.size, p.activity_alpha or 2.0)
        p_active = np.minimum(1.0, p.active_share * weights / weights.mean())
        seats = [ctx.agents[i % len(ctx.agents)] for i in range(len(ctx.agents))]
        for t in range(p.ticks):
            active = np.flatnonzero(rng.random(p.size) < p_active)
            if active.size == 0:
                active = np.array([int(np.argmax(weights))])
            start = ctx.clock.now()
            views = {int(a): feed.view(int(a), t) for a in active}
            done = await asyncio.gather(*(self.turn(ctx, seats[a % len(seats)], a, t, views[a], feed, start)
                                          for a in views))
            rows = [row for turn_rows in done for row in turn_rows]
            for agent, kind, target, item in rows:
                feed.apply(agent, kind, target, item, t)
            if rows:
                cols = list(zip(*rows))
                ctx.sink.actions(t, cols[0], cols[1], cols[2], cols[3])
            await ctx.sink.commit_round(t + 1)
        resolved = [(feed.authors[i], CODE["resolve"], -1, i) for i, who in feed.contributors.items()
                    if len(who) >= p.quorum]
        if resolved:
            cols = list(zip(*resolved))
            ctx.sink.actions(p.ticks - 1, cols[0], cols[1], cols[2], cols[3])
        record_task_outcomes(ctx, len(feed.contributors), len(resolved), None)
        return Outcome("completed", p.ticks)

    async def turn(self, ctx: RunContext, seat: Agent, agent: int, t: int, view: "FeedView", feed: "Feed",
                   start: float) -> list[tuple[int, int, int, int]]:
        """One active agent's call: its feed in, one action out (or an invalid one)."""
        prompt = view.prompt(agent, t)
        messages = system_messages(seat) + [{"role": "user", "content": prompt}]
        call = await ctx.client.complete(
            seat.model, messages, temperature=self.params.temperature, max_tokens=self.params.max_tokens,
            seed=ctx.seed * 1_000_003 + t * 100_003 + agent, sleep=ctx.clock.sleep,
            metadata=PopulationTurn(options=view.options(), exposures=view.exposures()).as_metadata())
        finished = ctx.clock.finished_at(start, call.sim_latency_s)
        ctx.sink.message(Message(sender=seat.agent_id, sender_name=f"agent-{agent}", round=t, turn=agent,
                                 content=call.transcript_text, context_size=len(messages), is_error=not call.ok,
                                 error=call.error, started_s=start, finished_s=finished, call=call))
        if not call.ok:
            return [(agent, CODE["invalid"], -1, -1)]
        action, problem = view.parse(call.text or "", feed)
        if action is None:
            ctx.sink.event("invalid_action", round=t, agent_id=seat.agent_id, population_agent=agent,
                           reason=problem, reply=(call.text or "")[:300])
            return [(agent, CODE["invalid"], -1, -1)]
        if len(action) != 3:  # ("none",)
            return []
        kind, target, item = action
        if kind in ("post", "task"):
            item = feed.new_item(agent, kind == "task")
        return [(agent, CODE[kind], target, item)]


SYSTEM = ("You are a member of a social platform of AI agents. Each turn you see your feed and take one action. "
          "Answer with one JSON object only, e.g. {\"action\": \"post\", \"text\": \"...\"}, {\"action\": \"reply\", "
          "\"item\": 12, \"text\": \"...\"}, {\"action\": \"react\", \"item\": 12}, {\"action\": \"repost\", "
          "\"item\": 12}, {\"action\": \"follow\", \"agent\": 7}, {\"action\": \"task\", \"text\": \"...\"} (ask "
          "others to help with a task), {\"action\": \"contribute\", \"item\": 12} (help with a task), or "
          "{\"action\": \"none\"}.")


def record_task_outcomes(ctx: RunContext, tasks: int, resolved: int, solo_ok: int | None) -> None:
    """Run-level outcomes (for `sociolab results`): the share of tasks a group resolved, and the
    single-agent baseline's share where the mode has one; None when no task was posted."""
    ctx.sink.outcome("task_resolved", resolved / tasks if tasks else None, successes=resolved, n=tasks)
    if solo_ok is not None:
        ctx.sink.outcome("solo_resolved", solo_ok / tasks if tasks else None, successes=solo_ok, n=tasks)


def activity_weights(rng: np.random.Generator, n: int, alpha: float) -> np.ndarray:
    """Pareto weights with density exponent `alpha` (P(W > w) = w^-(alpha-1), w >= 1)."""
    return (1.0 - rng.random(n)) ** (-1.0 / (alpha - 1.0))


def discrete_power_law(rng: np.random.Generator, n: int, alpha: float, cap: int) -> np.ndarray:
    """n draws of a discrete power law on 1, 2, ... with exponent alpha (P(s) ~ s^-alpha), exact by
    inverting the CDF through the Hurwitz zeta function on a table up to `cap` (larger draws
    are cut to `cap`)."""
    from scipy.special import zeta

    top = min(cap, 10_000)
    s = np.arange(1, top + 1, dtype=np.float64)
    pmf = s ** -alpha / zeta(alpha, 1)
    cdf = np.cumsum(pmf)
    u = rng.random(n)
    out = np.searchsorted(cdf, u, side="right") + 1
    tail = out > top
    if tail.any():  # beyond the table: the continuous approximation of the tail (Clauset et al. 2009, eq. D.6)
        v = (u[tail] - cdf[-1]) / (1.0 - cdf[-1])
        out[tail] = np.floor((top + 0.5) * (1.0 - v) ** (-1.0 / (alpha - 1.0)) + 0.5)
    return np.minimum(out, cap).astype(np.int64)


class SimWorld:
    """The `sim_population` mode's state: arrays by agent, the recent posts, the open tasks."""

    def __init__(self, params: PopulationParams, props: Propensities, rng: np.random.Generator):
        self.p, self.props, self.rng = params, props, rng
        n = params.size
        shares = np.array([max(0.0, props.role_shares.get(r, 0.0)) for r in ROLES])
        self.role = rng.choice(len(ROLES), n, p=shares / shares.sum()).astype(np.int8)
        alpha = params.activity_alpha or props.activity_alpha
        self.weight = activity_weights(rng, n, alpha) * ROLE_ACTIVITY[self.role]
        self.p_active = np.minimum(1.0, params.active_share * self.weight / self.weight.mean())
        repost_w = self.weight * ROLE_REPOST[self.role]
        self.repost_p = repost_w / repost_w.sum()
        self.follow_p = self.weight / self.weight.sum()
        self.next_item = 0
        self.recent_items = np.empty(0, np.int64)      # posts of the last two ticks
        self.recent_authors = np.empty(0, np.int32)
        self.recent_pop = np.empty(0, np.float64)      # their popularity (1 + reposts)
        self.task_items = np.empty(0, np.int64)
        self.task_authors = np.empty(0, np.int32)
        self.task_contrib = np.empty(0, np.int64)      # contributions so far
        self.tasks_posted = 0
        self.acted: list[np.ndarray] = []              # who acted, per tick

    def tick(self, t: int) -> dict[str, np.ndarray]:
        rng, n = self.rng, self.p.size
        active = np.flatnonzero(rng.random(n) < self.p_active).astype(np.int32)
        roles = self.role[active]
        counts = 1 + rng.poisson(ROLE_ACTIONS[roles])
        agent = np.repeat(active, counts)
        arole = np.repeat(roles, counts)
        # each action's kind from its agent's role mix (inverse CDF per row)
        cum = np.cumsum(ROLE_MIX, axis=1)[arole]
        pick = (rng.random(agent.size)[:, None] > cum).sum(axis=1)
        kind = MIX_KINDS[np.minimum(pick, len(MIX_KINDS) - 1)].copy()
        target = np.full(agent.size, -1, np.int32)
        item = np.full(agent.size, -1, np.int64)
        # reply / react: a recent post, by popularity; none yet (the first tick): no action. (Turning
        # them into posts, as before, gave most of the reacting periphery a post of its first tick,
        # a look-alike of the broadcasters that hid the planted roles.)
        on_post = (kind == CODE["reply"]) | (kind == CODE["react"])
        if self.recent_items.size:
            chosen = rng.choice(self.recent_items.size, on_post.sum(), p=self.recent_pop / self.recent_pop.sum())
            item[on_post], target[on_post] = self.recent_items[chosen], self.recent_authors[chosen]
        else:
            agent, kind, target, item = agent[~on_post], kind[~on_post], target[~on_post], item[~on_post]
        # contribute: an open task (uniformly); none: a react-less post
        contrib = kind == CODE["contribute"]
        if self.task_items.size:
            chosen = rng.integers(0, self.task_items.size, contrib.sum())
            item[contrib], target[contrib] = self.task_items[chosen], self.task_authors[chosen]
            np.add.at(self.task_contrib, chosen, 1)
        else:
            kind[contrib] = CODE["post"]
        # follow: preferential, by activity weight
        follow = kind == CODE["follow"]
        target[follow] = rng.choice(n, follow.sum(), p=self.follow_p)
        # new posts and tasks get item ids
        new = (kind == CODE["post"]) | (kind == CODE["task"])
        ids = self.next_item + np.arange(new.sum(), dtype=np.int64)
        self.next_item += ids.size
        item[new] = ids
        is_task = kind[new] == CODE["task"]
        self.tasks_posted += int(is_task.sum())
        self.task_items = np.concatenate([self.task_items, ids[is_task]])
        self.task_authors = np.concatenate([self.task_authors, agent[new][is_task]])
        self.task_contrib = np.concatenate([self.task_contrib, np.zeros(is_task.sum(), np.int64)])
        posts, authors = ids[~is_task], agent[new][~is_task]
        # cascades: each post's size from the planted power law; reposters by repost weight; each
        # repost's parent a uniformly earlier node of its tree (a random recursive tree)
        size = discrete_power_law(rng, posts.size, self.props.cascade_alpha, min(MAX_CASCADE, n))
        reposts = size - 1
        total = int(reposts.sum())
        which = np.repeat(np.arange(posts.size), reposts)
        start = np.cumsum(reposts) - reposts
        pos = np.arange(total) - np.repeat(start, reposts) + 1          # 1..size-1 within the cascade
        reposter = rng.choice(n, total, p=self.repost_p).astype(np.int32)
        parent = np.floor(rng.random(total) * pos).astype(np.int64)     # 0 = the root post
        parent_agent = np.where(parent == 0, authors[which], reposter[np.repeat(start, reposts) + parent - 1])
        self.recent_items = posts if t == 0 else np.concatenate([self.recent_items[self.recent_age == t - 1], posts])
        self.recent_authors = (authors if t == 0 else
                               np.concatenate([self.recent_authors[self.recent_age == t - 1], authors]))
        self.recent_pop = (size.astype(np.float64) if t == 0 else
                           np.concatenate([self.recent_pop[self.recent_age == t - 1], size.astype(np.float64)]))
        self.recent_age = (np.full(posts.size, t) if t == 0 else
                           np.concatenate([self.recent_age[self.recent_age == t - 1], np.full(posts.size, t)]))
        self.acted.append(np.unique(np.concatenate([agent, reposter])))
        return {"agent": np.concatenate([agent, reposter]),
                "kind": np.concatenate([kind, np.full(total, CODE["repost"], np.uint8)]),
                "target": np.concatenate([target, parent_agent.astype(np.int32)]),
                "item": np.concatenate([item, posts[which]])}

    recent_age: np.ndarray = np.empty(0, np.int64)

    def close_tasks(self) -> dict[str, np.ndarray]:
        """At the end: each task with a quorum of contributions is resolved with P(task_group_success);
        each task is also given to its author alone, the single-agent baseline (P(task_solo_success))."""
        rng, k = self.rng, self.task_items.size
        group = (self.task_contrib >= self.p.quorum) & (rng.random(k) < self.props.task_group_success)
        solo = rng.random(k) < self.props.task_solo_success
        agent = np.concatenate([self.task_authors[group], self.task_authors])
        kind = np.concatenate([np.full(group.sum(), CODE["resolve"], np.uint8),
                               np.where(solo, CODE["solo_ok"], CODE["solo_fail"]).astype(np.uint8)])
        return {"agent": agent, "kind": kind, "target": np.full(agent.size, -1, np.int32),
                "item": np.concatenate([self.task_items[group], self.task_items])}


class FeedView:
    """What one agent sees in one tick (model mode): item ids with their authors and texts."""

    def __init__(self, items: list[tuple[int, int, str, str]], follow_candidates: list[int], seen: dict[int, int]):
        self.items = items                    # (item, author, kind: post | task | reply-to-you, text)
        self.follow_candidates = follow_candidates
        self.seen = seen                      # item -> exposures so far, this one included

    def prompt(self, agent: int, t: int) -> str:
        lines = [f"Tick {t}. You are agent {agent}. Your feed:"]
        lines += [f"[{item}] agent {author} ({what}): {text}" for item, author, what, text in self.items]
        if not self.items:
            lines.append("(empty)")
        return "\n".join(lines) + "\nTake one action; answer with one JSON object."

    def options(self) -> dict[str, str]:
        posts = [i for i, _, what, _ in self.items if what != "task"]
        tasks = [i for i, _, what, _ in self.items if what == "task"]
        out = {"post": json.dumps({"action": "post", "text": "Sharing a thought with everyone."}),
               "task": json.dumps({"action": "task", "text": "Who can help me summarise this thread?"}),
               "none": json.dumps({"action": "none"})}
        if posts:
            out["reply"] = json.dumps({"action": "reply", "item": posts[0], "text": "Interesting point."})
            out["react"] = json.dumps({"action": "react", "item": posts[0]})
            out["repost"] = json.dumps({"action": "repost", "item": posts[0]})
        if tasks:
            out["contribute"] = json.dumps({"action": "contribute", "item": tasks[0]})
        if self.follow_candidates:
            out["follow"] = json.dumps({"action": "follow", "agent": self.follow_candidates[0]})
        return out

    def exposures(self) -> dict[str, int]:
        posts = [i for i, _, what, _ in self.items if what != "task"]
        return {"repost": self.seen.get(posts[0], 1)} if posts else {}

    def parse(self, text: str, feed: "Feed") -> tuple[tuple[str, int, int] | tuple[str], str | None] | tuple[None, str]:
        """The action in a reply: (kind, target, item), ("none",), or None and why."""
        found = re.search(r"\{.*\}", text, re.S)
        if not found:
            return None, "no JSON object"
        try:
            data = json.loads(found.group(0))
        except json.JSONDecodeError:
            return None, "not valid JSON"
        if not isinstance(data, dict):
            return None, "not a JSON object"
        action = data.get("action")
        shown = {i: a for i, a, _, _ in self.items}
        if action == "none":
            return ("none",), None
        if action in ("post", "task"):
            return (action, -1, -1), None
        if action in ("reply", "react", "repost", "contribute"):
            item = data.get("item")
            if not isinstance(item, int) or item not in shown:
                return None, f"{action}: item {item!r} is not in the feed"
            if (action == "contribute") != feed.is_task(item):
                return None, f"{action}: item {item} is {'a task' if feed.is_task(item) else 'not a task'}"
            target = feed.shared_by.get(item, shown[item]) if action == "repost" else feed.authors[item]
            return (action, target, item), None
        if action == "follow":
            other = data.get("agent")
            if not isinstance(other, int) or not 0 <= other < feed.size:
                return None, f"follow: no agent {other!r}"
            return ("follow", other, -1), None
        return None, f"unknown action {action!r}"


class Feed:
    """Model mode's platform state (small populations): posts, follows, exposures."""

    def __init__(self, size: int, feed_size: int):
        self.size, self.feed_size = size, feed_size
        self.authors: dict[int, int] = {}
        self.texts: dict[int, str] = {}
        self.tick_of: dict[int, int] = {}
        self.tasks: set[int] = set()
        self.popularity: dict[int, int] = {}
        self.follows: dict[int, set[int]] = {}
        self.replies_to: dict[int, list[int]] = {}   # agent -> items others replied to of theirs
        self.shared_by: dict[int, int] = {}           # item -> the last agent that reposted it
        self.contributors: dict[int, set[int]] = {}
        self.seen: dict[tuple[int, int], int] = {}

    def is_task(self, item: int) -> bool:
        return item in self.tasks

    def new_item(self, author: int, task: bool, text: str = "") -> int:
        item = len(self.authors)
        self.authors[item], self.texts[item], self.popularity[item] = author, text, 0
        if task:
            self.tasks.add(item)
            self.contributors[item] = set()
        return item

    def view(self, agent: int, t: int) -> FeedView:
        followed = self.follows.get(agent, set())
        recent = [i for i, when in self.tick_of.items() if when >= t - 2 and self.authors[i] != agent]
        mine = [i for i in recent if self.authors[i] in followed or self.shared_by.get(i) in followed]
        popular = sorted(recent, key=lambda i: (-self.popularity[i], -i))
        picked = list(dict.fromkeys(self.replies_to.get(agent, [])[-2:] + mine + popular))[: self.feed_size]
        seen = {}
        for i in picked:
            self.seen[agent, i] = seen[i] = self.seen.get((agent, i), 0) + 1
        items = [(i, self.authors[i], "task" if i in self.tasks else "post", self.texts[i] or "...") for i in picked]
        candidates = [a for a in dict.fromkeys(self.authors[i] for i in picked) if a != agent and a not in followed]
        return FeedView(items, candidates, seen)

    def apply(self, agent: int, kind: int, target: int, item: int, t: int) -> None:
        name = KINDS[kind]
        if name in ("post", "task"):
            self.tick_of[item] = t
        elif name == "repost":
            self.popularity[item] += 1
            self.shared_by[item] = agent
            self.tick_of[item] = t
        elif name == "react":
            self.popularity[item] += 1
        elif name == "reply":
            self.replies_to.setdefault(self.authors[item], []).append(item)
        elif name == "follow":
            self.follows.setdefault(agent, set()).add(target)
        elif name == "contribute":
            self.contributors[item].add(agent)



