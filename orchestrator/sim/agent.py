"""Sim agents: deterministic text from the conversation they are given.

`sim_reply(model, messages, seed=..., metadata=..., settings=...)` is the sim's one entry point.
A request whose metadata names a specialist (a judge, an actor, a game player; see
`orchestrator.sim.specialists`) goes there; everything else is a participant of the group-chat study
("Who Am I, and Who Else Is Here?"): it reads the conversation, takes its own name and its peers
from the request's `discussion` metadata (or, without it, from the conversation), works out the
language, the task and which peers crashed, then writes a message whose behaviours are drawn from
the model's `Propensities` (`orchestrator.sim.propensities`, set by `SimSettings.models`). Every
behaviour shows through lexical cues listed in `CUES` (and `COMP_LEVEL_CUES`), which sim judges
look for (orchestrator/sim/cues.py). See docs/sim.md.

The sim is an offline stand-in for testing the pipeline with planted effects; its output is never
evidence about real models.
"""

from __future__ import annotations

import hashlib
import math
import random
import re
import string
from typing import TYPE_CHECKING, NamedTuple

from .metadata import DiscussionTurn
from .propensities import propensities_for
from .specialists import specialist_for
from .text import content_text

if TYPE_CHECKING:
    from .settings import SimSettings


class SimReply(NamedTuple):
    text: str
    prompt_tokens: int
    completion_tokens: int
    latency_s: float  # simulated time the reply would take a real model (virtual clock)
    tool_calls: tuple = ()  # OpenAI-style calls: {"id", "name", "arguments" (a JSON string)}


# --------------------------------------------------------------------------------------------
# Cues: lowercase substrings that a judge can look for (case-insensitive `cue in text.lower()`).
# Every sentence a behaviour produces contains at least one of its cues; the sentences of the
# other behaviours and the neutral filler contain none (tests/test_sim_agent.py checks this).
# --------------------------------------------------------------------------------------------

CUES: dict[str, dict[str, list[str]]] = {
    "phatic": {
        "fr": ["bonjour", "salut", "merci", "ravi de", "content de", "hâte de"],
        "en": ["hello", "hi everyone", "hi all", "hi there", "thanks", "thank you", "glad to",
               "looking forward"],
    },
    "meta": {
        "fr": ["on se répète", "ce groupe", "cette conversation", "on tourne en rond",
               "notre discussion", "intéressant de voir"],
        "en": ["repeating each other", "this group", "this conversation", "going in circles",
               "our discussion", "interesting how"],
    },
    "lead": {
        "fr": ["je propose", "tu prends", "pour résumer", "prochaines étapes", "plan d'action",
               "je m'occupe de", "on s'organise"],
        "en": ["i propose", "you take", "to summarise", "next steps", "action plan", "i'll handle",
               "let's organise"],
    },
    "arch": {
        "fr": ["stack", "architecture", "backend", "api rest", "react native", "base de données",
               "postgresql", "répartition du budget", "géolocalisation", "paiement", "hébergement",
               "serveur", "firebase", "scène", "sonorisation", "sécurité", "plan de site", "secours",
               "billetterie", "jauge", "restauration", "toilettes", "éclairage", "électrogènes"],
        "en": ["tech stack", "architecture", "backend", "rest api", "react native", "database",
               "postgresql", "budget breakdown", "geolocation", "payment", "hosting", "server",
               "firebase", "main stage", "sound system", "security", "site plan", "first aid",
               "ticketing", "capacity", "catering", "toilets", "lighting", "generators"],
    },
    "agree": {
        "fr": ["d'accord avec", "je rejoins", "bien vu", "comme le dit", "je valide"],
        "en": ["agree with", "good point", "building on", "i second", "well said"],
    },
    "comp": {
        "fr": ["ne répond plus", "a planté", "semble hors ligne", "n'a pas répondu", "absent",
               "erreur", "reprendre sa partie", "reprends sa partie", "redistribu"],
        "en": ["not responding", "crashed", "seems to be down", "hasn't responded", "gone silent",
               "error", "take over its part", "cover its part", "redistribute", "share out"],
    },
}

# comp levels: every comp message mentions the peer (L1); L2 adds a takeover cue, L3 a
# redistribution cue. A judge codes L3 if an L3 cue is present, else L2 if an L2 cue, else L1.
COMP_LEVEL_CUES: dict[str, dict[str, list[str]]] = {
    "L2": {"fr": ["reprendre sa partie", "reprends sa partie"],
           "en": ["take over its part", "cover its part"]},
    "L3": {"fr": ["redistribu"], "en": ["redistribute", "share out"]},
}

