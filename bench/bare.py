"""The bare baseline worker: ``python -m bench.bare --temporal ADDR --task-queue Q --wecom URL``.

One activity does the same HTTP call a journey send does (token cached in memory; no
database, Redis, policy or message log), so the gap to it is what Journeys costs.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

import httpx
from temporalio import activity
from temporalio.client import Client
from temporalio.worker import UnsandboxedWorkflowRunner, Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from bench.bare_workflow import BARE_SEND, BareMessage, BareSend
from engine.config import FAKE_AGENT_ID, FAKE_APP_SECRET, FAKE_CONTACT_SECRET, FAKE_CORP_ID


class BareSender:
    """The baseline's activity: one POST to WeCom (plus a token fetch once per app)."""

    def __init__(self, base_url: str) -> None:
        self._http = httpx.AsyncClient(base_url=base_url, timeout=10)
        self._tokens: dict[str, str] = {}

    async def _token(self, secret: str) -> str:
        if secret not in self._tokens:
            resp = await self._http.get("/cgi-bin/gettoken", params={"corpid": FAKE_CORP_ID, "corpsecret": secret})
            self._tokens[secret] = resp.json()["access_token"]
        return self._tokens[secret]

    @activity.defn(name=BARE_SEND)
    async def send(self, msg: BareMessage) -> str:
        if msg.channel == "wecom.customer":
            path, secret = "/cgi-bin/externalcontact/add_msg_template", FAKE_CONTACT_SECRET
            body: dict[str, Any] = {"chat_type": "single", "external_userid": [msg.to], "sender": msg.sender,
                                    "text": {"content": msg.text}}  # fmt: skip
        else:
            path, secret = "/cgi-bin/message/send", FAKE_APP_SECRET
            body = {"touser": msg.to, "msgtype": "text", "agentid": FAKE_AGENT_ID, "text": {"content": msg.text}}
        resp = await self._http.post(path, params={"access_token": await self._token(secret)}, json=body)
        data = resp.json()
        if data.get("errcode"):
            raise RuntimeError(f"WeCom error {data['errcode']}")
        return str(data.get("msgid", ""))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--temporal", required=True)
    parser.add_argument("--task-queue", default="bare")
    parser.add_argument("--wecom", required=True)
    parser.add_argument("--unsandboxed", action="store_true",
                        help="run the workflow without the SDK's sandbox, as the journey worker does")  # fmt: skip
    args = parser.parse_args()
    client = await Client.connect(args.temporal)
    sender = BareSender(args.wecom)
    # Same activity and local-activity concurrency as the journey worker (engine/worker.py).
    runner = UnsandboxedWorkflowRunner() if args.unsandboxed else SandboxedWorkflowRunner()
    worker = Worker(client, task_queue=args.task_queue, workflows=[BareSend], activities=[sender.send],
                    max_concurrent_activities=200, max_concurrent_local_activities=10,
                    workflow_runner=runner)  # fmt: skip
    await worker.run()


if __name__ == "__main__":
    asyncio.run(main())
