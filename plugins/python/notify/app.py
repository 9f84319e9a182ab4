"""A step plugin in Python: post a message to a chat webhook (Slack-compatible JSON).

Build:  componentize-py -d wit -w described-task componentize app -p plugins/python/notify -o notify.wasm

    - id: tell_it
      uses: notify
      with: { url: "https://hooks.example.com/services/T0/B0/x", text: "{{ inputs.email }} offboarded" }
      allow: [https://hooks.example.com]
"""
import json

import wit_world
from componentize_py_types import Err
from wit_world.imports import http, log
from wit_world.imports.types import (
    ActionSpec, Change, ErrorKind, InputSpec, Invocation, Outcome, PluginInfo, TaskError,
)


def fail(kind: ErrorKind, message: str, retry_after_ms=None):
    return Err(TaskError(kind=kind, message=message, retry_after_ms=retry_after_ms))


class WitWorld(wit_world.WitWorld):
    def run(self, invocation: Invocation) -> Outcome:
        try:
            args = json.loads(invocation.input)
            url, text = args["url"], args["text"]
        except (ValueError, KeyError) as e:
            raise fail(ErrorKind.PERMANENT, f"invalid step input: missing {e}")
        body = json.dumps({"text": text, "idempotency_key": invocation.idempotency_key}).encode()
        request = http.Request(method="POST", url=url,
                               headers=[("content-type", "application/json")], body=body)
        try:
            response = http.send(request)
        except Err as e:
            if isinstance(e.value, http.HttpError_DryRun):
                return Outcome(output=json.dumps({"would_post": url}), change=Change.CHANGED)
            kind = ErrorKind.TRANSIENT if isinstance(
                e.value, (http.HttpError_Timeout, http.HttpError_Transport)) else ErrorKind.PERMANENT
            raise fail(kind, f"cannot post to {url}: {e.value}")
        log.log(log.Level.INFO, f"webhook answered {response.status}")
        if response.status == 429 or response.status >= 500:
            retry = dict(response.headers).get("retry-after")
            wait = int(retry) * 1000 if retry and retry.isdigit() else None
            raise fail(ErrorKind.TRANSIENT, f"webhook answered {response.status}", wait)
        if not 200 <= response.status < 300:
            snippet = bytes(response.body[:200]).decode("utf-8", "replace")
            raise fail(ErrorKind.PERMANENT, f"webhook answered {response.status}: {snippet}")
        return Outcome(output=json.dumps({"status": response.status}), change=Change.CHANGED)

    def describe(self) -> PluginInfo:
        return PluginInfo(
            name="notify", version="0.1.0",
            description="Posts a message to a chat webhook (written in Python)",
            inputs=[
                InputSpec(name="url", type_name="string", required=True, description="webhook URL"),
                InputSpec(name="text", type_name="string", required=True, description="the message"),
            ],
        )

    def contract(self) -> list[ActionSpec]:
        """What `with:` takes and what the step returns (JSON Schema), checked by `offramp validate`."""
        text = {"type": "string"}
        with_ = {"type": "object", "additionalProperties": False, "required": ["url", "text"],
                 "properties": {"url": {"type": "string", "description": "webhook URL"},
                                "text": {"type": "string", "description": "the message"}}}
        output = {"type": "object", "properties": {"status": {"type": "integer", "description": "the webhook's HTTP status"},
                                                   "would_post": dict(text, description="dry run: the URL")}}
        return [ActionSpec(name="", description="Posts a message to a chat webhook",
                           input_schema=json.dumps(with_), output_schema=json.dumps(output))]