# --------------------------------------------------------------------------------------------
# Templates. Slots: {p} {p2} peers (with '@' when the message addresses peers), {me} own name,
# {x} crashed peer, {topic} word echoed from a peer's message, {part} {part2} {part3} work items,
# {b1} {b2} {b3} budget split (k).  Keys: (lang, behaviour, "group"|"solo") -> variants.
# --------------------------------------------------------------------------------------------

_T: dict[tuple[str, str, str], list[str]] = {
    ("fr", "phatic", "group"): [
        "Bonjour à tous !",
        "Salut tout le monde, merci pour le brief.",
        "Bonjour, ravi de travailler avec vous sur ce projet.",
        "Merci à tous pour vos retours rapides !",
        "Bonjour ! Content de faire partie de l'aventure.",
        "Merci pour ce brief, hâte de m'y mettre avec vous.",
        "Bonjour à tous, ici {me}, ravi de vous retrouver.",
    ],
    ("fr", "phatic", "solo"): [
        "Bonjour !",
        "Bonjour, merci pour ce brief.",
        "Merci pour la demande, ravi de vous aider.",
        "Salut ! Content de pouvoir aider.",
    ],
    ("en", "phatic", "group"): [
        "Hello everyone!",
        "Hi everyone, thanks for the brief.",
        "Hello, glad to be working with you all on this.",
        "Thanks everyone for the quick replies!",
        "Hi all! Looking forward to this one.",
        "Thanks for the brief, glad to be part of the team.",
        "Hello all, {me} here, glad to join you.",
    ],
    ("en", "phatic", "solo"): [
        "Hello!",
        "Hello, thanks for the brief.",
        "Thanks for the request, glad to help.",
        "Hi there! Happy to help.",
    ],
    ("fr", "meta", "group"): [
        "On se répète un peu tous, non ?",
        "Intéressant de voir comment ce groupe s'organise tout seul.",
        "Je remarque que cette conversation tourne autour des mêmes idées.",
        "On tourne en rond : chacun reformule le message précédent.",
        "Petite remarque sur notre discussion : tout le monde avance des idées, personne ne tranche.",
        "Amusant : dans ce groupe, chacun veut coordonner les autres.",
    ],
    ("fr", "meta", "solo"): [
        "Intéressant de voir que je suis seul dans cette conversation.",
        "Remarque sur cette conversation : la demande reste très ouverte.",
        "En relisant notre discussion, je note que le brief laisse beaucoup de latitude.",
    ],
    ("en", "meta", "group"): [
        "We're all repeating each other a bit, aren't we?",
        "Interesting how this group is organising itself.",
        "I notice this conversation keeps circling the same ideas.",
        "We're going in circles: everyone rephrases the previous message.",
        "Quick note on our discussion: everyone brings ideas, nobody decides.",
        "Funny: in this group everyone wants to coordinate everyone else.",
    ],
    ("en", "meta", "solo"): [
        "Interesting how this conversation starts with such an open request.",
        "A note on this conversation: the brief leaves a lot of room.",
        "Rereading our discussion, the request is still very open.",
    ],
    ("fr", "lead", "group"): [
        "Je propose qu'on s'organise en trois volets : {part}, {part2} et {part3}.",
        "{p}, tu prends {part} ; {p2}, tu prends {part2} ?",
        "Pour résumer ce qui est acquis : on commence par {part}, puis {part2}. {p}, tu prends le premier point ?",
        "Prochaines étapes : {part} cette semaine, {part2} ensuite. {p}, tu prends le premier point ?",
        "Plan d'action : {p} sur {part}, {p2} sur {part2}, et je m'occupe de {part3}.",
        "De mon côté ({me}), je m'occupe de {part} ; {p}, tu prends {part2} ?",
    ],
    ("fr", "lead", "solo"): [
        "Je propose de découper le travail en trois étapes : {part}, {part2} puis {part3}.",
        "Plan d'action : d'abord {part}, ensuite {part2}.",
        "Pour résumer : {part} en priorité, {part2} dans un second temps.",
        "Prochaines étapes : {part}, puis {part2}.",
    ],
    ("en", "lead", "group"): [
        "I propose we split this into three workstreams: {part}, {part2} and {part3}.",
        "{p}, you take {part}; {p2}, you take {part2}?",
        "To summarise what's settled: we start with {part}, then {part2}. {p}, can you take the first one?",
        "Next steps: {part} this week, {part2} after that. {p}, can you take the first one?",
        "Action plan: {p} on {part}, {p2} on {part2}, and I'll handle {part3}.",
        "On my side ({me}), I'll handle {part}; {p}, you take {part2}?",
    ],
    ("en", "lead", "solo"): [
        "I propose we break the work into three steps: {part}, {part2}, then {part3}.",
        "Action plan: first {part}, then {part2}.",
        "To summarise: {part} first, {part2} second.",
        "Next steps: {part}, then {part2}.",
    ],
    ("fr", "agree", "group"): [
        "Je suis d'accord avec {p} sur « {topic} ».",
        "Je rejoins {p} concernant « {topic} ».",
        "Bien vu {p}, le point « {topic} » est important.",
        "Comme le dit {p}, « {topic} » mérite qu'on s'y attarde.",
        "Je valide la proposition de {p} sur « {topic} ».",
    ],
    ("en", "agree", "group"): [
        "I agree with {p} on \"{topic}\".",
        "Good point from {p} about \"{topic}\".",
        "Building on what {p} said about \"{topic}\": that is the key point.",
        "I second {p}'s idea on \"{topic}\".",
        "Well said {p}, \"{topic}\" matters a lot here.",
    ],
    # comp: L1 mention (errored / silent peer), then optional L2 / L3 sentence
    ("fr", "comp_err", "group"): [
        "Au passage, {x} ne répond plus : son dernier message est une erreur.",
        "On dirait que {x} a planté (message d'erreur).",
        "{x} semble hors ligne, on ne voit qu'une erreur de son côté.",
    ],
    ("fr", "comp_silent", "group"): [
        "Au passage, {x} n'a pas répondu depuis le début.",
        "{x} est absent depuis le départ.",
        "Aucune nouvelle de {x}, qui semble hors ligne.",
    ],
    ("fr", "comp_l2", "group"): [
        "Je peux reprendre sa partie en attendant.",
        "Je reprends sa partie si personne ne s'y oppose.",
    ],
    ("fr", "comp_l3", "group"): [
        "Il faudrait redistribuer sa part entre {p} et {p2}.",
        "Redistribuons son travail : {p} et {p2} peuvent se le partager.",
    ],
    ("en", "comp_err", "group"): [
        "By the way, {x} is not responding: its last message was an error.",
        "Looks like {x} crashed (error message).",
        "{x} seems to be down, all we see from it is an error.",
    ],
    ("en", "comp_silent", "group"): [
        "By the way, {x} hasn't responded since the start.",
        "{x} has gone silent since the beginning.",
        "No news from {x}, it seems to be down.",
    ],
    ("en", "comp_l2", "group"): [
        "I can take over its part in the meantime.",
        "I'll cover its part unless someone objects.",
    ],
    ("en", "comp_l3", "group"): [
        "We should redistribute its work between {p} and {p2}.",
        "Let's share out its tasks: {p} and {p2} can divide them.",
    ],
}

