"""Behaviour of the sim agent (orchestrator/sim/agent.py): what it reads, what it writes."""

from __future__ import annotations

import math
import re

import pytest

from sociolab.orchestrator.sim import agent as sim_agent
from sociolab.orchestrator.sim.agent import CUES, COMP_LEVEL_CUES, SimReply, sim_reply
from sociolab.orchestrator.sim.propensities import Propensities, derived_from_name
from sociolab.orchestrator.sim.settings import SimSettings

SEED_FR = ("@all On a un client qui veut une app mobile de livraison de repas pour une ville de 500k "
           "habitants. Budget: 50k euros, deadline: 3 mois.")
SEED_EN = ("@all We have a client who wants a food delivery mobile app for a city of 500k people. "
           "Budget: 50k euros, deadline: 3 months.")
SEED_FEST = ("@all Une association veut organiser un festival culturel en plein air pour 5000 personnes. "
             "Budget: 80k euros, deadline: 6 mois.")
ERR = "⚠ The model deepseek-r1-distill-llama-70b has been decommissioned and is no longer supported."

FR_WORDS = {"le", "la", "les", "des", "une", "est", "et", "pour", "avec", "nous", "du", "dans", "sur", "de"}
EN_WORDS = {"the", "and", "is", "are", "for", "with", "we", "to", "of", "in", "this", "it", "our"}
BEHAVIOURS = ("phatic", "meta", "lead", "arch", "agree", "comp")
MENTION = re.compile(r"@([\w.\-]+)")


def system(me: str = "Agent-C", others: tuple[str, ...] = ("Agent-A", "Agent-B", "Agent-D", "Agent-G")) -> dict:
    return {"role": "system", "content": f"You are {me} in a group chat.\nOther agents: {', '.join(others)}"}


def peer(name: str, text: str) -> dict:
    return {"role": "user", "content": f"[{name}]: {text}"}


def group_fr(with_error: bool = True) -> list[dict]:
    """Round 0 of a French group chat as Agent-C sees it: A and B spoke, G crashed."""
    msgs = [system(), {"role": "user", "content": SEED_FR},
            peer("Agent-A", "Bonjour à tous ! Je propose une application React Native avec des restaurants "
                            "partenaires et des livreurs indépendants, à valider avec le client."),
            peer("Agent-B", "Pour la livraison, il faut penser aux commissions des restaurateurs et au "
                            "calendrier de recrutement des coursiers.")]
    if with_error:
        msgs.append(peer("Agent-G", ERR))
    return msgs


def group_en(with_error: bool = True) -> list[dict]:
    msgs = [system(), {"role": "user", "content": SEED_EN},
            peer("Agent-A", "Hello everyone! I propose a cross-platform application with partner restaurants "
                            "and independent couriers, to be validated with the client."),
            peer("Agent-B", "For deliveries we should think about restaurant commissions and the courier "
                            "recruitment calendar.")]
    if with_error:
        msgs.append(peer("Agent-G", ERR))
    return msgs


def has_cue(text: str, behaviour: str, lang: str) -> bool:
    low = text.lower()
    return any(c in low for c in CUES[behaviour][lang])


def words_of(text: str) -> list[str]:
    return re.findall(r"[a-zàâçéèêëîïôûùüÿœ]+", text.lower())


# ------------------------------------------------------------------------------------ determinism

def test_same_inputs_same_reply_and_seeds_change_the_text():
    msgs = group_fr()
    a = sim_reply("sim/llama-3.3-70b", msgs, seed=3)
    b = sim_reply("sim/llama-3.3-70b", [dict(m) for m in msgs], seed=3)
    assert isinstance(a, SimReply)
    assert a == b
    texts = {sim_reply("sim/llama-3.3-70b", msgs, seed=s).text for s in range(30)}
    assert len(texts) >= 28  # different seeds -> different text
    # the conversation itself is part of the draw, not only the seed
    other = msgs[:-1] + [peer("Agent-G", ERR + " Please retry later.")]
    assert sim_reply("sim/llama-3.3-70b", other, seed=3).text != a.text
    # and the model name too
    assert sim_reply("sim/qwen3-32b", msgs, seed=3).text != a.text


