"""A tiny local CRM and SMS gateway that de-duplicates by ``Idempotency-Key``.

It stands in for the real systems while you try the plugin (``python -m
journeys_plugin_example.gateway --port 8300``) and in tests (``Gateway().start()``).

- ``POST /crm/leads`` ``{name, phone, source, score, customer_id, journey}`` -> 201
  ``{lead_id, created: true}``; the same key again -> 200 with the same lead and
  ``created: false``; another key for a phone that already has a lead -> 409.
- ``POST /sms/messages`` ``{to, text}`` -> 201 ``{message_id}``; the same key again -> 200, same id.
- ``GET /_state`` -> every request seen and every effect performed (leads, messages).

Test hooks: ``fail_next`` answers the next N effect requests with 503; ``hold`` keeps
the response to an effect (already performed and recorded) until ``release()``, so a
test can kill the caller between the side effect and its completion.
"""

from __future__ import annotations

import argparse
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class GatewayState:
    """What the gateway has seen and done.

    Attributes:
        requests: ``(path, idempotency key)`` of every effect request, repeats included.
        leads: Leads created, in order.
        messages: Messages sent, in order.
    """

    requests: list[tuple[str, str]] = field(default_factory=list)
    leads: list[dict[str, Any]] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)
    answers: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)


class Gateway:
    """The server and its state; ``start()`` serves it on a background thread."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.state = GatewayState()
        self.fail_next = 0
        self.hold = False
        self.effect_seen = threading.Event()
        self._released = threading.Event()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer((host, port), _handler(self))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:8300``."""
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> Gateway:
        """Serve on a daemon thread."""
        self._thread = threading.Thread(target=self._server.serve_forever, name="example-gateway", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving (held responses are released first)."""
        self.release()
        self._server.shutdown()
        self._server.server_close()

    def release(self) -> None:
        """Let held responses go."""
        self.hold = False
        self._released.set()

    def serve_forever(self) -> None:
        """Serve on this thread until interrupted."""
        self._server.serve_forever()

    def snapshot(self) -> dict[str, Any]:
        """The state as ``GET /_state`` returns it."""
        with self._lock:
            return {
                "requests": [list(r) for r in self.state.requests],
                "leads": list(self.state.leads),
                "messages": list(self.state.messages),
            }

    def effect(self, path: str, key: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """Perform (or repeat the answer of) one effect request."""
        with self._lock:
            self.state.requests.append((path, key))
            if self.fail_next > 0:
                self.fail_next -= 1
                return 503, {"error": "temporarily unavailable"}
            seen = self.state.answers.get((path, key))
            if seen is not None:
                return 200, {**seen, "created": False} if path == "/crm/leads" else seen
            if path == "/crm/leads":
                if any(lead["phone"] == body.get("phone") for lead in self.state.leads):
                    return 409, {"error": f"a lead with phone {body.get('phone')} already exists"}
                answer = {"lead_id": f"L-{len(self.state.leads) + 1:04d}", "created": True}
                self.state.leads.append({**body, **answer, "idempotency_key": key})
            else:
                answer = {"message_id": f"M-{len(self.state.messages) + 1:04d}"}
                self.state.messages.append({**body, **answer, "idempotency_key": key})
            self.state.answers[(path, key)] = answer
        self.effect_seen.set()
        return 201, answer

    def wait_if_held(self) -> None:
        """Block the response while ``hold`` is set (the effect is already recorded)."""
        if self.hold:
            self._released.wait(timeout=120)


def _handler(gateway: Gateway) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/_state":
                self._send(200, gateway.snapshot())
            else:
                self._send(404, {"error": "not found"})

        def do_POST(self) -> None:
            if self.path not in ("/crm/leads", "/sms/messages"):
                self._send(404, {"error": "not found"})
                return
            key = self.headers.get("Idempotency-Key", "")
            if not key:
                self._send(400, {"error": "Idempotency-Key header is required"})
                return
            try:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
            except ValueError:
                self._send(400, {"error": "body must be JSON"})
                return
            status, answer = gateway.effect(self.path, key, body)
            if status == 201:
                gateway.wait_if_held()
            self._send(status, answer)

        def _send(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the caller died while we held its answer: that is the point of holding

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
            pass

    return Handler


def main() -> None:
    """``python -m journeys_plugin_example.gateway [--host H] [--port P]``."""
    parser = argparse.ArgumentParser(description="Local CRM + SMS gateway for the Journeys plugin example.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8300)
    args = parser.parse_args()
    gateway = Gateway(args.host, args.port)
    print(f"example gateway on {gateway.url} (state: {gateway.url}/_state)", flush=True)  # noqa: T201
    try:
        gateway.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
