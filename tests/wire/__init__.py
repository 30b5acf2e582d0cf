"""Loopback servers that speak real LLM providers' wire protocols, for tests.

Each module serves one provider family so that litellm's real translation code (requests, replies,
usage, errors) runs against it over HTTP on 127.0.0.1, offline:

    openai_chat         OpenAI Chat Completions        litellm: openai/<m>,  api_base=srv.url (…/v1)
    openai_compat       Groq, Together, OpenRouter,    litellm: groq/<m>, together_ai/<m>, openrouter/<m>,
                        vLLM, Ollama /v1               hosted_vllm/<m>, openai/<m>; api_base=srv.url (…/v1)
    anthropic_messages  Anthropic Messages             litellm: anthropic/<m>, api_base=srv.url (the root)
    gemini              Gemini generateContent         litellm: gemini/<m>,  api_base=srv.url (…/v1beta)

    from tests.wire import anthropic_messages, Fault
    with anthropic_messages.start(api_key="sk-ant-test") as srv:
        srv.push(Fault(529))                  # the next request gets an overloaded_error
        ...litellm.acompletion(model="anthropic/claude-x", api_base=srv.url, api_key="sk-ant-test")
        srv.requests[-1].body                 # what litellm sent

See `base` for recording, faults, responders and the neutral request view.
"""

from tests.wire.base import Fault, Recorded, Reply, RequestView, ToolCall, WireServer, default_responder, instance_of

__all__ = ["Fault", "Recorded", "Reply", "RequestView", "ToolCall", "WireServer", "default_responder",
           "instance_of"]