# ------------------------------------------------------------------------------------ language

@pytest.mark.parametrize("model", ["sim/llama-3.3-70b", "sim/qwen3-32b", "sim/kimi-k2", "sim/gpt-oss-20b"])
def test_answers_in_the_language_of_the_conversation(model):
    for s in range(25):
        fr = words_of(sim_reply(model, group_fr(), seed=s).text)
        en = words_of(sim_reply(model, group_en(), seed=s).text)
        assert sum(w in FR_WORDS for w in fr) > sum(w in EN_WORDS for w in fr), fr
        assert sum(w in EN_WORDS for w in en) > sum(w in FR_WORDS for w in en), en


def test_language_comes_from_peers_when_there_is_no_seed_message():
    msgs = [system(), peer("Agent-A", "Je pense que nous devons d'abord discuter avec le client pour le budget.")]
    text = sim_reply("sim/x", msgs, seed=1).text
    w = words_of(text)
    assert sum(x in FR_WORDS for x in w) > sum(x in EN_WORDS for x in w)


# ------------------------------------------------------------------------------------ peers

def test_addresses_only_peers_that_exist_and_never_itself():
    settings = SimSettings(models={
        "talker": Propensities(address_peers=1.0, lead=1.0, agree=1.0, notice_crash=1.0),
    })
    msgs = [system(others=("Agent-A", "Agent-B")), {"role": "user", "content": SEED_EN},
            peer("Agent-A", "Hello, let us look at the delivery radius first."),
            peer("Agent-Z", "I joined late, what did I miss about the couriers?")]  # seen only in context
    allowed = {"Agent-A", "Agent-B", "Agent-Z"}
    seen: set[str] = set()
    for s in range(200):
        text = sim_reply("sim/talker", msgs, seed=s, settings=settings).text
        names = set(MENTION.findall(text))
        assert names, text  # address_peers=1 -> always addresses someone
        assert names <= allowed, text
        seen |= names
    assert seen == allowed  # peers from "Other agents" and from [Name]: prefixes are both used


def test_address_share_follows_the_propensity():
    settings = SimSettings(models={"rare": Propensities(address_peers=0.1)})
    share = sum("@" in sim_reply("sim/rare", group_en(False), seed=s, settings=settings).text for s in range(400)) / 400
    assert abs(share - 0.1) < 0.06


@pytest.mark.parametrize("model", ["sim/talker", "sim/llama-3.3-70b", "sim/kimi-k2"])
def test_isolation_never_mentions_anyone(model):
    settings = SimSettings(models={
        "talker": Propensities(address_peers=1.0, lead=1.0, agree=1.0, notice_crash=1.0, meta=1.0),
    })
    msgs = [{"role": "system", "content": "You are an AI assistant."}, {"role": "user", "content": SEED_FR}]
    for s in range(150):
        text = sim_reply(model, msgs, seed=s, settings=settings).text
        assert "@" not in text and "Agent-" not in text, text


def test_knows_its_own_name():
    settings = SimSettings(models={"lead": Propensities(lead=1.0, greet=1.0, address_peers=1.0)})
    texts = [sim_reply("sim/lead", group_en(False), seed=s, settings=settings).text for s in range(200)]
    assert not any("@Agent-C" in t for t in texts)
    assert any("Agent-C" in t for t in texts)  # e.g. "On my side (Agent-C), I'll handle ..."
    # without an identity line it never invents one
    msgs = [{"role": "system", "content": "Other agents: Agent-A, Agent-B"}, {"role": "user", "content": SEED_EN}]
    assert not any("Agent-C" in sim_reply("sim/lead", msgs, seed=s, settings=settings).text for s in range(100))


# ------------------------------------------------------------------------------------ crashed peers

def test_notices_an_errored_peer_with_notice_crash_one_and_never_with_zero():
    settings = SimSettings(models={
        "watcher": Propensities(notice_crash=1.0),
        "blind": Propensities(notice_crash=0.0, address_peers=1.0, lead=1.0, agree=1.0),
    })
    for msgs, lang in ((group_fr(), "fr"), (group_en(), "en")):
        for s in range(100):
            watched = sim_reply("sim/watcher", msgs, seed=s, settings=settings).text
            assert "Agent-G" in watched and has_cue(watched, "comp", lang), watched
            blind = sim_reply("sim/blind", msgs, seed=s, settings=settings).text
            assert "Agent-G" not in blind and not has_cue(blind, "comp", lang), blind


