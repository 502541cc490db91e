"""A fake OpenAI-compatible chat-completions server on loopback for the cloud client's failure tests: it can
answer, echo the request's headers in its reply or error, redirect, drip its reply one byte a second, never answer,
or answer with malformed bodies. Every request's headers are recorded."""

from __future__ import annotations

import http.server
import json
import threading
import time


def completion(text: str, usage: object = None) -> bytes:
    body = {"choices": [{"message": {"role": "assistant", "content": text}}],
            "usage": {"prompt_tokens": 20, "completion_tokens": 3} if usage is None else usage}
    return json.dumps(body).encode()


class FakeOpenAI:
    """`mode` decides every answer: 'ok' (reply `reply`), 'echo-reply' / 'echo-error' (a reply text / a 400
    error that repeats the Authorization header), 'redirect' (302 to `location`), 'drip' (a valid reply sent one byte a second),
    'hang' (read the request, never answer), or ('raw', status, bytes) (this body as is)."""

    def __init__(self, mode: object = "ok", reply: str = "look around", location: str = ""):
        self.mode, self.reply, self.location = mode, reply, location
        self.requests: list[dict] = []
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, status: int, payload: bytes, headers: dict | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(payload)

            def do_GET(self):  # where a followed redirect would land
                fake.requests.append({"path": self.path, "headers": dict(self.headers)})
                self._send(404, b"{}")

            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                fake.requests.append({"path": self.path, "headers": dict(self.headers)})
                auth = self.headers.get("Authorization", "")
                mode = fake.mode
                try:
                    if mode == "ok":
                        self._send(200, completion(fake.reply))
                    elif mode == "echo-reply":
                        self._send(200, completion(f"{fake.reply} (you sent {auth})"))
                    elif mode == "echo-error":
                        self._send(400, json.dumps({"error": f"bad key {auth}"}).encode())
                    elif mode == "redirect":
                        self._send(302, b"", {"Location": fake.location})
                    elif mode == "drip":
                        payload = completion(fake.reply)
                        self.send_response(200)
                        self.send_header("Content-Length", str(len(payload)))
                        self.end_headers()
                        for i in range(len(payload)):
                            self.wfile.write(payload[i:i + 1])
                            self.wfile.flush()
                            time.sleep(1.0)
                    elif mode == "hang":
                        time.sleep(30)
                    else:
                        _, status, payload = mode
                        self._send(status, payload)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up
                    pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
