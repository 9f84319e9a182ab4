"""Deactivate a leaver's Zoom user (Zoom API v2), written in Python.

    - id: zoom
      uses: zoom
      with:
        email: "{{ inputs.email }}"
        # api_url: https://api.zoom.us      (the default)
      retry: { attempts: 3 }
      allow: [https://api.zoom.us]
      credentials:
        - host: https://api.zoom.us
          secret: ZOOM_ACCESS_TOKEN         # a Server-to-Server OAuth access token
          header: Authorization
          format: "Bearer {secret}"

Looks the user up by email; an inactive user is `unchanged`, anyone else is deactivated (PUT
/v2/users/{id}/status). A leaver without a Zoom user (404, code 1001) is not an error: `unchanged`
with output {"found": false}. A 429 waits as long as Retry-After says; other errors carry Zoom's
code and message.
"""
import json
from datetime import datetime
from email.utils import parsedate_to_datetime
from urllib.parse import quote

import wit_world
from componentize_py_types import Err
from wit_world.imports import http, log
from wit_world.imports.types import (
    ActionSpec, Change, ErrorKind, InputSpec, Invocation, Outcome, PluginInfo, TaskError,
)


def fail(kind: ErrorKind, message: str, retry_after_ms=None):
    return Err(TaskError(kind=kind, message=message, retry_after_ms=retry_after_ms))


def done(change: Change, output: dict) -> Outcome:
    return Outcome(output=json.dumps(output), change=change)


def wait_ms(headers: dict) -> int:
    """Retry-After is seconds or, as Zoom documents it, an instant (2026-05-31T00:00:00Z); an
    instant is measured against the response's own Date header, so no clock is needed."""
    value = headers.get("retry-after", "").strip()
    if value.isdigit():
        return max(int(value), 1) * 1000
    try:
        until = datetime.fromisoformat(value.replace("Z", "+00:00"))
        now = parsedate_to_datetime(headers["date"])
        return max(int((until - now).total_seconds() * 1000), 1000)
    except (KeyError, TypeError, ValueError):
        return 1000


def call(method: str, url: str, body=None):
    """Sends a request; returns (status, JSON body), or None for a mutation a dry run recorded."""
    headers = [("accept", "application/json")]
    if body is not None:
        headers.append(("content-type", "application/json"))
        body = json.dumps(body).encode()
    try:
        response = http.send(http.Request(method=method, url=url, headers=headers, body=body))
    except Err as e:
        if isinstance(e.value, http.HttpError_DryRun):
            return None
        kind = ErrorKind.TRANSIENT if isinstance(
            e.value, (http.HttpError_Timeout, http.HttpError_Transport)) else ErrorKind.PERMANENT
        why = getattr(e.value, "value", None) or type(e.value).__name__.removeprefix("HttpError_").lower()
        raise fail(kind, f"cannot reach Zoom ({method} {url}): {why}")
    try:
        data = json.loads(bytes(response.body)) if response.body else {}
    except ValueError:
        data = {}
    data = data if isinstance(data, dict) else {}
    if response.status == 429 or response.status >= 500:
        wait = wait_ms(dict(response.headers)) if response.status == 429 else None
        raise fail(ErrorKind.TRANSIENT, describe_error(response.status, data), wait)
    return response.status, data


def describe_error(status: int, data: dict) -> str:
    if "message" in data:
        return f"Zoom error {data.get('code')} (HTTP {status}): {data['message']}"
    return f"Zoom answered HTTP {status}"


class WitWorld(wit_world.WitWorld):
    def run(self, invocation: Invocation) -> Outcome:
        try:
            args = json.loads(invocation.input)
            email = args["email"]
            base = args.get("api_url", "https://api.zoom.us").rstrip("/")
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise fail(ErrorKind.PERMANENT, f"invalid step input: missing {e}")
        if not isinstance(email, str) or "@" not in email:
            raise fail(ErrorKind.PERMANENT, f"email must be an email address, got {email!r}")
        if not base.startswith(("https://", "http://")):
            raise fail(ErrorKind.PERMANENT, f"api_url must start with https://, got {base!r}")

        status, user = call("GET", f"{base}/v2/users/{quote(email, safe='@')}")
        if status == 404 and user.get("code") == 1001:
            log.log(log.Level.INFO, f"{email} has no Zoom user: nothing to do")
            return done(Change.UNCHANGED, {"email": email, "found": False})
        if status != 200:
            raise fail(ErrorKind.PERMANENT, describe_error(status, user))
        user_id = user.get("id") or email
        summary = {"id": user_id, "email": user.get("email", email), "found": True}
        if user.get("status") == "inactive":
            return done(Change.UNCHANGED, {**summary, "status": "inactive"})

        answer = call("PUT", f"{base}/v2/users/{quote(user_id, safe='@')}/status", {"action": "deactivate"})
        if answer is None:
            return done(Change.CHANGED, {**summary, "would": "deactivate"})
        if answer[0] != 204:
            raise fail(ErrorKind.PERMANENT, describe_error(*answer))
        log.log(log.Level.INFO, f"deactivated Zoom user {user_id}")
        return done(Change.CHANGED, {**summary, "status": "inactive", "previous": user.get("status")})

    def describe(self) -> PluginInfo:
        return PluginInfo(
            name="zoom", version="0.1.0",
            description="Deactivates a leaver's Zoom user (written in Python)",
            inputs=[
                InputSpec(name="email", type_name="string", required=True,
                          description="the leaver's email (their Zoom login)"),
                InputSpec(name="api_url", type_name="string", required=False,
                          description="Zoom API base, default https://api.zoom.us"),
            ],
        )

    def contract(self) -> list[ActionSpec]:
        """What `with:` takes and what the step returns (JSON Schema), checked by `offramp validate`."""
        def text(description):
            return {"type": "string", "description": description}
        with_ = {"type": "object", "additionalProperties": False, "required": ["email"],
                 "properties": {"email": text("the leaver's email (their Zoom login)"),
                                "api_url": text("Zoom API base, default https://api.zoom.us")}}
        output = {"type": "object", "required": ["found"], "properties": {
            "found": {"type": "boolean", "description": "false: the leaver has no Zoom user"},
            "id": text("the Zoom user id"), "email": text("the Zoom login"),
            "status": text("active, inactive or pending"),
            "previous": {"type": ["string", "null"], "description": "the status before this step"},
            "would": text("dry run: what the step would have done")}}
        return [ActionSpec(name="", description="Deactivates the leaver's Zoom user",
                           input_schema=json.dumps(with_), output_schema=json.dumps(output))]