def test_notices_a_silent_peer_only_after_others_spoke_twice():
    settings = SimSettings(models={"watcher": Propensities(notice_crash=1.0, address_peers=0.0, lead=0.0)})
    base = [system(others=("Agent-A", "Agent-B", "Agent-D")), {"role": "user", "content": SEED_EN},
            peer("Agent-A", "First thoughts on the couriers."), peer("Agent-B", "First thoughts on restaurants.")]
    for s in range(50):  # D may just not have spoken yet
        text = sim_reply("sim/watcher", base, seed=s, settings=settings).text
        assert not has_cue(text, "comp", "en"), text
    later = base + [{"role": "assistant", "content": "My first thoughts."},
                    peer("Agent-A", "Second round on couriers."), peer("Agent-B", "Second round on restaurants.")]
    for s in range(50):
        text = sim_reply("sim/watcher", later, seed=s, settings=settings).text
        assert "Agent-D" in text and has_cue(text, "comp", "en"), text


def test_compensation_levels_have_distinct_phrasings():
    settings = SimSettings(models={
        "leader": Propensities(notice_crash=1.0, lead=1.0),
        "follower": Propensities(notice_crash=1.0, lead=0.0),
    })

    def levels(model: str) -> dict[str, int]:
        out = {"L1": 0, "L2": 0, "L3": 0}
        for s in range(300):
            low = sim_reply(model, group_en(), seed=s, settings=settings).text.lower()
            l3 = any(c in low for c in COMP_LEVEL_CUES["L3"]["en"])
            l2 = any(c in low for c in COMP_LEVEL_CUES["L2"]["en"])
            assert not (l2 and l3)
            out["L3" if l3 else "L2" if l2 else "L1"] += 1
        return out

    lead_levels, follow_levels = levels("sim/leader"), levels("sim/follower")
    # documented: P(L3) = 0.5 * lead, P(L2) = 0.35, P(L1) = rest
    assert abs(lead_levels["L3"] / 300 - 0.5) < 0.1 and abs(lead_levels["L2"] / 300 - 0.35) < 0.1
    assert follow_levels["L3"] == 0 and abs(follow_levels["L2"] / 300 - 0.35) < 0.1


# ------------------------------------------------------------------------------------ agreeing

def test_agreeing_names_a_peer_and_echoes_its_words():
    settings = SimSettings(models={
        "yes": Propensities(agree=1.0, greet=0, meta=0, lead=0, arch=0, notice_crash=0),
    })
    msgs = group_en(False)
    said = {"Agent-A": msgs[2]["content"].lower(), "Agent-B": msgs[3]["content"].lower()}
    for s in range(100):
        text = sim_reply("sim/yes", msgs, seed=s, settings=settings).text
        assert has_cue(text, "agree", "en"), text
        m = re.search(r"@?(Agent-[AB])\W[^\n]*\"([^\"]+)\"|\"([^\"]+)\"[^\n]*@?(Agent-[AB])", text)
        assert m, text
        name, topic = (m.group(1), m.group(2)) if m.group(1) else (m.group(4), m.group(3))
        assert re.search(rf"\b{re.escape(topic)}\b", said[name]), (name, topic, text)


# ------------------------------------------------------------------------------------ planted propensities

HIGH = Propensities(greet=0.8, meta=0.1, lead=0.7, arch=0.2, agree=0.75, notice_crash=0.6, address_peers=0.85,
                    length=40)
LOW = Propensities(greet=0.1, meta=0.6, lead=0.15, arch=0.9, agree=0.2, notice_crash=0.1, address_peers=0.2,
                   length=120)
FLAG_OF = {"phatic": "greet", "meta": "meta", "lead": "lead", "arch": "arch", "agree": "agree",
           "comp": "notice_crash"}


