"""Anthropic Messages on the wire: `POST /v1/messages`.

Why: `anthropic/<model>` calls go through litellm's own Anthropic translation (no SDK): system
messages lifted to a top-level `system`, tool calls turned into `tool_use` / `tool_result` content
blocks, `response_format` turned into a forced tool or `output_format`, `max_tokens` filled in,
unsupported OpenAI parameters dropped or refused. The real API is strict, and so is this server:

* `x-api-key` (401 `authentication_error` when missing or wrong) and `anthropic-version`
  (400 when missing) headers are required;
* `max_tokens` is required, roles are only user / assistant, a `tool_result` must answer a
  `tool_use` of the previous assistant turn;
* unknown top-level fields are refused as the real API refuses them, e.g.
  400 `invalid_request_error` "seed: Extra inputs are not permitted", and so are beta fields
  without their `anthropic-beta` header (`output_format` needs `structured-outputs-...`);
* errors have Anthropic's shape `{"type": "error", "error": {"type", "message"}}`, with
  `overloaded_error` for 529.

Pass litellm `api_base=srv.url` (the server root: litellm appends `/v1/messages` itself).
"""

from __future__ import annotations

from typing import Any

from tests.wire.base import (Recorded, RequestView, ToolCall, WireError, WireServer, count_tokens, new_id, prompt_tokens,
                   text_of)

#: top-level request fields the Messages API knows (current and beta); anything else is a 400
KNOWN_FIELDS = frozenset({
    "model", "messages", "max_tokens", "system", "metadata", "stop_sequences", "stream", "temperature",
    "top_p", "top_k", "tools", "tool_choice", "thinking", "service_tier", "container", "mcp_servers",
    "output_format", "output_config", "context_management", "inference_geo", "speed",
})

#: fields only accepted with an `anthropic-beta` header naming the beta
BETA_FIELDS = {"output_format": "structured-outputs-", "context_management": "context-management-"}

_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error", 500: "api_error",
                502: "api_error", 503: "api_error", 529: "overloaded_error"}
_FAULT_MESSAGES = {429: "Number of request tokens has exceeded your per-minute rate limit.",
                   500: "Internal server error", 529: "Overloaded"}


