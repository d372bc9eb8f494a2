"""A local emulator of Azure OpenAI fine-tuning (data plane) and of the deployments control plane (ARM).

Run it with `python -m emulator --host 127.0.0.1 --port 0`; see docs/emulator.md for flags, the admin API
(`/_emulator/...`), the scenario markers and what it deliberately does not emulate.

Modules, by capability:
- `catalog`: the base models and what each can do;
- `datafiles`: validating a training file the way the service does, and reading its examples;
- `training`: the deterministic simulated run of a job (timeline, metrics, events, checkpoints, results.csv);
- `state`: files, jobs, deployments and operations in memory, optionally persisted to a folder;
- `faults`: per-route fault injection (429, 5xx, dropped connections, latency);
- `dataplane`, `controlplane`, `inference`, `admin`: the HTTP surfaces;
- `app`: composes them into one ASGI app; `__main__`: the command line.
"""

__version__ = "0.1.0"
