"""`python -m shared.cli costs [--since DAYS] [--profile NAME] [--json]`: estimated and actual training cost of the
runs, summed (each run's `cost`, see shared/costs.py), with the hosting rate of what they deployed."""

from __future__ import annotations

import argparse
import json
from datetime import timedelta
from typing import Any

from shared.runs import utcnow


def add_costs_command(sub: Any) -> None:
    costs = sub.add_parser("costs", help="sum the estimated and actual training cost of the runs")
    costs.add_argument("--since", type=float, metavar="DAYS", help="only runs created in the last DAYS days")
    costs.add_argument("--profile", help="only runs of this profile")
    costs.add_argument("--json", action="store_true")
    costs.add_argument("--settings", help="local.settings.json to read settings from")
    costs.set_defaults(func=cmd_costs)


def cmd_costs(args: argparse.Namespace) -> int:
    from shared.runs_cli import services_for

    services = services_for(args)
    since = utcnow() - timedelta(days=args.since) if args.since else None
    rows: list[dict[str, Any]] = []
    for r in services.store.iter_records():
        if since is not None and r.created_at < since:
            continue
        if args.profile and (r.spec is None or r.spec.profile != args.profile):
            continue
        c = r.cost
        rows.append({
            "run_id": r.id, "state": r.state.value, "profile": r.spec.profile if r.spec else None,
            "currency": c.currency if c else None,
            "estimated_training": c.estimated_training if c else None,
            "actual_training": c.actual_training if c else None,
            "hosting_per_hour": c.hosting_per_hour if c and r.deployment.name else None,
        })
    totals = {
        "runs": len(rows),
        "priced": sum(1 for row in rows if row["estimated_training"] is not None),
        "estimated_training": round(sum(row["estimated_training"] or 0 for row in rows), 4),
        "actual_training": round(sum(row["actual_training"] or 0 for row in rows), 4),
        "hosting_per_hour": round(sum(row["hosting_per_hour"] or 0 for row in rows), 2),
        "currency": next((row["currency"] for row in rows if row["currency"]), "USD"),
    }
    if args.json:
        print(json.dumps({"runs": rows, "totals": totals}, indent=2))
        return 0
    print(f"{'RUN':<32} {'STATE':<10} {'PROFILE':<12} {'ESTIMATED':>10} {'ACTUAL':>10} {'HOSTING/H':>10}")
    for row in sorted(rows, key=lambda x: x["run_id"]):
        def cell(v: Any) -> str:
            return "-" if v is None else f"{v:.2f}"

        print(f"{row['run_id']:<32} {row['state']:<10} {row['profile'] or '-':<12} "
              f"{cell(row['estimated_training']):>10} {cell(row['actual_training']):>10} "
              f"{cell(row['hosting_per_hour']):>10}")
    print(f"total: {totals['runs']} runs ({totals['priced']} priced): estimated {totals['estimated_training']:.2f}, "
          f"actual {totals['actual_training']:.2f} {totals['currency']} of training; deployments now bill "
          f"{totals['hosting_per_hour']:.2f} {totals['currency']}/hour")
    return 0