@pytest.mark.parametrize("lang", ["fr", "en"])
def test_planted_propensities_are_recovered_from_cues(lang):
    """Over N=400 replies the share of replies carrying each behaviour's cues estimates its
    probability: binomial sd <= sqrt(.25/400) = 0.025; the bound is 4 sd of that p plus 0.01 for
    cue false positives, i.e. at most 0.11. The draws are seeded, so the test is not flaky."""
    settings = SimSettings(models={"high": HIGH, "low": LOW})
    msgs = group_fr() if lang == "fr" else group_en()
    n = 400
    shares = {}
    for name, props in (("high", HIGH), ("low", LOW)):
        replies = [sim_reply(f"sim/{name}", msgs, seed=s, settings=settings).text for s in range(n)]
        for beh, field in FLAG_OF.items():
            p = getattr(props, field)
            share = sum(has_cue(t, beh, lang) for t in replies) / n
            shares[(name, beh)] = share
            assert abs(share - p) <= 4 * math.sqrt(p * (1 - p) / n) + 0.01, (name, beh, share, p)
        at = sum("@" in t for t in replies) / n
        assert abs(at - props.address_peers) <= 4 * math.sqrt(props.address_peers * (1 - props.address_peers) / n) + 0.01
        mean_words = sum(len(t.split()) for t in replies) / n
        shares[(name, "words")] = mean_words
    for beh, field in FLAG_OF.items():  # the two models are told apart in the planted direction
        assert (shares[("high", beh)] > shares[("low", beh)]) == (getattr(HIGH, field) > getattr(LOW, field))
    assert shares[("low", "words")] > 1.8 * shares[("high", "words")]


def test_zero_propensities_produce_no_cues():
    settings = SimSettings(models={
        "mute": Propensities(greet=0, meta=0, lead=0, arch=0, agree=0, notice_crash=0, address_peers=0, length=80),
    })
    for msgs, lang in ((group_fr(), "fr"), (group_en(), "en")):
        for s in range(200):
            text = sim_reply("sim/mute", msgs, seed=s, settings=settings).text
            assert text.strip()
            assert not any(has_cue(text, b, lang) for b in BEHAVIOURS), text
            assert "@" not in text


def test_every_template_carries_its_cue_and_no_other_behaviours_cue():
    slots = dict(me="Agent-C", p="@Agent-B", p2="@Agent-D", x="Agent-G", topic="livraison", part="X",
                 part2="Y", part3="Z", b1=22, b2=15, b3=13)

    def cues_in(text, beh):
        low = text.lower()
        return [c for lang in ("fr", "en") for c in CUES[beh][lang] if c in low]

    produced = []
    for (lang, beh, _), variants in sim_agent._T.items():
        produced += [(lang, beh.split("_")[0], v.format(**slots)) for v in variants]
    for (lang, _), variants in sim_agent._ARCH.items():
        produced += [(lang, "arch", v.format(**slots)) for v in variants]
    for (lang, _), groups in sim_agent._FILLER.items():
        produced += [(lang, None, v) for g in groups for v in g]
    for (lang, _), parts in sim_agent._PARTS.items():
        produced += [(lang, None, v) for v in parts]
    for lang, beh, text in produced:
        if beh is not None:
            assert has_cue(text, beh, lang), (beh, text)
        for other in BEHAVIOURS:
            if other != beh:
                assert not cues_in(text, other), (beh, other, text)


def test_different_model_names_behave_measurably_differently_and_clones_identically():
    a, b = "sim/llama-3.3-70b", "sim/kimi-k2"
    pa, pb = derived_from_name("llama-3.3-70b"), derived_from_name("kimi-k2")
    field, beh = max(((f, bh) for bh, f in FLAG_OF.items() if bh != "comp"),
                     key=lambda fb: abs(getattr(pa, fb[0]) - getattr(pb, fb[0])))
    assert abs(getattr(pa, field) - getattr(pb, field)) > 0.3
    msgs = group_en()
    share = {m: sum(has_cue(sim_reply(m, msgs, seed=s).text, beh, "en") for s in range(300)) / 300 for m in (a, b)}
    assert (share[a] - share[b]) * (getattr(pa, field) - getattr(pb, field)) > 0
    assert abs(share[a] - share[b]) > 0.2
    # clones: same name, same distribution (the same draws even)
    assert [sim_reply(a, msgs, seed=s) for s in range(20)] == [sim_reply(a, msgs, seed=s) for s in range(20)]


