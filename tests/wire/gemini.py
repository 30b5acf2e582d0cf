"""Google Gemini API on the wire: `POST /v1beta/models/{model}:generateContent`.

Why: `gemini/<model>` calls go through litellm's Gemini translation: messages become `contents`
with roles user / model and `parts`, the system message becomes `systemInstruction`, tools become
`functionDeclarations`, tool calls and results become `functionCall` / `functionResponse` parts,
`response_format` becomes `generationConfig.responseMimeType` + `responseSchema` (or
`responseJsonSchema`). Errors come back in Google's shape
`{"error": {"code", "message", "status", "details"?}}` and must still map to the right exception.

With `api_base`, litellm calls `{api_base}/models/{model}:generateContent` and sends the key in
an `x-goog-api-key` header (the server also accepts `?key=`). `srv.url` ends in `/v1beta`, so the
path is the real one.

A wrong key is answered as Google answers it: 400 INVALID_ARGUMENT with reason API_KEY_INVALID,
and a missing key 403 PERMISSION_DENIED (not 401); `bad_key_status=401` answers 401
UNAUTHENTICATED instead. Google's JSON parser accepts camelCase and snake_case field names; so does
this server, and it refuses unknown field names at the top level and in `generationConfig` as
Google does ("Invalid JSON payload received. Unknown name ...").
"""

from __future__ import annotations

import json
import re
from typing import Any

from tests.wire.base import Recorded, RequestView, ToolCall, WireError, WireServer, count_tokens, new_id, prompt_tokens

_PATH = re.compile(r"^(?:/v1beta|/v1)?/models/(?P<model>[^/:]+):(?P<method>[A-Za-z]+)$")

TOP_LEVEL = {"contents", "systemInstruction", "tools", "toolConfig", "safetySettings", "generationConfig",
             "cachedContent", "labels", "model"}
GENERATION_CONFIG = {"stopSequences", "responseMimeType", "responseSchema", "responseJsonSchema",
                     "responseModalities", "candidateCount", "maxOutputTokens", "temperature", "topP", "topK",
                     "seed", "presencePenalty", "frequencyPenalty", "responseLogprobs", "logprobs",
                     "enableEnhancedCivicAnswers", "speechConfig", "thinkingConfig", "imageConfig",
                     "mediaResolution", "audioTimestamp"}
_STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
           429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 502: "UNAVAILABLE", 503: "UNAVAILABLE",
           504: "DEADLINE_EXCEEDED"}
_FAULT_MESSAGES = {429: "You exceeded your current quota, please check your plan and billing details.",
                   500: "An internal error has occurred. Please retry or report in "
                        "https://developers.generativeai.google/guide/troubleshooting",
                   503: "The model is overloaded. Please try again later."}


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


def get(obj: dict[str, Any], name: str, default: Any = None) -> Any:
    """Field `name` (camelCase) of a proto-JSON object, given in either spelling."""
    if name in obj:
        return obj[name]
    snake = re.sub(r"([A-Z])", lambda m: "_" + m.group(1).lower(), name)
    return obj.get(snake, default)


