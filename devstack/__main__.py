"""`make dev`: start the local stack and keep it up until Ctrl+C."""

from __future__ import annotations

import signal

from devstack import Stack

_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _stopping() -> None:
    """Once stopping, further Ctrl+C / SIGTERM (make forwards one more) must not cut the clean-up short."""
    for signum in _STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)


def main() -> None:
    for signum in _STOP_SIGNALS:
        signal.signal(signum, _interrupt)
    with Stack() as stack:
        assert stack.azurite is not None
        print(
            f"""
local stack is up (Ctrl+C stops everything):
  Azurite            {stack.azurite.blob_endpoint}  (connection string in .stack/local.settings.json)
  Azure OpenAI emu   {stack.emulator_url}  api-key {stack.api_key}
  devhost HTTP       {stack.http_url}  (x-functions-key: {stack.function_key})
  dashboard          {stack.dashboard_url}
  logs               .stack/azurite, .stack/emulator.log, .stack/devhost.log
  settings           .stack/local.settings.json (the CLI below reads it by default)
  note               storage starts empty at every start: the emulator keeps its files and jobs in memory,
                     so runs from an earlier stack could not go on

drop a file:         .venv/bin/python -m shared.cli drop demo/data/support-train.jsonl
watch runs:          .venv/bin/python -m shared.cli runs
one run:             .venv/bin/python -m shared.cli status RUN_ID
over HTTP:           curl -H 'x-functions-key: {stack.function_key}' {stack.http_url}/runs
""",
            flush=True,
        )
        try:
            while True:
                signal.pause()
        except KeyboardInterrupt:
            pass
        finally:
            _stopping()
            print("stopping the local stack ...", flush=True)
    print("local stack stopped", flush=True)


if __name__ == "__main__":
    main()