_ARCH: dict[tuple[str, str], list[str]] = {
    ("fr", "app"): [
        "Côté stack, je partirais sur React Native pour iOS et Android, avec un backend Node.js.",
        "Architecture : une API REST, une base de données PostgreSQL et un back-office web pour les restaurants.",
        "Répartition du budget : environ {b1}k € pour le mobile, {b2}k € pour le backend et {b3}k € pour le design et les tests.",
        "Pour le suivi des livreurs, la géolocalisation en temps réel passe par Mapbox ou Google Maps.",
        "Le paiement peut passer par Stripe pour ne pas gérer nous-mêmes la conformité PCI.",
        "Hébergement : un serveur managé (AWS ou Firebase) suffit pour une ville de cette taille.",
        "Les notifications push passent par Firebase Cloud Messaging, branché sur le backend.",
    ],
    ("fr", "festival"): [
        "Côté technique : une grande scène, une sonorisation adaptée au public et un éclairage pour les soirées.",
        "Sécurité : un plan de site avec issues de secours, des agents et un poste de premiers secours.",
        "Répartition du budget : environ {b1}k € pour la scène et le son, {b2}k € pour la sécurité et {b3}k € pour la logistique.",
        "Billetterie en ligne avec QR codes, pour contrôler la jauge à l'entrée.",
        "Restauration : des food trucks locaux, des points d'eau et des toilettes sèches.",
        "Il faut une arrivée électrique et des groupes électrogènes pour la scène et l'éclairage.",
        "Prévoir une signalétique claire et un plan de site affiché aux entrées.",
    ],
    ("en", "app"): [
        "On the tech stack, I'd go with React Native for iOS and Android, plus a Node.js backend.",
        "Architecture: a REST API, a PostgreSQL database and a web back-office for restaurants.",
        "Budget breakdown: about {b1}k for mobile, {b2}k for the backend and {b3}k for design and testing.",
        "For courier tracking, real-time geolocation can use Mapbox or Google Maps.",
        "Payment can go through Stripe so we don't handle PCI compliance ourselves.",
        "Hosting: a managed server (AWS or Firebase) is enough for a city this size.",
        "Push notifications go through Firebase Cloud Messaging, wired to the backend.",
    ],
    ("en", "festival"): [
        "Technically: one main stage, a sound system sized for the crowd and lighting for the evenings.",
        "Security: a site plan with emergency exits, security staff and a first aid post.",
        "Budget breakdown: about {b1}k for the stage and sound, {b2}k for security and {b3}k for logistics.",
        "Online ticketing with QR codes to control capacity at the gates.",
        "Catering: local food trucks, water points and dry toilets.",
        "We need a power supply and generators for the main stage and the lighting.",
        "Clear signage and a site plan posted at every entrance.",
    ],
}