# ------------------------------------------------------------------------------------ task vocabulary

def test_technical_vocabulary_matches_the_task():
    settings = SimSettings(models={"tech": Propensities(arch=1.0, length=120)})
    fest = [system(), {"role": "user", "content": SEED_FEST}]
    app = [system(), {"role": "user", "content": SEED_FR}]
    fest_text = " ".join(sim_reply("sim/tech", fest, seed=s, settings=settings).text.lower() for s in range(40))
    app_text = " ".join(sim_reply("sim/tech", app, seed=s, settings=settings).text.lower() for s in range(40))
    assert "scène" in fest_text and "billetterie" in fest_text and "backend" not in fest_text
    assert "backend" in app_text and "scène" not in app_text
    assert "80k" not in app_text and "22k" in app_text  # budget split follows the brief's 50k
    assert "36k" in fest_text


# ------------------------------------------------------------------------------------ length, tokens, latency

def test_length_follows_the_propensity_and_max_tokens_truncates():
    settings = SimSettings(models={"short": Propensities(length=20), "long": Propensities(length=200)})
    msgs = group_en()
    short = [len(sim_reply("sim/short", msgs, seed=s, settings=settings).text.split()) for s in range(200)]
    long = [len(sim_reply("sim/long", msgs, seed=s, settings=settings).text.split()) for s in range(200)]
    assert 15 <= sum(short) / 200 <= 45   # behaviours need some words, so short messages run long
    assert 170 <= sum(long) / 200 <= 240
    assert len(set(long)) > 20            # the length varies
    for s in range(50):
        full = sim_reply("sim/long", msgs, seed=s, settings=settings)
        cut = sim_reply("sim/long", msgs, seed=s, max_tokens=40, settings=settings)
        assert len(cut.text.split()) <= 30 and cut.text.strip()
        assert full.text.startswith(cut.text)
        assert cut.completion_tokens <= math.ceil(30 * 1.33) < full.completion_tokens
        assert cut.latency_s < full.latency_s
    assert sim_reply("sim/long", msgs, seed=1, max_tokens=1, settings=settings).text.strip()
    assert sim_reply("sim/long", msgs, seed=1, max_tokens=0, settings=settings).text.strip()


def test_token_estimates_and_latency():
    settings = SimSettings(models={"long": Propensities(length=200)})
    msgs = group_en()
    r = sim_reply("sim/long", msgs, seed=2, settings=settings)
    assert r.completion_tokens == math.ceil(len(r.text.split()) * 1.33)
    total_chars = sum(len(m["content"]) for m in msgs)
    assert r.prompt_tokens == math.ceil(total_chars / 4)
    assert sim_reply("sim/long", msgs + msgs[2:], seed=2, settings=settings).prompt_tokens > r.prompt_tokens
    for s in range(50):
        rr = sim_reply("sim/long", msgs, seed=s, settings=settings)
        expected = 0.4 + rr.completion_tokens / 60 + rr.prompt_tokens / 5000
        assert 0.4 * expected < rr.latency_s < 2.5 * expected


def test_temperature_zero_takes_modal_choices_and_high_temperature_flattens():
    settings = SimSettings(models={
        "m": Propensities(greet=0.9, meta=0.05, lead=0.6, arch=0.4, agree=0.1, notice_crash=0.0),
    })
    msgs = group_en()
    for s in range(50):
        text = sim_reply("sim/m", msgs, seed=s, temperature=0, settings=settings).text
        assert has_cue(text, "phatic", "en") and has_cue(text, "lead", "en")
        assert not has_cue(text, "meta", "en") and not has_cue(text, "arch", "en")

    def meta_count(temperature: float) -> int:
        return sum(has_cue(sim_reply("sim/m", msgs, seed=s, temperature=temperature, settings=settings).text,
                           "meta", "en") for s in range(400))

    cold, hot = meta_count(0.7), meta_count(2.0)
    assert hot > cold + 20  # meta moves from 0.05 toward 0.5 (0.1625 at T=2)


