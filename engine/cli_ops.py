"""Operator commands of the ``journeys`` CLI, all against a running API.

URL and key come from ``JOURNEYS_API_URL`` and ``JOURNEYS_API_KEY`` (see
``engine.apiclient.api_client``); ``--json`` prints the API's answer as it is.
"""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Annotated, Any

import httpx
import typer

from engine.apiclient import api_client, fail_on_error, report, table


class Action(StrEnum):
    """Operator actions on an enrollment."""

    retry = "retry"
    skip = "skip"
    exit = "exit"


JsonOpt = Annotated[bool, typer.Option("--json", help="Print the API's JSON instead of tables.")]


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def pause(
    journey_id: Annotated[str, typer.Argument(help="Journey id.")],
    on_resume: Annotated[str, typer.Option(help="send_late or skip_stale.")] = "send_late",
    stale_after: Annotated[str | None, typer.Option(help="With skip_stale: how late is stale (e.g. 6h).")] = None,
) -> None:
    """Stop admissions; running enrollments hold before their next send or activity."""
    body: dict[str, Any] = {"on_resume": on_resume}
    if stale_after:
        body["stale_after"] = stale_after
    with api_client() as client:
        row = fail_on_error(client.post(f"/v1/journeys/{journey_id}/pause", json=body))
    typer.echo(f"{row['id']}: {row['status']} (on resume: {row.get('on_resume') or on_resume})")


def resume(journey_id: Annotated[str, typer.Argument(help="Journey id.")]) -> None:
    """Admit again and release held enrollments under the pause's policy."""
    with api_client() as client:
        body = fail_on_error(client.post(f"/v1/journeys/{journey_id}/resume"))
    typer.echo(f"{journey_id}: {body['journey']['status']}, {body['released']} held enrollment(s) released")


def archive(
    journey_id: Annotated[str, typer.Argument(help="Journey id.")],
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
) -> None:
    """End every running enrollment (exit_reason operator) and admit none, for good."""
    if not yes:
        typer.confirm(f"Archive {journey_id}? Every running enrollment ends now and it admits no one again", abort=True)
    with api_client() as client:
        body = fail_on_error(client.post(f"/v1/journeys/{journey_id}/archive"))
    typer.echo(f"{journey_id}: archived, {body['ended']} running enrollment(s) ended")


