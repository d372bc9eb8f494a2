"""`make dev`: start the local stack and keep it up until Ctrl+C."""

from __future__ import annotations

import signal

from devstack import Stack


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> None:
    signal.signal(signal.SIGTERM, _interrupt)
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
    print("local stack stopped", flush=True)


if __name__ == "__main__":
    main()
