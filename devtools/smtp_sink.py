"""An SMTP sink for development and tests, in the spirit of Mailpit.

Every accepted message lands in a Maildir, which the console's Mailbox page reads.
Two switches make failures reproducible without mocks:
- a file named REFUSE in the Maildir makes the sink answer 421 (transient) to every MAIL FROM;
- recipients whose local part starts with "bounce" get 550 (a hard bounce).
"""

from __future__ import annotations

import argparse
import asyncio
import mailbox
import signal
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Mailbox


def ensure_maildir(path: Path) -> mailbox.Maildir:
    """A Maildir at path, with cur/new/tmp even when the folder already existed."""
    for sub in ("cur", "new", "tmp"):
        (Path(path) / sub).mkdir(parents=True, exist_ok=True)
    return mailbox.Maildir(str(path), create=False)


class SinkHandler(Mailbox):
    def __init__(self, maildir: Path):
        ensure_maildir(maildir)
        super().__init__(str(maildir))
        self.refuse_flag = Path(maildir) / "REFUSE"

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        if self.refuse_flag.exists():
            return "421 4.3.2 Service temporarily unavailable, try again later"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.split("@")[0].lower().startswith("bounce"):
            return "550 5.1.1 No such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1025)
    parser.add_argument("--maildir", type=Path, required=True)
    args = parser.parse_args()
    ensure_maildir(args.maildir)
    controller = Controller(SinkHandler(args.maildir), hostname=args.host, port=args.port)
    controller.start()
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    loop.run_until_complete(stop.wait())
    controller.stop()


if __name__ == "__main__":
    main()