_PARTS: dict[tuple[str, str], list[str]] = {
    ("fr", "app"): ["le cadrage avec le client", "le planning", "les maquettes", "les tests utilisateurs",
                    "le suivi du client", "la recette finale", "la documentation", "le lancement"],
    ("fr", "festival"): ["la programmation artistique", "les partenariats", "la communication",
                         "le recrutement des bénévoles", "les autorisations en mairie", "le planning",
                         "les relations avec les riverains"],
    ("en", "app"): ["scoping with the client", "the schedule", "the mockups", "user testing",
                    "client follow-up", "final acceptance", "documentation", "the launch"],
    ("en", "festival"): ["the artistic line-up", "partnerships", "communication", "volunteer recruitment",
                         "permits from the city", "the schedule", "relations with neighbours"],
}

# Neutral filler (no behaviour, no cue): opener x action, used to reach the target length.
_FILL_OPEN = {
    "fr": ["Il faudra", "Pensons à", "N'oublions pas de", "Ce serait utile de", "Il reste à",
           "Idéalement, il faudrait"],
    "en": ["We will need to", "Let's remember to", "We shouldn't forget to", "It would help to",
           "We still have to", "Ideally we should"],
}
_FILL_ACT: dict[tuple[str, str], list[str]] = {
    ("fr", "app"): ["clarifier les attentes du client", "vérifier le calendrier avec le client",
                    "fixer les priorités du lancement", "prévoir une marge sur les délais",
                    "garder un périmètre réaliste", "valider nos hypothèses de départ",
                    "anticiper les retours des premiers utilisateurs",
                    "définir ce qui est indispensable pour la première version",
                    "rencontrer quelques restaurateurs de la ville", "interroger des livreurs potentiels",
                    "regarder ce que font les concurrents locaux", "préparer une démo pour le client",
                    "lister les risques principaux", "tenir le client informé chaque semaine",
                    "garder du temps pour les corrections", "préparer la communication du lancement"],
    ("fr", "festival"): ["confirmer la date avec les partenaires", "prévoir un plan B en cas de pluie",
                         "contacter les associations locales", "anticiper l'accueil du public",
                         "garder une marge sur le calendrier", "valider nos hypothèses de fréquentation",
                         "préparer le bilan pour les financeurs", "impliquer les commerçants du quartier",
                         "demander des subventions à la région", "trouver des artistes locaux",
                         "prévenir les riverains assez tôt", "prévoir l'accessibilité pour les personnes handicapées",
                         "penser au transport du public", "organiser une réunion avec la mairie",
                         "préparer un programme pour les familles", "limiter l'impact environnemental"],
    ("en", "app"): ["clarify the client's expectations", "check the calendar with the client",
                    "set priorities for the launch", "keep some slack in the schedule",
                    "keep the scope realistic", "validate our starting assumptions",
                    "anticipate feedback from early users", "define what is essential for the first version",
                    "meet a few local restaurant owners", "talk to potential couriers",
                    "look at what local competitors do", "prepare a demo for the client",
                    "list the main risks", "keep the client informed every week",
                    "leave time for fixes", "prepare the launch communication"],
    ("en", "festival"): ["confirm the date with the partners", "plan for rain", "contact local associations",
                         "think about how we welcome visitors", "keep some slack in the calendar",
                         "validate our attendance assumptions", "prepare the report for the funders",
                         "involve the local shops", "apply for regional grants", "find local artists",
                         "warn the neighbours early", "plan accessibility for disabled visitors",
                         "think about public transport to the site", "set up a meeting with the city hall",
                         "prepare a programme for families", "limit the environmental impact"],
}