class AnthropicServer(WireServer):
    family = "anthropic"
    base_path = ""

    def route(self, method: str, path: str) -> tuple[str, dict[str, str]] | None:
        return ("messages", {}) if method == "POST" and path == "/v1/messages" else None

    def check_auth(self, rec: Recorded) -> None:
        if not self.key_ok(rec.headers.get("x-api-key")):
            raise WireError(401, "invalid x-api-key", "authentication_error")
        if not rec.headers.get("anthropic-version"):
            raise WireError(400, "anthropic-version: header is required", "invalid_request_error")

    def model_not_found(self, model: str) -> WireError:
        return WireError(404, f"model: {model}", "not_found_error")

    def error_body(self, status, message, error_type, code, param) -> dict[str, Any]:
        kind = error_type or _ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
        return {"type": "error", "error": {"type": kind, "message": message}, "request_id": new_id("req_")}

    def default_error(self, status: int) -> tuple[str, str | None]:
        return _FAULT_MESSAGES.get(status) or super().default_error(status)[0], None

    # -- request

    def validate(self, body: Any, headers: dict[str, str]) -> None:
        if not isinstance(body, dict):
            raise WireError(400, "Request body must be a JSON object.")
        betas = headers.get("anthropic-beta", "")
        for name in body:
            if name not in KNOWN_FIELDS or (name in BETA_FIELDS and BETA_FIELDS[name] not in betas):
                raise WireError(400, f"{name}: Extra inputs are not permitted")
        for name in ("model", "messages", "max_tokens"):
            if name not in body:
                raise WireError(400, f"{name}: Field required")
        if not isinstance(body["max_tokens"], int) or body["max_tokens"] < 1:
            raise WireError(400, "max_tokens: Input should be a valid integer greater than or equal to 1")
        if not isinstance(body["messages"], list) or not body["messages"]:
            raise WireError(400, "messages: at least one message is required")
        previous_tool_ids: set[str] = set()
        for i, msg in enumerate(body["messages"]):
            role = msg.get("role")
            if role not in ("user", "assistant"):
                raise WireError(400, f"messages.{i}.role: Input should be 'user' or 'assistant'")
            blocks = msg.get("content") if isinstance(msg.get("content"), list) else []
            for block in blocks:
                if block.get("type") == "tool_result" and block.get("tool_use_id") not in previous_tool_ids:
                    raise WireError(400, f"messages.{i}.content: unexpected `tool_use_id` found in `tool_result` "
                                         "blocks: " + str(block.get("tool_use_id")) + ". Each `tool_result` block "
                                         "must have a corresponding `tool_use` block in the previous message.")
            previous_tool_ids = {b.get("id") for b in blocks if b.get("type") == "tool_use"}
        for j, tool in enumerate(body.get("tools") or []):
            if "type" not in tool or tool.get("type") == "custom":
                if not tool.get("name") or not isinstance(tool.get("input_schema"), dict):
                    raise WireError(400, f"tools.{j}.custom.input_schema: Field required")

    def view(self, body: dict[str, Any]) -> RequestView:
        system = body.get("system") or ""
        messages: list[dict[str, Any]] = []
        for msg in body["messages"]:
            content = msg.get("content")
            blocks = content if isinstance(content, list) else [{"type": "text", "text": content or ""}]
            for block in blocks:
                if block.get("type") == "tool_result":
                    messages.append({"role": "tool", "tool_call_id": block.get("tool_use_id"), "name": None,
                                     "content": text_of(block.get("content"))})
            calls = [ToolCall(name=b["name"], arguments=b.get("input") or {}, id=b.get("id"))
                     for b in blocks if b.get("type") == "tool_use"]
            text = "".join(b.get("text", "") for b in blocks if b.get("type") == "text")
            if text or calls or not any(b.get("type") == "tool_result" for b in blocks):
                item: dict[str, Any] = {"role": msg["role"], "content": text}
                if calls:
                    item["tool_calls"] = calls
                messages.append(item)
        tools = [{"name": t["name"], "description": t.get("description", ""), "parameters": t["input_schema"]}
                 for t in body.get("tools") or [] if "input_schema" in t]
        choice = body.get("tool_choice") or {}
        schema = None
        for fmt in ((body.get("output_config") or {}).get("format"), body.get("output_format")):
            if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
                schema = fmt.get("schema")
        return RequestView(family=self.family, model=body["model"], system=text_of(system), messages=messages,
                           tools=tools, schema=schema,
                           forced_tool=choice.get("name") if choice.get("type") == "tool" else None, body=body)

    # -- reply

    def handle(self, endpoint: str, params: dict[str, str], rec: Recorded) -> dict[str, Any]:
        body = rec.body
        self.validate(body, rec.headers)
        self.check_model(body["model"])
        if body.get("stream"):
            raise WireError(400, "stream: streaming is not supported by this wire test server")
        view = self.view(body)
        reply = self.respond(view)
        content: list[dict[str, Any]] = []
        thinking = (body.get("thinking") or {}).get("type") in ("enabled", "adaptive")
        if reply.reasoning and thinking:
            content.append({"type": "thinking", "thinking": reply.reasoning, "signature": new_id("sig")})
        if reply.text:
            content.append({"type": "text", "text": reply.text})
        for call in reply.tool_calls:
            content.append({"type": "tool_use", "id": call.id or new_id("toolu_"), "name": call.name,
                            "input": call.arguments})
        prompt = prompt_tokens(view)
        output = count_tokens(reply.text, reply.reasoning if thinking else None,
                              *[c.arguments for c in reply.tool_calls])
        return {"id": new_id("msg_"), "type": "message", "role": "assistant", "model": body["model"],
                "content": content, "stop_reason": "tool_use" if reply.tool_calls else "end_turn",
                "stop_sequence": None,
                "usage": {"input_tokens": prompt, "output_tokens": output, "cache_creation_input_tokens": 0,
                          "cache_read_input_tokens": 0, "service_tier": "standard"}}


def start(**kwargs: Any) -> AnthropicServer:
    """Start an Anthropic Messages server; use as a context manager. See `WireServer`."""
    return AnthropicServer(**kwargs).start()