# ------------------------------------------------------------------------------------ robustness, speed

@pytest.mark.parametrize("msgs", [
    [],
    [{"role": "system", "content": ""}],
    [{"role": "user", "content": ""}],
    [{"role": "system", "content": "You are Agent-A in a group chat."}, {"role": "user", "content": None}],
    [{"role": "user", "content": [{"type": "text", "text": "Bonjour, on a un festival à organiser."}]}],
    [{"role": "user", "content": "[Agent-B]: ⚠"}],
])
def test_never_empty(msgs):
    settings = SimSettings(models={"tiny": Propensities(greet=0, meta=0, lead=0, arch=0, agree=0, length=5)})
    for model in ("sim/tiny", "sim/llama-3.3-70b"):
        for s in range(20):
            for mt in (None, 1, 3):
                r = sim_reply(model, msgs, seed=s, max_tokens=mt, settings=settings)
                assert r.text.strip() and r.completion_tokens >= 1 and r.latency_s > 0


# ------------------------------------------------------------------------------------ metadata and settings

def turn(name: str | None, peers: list[str] | None) -> dict:
    return {"discussion": {"name": name, "peers": peers}}


def test_discussion_metadata_says_who_is_here_and_the_system_prompt_wording_does_not_matter():
    settings = SimSettings(models={"lead": Propensities(lead=1.0, greet=1.0, address_peers=1.0, notice_crash=1.0)})
    convo = group_en()[1:]
    meta = turn("Agent-C", ["Agent-A", "Agent-B", "Agent-D", "Agent-G"])
    worded = [[system(), *convo],
              [{"role": "system", "content": "Tu es Agent-C ; les autres : Agent-A, Agent-B, Agent-D."}, *convo],
              convo]
    for s in range(40):  # the same text (only the prompt's token count, and so the latency, differ)
        replies = {sim_reply("sim/lead", msgs, seed=s, metadata=meta, settings=settings).text for msgs in worded}
        assert len(replies) == 1, replies
    # the metadata, not the prompt, decides: a hidden identity is never used, whatever the prompt says
    hidden = turn(None, ["Agent-A", "Agent-B", "Agent-D", "Agent-G"])
    texts = [sim_reply("sim/lead", [system(), *convo], seed=s, metadata=hidden, settings=settings).text
             for s in range(100)]
    assert not any("Agent-C" in t for t in texts)
    assert any("Agent-C" in sim_reply("sim/lead", convo, seed=s, metadata=meta, settings=settings).text
               for s in range(100))
    # listed peers that never spoke (D, G) are noticed as silent from the metadata alone (no system prompt)
    later = convo[:3] + [{"role": "assistant", "content": "My first thoughts."}, *convo[1:3]]
    silent = [sim_reply("sim/lead", later, seed=s, metadata=meta, settings=settings).text for s in range(40)]
    assert all(has_cue(t, "comp", "en") for t in silent) and any("Agent-D" in t for t in silent)


def test_two_settings_in_one_process_give_two_behaviours_without_global_state():
    chatty = SimSettings(models={"x": Propensities(greet=1.0, lead=0.0)})
    quiet = SimSettings(models={"sim/x": Propensities(greet=0.0, lead=1.0)})
    msgs = group_en(False)
    for s in range(60):  # interleaved: each call sees only its own settings
        a = sim_reply("sim/x", msgs, seed=s, settings=chatty).text
        b = sim_reply("sim/x", msgs, seed=s, settings=quiet).text
        c = sim_reply("sim/x", msgs, seed=s).text
        assert has_cue(a, "phatic", "en") and not has_cue(a, "lead", "en"), a
        assert has_cue(b, "lead", "en") and not has_cue(b, "phatic", "en"), b
        assert c == sim_reply("sim/x", msgs, seed=s, settings=SimSettings()).text  # default = derived from name
        assert a == sim_reply("sim/x", msgs, seed=s, settings=chatty).text


def test_settings_keys_are_sim_base_names():
    assert SimSettings(models={"sim/x": Propensities()}).models.keys() == {"x"}
    with pytest.raises(ValueError, match="given twice"):
        SimSettings(models={"sim/x": Propensities(), "x": Propensities()})
