"""WeCom callbacks over HTTP: URL verification, encrypted events, retries, replays."""

from __future__ import annotations

import time
import uuid

import httpx

from activities.wecom.crypto import CallbackCrypto
from engine.config import FAKE_CORP_ID
from tests.conftest import CALLBACK_AES_KEY, CALLBACK_TOKEN, Stack
from tests.e2e.test_walking_skeleton import deploy, fake_messages
from tests.helpers import eventually

CRYPTO = CallbackCrypto(CALLBACK_TOKEN, CALLBACK_AES_KEY, FAKE_CORP_ID)


def add_event_xml(userid: str, external: str, state: str, created: int) -> str:
    return (
        f"<xml><ToUserName><![CDATA[{FAKE_CORP_ID}]]></ToUserName><FromUserName><![CDATA[sys]]></FromUserName>"
        f"<CreateTime>{created}</CreateTime><MsgType><![CDATA[event]]></MsgType>"
        "<Event><![CDATA[change_external_contact]]></Event><ChangeType><![CDATA[add_external_contact]]></ChangeType>"
        f"<UserID><![CDATA[{userid}]]></UserID><ExternalUserID><![CDATA[{external}]]></ExternalUserID>"
        f"<State><![CDATA[{state}]]></State><WelcomeCode><![CDATA[WC-{external}]]></WelcomeCode></xml>"
    )


def envelope(inner: str, *, timestamp: int | None = None, crypto: CallbackCrypto = CRYPTO) -> tuple[dict, str]:
    ts = str(timestamp or int(time.time()))
    nonce = uuid.uuid4().hex[:10]
    encrypted, sig = crypto.seal(inner.encode(), ts, nonce)
    body = f"<xml><Encrypt><![CDATA[{encrypted}]]></Encrypt><AgentID><![CDATA[1000002]]></AgentID>" \
           f"<ToUserName><![CDATA[{FAKE_CORP_ID}]]></ToUserName></xml>"  # fmt: skip
    return {"msg_signature": sig, "timestamp": ts, "nonce": nonce}, body


async def test_url_verification_echoes_the_plaintext_exactly(stack: Stack) -> None:
    ts, nonce = str(int(time.time())), "12345"
    echostr, sig = CRYPTO.seal(b"1288432023552776189", ts, nonce)
    async with httpx.AsyncClient(base_url=stack.api.url) as client:
        ok = await client.get("/wecom/callback", params={"msg_signature": sig, "timestamp": ts, "nonce": nonce,
                                                         "echostr": echostr})  # fmt: skip
        assert ok.status_code == 200 and ok.content == b"1288432023552776189"
        bad = await client.get("/wecom/callback", params={"msg_signature": "0" * 40, "timestamp": ts, "nonce": nonce,
                                                          "echostr": echostr})  # fmt: skip
        assert bad.status_code == 403


async def test_contact_added_callback_starts_a_journey_once(stack: Stack) -> None:
    jid = f"live-{uuid.uuid4().hex[:6]}"
    external = f"wm{uuid.uuid4().hex[:10]}"
    async with stack.client() as api:
        await deploy(
            api,
            f"""
journey: {jid}
trigger: {{event: wecom.contact_added, when: event.state == "store-{jid}"}}
steps:
  - send: {{channel: wecom.app, to: "{{{{ trigger.userid }}}}", text: "new friend {{{{ customer.external_userid }}}}"}}
""",
        )
    params, body = envelope(add_event_xml("zhangsan", external, f"store-{jid}", int(time.time())))
    async with httpx.AsyncClient(base_url=stack.api.url) as client:
        first = await client.post("/wecom/callback", params=params, content=body)
        assert first.status_code == 200 and first.content == b""
        retry = await client.post("/wecom/callback", params=params, content=body)  # WeCom retries the same payload
        assert retry.status_code == 200
    await eventually(lambda: fake_messages(stack, text=f"new friend {external}"), until=lambda m: len(m) == 1)
    async with stack.client() as api:
        profile = (await api.get(f"/v1/customers/{external}")).json()
        assert (profile["external_userid"], profile["owner_userid"]) == (external, "zhangsan")
        assert len((await api.get(f"/v1/journeys/{jid}/enrollments")).json()) == 1
    assert len(await fake_messages(stack, text=f"new friend {external}")) == 1


async def test_replays_forgeries_and_garbage_are_refused(stack: Stack) -> None:
    inner = add_event_xml("lisi", "wmold", "x", 1700000000)
    async with httpx.AsyncClient(base_url=stack.api.url) as client:
        params, body = envelope(inner, timestamp=int(time.time()) - 3600)
        assert (await client.post("/wecom/callback", params=params, content=body)).status_code == 403
        params, body = envelope(inner)
        forged = {**params, "msg_signature": "f" * 40}
        assert (await client.post("/wecom/callback", params=forged, content=body)).status_code == 403
        other_corp = CallbackCrypto(CALLBACK_TOKEN, CALLBACK_AES_KEY, "wwsomeoneelse")
        params, body = envelope(inner, crypto=other_corp)
        refused = await client.post("/wecom/callback", params=params, content=body)
        assert refused.status_code == 403 and "receiveid" in refused.json()["error"]["message"]
        garbage = await client.post("/wecom/callback", params=params, content=b"<not-xml")
        assert garbage.status_code == 400
        missing = await client.post("/wecom/callback", params={"timestamp": "1"}, content=body)
        assert missing.status_code == 422


async def test_the_fake_delivers_an_add_three_times_and_one_welcome_goes_out(stack: Stack) -> None:
    jid = f"welcome-{uuid.uuid4().hex[:6]}"
    external = f"wm{uuid.uuid4().hex[:10]}"
    async with stack.client() as api:
        await deploy(
            api,
            f"""
journey: {jid}
trigger: {{event: wecom.contact_added, when: event.state == "{jid}"}}
steps:
  - send: {{channel: wecom.welcome, text: "欢迎 {{{{ customer.external_userid }}}}"}}
""",
        )
    async with httpx.AsyncClient(base_url=stack.fake.url) as fake:
        config = {"callback_url": f"{stack.api.url}/wecom/callback", "callback_token": CALLBACK_TOKEN,
                  "callback_aes_key": CALLBACK_AES_KEY}  # fmt: skip
        assert (await fake.post("/_fake/config", json=config)).status_code == 200
        event = {"userid": "zhangsan", "external_userid": external, "state": jid, "repeat": 3}
        sent = (await fake.post("/_fake/callbacks/contact_added", json=event)).json()
    assert sent["statuses"] == [200, 200, 200]
    welcome = await eventually(lambda: fake_messages(stack, text=f"欢迎 {external}"), until=lambda m: len(m) >= 1)
    assert welcome[0]["api"] == "externalcontact/send_welcome_msg"
    assert welcome[0]["payload"]["welcome_code"] == sent["welcome_code"]
    async with stack.client() as api:
        assert len((await api.get(f"/v1/journeys/{jid}/enrollments")).json()) == 1
    assert len(await fake_messages(stack, text=f"欢迎 {external}")) == 1