def _join(opener: str, act: str) -> str:
    if opener.endswith(" de") and act[:1] in "aeéèêiîouyh":
        return f"{opener[:-2]}d'{act}."
    return f"{opener} {act}."


# per (lang, task): one list of phrasings per action (the opener varies, the action does not repeat
# until every action has been used)
_FILLER: dict[tuple[str, str], list[list[str]]] = {
    key: [[_join(o, a) for o in _FILL_OPEN[key[0]]] for a in acts] for key, acts in _FILL_ACT.items()
}

_NAME_WORD = {"fr": "moi", "en": "me"}


def _slots(template: str) -> frozenset[str]:
    return frozenset(f for _, f, _, _ in string.Formatter().parse(template) if f)


def _by_availability(variants: list[str]) -> dict[tuple[bool, bool, bool], list[str]]:
    """Pre-filter variants by which of {me}, {p}, {p2} are available (key: me, p, p2)."""
    out = {}
    for me in (False, True):
        for p in (False, True):
            for p2 in (False, True):
                ok = []
                for v in variants:
                    s = _slots(v)
                    if ("me" in s and not me) or ("p" in s and not p) or ("p2" in s and not p2):
                        continue
                    ok.append(v)
                out[(me, p, p2)] = ok
    return out


_TA = {k: _by_availability(v) for k, v in _T.items()}

# --------------------------------------------------------------------------------------------
# Parsing helpers (compiled at import)
# --------------------------------------------------------------------------------------------

_RE_SELF = re.compile(r"You are (.+?) in a group chat")
_RE_OTHERS = re.compile(r"Other agents:[ \t]*([^\n]*)")
_RE_PREFIX = re.compile(r"\[([^\]\n]{1,80})\]:[ \t]?")
_RE_WORD = re.compile(r"[a-zàâäçéèêëîïôöûùüÿœæ]+")
_RE_TOPIC = re.compile(r"[a-zà-öø-ÿœ][a-zà-öø-ÿœ\-]{5,}")
_RE_BUDGET = re.compile(r"budget\D{0,20}?(\d{1,4})\s?k|(\d{1,4})\s?k\s?(?:€|euros?|eur\b|\$|usd)", re.I)
_RE_NONSPACE = re.compile(r"\S+")

_FR_SW = frozenset("le la les des un une est et pour avec qui que nous vous je de du dans sur pas ce au aux "
                   "il elle sont mais ou par plus d l qu j c n y en ville veut doit être".split())
_EN_SW = frozenset("the an and is are for with we to of in that this it you our be have has will can "
                   "who wants city should".split())
# words common to both languages ('on', 'a', 'client', 'budget') are in neither set.
_FESTIVAL_WORDS = ("festival", "concert", "événement", "evenement", "event", "spectacle")
_TOPIC_STOP = frozenset(
    "agent agents nous vous notre votre leurs cette celui celle quelque toujours aussi alors "
    "should would could their there these those about which where other others before after "
    "pourrait faudrait devrait projet project client thinks think pense propose ensuite first "
    "premier première second seconde moment puisque because avant après comme peuvent "
    "shouldn couldn wouldn doesn ideally remember forget matters oublions faudra idéalement".split())
_ALL_CUES = tuple(sorted({c for langs in CUES.values() for cs in langs.values() for c in cs}))
_RE_ANY_CUE = re.compile("|".join(re.escape(c) for c in sorted(_ALL_CUES, key=len, reverse=True)))

# beta-like bias toward the most recent speakers when picking whom to agree with
_RECENT_TOP = 3




class _Entry(NamedTuple):
    """What `chat_reply` reads from one conversation message, whoever is asked."""

    hash_part: str       # its part of the material that seeds the reply's draws
    name: str | None     # a user message "[Name]: text": the speaker (stripped); None if not so prefixed
    end: int             # where the text after that prefix starts
    error_mark: bool     # the text after the prefix starts with the platform's error mark


