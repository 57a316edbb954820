"""The control channel's typed messages: their wire shapes, what the engine answers a bad one, a real channel
end to end, and the data-parallel client's fan-out over typed replies."""

from __future__ import annotations

import asyncio
import json

import pytest

from continuum.control.channel import ControlClient, ControlServer
from continuum.control.dp import DPControlClient, dp_rank_and_size
from continuum.control.engine_side import EngineControl
from continuum.control.messages import (
    BadMessage,
    ClientGone,
    EndSession,
    ErrorReply,
    EventsRead,
    OkReply,
    PrefetchSession,
    SessionQuery,
    StatsQuery,
    ToolChosen,
    parse_reply,
    parse_request,
)
from continuum.sched.scheduler import scheduler_for
from continuum_eval.sim.engine.vllm_offline import build_scheduler, make_request, run_step

REQUESTS = [StatsQuery(), SessionQuery("s1"), EndSession("s1"), ClientGone("s1"), ToolChosen("s1", "pytest"),
            EventsRead("s1", 16), PrefetchSession("s1")]


def test_requests_keep_their_wire_shapes_and_parse_back():
    assert [m.to_wire() for m in REQUESTS] == [
        {"op": "stats"}, {"op": "session", "id": "s1"}, {"op": "end", "id": "s1"}, {"op": "disconnect", "id": "s1"},
        {"op": "tool", "id": "s1", "tool": "pytest"}, {"op": "delivered", "id": "s1", "tokens": 16},
        {"op": "prefetch", "id": "s1"}]
    for m in REQUESTS:
        assert parse_request(json.loads(json.dumps(m.to_wire()))) == m


@pytest.mark.parametrize("raw", [
    {"op": "reboot"}, {"id": "s1"}, [], "stats", {"op": "session"}, {"op": "end", "id": 7},
    {"op": "tool", "id": "s1"}, {"op": "tool", "id": "s1", "tool": 3},
    {"op": "delivered", "id": "s1", "tokens": "16"}, {"op": "delivered", "id": "s1", "tokens": True},
    {"op": "prefetch"}])
def test_a_bad_request_does_not_parse(raw):
    with pytest.raises(BadMessage):
        parse_request(raw)


def test_replies_keep_their_wire_shapes_and_parse_back():
    for reply in (OkReply(), OkReply(session={"id": "s1", "ttl_s": None}), OkReply(stats={"num_programs": 0}),
                  ErrorReply("unknown session 's1'", 404), ErrorReply("boom")):
        assert parse_reply(json.loads(json.dumps(reply.to_wire()))) == reply
    assert ErrorReply("boom").to_wire() == {"ok": False, "error": "boom"}  # the engine failed: no HTTP status
    assert OkReply(session={"ttl_s": None}).to_wire() == {"ok": True, "session": {"ttl_s": None}}
    assert isinstance(parse_reply("garbage"), ErrorReply)


def engine() -> EngineControl:
    cls, ctor = scheduler_for("continuum")
    s = build_scheduler(cls, num_blocks=64, block_size=32, **ctor)
    s.add_request(make_request("a1", list(range(100, 200)), 4, session_id="A"))
    while s.has_requests():
        run_step(s)
    return EngineControl(s)


def test_the_engine_answers_bad_messages_400_and_unknown_sessions_404():
    ctl = engine()
    assert ctl.handle({"op": "reboot"}) == {"ok": False, "error": "unknown control op 'reboot'", "status": 400}
    assert ctl.handle({"op": "tool", "id": "A", "tool": 3})["status"] == 400
    assert ctl.handle({"op": "session", "id": "B"}) == {"ok": False, "error": "unknown session 'B'", "status": 404}
    reply = ctl.handle({"op": "tool", "id": "A", "tool": "ls"})
    assert reply["ok"] and reply["session"]["id"] == "A" and reply["session"]["last_tool"] == "ls"
    assert ctl.handle({"op": "delivered", "id": "A", "tokens": 5})["ok"]
    stats = ctl.handle({"op": "stats"})["stats"]
    assert stats["num_programs"] == 1 and stats["programs"][0]["id"] == "A"
    prefetch = ctl.handle({"op": "prefetch", "id": "A"})["session"]  # no host KV tier here: nothing to load
    assert prefetch["id"] == "A" and prefetch["prefetch"] == "no_tier"
    assert ctl.handle({"op": "prefetch", "id": "B"})["status"] == 404
    assert ctl.handle({"op": "end", "id": "A"})["session"]["ended"]


def test_a_real_channel_carries_typed_requests_and_replies(tmp_path):
    seen = []

    def handler(msg: dict) -> dict:
        seen.append(msg)
        if msg["op"] == "stats":
            raise RuntimeError("boom")
        return OkReply(session={"id": msg["id"]}).to_wire()

    server = ControlServer(f"ipc://{tmp_path}/ctl.ipc", handler)
    try:
        client = ControlClient(server.address)
        ok = asyncio.run(client.call(EventsRead("s1", 16)))
        failed = asyncio.run(client.call(StatsQuery()))
    finally:
        server.close()
    assert seen == [{"op": "delivered", "id": "s1", "tokens": 16}, {"op": "stats"}]
    assert ok == OkReply(session={"id": "s1"})
    assert failed == ErrorReply("RuntimeError: boom")  # a handler that fails does not kill the engine


class Rank:
    """A rank's control client that answers (or times out) without a socket."""

    def __init__(self, reply) -> None:
        self.reply = reply

    async def call(self, request):
        if isinstance(self.reply, Exception):
            raise self.reply
        return self.reply


def fan_out(request, *replies):
    dp = DPControlClient("ipc:///unused", len(replies))
    dp.clients = [Rank(r) for r in replies]
    return asyncio.run(dp.call(request))


def test_the_data_parallel_client_answers_from_the_rank_that_knows_the_program():
    unknown = ErrorReply.unknown_session("p")
    assert fan_out(SessionQuery("p"), unknown, OkReply(session={"id": "p"})) == OkReply(session={"id": "p", "rank": 1})
    assert fan_out(SessionQuery("p"), unknown, unknown) == unknown
    assert fan_out(SessionQuery("p"), TimeoutError(), unknown) == unknown
    with pytest.raises(TimeoutError):
        fan_out(EndSession("p"), TimeoutError(), TimeoutError())


def test_the_data_parallel_client_merges_stats_or_says_which_rank_is_missing():
    def stats(n: int) -> OkReply:
        return OkReply(stats={"programs": [{"id": f"p{n}"}], "num_programs": 1, "kv": {"usage": 0.5}})

    merged = fan_out(StatsQuery(), stats(0), stats(1))
    assert isinstance(merged, OkReply) and merged.stats["num_programs"] == 2
    assert [p["rank"] for p in merged.stats["programs"]] == [0, 1]
    missing = fan_out(StatsQuery(), stats(0), TimeoutError())
    assert missing == ErrorReply("ranks [1] did not answer", 503)
    assert fan_out(StatsQuery(), stats(0), ErrorReply("boom")) == ErrorReply("boom")


def test_rank_and_size_without_a_vllm_config_come_from_serve():
    assert dp_rank_and_size(None, 3) == (0, 3)
