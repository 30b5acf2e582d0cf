"""The provider families sociolab is tested against, each with the loopback server that speaks
its wire format and a model name litellm routes to it. Shared by the conformance tests and
bench/provider_faults.py, so both exercise the same families under the same names."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from . import anthropic_messages, gemini, openai_chat, openai_compat

PLANTED_KEY = "sk-planted-wire-key-7d1e0c9b44"  # the key every family's server accepts


@dataclass(frozen=True)
class Family:
    name: str
    model: str
    start: Callable[..., Any]
    options: tuple = ()
    priced: bool = False          # in litellm's bundled price list
    drops: tuple[str, ...] = ()   # parameters the discussion turn cannot send to this model
    reasoning: bool = False       # the server sends reasoning text

    def server(self, **kwargs: Any):
        """This family's loopback server, started, accepting PLANTED_KEY."""
        return self.start(api_key=PLANTED_KEY, **dict(self.options), **kwargs)


FAMILIES = [
    Family("openai", "openai/gpt-4o", openai_chat.start, priced=True),
    Family("openai-reasoning", "openai/o4-mini", openai_chat.start, priced=True, drops=("temperature",)),
    Family("anthropic", "anthropic/claude-sonnet-4-5", anthropic_messages.start, priced=True, drops=("seed",)),
    Family("gemini", "gemini/gemini-2.5-flash", gemini.start, priced=True),
    Family("groq", "groq/qwen/qwen3-32b", openai_compat.start, (("host", "groq"), ("reasoning", "think")),
           reasoning=True),
    Family("vllm", "hosted_vllm/qwen3-32b", openai_compat.start, (("reasoning", "reasoning_content"),),
           reasoning=True),
    Family("openrouter", "openrouter/deepseek/deepseek-r1", openai_compat.start,
           (("host", "openrouter"), ("reasoning", "reasoning")), reasoning=True),
    Family("together", "together_ai/meta-llama/Llama-3.3-70B-Instruct-Turbo", openai_compat.start, priced=True),
    Family("ollama", "openai/llama3.2", openai_compat.start, (("host", "ollama"),)),
]


def family(name: str) -> Family:
    return next(f for f in FAMILIES if f.name == name)