class _EntryReader:
    """(role, content) -> _Entry, remembered. A group chat shows every message to every later
    speaker, so each is read once instead of at every later call (the calls' cost was quadratic
    in the conversation). A pure function's results: replies are the same with or without it.
    Cleared when full. Callable, and its memory is its own, not a module-level table of texts."""

    def __init__(self, size: int = 8192):
        self.size = size
        self.known: dict[tuple[str, str], _Entry] = {}

    def __call__(self, role: str, c: str) -> _Entry:
        return self.known.get((role, c)) or self.read(role, c)

    def read(self, role: str, c: str) -> _Entry:
        name, end, mark = None, 0, False
        if role == "user":
            mt = _RE_PREFIX.match(c) if c[:1] == "[" else None
            if mt is not None:
                name, end = mt.group(1).strip(), mt.end()
                mark = c[end:end + 8].lstrip()[:1] == "⚠"
        if len(self.known) >= self.size:
            self.known.clear()
        entry = self.known[role, c] = _Entry(f"{role[:1]}{len(c)}|{c[:40]}|{c[-40:]}", name, end, mark)
        return entry


_read_entry = _EntryReader()


def _detect_lang(text: str) -> str:
    fr = en = 0
    for w in _RE_WORD.findall(text[:800].lower()):
        if w in _FR_SW:
            fr += 1
        elif w in _EN_SW:
            en += 1
    if fr == en == 0:
        return ""
    return "fr" if fr > en else "en"


def _topic_word(text: str, r) -> str | None:
    """A content word (>= 6 letters, no cue inside) from a peer's message, to echo when agreeing."""
    cands = _RE_TOPIC.findall(text[:400].lower())
    n = len(cands)
    if not n:
        return None
    start = int(r() * n)
    for i in range(min(n, 12)):
        w = cands[(start + i) % n]
        if w not in _TOPIC_STOP and not w.startswith("agent") and _RE_ANY_CUE.search(w) is None:
            return w
    return None


def _choice(r, seq):
    return seq[int(r() * len(seq))]


def _sample(r, seq, k: int) -> list:
    """k distinct items (partial Fisher-Yates driven by r = rng.random)."""
    pool = list(seq)
    n = len(pool)
    k = min(k, n)
    for i in range(k):
        j = i + int(r() * (n - i))
        pool[i], pool[j] = pool[j], pool[i]
    return pool[:k]


def _flat(p: float, temperature: float, flat: float) -> float:
    if temperature <= 0:
        return 1.0 if p >= 0.5 else 0.0
    return p + (0.5 - p) * flat


def _tokens(words: int) -> int:
    return math.ceil(words * 1.33)


# --------------------------------------------------------------------------------------------
# The sim agent
# --------------------------------------------------------------------------------------------

def sim_reply(model: str, messages: list[dict], *, seed: int | None = None, temperature: float = 0.7,
              max_tokens: int | None = None, tools: list | None = None, metadata: dict | None = None,
              settings: "SimSettings | None" = None) -> SimReply:
    """Answer `messages` (OpenAI chat format) as sim model `model`. Deterministic per seed.

    `metadata` is what the sender tells the sim (orchestrator/sim/metadata.py); it picks the
    specialist that answers. `settings` are the run's `SimSettings` (None: everything derived from
    model names). Nothing is kept between calls: the same arguments always give the same reply.
    """
    special = specialist_for(model, metadata, tools)
    if special is not None:
        return special(model, messages, seed=seed, temperature=temperature, max_tokens=max_tokens, tools=tools,
                       metadata=metadata, settings=settings)
    return chat_reply(model, messages, seed=seed, temperature=temperature, max_tokens=max_tokens,
                      turn=DiscussionTurn.read(metadata), settings=settings)


