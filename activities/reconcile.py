"""Finding a customer mass send that an interrupted attempt already created.

``add_msg_template`` has no idempotency key or duplicate check (wecom-reference.md §3.1):
when an attempt dies after WeCom created the task but before the message log recorded
it (worker killed, or WeCom answered after our timeout), a plain retry creates a second
task and the customer gets the message twice. The send activity records its intent (the
``sending`` row) before calling WeCom, so a retry that finds that row asks WeCom
instead: an enterprise-created task since the first attempt, with the same content, to
the same customer from the same sender, that no other send attempt has claimed, is ours.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from activities.wecom import WeComClient

#: Allowance for clock difference between us and WeCom around the first attempt.
CLOCK_SLACK = timedelta(seconds=120)


def _shape(payload: dict[str, Any]) -> tuple[str, tuple[str, ...]]:
    # Text must match exactly; attachments by type only, as WeCom may echo them rewritten
    # (media ids, picture URLs).
    text = str((payload.get("text") or {}).get("content") or "")
    kinds = tuple(str(a.get("msgtype")) for a in payload.get("attachments") or [])
    return text, kinds


async def find_mass_send(wecom: WeComClient, payload: dict[str, Any], *, since: datetime, until: datetime,
                         claimed: set[str]) -> str | None:  # fmt: skip
    """The msgid of an unclaimed task matching ``payload`` created in ``[since, until]``, or None.

    Args:
        wecom: WeCom client.
        payload: The ``add_msg_template`` request this attempt would make.
        since: When the first attempt began (the window opens ``CLOCK_SLACK`` earlier).
        until: Now.
        claimed: msgids other send attempts recorded (never adopted).

    Raises:
        WeComError: WeCom could not answer (retryable ones leave the decision to a retry).
    """
    wanted = _shape(payload)
    sender = str(payload.get("sender") or "")
    recipients = set(payload.get("external_userid") or [])
    start, end = int((since - CLOCK_SLACK).timestamp()), int((until + CLOCK_SLACK).timestamp())
    candidates: list[dict[str, Any]] = []
    cursor = ""
    while True:
        page = await wecom.groupmsg_list(start, end, cursor=cursor)
        for task in page.get("group_msg_list") or []:
            msgid = str(task.get("msgid") or "")
            if msgid and msgid not in claimed and _shape(task) == wanted:
                candidates.append(task)
        cursor = str(page.get("next_cursor") or "")
        if not cursor:
            break
    # Oldest first: the first attempt's task is the earliest one that is ours.
    for task in sorted(candidates, key=lambda t: int(t.get("create_time") or 0)):
        result = await wecom.groupmsg_send_result(str(task["msgid"]), sender)
        if recipients <= {str(r.get("external_userid")) for r in result.get("send_list") or []}:
            return str(task["msgid"])
    return None
