"""`python -m sandbox [--host H] [--port P] [--keys-dir D] [--hang-seconds S] [--keep-alive S]`: serve the fake
processors.

Prints ``SANDBOX_READY http://H:P`` once it listens (``--port 0`` picks a free port). Every option also reads an
environment variable (SANDBOX_HOST, SANDBOX_PORT, SANDBOX_KEYS_DIR, SANDBOX_HANG_SECONDS, SANDBOX_KEEP_ALIVE,
SANDBOX_JPM_WEBHOOK_URL, SANDBOX_JPM_WEBHOOK_SECRET, SANDBOX_RTP_ROUTING_NUMBERS).

By default Werkzeug's threaded server serves it: it closes the connection after every answer. With ``--keep-alive
S`` (> 0) gunicorn serves the same app instead — one process (the ledgers live in memory) with gevent's worker, one
greenlet per connection — and keeps an idle connection open for ``S`` seconds, as a real processor's front end does:
the keep-alive tests use it, to see the clients reuse a connection and drop one the server timed out. (gthread,
tried first, handed every request of a kept-alive connection from its poller thread to one of its 32 threads and
back: ~0.5-0.7 ms of the fake's CPU per request, and latency from the threads contending for one interpreter lock.
The benchmarks serve the same app with granian instead, whose HTTP handling costs the fake less CPU still:
``bench/sandbox_server.py``.)
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from werkzeug.serving import make_server

from sandbox.app import SandboxApp
from sandbox.core import SandboxConfig
from sandbox.defaults import DEFAULT_HOST, DEFAULT_PORT, SANDBOX_JPM_WEBHOOK_SECRET
from sandbox.keys import ensure_dev_keys

ROOT = Path(__file__).resolve().parent.parent


def parse_args(argv=None) -> argparse.Namespace:
    env = os.environ.get
    parser = argparse.ArgumentParser(prog="python -m sandbox", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=env("SANDBOX_HOST", DEFAULT_HOST))
    parser.add_argument("--port", type=int, default=int(env("SANDBOX_PORT", DEFAULT_PORT)))
    parser.add_argument("--keys-dir", default=env("SANDBOX_KEYS_DIR", str(ROOT / "var" / "sandbox")),
                        help="where the JPM client's development key pair lives (created if missing)")
    parser.add_argument("--hang-seconds", type=float, default=float(env("SANDBOX_HANG_SECONDS", "35")),
                        help="how long a 'timeout' answer waits (longer than the clients' read timeout)")
    parser.add_argument("--keep-alive", type=int, default=int(env("SANDBOX_KEEP_ALIVE", "0")),
                        help="> 0: serve with gunicorn, keeping idle connections open this many seconds")
    parser.add_argument("--jpm-webhook-url", default=env("SANDBOX_JPM_WEBHOOK_URL",
                                                         "http://127.0.0.1:8000/webhooks/jpm"))
    parser.add_argument("--jpm-webhook-secret", default=env("SANDBOX_JPM_WEBHOOK_SECRET",
                                                            SANDBOX_JPM_WEBHOOK_SECRET))
    parser.add_argument("--rtp-routing-numbers", default=env("SANDBOX_RTP_ROUTING_NUMBERS",
                                                             "021000021,011000015,026009593"))
    parser.add_argument("--init-keys", action="store_true", help="create the development keys and exit")
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.init_keys:
        ensure_dev_keys(args.keys_dir)
        print(f"sandbox keys in {args.keys_dir}")
        return
    serve(args)


def build_app(args) -> SandboxApp:
    """The sandbox's WSGI app configured by ``args`` (``parse_args``); its development keys created if missing."""
    _, public_key = ensure_dev_keys(args.keys_dir)
    config = SandboxConfig(
        host=args.host, port=args.port, hang_seconds=args.hang_seconds, jpm_public_key_path=str(public_key),
        jpm_webhook_url=args.jpm_webhook_url, jpm_webhook_secret=args.jpm_webhook_secret,
        rtp_routing_numbers=tuple(n.strip() for n in args.rtp_routing_numbers.split(",") if n.strip()),
    )
    return SandboxApp(config)


def serve(args) -> None:
    """Serve the sandbox configured by ``args`` (``parse_args``) until interrupted. Prints ``SANDBOX_READY <url>``
    once listening."""

    def make_app():
        return build_app(args)

    if args.keep_alive > 0:
        _serve_gunicorn(args, make_app)
        return
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = make_server(args.host, args.port, make_app(), threaded=True)
    print(f"SANDBOX_READY http://{args.host}:{server.server_port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        sys.stdout.flush()


def _serve_gunicorn(args, make_app) -> None:
    """Serve ``make_app()`` with gunicorn: one worker process (the app's state is in memory), gevent (a greenlet per
    connection: a slow or hanging answer holds only its own), HTTP/1.1 keep-alive for ``args.keep_alive`` seconds.
    The app is built in the worker, after gevent patched the standard library."""
    from gunicorn.app.base import BaseApplication

    class Sandbox(BaseApplication):
        def load_config(self):
            def ready(server):
                host, port = server.LISTENERS[0].sock.getsockname()[:2]
                print(f"SANDBOX_READY http://{host}:{port}", flush=True)

            settings = {"bind": f"{args.host}:{args.port}", "workers": 1, "worker_class": "gevent",
                        "worker_connections": 1000,
                        "keepalive": args.keep_alive, "timeout": int(args.hang_seconds) + 60, "backlog": 2048,
                        "loglevel": "warning", "when_ready": ready}
            for key, value in settings.items():
                self.cfg.set(key, value)

        def load(self):
            return make_app()

    Sandbox().run()


if __name__ == "__main__":
    main()
