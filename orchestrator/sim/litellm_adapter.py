"""The sim as a litellm custom provider, so `litellm.acompletion(model="sim/x", ...)` works.

Imported only by `orchestrator.litellm_boot` (which imports litellm first). One handler serves the
whole process, so it holds no settings: the request metadata and the run's `SimSettings` come with
each call, in litellm's `metadata` (see orchestrator/sim/envelope.py); a bare call without them is
answered with default settings. The simulated latency a real model would have taken travels in
`response._hidden_params["sim_latency_s"]`.
"""

from __future__ import annotations

import time

from litellm import CustomLLM, ModelResponse
from litellm.types.utils import ChatCompletionMessageToolCall, Choices, Function, Message, Usage

from .agent import sim_reply
from .envelope import from_litellm
from .naming import SIM_PREFIX, is_sim


class SimLitellmHandler(CustomLLM):
    def completion(self, model: str, messages: list, *args, optional_params: dict | None = None,
                   litellm_params: dict | None = None, model_response: ModelResponse | None = None,
                   **kwargs) -> ModelResponse:
        return self._respond(model, messages, optional_params or {}, litellm_params, model_response)

    async def acompletion(self, model: str, messages: list, *args, optional_params: dict | None = None,
                          litellm_params: dict | None = None, model_response: ModelResponse | None = None,
                          **kwargs) -> ModelResponse:
        return self._respond(model, messages, optional_params or {}, litellm_params, model_response)

    @staticmethod
    def _respond(model: str, messages: list, params: dict, litellm_params: dict | None,
                 response: ModelResponse | None) -> ModelResponse:
        name = model if is_sim(model) else SIM_PREFIX + model
        metadata, settings = from_litellm(litellm_params)
        temperature = params.get("temperature")
        reply = sim_reply(name, messages, seed=params.get("seed"),
                          temperature=0.7 if temperature is None else temperature,
                          max_tokens=params.get("max_tokens"), tools=params.get("tools"),
                          metadata=metadata, settings=settings)
        calls = [ChatCompletionMessageToolCall(id=c["id"], type="function",
                                               function=Function(name=c["name"], arguments=c["arguments"]))
                 for c in reply.tool_calls] or None
        response = response or ModelResponse()
        response.choices = [Choices(index=0, finish_reason="tool_calls" if calls else "stop",
                                    message=Message(role="assistant", content=reply.text, tool_calls=calls))]
        response.model = name
        response.created = int(time.time())
        response.usage = Usage(prompt_tokens=reply.prompt_tokens, completion_tokens=reply.completion_tokens,
                               total_tokens=reply.prompt_tokens + reply.completion_tokens)
        response._hidden_params["sim_latency_s"] = reply.latency_s
        return response
