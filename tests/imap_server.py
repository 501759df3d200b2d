"""A small IMAP4rev1 server for the bounce-mailbox tests: one mailbox, plain TCP, enough of RFC 3501 for
imaplib's CAPABILITY, LOGIN, SELECT, SEARCH (ALL, UNSEEN), FETCH (RFC822, FLAGS), STORE, EXPUNGE, NOOP, CLOSE
and LOGOUT. Messages keep their flags; FETCH RFC822 sets \\Seen as a real server does."""

from __future__ import annotations

import re
import socketserver
import threading

USER, PASSWORD = "bounces@example.org", "imap-password-for-tests"
COMMAND = re.compile(rb"^(\S+) (\S+) ?(.*)$")


class Mailbox:
    def __init__(self):
        self.messages: list[dict] = []  # {"data": bytes, "flags": set}
        self.lock = threading.Lock()
        self.logins = 0

    def add(self, data: bytes, *flags: str) -> None:
        with self.lock:
            self.messages.append({"data": data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"), "flags": set(flags)})


def _args(text: str) -> list[str]:
    return [a[1:-1].replace('\\"', '"').replace("\\\\", "\\") if a.startswith('"') else a
            for a in re.findall(r'"(?:[^"\\]|\\.)*"|\S+', text)]


def _numbers(spec: str, count: int) -> list[int]:
    out = []
    for piece in spec.split(","):
        low, _, high = piece.partition(":")
        start = count if low == "*" else int(low)
        end = start if not high else (count if high == "*" else int(high))
        out.extend(range(min(start, end), max(start, end) + 1))
    return [n for n in out if 1 <= n <= count]


class _Handler(socketserver.StreamRequestHandler):
    box: Mailbox

    def send(self, line: str | bytes) -> None:
        self.wfile.write((line.encode() if isinstance(line, str) else line) + b"\r\n")

    def handle(self):
        self.authed = self.selected = False
        self.send("* OK [CAPABILITY IMAP4rev1] test IMAP server ready")
        while True:
            line = self.rfile.readline()
            if not line:
                return
            match = COMMAND.match(line.rstrip(b"\r\n"))
            if not match:
                self.send("* BAD syntax")
                continue
            tag, name, rest = match.group(1).decode(), match.group(2).decode().upper(), match.group(3).decode()
            if name == "UID":
                self.send(f"{tag} NO UID not supported here")
                continue
            handler = getattr(self, f"do_{name}", None)
            if handler is None:
                self.send(f"{tag} BAD unknown command {name}")
                continue
            if name not in ("CAPABILITY", "LOGIN", "LOGOUT", "NOOP") and not self.authed:
                self.send(f"{tag} NO log in first")
                continue
            if handler(tag, rest) is False:
                return

    def do_CAPABILITY(self, tag, rest):
        self.send("* CAPABILITY IMAP4rev1")
        self.send(f"{tag} OK CAPABILITY completed")

    def do_NOOP(self, tag, rest):
        self.send(f"{tag} OK NOOP completed")

    def do_LOGIN(self, tag, rest):
        args = _args(rest)
        if args == [USER, PASSWORD]:
            self.authed = True
            self.box.logins += 1
            self.send(f"{tag} OK LOGIN completed")
        else:
            self.send(f"{tag} NO [AUTHENTICATIONFAILED] invalid credentials")

    def do_SELECT(self, tag, rest):
        if _args(rest)[0].upper() != "INBOX":
            self.send(f"{tag} NO [NONEXISTENT] no such mailbox")
            return
        self.selected = True
        with self.box.lock:
            count = len(self.box.messages)
        self.send("* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)")
        self.send(f"* {count} EXISTS")
        self.send("* 0 RECENT")
        self.send("* OK [UIDVALIDITY 1] UIDs valid")
        self.send(f"{tag} OK [READ-WRITE] SELECT completed")

    def do_SEARCH(self, tag, rest):
        criteria = rest.upper().split()
        with self.box.lock:
            found = [i + 1 for i, m in enumerate(self.box.messages)
                     if "UNSEEN" not in criteria or "\\Seen" not in m["flags"]]
        self.send("* SEARCH" + "".join(f" {n}" for n in found))
        self.send(f"{tag} OK SEARCH completed")

    def do_FETCH(self, tag, rest):
        spec, _, items = rest.partition(" ")
        items = items.upper()
        with self.box.lock:
            for number in _numbers(spec, len(self.box.messages)):
                message = self.box.messages[number - 1]
                if "RFC822" in items or "BODY[]" in items:
                    message["flags"].add("\\Seen")
                    data = message["data"]
                    self.wfile.write(f"* {number} FETCH (FLAGS ({' '.join(sorted(message['flags']))}) "
                                     f"RFC822 {{{len(data)}}}\r\n".encode() + data + b")\r\n")
                else:
                    self.send(f"* {number} FETCH (FLAGS ({' '.join(sorted(message['flags']))}))")
        self.send(f"{tag} OK FETCH completed")

    def do_STORE(self, tag, rest):
        spec, mode, flags = rest.split(" ", 2)
        names = set(flags.strip("()").split())
        with self.box.lock:
            for number in _numbers(spec, len(self.box.messages)):
                message = self.box.messages[number - 1]
                if mode.upper().startswith("+FLAGS"):
                    message["flags"] |= names
                elif mode.upper().startswith("-FLAGS"):
                    message["flags"] -= names
                else:
                    message["flags"] = names
                self.send(f"* {number} FETCH (FLAGS ({' '.join(sorted(message['flags']))}))")
        self.send(f"{tag} OK STORE completed")

    def do_EXPUNGE(self, tag, rest):
        with self.box.lock:
            for index in range(len(self.box.messages) - 1, -1, -1):
                if "\\Deleted" in self.box.messages[index]["flags"]:
                    del self.box.messages[index]
                    self.send(f"* {index + 1} EXPUNGE")
        self.send(f"{tag} OK EXPUNGE completed")

    def do_CLOSE(self, tag, rest):
        self.selected = False
        self.send(f"{tag} OK CLOSE completed")

    def do_LOGOUT(self, tag, rest):
        self.send("* BYE logging out")
        self.send(f"{tag} OK LOGOUT completed")
        return False


class ImapServer:
    def __init__(self):
        self.box = Mailbox()
        handler = type("Handler", (_Handler,), {"box": self.box})
        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def config(self) -> dict:
        return {"BOUNCE_IMAP_HOST": "127.0.0.1", "BOUNCE_IMAP_PORT": self.port, "BOUNCE_IMAP_SSL": False,
                "BOUNCE_IMAP_USER": USER, "BOUNCE_IMAP_PASSWORD": PASSWORD, "BOUNCE_IMAP_FOLDER": "INBOX"}
