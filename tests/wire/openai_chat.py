"""OpenAI Chat Completions on the wire: `POST /v1/chat/completions` (and `/chat/completions`).

Why: `openai/<model>` calls go through litellm's OpenAI translation and the `openai` SDK's HTTP
client; this server lets tests see exactly what reaches OpenAI (messages with tool calls, `tools`,
`response_format` json_schema, reasoning-model parameters) and feed back real-shaped replies,
usage and errors (`{"error": {"message", "type", "param", "code"}}`).

Reasoning models (names starting o1 / o3 / o4 / gpt-5) are checked as the real API checks them:
`max_tokens` is refused (400, code `unsupported_parameter`, param `max_tokens`; use
`max_completion_tokens`) and a `temperature` other than 1 is refused (400, code
`unsupported_value`, param `temperature`), except on gpt-5.1 and later with
`reasoning_effort="none"`, which accept a temperature as the real API does.

    with start(api_key="sk-test") as srv:
        await litellm.acompletion(model="openai/gpt-4o-mini", api_base=srv.url, api_key="sk-test", ...)
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

from tests.wire.base import (Recorded, Reply, RequestView, ToolCall, WireError, WireServer, count_tokens, new_id,
                   prompt_tokens, text_of)

REASONING_PREFIXES = ("o1", "o3", "o4", "gpt-5")

_ERROR_TYPES = {400: ("invalid_request_error", None), 401: ("invalid_request_error", "invalid_api_key"),
                403: ("invalid_request_error", "unsupported_country_region_territory"),
                404: ("invalid_request_error", "model_not_found"), 429: ("requests", "rate_limit_exceeded"),
                500: ("server_error", None), 502: ("server_error", None), 503: ("server_error", None)}
_FAULT_MESSAGES = {429: "Rate limit reached for requests. Please try again in 1s.",
                   500: "The server had an error while processing your request. Sorry about that!",
                   502: "Bad gateway.", 503: "The engine is currently overloaded, please try again later."}


def is_reasoning_model(model: str) -> bool:
    return model.split("/")[-1].startswith(REASONING_PREFIXES)


class OpenAIChatServer(WireServer):
    family = "openai"
    base_path = "/v1"
    #: whether o-series / gpt-5 parameter rules apply (off for OpenAI-compatible hosts)
    enforce_reasoning_params = True

    def route(self, method: str, path: str) -> tuple[str, dict[str, str]] | None:
        if method == "POST" and path in ("/v1/chat/completions", "/chat/completions"):
            return "chat", {}
        return None

    def check_auth(self, rec: Recorded) -> None:
        auth = rec.headers.get("authorization", "")
        given = auth[len("Bearer "):] if auth.startswith("Bearer ") else None
        if not self.key_ok(given):
            shown = f"{given[:3]}***{given[-2:]}" if given else ""
            raise WireError(401, f"Incorrect API key provided: {shown}. You can find your API key at "
                                 "https://platform.openai.com/account/api-keys." if given else
                            "You didn't provide an API key. You need to provide your API key in an "
                            "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
                            code="invalid_api_key")

    def model_not_found(self, model: str) -> WireError:
        return WireError(404, f"The model `{model}` does not exist or you do not have access to it.",
                         code="model_not_found")

    def error_body(self, status, message, error_type, code, param) -> dict[str, Any]:
        default_type, default_code = _ERROR_TYPES.get(status, ("invalid_request_error" if status < 500
                                                               else "server_error", None))
        return {"error": {"message": message, "type": error_type or default_type, "param": param,
                          "code": code if code is not None else default_code}}

    def default_error(self, status: int) -> tuple[str, str | None]:
        return _FAULT_MESSAGES.get(status) or super().default_error(status)[0], None

    # -- request

    def validate(self, body: dict[str, Any]) -> None:
        if not isinstance(body, dict) or not body.get("model"):
            raise WireError(400, "you must provide a model parameter", param="model")
        if not isinstance(body.get("messages"), list) or not body["messages"]:
            raise WireError(400, "[] is too short - 'messages'", param="messages", code="invalid_value")
        if body.get("stream"):
            raise WireError(400, "stream=true is not supported by this wire test server", param="stream")
        if self.enforce_reasoning_params and is_reasoning_model(body["model"]):
            if "max_tokens" in body:
                raise WireError(400, "Unsupported parameter: 'max_tokens' is not supported with this model. "
                                     "Use 'max_completion_tokens' instead.",
                                param="max_tokens", code="unsupported_parameter")
            no_reasoning = re.match(r"gpt-5\.\d", body["model"]) and body.get("reasoning_effort") == "none"
            if body.get("temperature") not in (None, 1, 1.0) and not no_reasoning:
                raise WireError(400, f"Unsupported value: 'temperature' does not support {body['temperature']} "
                                     "with this model. Only the default (1) value is supported.",
                                param="temperature", code="unsupported_value")
        self.check_tool_ids(body["messages"])

    @staticmethod
    def check_tool_ids(messages: list[dict[str, Any]]) -> None:
        """As the real API: a `tool` message must answer a tool call of an earlier assistant message."""
        open_ids: set[str] = set()
        for i, msg in enumerate(messages):
            for call in msg.get("tool_calls") or []:
                open_ids.add(call.get("id"))
            if msg.get("role") == "tool" and msg.get("tool_call_id") not in open_ids:
                raise WireError(400, "Invalid parameter: messages with role 'tool' must be a response to a "
                                     "preceeding message with 'tool_calls'.", param=f"messages.[{i}].role")

    def view(self, body: dict[str, Any]) -> RequestView:
        system, messages = [], []
        for msg in body["messages"]:
            role = msg.get("role")
            if role in ("system", "developer"):
                system.append(text_of(msg.get("content")))
                continue
            item: dict[str, Any] = {"role": role, "content": text_of(msg.get("content"))}
            if msg.get("tool_calls"):
                item["tool_calls"] = [_neutral_call(c) for c in msg["tool_calls"]]
            if role == "tool":
                item["tool_call_id"], item["name"] = msg.get("tool_call_id"), msg.get("name")
            messages.append(item)
        tools = [{"name": t["function"]["name"], "description": t["function"].get("description", ""),
                  "parameters": t["function"].get("parameters") or {}}
                 for t in body.get("tools") or [] if t.get("type") == "function"]
        choice = body.get("tool_choice")
        forced = choice["function"]["name"] if isinstance(choice, dict) and "function" in choice else None
        fmt = body.get("response_format") or {}
        schema = name = None
        if fmt.get("type") == "json_schema":
            schema, name = fmt["json_schema"].get("schema") or {}, fmt["json_schema"].get("name")
        elif fmt.get("type") == "json_object":
            schema = {"type": "object", "properties": {}}
        return RequestView(family=self.family, model=body["model"], system="\n".join(system),
                           messages=messages, tools=tools, schema=schema, schema_name=name,
                           forced_tool=forced, body=body)

    # -- reply

    def handle(self, endpoint: str, params: dict[str, str], rec: Recorded) -> dict[str, Any]:
        body = rec.body
        self.validate(body)
        self.check_model(body["model"])
        view = self.view(body)
        reply = self.respond(view)
        return self.render(body, view, reply)

    def message_of(self, reply: Reply) -> dict[str, Any]:
        msg: dict[str, Any] = {"role": "assistant", "content": reply.text, "refusal": None, "annotations": []}
        if reply.tool_calls:
            msg["tool_calls"] = [{"id": c.id or new_id("call_"), "type": "function",
                                  "function": {"name": c.name, "arguments": json.dumps(c.arguments)}}
                                 for c in reply.tool_calls]
        return msg

    def render(self, body: dict[str, Any], view: RequestView, reply: Reply) -> dict[str, Any]:
        prompt = prompt_tokens(view)
        completion = count_tokens(reply.text, *[c.arguments for c in reply.tool_calls])
        reasoning = count_tokens(reply.reasoning) if reply.reasoning else 0
        return {
            "id": new_id("chatcmpl-"), "object": "chat.completion", "created": int(time.time()),
            "model": body["model"], "system_fingerprint": "fp_wire",
            "choices": [{"index": 0, "message": self.message_of(reply), "logprobs": None,
                         "finish_reason": "tool_calls" if reply.tool_calls else "stop"}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion + reasoning,
                      "total_tokens": prompt + completion + reasoning,
                      "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                      "completion_tokens_details": {"reasoning_tokens": reasoning, "audio_tokens": 0,
                                                    "accepted_prediction_tokens": 0,
                                                    "rejected_prediction_tokens": 0}},
        }


def _neutral_call(call: dict[str, Any]) -> ToolCall:
    fn = call.get("function") or {}
    try:
        args = json.loads(fn.get("arguments") or "{}")
    except ValueError:
        args = {"_unparsed": fn.get("arguments")}
    return ToolCall(name=fn.get("name", ""), arguments=args if isinstance(args, dict) else {}, id=call.get("id"))


def start(**kwargs: Any) -> OpenAIChatServer:
    """Start an OpenAI Chat Completions server; use as a context manager. See `WireServer`."""
    return OpenAIChatServer(**kwargs).start()
