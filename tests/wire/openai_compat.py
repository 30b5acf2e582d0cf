"""OpenAI-compatible hosts on the wire: Groq, Together, OpenRouter, vLLM, Ollama's `/v1`.

Why: these hosts take OpenAI's request format but differ in what they send back, above all in
where a reasoning model's thinking goes. litellm reaches them through its own provider prefixes
(`groq/`, `together_ai/`, `openrouter/`, `hosted_vllm/`, or plain `openai/` for Ollama's /v1),
each with its own response handling, so tests need a server that answers each way:

* `reasoning="think"`: inline, `<think>...</think>` at the start of `content` (DeepSeek-R1 and
  Qwen3 on vLLM / Together / Ollama without a reasoning parser, Groq `reasoning_format=raw`);
* `reasoning="reasoning_content"`: a `reasoning_content` field on the message (vLLM's reasoning
  parser, DeepSeek's API, Together);
* `reasoning="reasoning"`: a `reasoning` field (OpenRouter; Groq `reasoning_format=parsed`);
* `reasoning=None`: no reasoning text.

The reasoning text is the responder's `Reply.reasoning`, or a default sentence. Reasoning-model
parameter rules of OpenAI are not applied (these hosts accept `max_tokens` and any temperature).

`host="groq"` adds what Groq adds to every reply (`service_tier`, `x_groq`, timing fields in
`usage`); litellm's `groq/` handler reads `service_tier` and fails without it.
"""

from __future__ import annotations

from typing import Any, Literal

from tests.wire.base import Reply, RequestView, new_id
from tests.wire.openai_chat import OpenAIChatServer

ReasoningStyle = Literal["think", "reasoning_content", "reasoning"] | None
DEFAULT_REASONING = "The user wants a short answer; I will give one."


class OpenAICompatServer(OpenAIChatServer):
    family = "openai-compatible"
    enforce_reasoning_params = False

    def __init__(self, *, reasoning: ReasoningStyle = None, host: str = "openai-compatible", **kwargs: Any):
        super().__init__(**kwargs)
        if reasoning not in (None, "think", "reasoning_content", "reasoning"):
            raise ValueError(f"reasoning must be None, 'think', 'reasoning_content' or 'reasoning', got {reasoning!r}")
        self.reasoning = reasoning
        self.family = host

    def respond(self, view: RequestView) -> Reply:
        reply = super().respond(view)
        if self.reasoning and reply.reasoning is None:
            reply.reasoning = DEFAULT_REASONING
        return reply

    def render(self, body: dict[str, Any], view: RequestView, reply: Reply) -> dict[str, Any]:
        payload = super().render(body, view, reply)
        payload.pop("system_fingerprint", None)
        if self.family == "groq":
            payload["service_tier"] = "on_demand"
            payload["x_groq"] = {"id": new_id("req_")}
            payload["usage"].update(queue_time=0.01, prompt_time=0.002, completion_time=0.02, total_time=0.022)
        return payload

    def message_of(self, reply: Reply) -> dict[str, Any]:
        msg = super().message_of(reply)
        msg.pop("annotations", None)
        msg.pop("refusal", None)
        if not reply.reasoning or not self.reasoning:
            return msg
        if self.reasoning == "think":
            msg["content"] = f"<think>{reply.reasoning}</think>\n\n{reply.text or ''}"
        else:
            msg[self.reasoning] = reply.reasoning
        return msg


def start(**kwargs: Any) -> OpenAICompatServer:
    """Start an OpenAI-compatible server: `reasoning=` "think" | "reasoning_content" | "reasoning" |
    None, `host=` a name for the family (e.g. "groq", "vllm", "openrouter"; "groq" adds Groq's fields)."""
    return OpenAICompatServer(**kwargs).start()
