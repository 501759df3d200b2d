"""The development web server for `make run`: Werkzeug's, without the `Server: Werkzeug/x Python/y` banner.

`python -m devtools.serve --host 127.0.0.1 --port 5000` serves `wsgi:app` threaded, like `flask run`.
"""

from __future__ import annotations

import argparse

from werkzeug.serving import WSGIRequestHandler, run_simple


class QuietRequestHandler(WSGIRequestHandler):
    """Sends no Server header: software names and versions only help an attacker pick an exploit."""

    def send_response(self, code, message=None):
        self.log_request(code)
        self.send_response_only(code, message)
        self.send_header("Date", self.date_time_string())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5000)
    args = parser.parse_args(argv)
    from wsgi import app

    run_simple(args.host, args.port, app, threaded=True, request_handler=QuietRequestHandler)


if __name__ == "__main__":
    main()