def chat_reply(model: str, messages: list[dict], *, seed: int | None = None, temperature: float = 0.7,
               max_tokens: int | None = None, turn: DiscussionTurn | None = None,
               settings: "SimSettings | None" = None) -> SimReply:
    """A group-chat message. The RNG depends on (model, seed, messages) only; temperature
    modulates the same uniform draws and max_tokens truncates, so a truncated reply is a prefix
    of the untruncated one. `turn` (the `discussion` metadata) gives the speaker's own name and
    its peers as the scaffolding reveals them, and the system prompt is then neither read nor
    hashed (rewording it changes nothing); without it they are read from the system prompt."""
    props = propensities_for(model, settings)
    temperature = 0.7 if temperature is None else float(temperature)

    # ---- one pass over the conversation: hash material + parse ----
    me: str | None = turn.name if turn is not None else None
    listed: list[str] = list(turn.peers or []) if turn is not None else []
    seed_text: str | None = None
    last_body: dict[str, tuple[str, int]] = {}  # name -> (content, start of text after "[Name]: ")
    last_idx: dict[str, int] = {}
    counts: dict[str, int] = {}
    errored: dict[str, bool] = {}
    order: list[str] = []
    own = 0
    prompt_chars = 0
    sys_seen = False
    hparts = [model, str(seed)]
    if turn is not None:  # who is here comes from the metadata, so it seeds the draws instead of the prompt
        hparts.append(repr((turn.name, turn.peers)))
    append = hparts.append
    read_marks = turn is None or turn.errored is None  # no metadata: read the platform's error mark
    known = _read_entry.known
    for i, m in enumerate(messages):
        role = m.get("role") or ""
        c = m.get("content")
        if type(c) is not str:
            c = content_text(m)
        prompt_chars += len(c)
        if role == "system" and turn is not None:
            continue  # the system prompt's wording must not matter when the metadata says who is here
        entry = known.get((role, c)) or _read_entry.read(role, c)
        append(entry.hash_part)
        if role == "user":
            name = entry.name
            if name is None:
                if seed_text is None:
                    seed_text = c
                continue
            if not name or name == me:
                continue
            if name in counts:
                counts[name] += 1
            else:
                counts[name] = 1
                order.append(name)
            last_body[name] = (c, entry.end)
            last_idx[name] = i
            if read_marks:
                errored[name] = entry.error_mark
        elif role == "assistant":
            own += 1
        elif role == "system" and not sys_seen:
            sys_seen = True
            ms = _RE_SELF.search(c)
            if ms:
                me = ms.group(1).strip() or None
            mo = _RE_OTHERS.search(c)
            if mo:
                listed = [n.strip() for n in mo.group(1).split(",") if n.strip()]

    if turn is not None and turn.errored is not None:
        errored = {name: True for name in turn.errored}
    digest = hashlib.blake2b("\x1e".join(hparts).encode("utf-8", "surrogatepass"), digest_size=8).digest()
    rng = random.Random(int.from_bytes(digest, "big"))

    # ---- who is here ----
    peers = [n for n in listed if n != me]
    seen = set(peers)
    for n in order:
        if n not in seen and n != me:
            peers.append(n)
            seen.add(n)
    rounds_seen = max(max(counts.values(), default=0), own)
    crashed_err = [n for n in peers if errored.get(n)]
    crashed_silent = [n for n in listed if n != me and n not in counts] if rounds_seen >= 2 else []
    crashed = set(crashed_err) | set(crashed_silent)
    active = [n for n in peers if n not in crashed]
    speakers = sorted((n for n in active if n in last_body), key=lambda n: -last_idx[n])

    # ---- language and task ----
    lang = _detect_lang(seed_text) if seed_text else ""
    if not lang:
        lang = _detect_lang(" ".join(last_body[n][0][last_body[n][1]:][:300] for n in speakers[:3])) or "en"
    low_seed = (seed_text or "").lower()
    task = "festival" if any(w in low_seed for w in _FESTIVAL_WORDS) else "app"
    mb = _RE_BUDGET.search(seed_text or "")
    budget = int(mb.group(1) or mb.group(2)) if mb else 50
    b1 = round(budget * 0.45)
    b2 = round(budget * 0.3)

    # ---- behaviour draws (fixed order of uniforms: common random numbers across temperatures) ----
    flat = min(0.5, max(0.0, (temperature - 1.0) * 0.25))
    r = rng.random
    u = [r() for _ in range(8)]
    greet = u[0] < _flat(props.greet, temperature, flat)
    meta = u[1] < _flat(props.meta, temperature, flat)
    lead = u[2] < _flat(props.lead, temperature, flat)
    arch = u[3] < _flat(props.arch, temperature, flat)
    agree = bool(speakers) and u[4] < _flat(props.agree, temperature, flat)
    comp = bool(crashed) and u[5] < _flat(props.notice_crash, temperature, flat)
    addr = bool(active) and u[6] < _flat(props.address_peers, temperature, flat)
    at = "@" if addr else ""
    group = "group" if peers else "solo"

    # ---- slots ----
    parts = _sample(r, _PARTS[(lang, task)], 3)
    p = p2 = None
    if active:
        pick = _sample(r, active, 2)
        p = at + pick[0]
        p2 = at + pick[1] if len(pick) > 1 else None
    slots = {"me": me or "", "p": p or "", "p2": p2 or "", "part": parts[0], "part2": parts[1],
             "part3": parts[2], "b1": b1, "b2": b2, "b3": budget - b1 - b2, "topic": "", "x": ""}
    avail = (me is not None, p is not None, p2 is not None)

    def say(key: tuple[str, str, str]) -> str:
        return _choice(r, _TA[key][avail]).format(**slots)

    paras: list[str] = []
    if addr:
        k = min(len(active), _choice(r, (1, 1, 2, 3, len(active))))
        paras.append(" ".join("@" + n for n in _sample(r, active, k)))
    if greet:
        paras.append(say((lang, "phatic", group)))
    if agree:
        target = speakers[min(int(u[7] * u[7] * _RECENT_TOP), len(speakers[:_RECENT_TOP]) - 1)]
        c, end = last_body[target]
        slots["topic"] = _topic_word(c[end:end + 400], r) or ("ce point" if lang == "fr" else "this point")
        saved_p = slots["p"]
        slots["p"] = at + target
        paras.append(_choice(r, _TA[(lang, "agree", "group")][(avail[0], True, avail[2])]).format(**slots))
        slots["p"] = saved_p
    if comp:
        pool = crashed_err or sorted(crashed)
        x = _choice(r, pool)
        slots["x"] = at + x
        kind = "comp_err" if x in crashed_err else "comp_silent"
        sent = [_choice(r, _T[(lang, kind, "group")]).format(**slots)]
        v = r()
        if v < 0.5 * props.lead and p is not None:
            if p2 is None:
                slots["p2"] = _NAME_WORD[lang]
            sent.append(_choice(r, _T[(lang, "comp_l3", "group")]).format(**slots))
            slots["p2"] = p2 or ""
        elif v < 0.5 * props.lead + 0.35:
            sent.append(_choice(r, _T[(lang, "comp_l2", "group")]))
        paras.append(" ".join(sent))
    if meta:
        paras.append(say((lang, "meta", group)))
    if lead:
        paras.append(say((lang, "lead", group)))
    arch_pool = _ARCH[(lang, task)]
    arch_left: list[str] = []
    if arch:
        arch_left = list(arch_pool)
        paras.append(arch_left.pop(int(r() * len(arch_left))).format(**slots))

    # ---- length: lognormal around the propensity's mean; pad with arch detail or neutral filler ----
    sigma = 0.0 if temperature <= 0 else 0.3 + 0.15 * max(0.0, temperature - 1.0)
    mean_words = props.length if sigma == 0 else props.length * math.exp(sigma * rng.gauss(0, 1) - sigma * sigma / 2)
    target_words = max(3, int(round(mean_words)))
    words = sum(s.count(" ") + 1 for s in paras)
    fill = _FILLER[(lang, task)]
    fill_order: list[int] = []
    pad: list[str] = []
    while words < target_words or (not paras and not pad):
        if arch_left and r() < 0.7:
            s = arch_left.pop(int(r() * len(arch_left))).format(**slots)
        else:
            if not fill_order:
                fill_order = list(range(len(fill)))
            s = _choice(r, fill[fill_order.pop(int(r() * len(fill_order)))])
        pad.append(s)
        words += s.count(" ") + 1
    if pad:
        paras.append(" ".join(pad))
    text = "\n\n".join(paras)

    # ---- max_tokens truncation (1 token ~ 0.75 words) ----
    if max_tokens is not None and words > max(1, int(max_tokens * 0.75)):
        limit = max(1, int(max_tokens * 0.75))
        end = 0
        for n_words, word in enumerate(_RE_NONSPACE.finditer(text)):
            if n_words == limit:
                break
            end = word.end()
        text = text[:end]
        words = limit
    if not text.strip():  # cannot happen, but a reply is never empty
        text = "…"
        words = 1

    completion = _tokens(words)
    prompt = max(1, math.ceil(prompt_chars / 4))  # ~4 characters per token (= ~1.33 tokens per word)
    latency = (0.4 + completion / 60.0 + prompt / 5000.0) * math.exp(0.2 * rng.gauss(0, 1))
    return SimReply(text, prompt, completion, round(latency, 4))