class GeminiServer(WireServer):
    family = "gemini"
    base_path = "/v1beta"

    def __init__(self, *, bad_key_status: int = 400, **kwargs: Any):
        super().__init__(**kwargs)
        self.bad_key_status = bad_key_status

    def route(self, method: str, path: str) -> tuple[str, dict[str, str]] | None:
        match = _PATH.match(path)
        if method != "POST" or match is None:
            return None
        return match["method"], {"model": match["model"]}

    def check_auth(self, rec: Recorded) -> None:
        key = rec.headers.get("x-goog-api-key") or rec.query.get("key")
        if key is None:
            raise WireError(403, "Method doesn't allow unregistered callers (callers without established "
                                 "identity). Please use API Key or other form of API consumer identity to call "
                                 "this API.")
        if not self.key_ok(key):
            if self.bad_key_status == 401:
                raise WireError(401, "Request had invalid authentication credentials.")
            raise WireError(400, "API key not valid. Please pass a valid API key.", code="API_KEY_INVALID")

    def model_not_found(self, model: str) -> WireError:
        return WireError(404, f"models/{model} is not found for API version v1beta, or is not supported for "
                              "generateContent. Call ListModels to see the list of available models and their "
                              "supported methods.")

    def error_body(self, status, message, error_type, code, param) -> dict[str, Any]:
        error: dict[str, Any] = {"code": status, "message": message,
                                 "status": error_type or _STATUS.get(status, "UNKNOWN")}
        if code:  # a google.rpc.ErrorInfo reason, e.g. API_KEY_INVALID
            error["details"] = [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": code,
                                 "domain": "googleapis.com",
                                 "metadata": {"service": "generativelanguage.googleapis.com"}}]
        if status == 429:
            error["details"] = [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "1s"}]
        return {"error": error}

    def default_error(self, status: int) -> tuple[str, str | None]:
        return _FAULT_MESSAGES.get(status) or super().default_error(status)[0], None

    # -- request

    def validate(self, body: Any) -> None:
        if not isinstance(body, dict):
            raise WireError(400, "Invalid JSON payload received. Expected an object.")
        for name in body:
            if camel(name) not in TOP_LEVEL:
                raise WireError(400, f'Invalid JSON payload received. Unknown name "{name}": Cannot find field.')
        for name in get(body, "generationConfig") or {}:
            if camel(name) not in GENERATION_CONFIG:
                raise WireError(400, f'Invalid JSON payload received. Unknown name "{name}" at '
                                     f"'generation_config': Cannot find field.")
        contents = get(body, "contents")
        if not contents:
            raise WireError(400, "* GenerateContentRequest.contents: contents is not specified\n")
        for i, content in enumerate(contents):
            if content.get("role", "user") not in ("user", "model", "function"):
                raise WireError(400, f"Please use a valid role: user, model. (contents[{i}].role)")
            if not content.get("parts"):
                raise WireError(400, f"* GenerateContentRequest.contents[{i}].parts: contents.parts must not "
                                     "be empty.\n")

    def view(self, model: str, body: dict[str, Any]) -> RequestView:
        system = " ".join(p.get("text", "") for p in (get(body, "systemInstruction") or {}).get("parts", []))
        messages: list[dict[str, Any]] = []
        for content in get(body, "contents"):
            parts = content["parts"]
            for part in parts:
                response = get(part, "functionResponse")
                if response is not None:
                    messages.append({"role": "tool", "tool_call_id": response.get("id"), "name": response.get("name"),
                                     "content": json.dumps(response.get("response"))})
            calls = [ToolCall(name=c.get("name", ""), arguments=c.get("args") or {}, id=c.get("id"))
                     for c in (get(p, "functionCall") for p in parts) if c is not None]
            text = "".join(p.get("text", "") for p in parts if not p.get("thought"))
            if text or calls:
                item: dict[str, Any] = {"role": "assistant" if content.get("role") == "model" else "user",
                                        "content": text}
                if calls:
                    item["tool_calls"] = calls
                messages.append(item)
        tools = [{"name": d["name"], "description": d.get("description", ""),
                  "parameters": get(d, "parameters") or get(d, "parametersJsonSchema") or {}}
                 for tool in get(body, "tools") or [] for d in get(tool, "functionDeclarations") or []]
        calling = get(get(body, "toolConfig") or {}, "functionCallingConfig") or {}
        forced = None
        if calling.get("mode") == "ANY" and tools:
            allowed = get(calling, "allowedFunctionNames") or [tools[0]["name"]]
            forced = allowed[0]
        config = get(body, "generationConfig") or {}
        schema = get(config, "responseJsonSchema") or get(config, "responseSchema")
        if schema is None and get(config, "responseMimeType") == "application/json":
            schema = {"type": "object", "properties": {}}
        return RequestView(family=self.family, model=model, system=system, messages=messages, tools=tools,
                           schema=schema, forced_tool=forced, body=body)

    # -- reply

    def handle(self, endpoint: str, params: dict[str, str], rec: Recorded) -> dict[str, Any]:
        model, body = params["model"], rec.body
        self.check_model(model)
        if endpoint != "generateContent":
            raise WireError(400, f"{endpoint} is not supported by this wire test server")
        self.validate(body)
        view = self.view(model, body)
        reply = self.respond(view)
        config = get(body, "generationConfig") or {}
        thoughts = bool(get(get(config, "thinkingConfig") or {}, "includeThoughts"))
        parts: list[dict[str, Any]] = []
        if reply.reasoning and thoughts:
            parts.append({"text": reply.reasoning, "thought": True})
        if reply.text:
            parts.append({"text": reply.text})
        for call in reply.tool_calls:
            parts.append({"functionCall": {"name": call.name, "args": call.arguments}})
        prompt = prompt_tokens(view)
        output = count_tokens(reply.text, *[c.arguments for c in reply.tool_calls])
        usage: dict[str, Any] = {"promptTokenCount": prompt, "candidatesTokenCount": output,
                                 "totalTokenCount": prompt + output,
                                 "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt}]}
        if reply.reasoning:
            usage["thoughtsTokenCount"] = count_tokens(reply.reasoning)
            usage["totalTokenCount"] += usage["thoughtsTokenCount"]
        return {"candidates": [{"content": {"parts": parts, "role": "model"}, "finishReason": "STOP", "index": 0}],
                "usageMetadata": usage, "modelVersion": model, "responseId": new_id("")}


def start(**kwargs: Any) -> GeminiServer:
    """Start a Gemini generateContent server; use as a context manager. See `WireServer`."""
    return GeminiServer(**kwargs).start()
