"""`python -m emulator --host 127.0.0.1 --port 0 [...]`: run the emulator until interrupted.

Prints `emulator listening on http://HOST:PORT` once it accepts connections (with `--port 0` the line
carries the port the system chose), then one log line per request.
"""
from __future__ import annotations

import argparse
import logging
import os
import socket
import sys

import uvicorn

from .app import build_app
from .config import FLAGS, Config, env_defaults
from .faults import FaultError, parse_cli


def parse_args(argv: list[str] | None = None) -> Config:
    defaults = Config()
    env = env_defaults()
    parser = argparse.ArgumentParser(prog="python -m emulator", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default=os.environ.get("EMULATOR_HOST", "127.0.0.1"),
                        help="interface to listen on (env EMULATOR_HOST; default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("EMULATOR_PORT", defaults.port)),
                        help="port; 0 picks a free one (env EMULATOR_PORT; default 8089)")
    for name, (env_var, kind, text) in FLAGS.items():
        parser.add_argument(
            "--" + name.replace("_", "-"),
            type=kind,
            default=env.get(name, getattr(defaults, name)),
            help=f"{text} (env {env_var}; default {getattr(defaults, name)})",
        )
    parser.add_argument("--require-training-type", action="store_true",
                        default=env.get("require_training_type", False),
                        help="answer a job create without trainingType with the service's misleading 400 "
                             "(env EMULATOR_REQUIRE_TRAINING_TYPE=1)")
    parser.add_argument("--fault", action="append", default=[], metavar="'METHOD PATH MODE [k=v ...]'",
                        help="a fault rule, repeatable, e.g. \"POST /openai/fine_tuning/jobs 429 count=2\"")
    parser.add_argument("--quiet", action="store_true", help="do not log each request")
    args = parser.parse_args(argv)
    try:
        faults = [parse_cli(text) for text in args.fault]
    except (FaultError, ValueError) as exc:
        parser.error(str(exc))
    values = {name: getattr(args, name) for name in FLAGS}
    return Config(host=args.host, port=args.port, require_training_type=args.require_training_type,
                  faults=faults, log_requests=not args.quiet, **values)


class _Server(uvicorn.Server):
    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if sockets and not self.should_exit:
            host, port = sockets[0].getsockname()[:2]
            print(f"emulator listening on http://{host}:{port}", flush=True)


def main(argv: list[str] | None = None) -> int:
    config = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stdout)
    # httpx logs every URL it fetches, query string included: an import's SAS token must never be logged.
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((config.host, config.port))
    sock.listen(128)
    sock.set_inheritable(True)
    app = build_app(config)
    server = _Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off",
                                           date_header=False))
    server.run(sockets=[sock])
    return 0


if __name__ == "__main__":
    sys.exit(main())