def status(
    journey_id: Annotated[str | None, typer.Argument(help="Journey id (default: every journey).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Journeys with their status, versions and enrollment counts."""
    with api_client() as client:
        ids = [journey_id] if journey_id else [j["id"] for j in fail_on_error(client.get("/v1/journeys"))]
        details = [fail_on_error(client.get(f"/v1/journeys/{j}")) for j in ids]
    if as_json:
        typer.echo(json.dumps(details if journey_id is None else details[0], ensure_ascii=False, indent=2))
        return
    rows = [
        [d["id"], d["status"], d["active_version"], d["latest_version"], d["counts"]["entered"],
         d["counts"]["running"], d["counts"]["converted"], _pct(d["counts"]["conversion_rate"])]
        for d in details
    ]  # fmt: skip
    typer.echo(table(["journey", "status", "active", "latest", "entered", "running", "converted", "rate"], rows))
    if journey_id and details[0]["counts"]["exited"]:
        exits = ", ".join(f"{k} {v}" for k, v in sorted(details[0]["counts"]["exited"].items()))
        typer.echo(f"\nexited: {exits}")


def stats(
    journey_id: Annotated[str, typer.Argument(help="Journey id.")],
    version: Annotated[int | None, typer.Option(help="One version only (default: all).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Funnel per step, sends by status and reason, split arms, goal conversions."""
    with api_client() as client:
        params = {"version": version} if version else {}
        resp = client.get(f"/v1/journeys/{journey_id}/stats", params=params)
        if as_json:
            report(resp)
            return
        body = fail_on_error(resp)
    e = body["enrollments"]
    typer.echo(f"{journey_id} (versions {', '.join(map(str, body['versions'])) or '-'}): {e['entered']} entered, "
               f"{e['running']} running, {e['converted']} converted ({_pct(e['conversion_rate'])})\n")  # fmt: skip
    rows = [
        [s["step"], s["kind"], s["entered"], s["completed"], s["sends"].get("sent", 0),
         sum(n for k, n in s["sends"].items() if k == "skipped"), s["sends"].get("failed", 0),
         ", ".join(f"{k} {v}" for k, v in sorted(s["reasons"].items())) or "-"]
        for s in body["steps"]
    ]  # fmt: skip
    typer.echo(table(["step", "kind", "entered", "completed", "sent", "skipped", "failed", "reasons"], rows))
    for split in body["splits"]:
        typer.echo(f"\nsplit {split['step']}" + ("" if split["ready"] else " (significance shown from 200 per arm)"))
        arm_rows = [
            [a["arm"], a["enrolled"], a["converted"], _pct(a["rate"]),
             f"{_pct(a['ci95'][0])} - {_pct(a['ci95'][1])}" if a["ci95"] else "-",
             "-" if a["significant"] is None else ("yes" if a["significant"] else "no")]
            for a in split["arms"]
        ]  # fmt: skip
        typer.echo(table(["arm", "enrolled", "converted", "rate", "95% interval", "significant"], arm_rows))


def enrollment(
    enrollment_id: Annotated[str, typer.Argument(help="Enrollment id.")],
    action: Annotated[Action | None, typer.Option(help="Act on it instead (operator).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """One enrollment, live: current step, next wake-up, path, step results; or act on it."""
    with api_client() as client:
        if action:
            fail_on_error(client.post(f"/v1/enrollments/{enrollment_id}/{action.value}"))
            typer.echo(f"{enrollment_id}: {action.value} done")
            return
        resp = client.get(f"/v1/enrollments/{enrollment_id}")
        if as_json:
            report(resp)
            return
        body = fail_on_error(resp)
    live = body.get("live") or {}
    facts = [
        ("journey", f"{body['journey_id']} v{body['version']}"), ("customer", body["customer_id"]),
        ("status", live.get("status") or body["status"]), ("current step", live.get("current_step")),
        ("next wake-up", live.get("next_wake_at")), ("arm", live.get("arm") or body.get("arm")),
        ("entered", body["entered_at"]), ("exit reason", live.get("exit_reason") or body.get("exit_reason")),
        ("needs attention", live.get("attention_reason")),
        ("path", " > ".join(live.get("path") or body.get("path") or [])),
    ]  # fmt: skip
    width = max(len(k) for k, _ in facts)
    for key, value in facts:
        typer.echo(f"{key.ljust(width)}  {value if value not in (None, '') else '-'}")
    for step, result in (live.get("steps") or {}).items():
        typer.echo(f"  {step}: {json.dumps(result, ensure_ascii=False, default=str)}")


def bulk(
    action: Annotated[Action, typer.Argument(help="What to do with each.")],
    journey_id: Annotated[str, typer.Argument(help="Journey id.")],
    state: Annotated[str, typer.Option("--status", help="Enrollments in this state.")] = "needs_attention",
) -> None:
    """Act on every enrollment of a journey in a state (default: the parked ones), with progress."""
    verb = Action(action).value
    with api_client() as client:
        done, refused = 0, []
        tried: set[str] = set()
        while True:
            # The API answers at most 1,000 per page; acted-on enrollments leave the state,
            # so asking again returns the next ones until none are left.
            page = fail_on_error(client.get(f"/v1/journeys/{journey_id}/enrollments", params={"status": state}))
            targets = [row for row in page if row["enrollment_id"] not in tried]
            if not targets:
                break
            with typer.progressbar(targets, label=f"{verb} {len(targets)} enrollment(s)") as bar:
                for row in bar:
                    tried.add(row["enrollment_id"])
                    resp = client.post(f"/v1/enrollments/{row['enrollment_id']}/{verb}")
                    if resp.status_code < 400:
                        done += 1
                    else:
                        refused.append((row["enrollment_id"], _error_message(resp)))
    typer.echo(f"{done} done, {len(refused)} refused")
    for enrollment_id, why in refused:
        typer.echo(f"  {enrollment_id}: {why}", err=True)
    if refused:
        raise typer.Exit(1)


def _error_message(resp: httpx.Response) -> str:
    try:
        return str(resp.json().get("error", {}).get("message", resp.text))
    except ValueError:
        return f"HTTP {resp.status_code}: {resp.text[:200]}"


def register(app: typer.Typer) -> None:
    """Add the operator commands to the ``journeys`` CLI."""
    for command in (pause, resume, archive, status, stats, enrollment, bulk):
        app.command()(command)
