"""Helpers for the hardening tests: a route that fails on purpose, a live-looking RQ worker."""

from __future__ import annotations

from contextlib import contextmanager, suppress

from flask import Blueprint, abort

from console.security import permission_required

API = "/api/phase14/hardening"


def add_failing_routes(app) -> None:
    """Routes that raise (call before the app handles its first request)."""
    bp = Blueprint("failing_probe", __name__)

    @bp.route("/probe/fail/<int:n>")
    @permission_required("hardening.view")
    def fail(n):
        raise ValueError(f"boom {n} for someone@example.com at 0x7f3a9c")

    @bp.route("/probe/ok")
    @permission_required("hardening.view")
    def ok():
        return "ok"

    @bp.route("/probe/missing")
    @permission_required("hardening.view")
    def missing():
        abort(404)

    app.register_blueprint(bp)
    app.config["PROPAGATE_EXCEPTIONS"] = False


@contextmanager
def live_worker(app, name: str = "hardening-test-worker"):
    """Register an RQ worker (birth and heartbeat) without running it, as a live `worker.py` would."""
    from rq import Worker

    from console.queues import QUEUE_NAMES

    queues = [app.extensions["queues"][q] for q in QUEUE_NAMES]
    worker = Worker(queues, connection=app.extensions["redis"], name=name)
    worker.register_birth()
    try:
        yield worker
    finally:
        with suppress(Exception):  # Redis may have been restarted empty by the test
            worker.register_death()


def failing_job(order_id: int, email: str) -> None:
    """An RQ job that fails, with values in its message that must not be stored."""
    raise RuntimeError(f"could not sync order {order_id} for {email} with token abcdefabcdefabcdefabcdefabcdef0123")


@contextmanager
def dns_server(records: dict[str, list[str]]):
    """A local UDP DNS server answering TXT queries from `records` (name → strings), NXDOMAIN otherwise.
    Yields "127.0.0.1:<port>" for DNS_RESOLVER."""
    import socket
    import threading

    import dns.message
    import dns.rcode
    import dns.rdatatype
    import dns.rrset

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.2)
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                data, peer = sock.recvfrom(4096)
            except (TimeoutError, OSError):
                continue
            query = dns.message.from_wire(data)
            response = dns.message.make_response(query)
            question = query.question[0]
            name = question.name.to_text().rstrip(".").lower()
            texts = records.get(name)
            if texts is None:
                response.set_rcode(dns.rcode.NXDOMAIN)
            elif question.rdtype == dns.rdatatype.TXT:
                response.answer.append(dns.rrset.from_text(question.name, 60, "IN", "TXT",
                                                           *[f'"{text}"' for text in texts]))
            sock.sendto(response.to_wire(), peer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{sock.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(timeout=2)
        sock.close()
