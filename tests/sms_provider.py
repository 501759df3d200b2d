"""A local HTTP server speaking Twilio's Messages REST API (2010-04-01), for the SMS tests.

POST /2010-04-01/Accounts/{sid}/Messages.json (form: To, From, Body, StatusCallback; HTTP basic auth) → 201
with the message resource; GET the same path (?To=&DateSent>=) lists messages, as Twilio's API does.
`fail_next` makes the next sends answer an error status; `drop_next` stores the next messages and then closes
the connection without an answer (the provider has them, the client never learns it).
"""

from __future__ import annotations

import base64
import json
import re
import threading
import uuid
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

ACCOUNT_SID = "AC" + "0" * 32
AUTH_TOKEN = "twilio-auth-token-for-tests"
FROM = "+14155550000"
E164 = re.compile(r"^\+[1-9]\d{6,14}$")


class FakeTwilio:
    def __init__(self):
        self.messages: list[dict] = []
        self.fail_next: list[int] = []  # HTTP statuses to answer, in order, before accepting again
        self.drop_next = 0
        self.lock = threading.Lock()
        handler = type("Handler", (_Handler,), {"api": self})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def config(self) -> dict:
        return {"SMS_PROVIDER": "twilio", "TWILIO_ACCOUNT_SID": ACCOUNT_SID, "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
                "TWILIO_FROM": FROM, "TWILIO_API_BASE": self.url}

    def bodies(self) -> list[str]:
        with self.lock:
            return [m["body"] for m in self.messages]


class _Handler(BaseHTTPRequestHandler):
    api: FakeTwilio

    def log_message(self, *args):
        return None

    def _answer(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _authorized(self) -> bool:
        expected = "Basic " + base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()
        if self.headers.get("Authorization") != expected:
            self._answer(401, {"code": 20003, "message": "Authenticate", "status": 401})
            return False
        if urlparse(self.path).path != f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json":
            self._answer(404, {"code": 20404, "message": "The requested resource was not found", "status": 404})
            return False
        return True

    def do_GET(self):
        if not self._authorized():
            return
        query = parse_qs(urlparse(self.path).query)
        with self.api.lock:
            found = [m for m in self.api.messages if not query.get("To") or m["to"] == query["To"][0]]
        self._answer(200, {"messages": found, "page": 0, "page_size": 100})

    def do_POST(self):
        if not self._authorized():
            return
        form = {k: v[0] for k, v in parse_qs(self.rfile.read(int(self.headers["Content-Length"])).decode()).items()}
        with self.api.lock:
            if self.api.fail_next:
                status = self.api.fail_next.pop(0)
                self._answer(status, {"code": 20500 if status >= 500 else 20429, "message": "try later",
                                      "status": status})
                return
        if not E164.match(form.get("To", "")):
            self._answer(400, {"code": 21211, "message": f"The 'To' number {form.get('To')} is not a valid phone "
                                                         "number.", "status": 400})
            return
        message = {"sid": "SM" + uuid.uuid4().hex, "account_sid": ACCOUNT_SID, "to": form["To"],
                   "from": form.get("From"), "body": form.get("Body"), "status": "queued",
                   "status_callback": form.get("StatusCallback"), "date_created": formatdate(usegmt=True),
                   "date_sent": None, "num_segments": "1", "direction": "outbound-api"}
        with self.api.lock:
            self.api.messages.append(message)
            drop = self.api.drop_next > 0
            self.api.drop_next -= drop
        if drop:
            self.close_connection = True
            self.connection.close()  # stored, but the client never hears back
            return
        self._answer(201, message)
