"""Runtime keys and teams, without servers: request validation, the stored form, the cache's
request path (what reaches Redis for unknown keys), the in-process store, team limits and usage."""

from __future__ import annotations

import asyncio
import hashlib
import time
from typing import Any

import orjson
import pytest

from gateway.accounting.usage.redis_store import hash_increments
from gateway.accounting.usage.store import MemoryStore
from gateway.config import ConfigError, Limits, parse_config
from gateway.errors import GatewayError
from gateway.governance import keystore as ks
from gateway.governance.keystore import KeyStore, RuntimeKey, new_secret, rfc3339
from gateway.pipeline.auth import KeyTable
from gateway.pipeline.limits import Limiter, TeamLimits
from gateway.routes.keys import KeyCreate, KeyPatch, Rotate, _validated, parse_time
from tests.support.usage import make_record


def bad(model: type, body: dict[str, Any]) -> GatewayError:
    with pytest.raises(GatewayError) as e:
        _validated(model, orjson.dumps(body))
    assert e.value.status == 400
    return e.value


# -- validation ------------------------------------------------------------------------------------
def test_expires_at_accepts_rfc3339_and_unix_seconds() -> None:
    assert parse_time("2027-06-30T00:00:00Z") == 1814313600.0
    assert parse_time("2027-06-30T02:00:00+02:00") == 1814313600.0
    assert parse_time(1814313600) == 1814313600.0
    assert parse_time(1814313600.5) == 1814313600.5
    assert parse_time(None) is None
    for v in ("2027-06-30T00:00:00", "2027-06-30", "tomorrow", True, 1_000_000, "2020-01-01T00:00:00Z", 1e15):
        with pytest.raises(ValueError):
            parse_time(v)
    assert rfc3339(1814313600.0) == "2027-06-30T00:00:00Z"
    assert rfc3339(1814313600.25) == "2027-06-30T00:00:00.250Z"


def test_create_body_is_validated_with_the_field_named() -> None:
    spec = _validated(KeyCreate, b'{"name": "checkout-svc", "team": "payments", "limits": {"rpm": 600}}')
    assert spec.name == "checkout-svc" and spec.models == ["*"] and spec.limits == Limits(rpm=600)
    cases = [
        ({}, "name", "missing_required_parameter"),
        ({"name": "-leading-dash"}, "name", "invalid_value"),
        ({"name": "a" * 65}, "name", "invalid_value"),
        ({"name": "has space"}, "name", "invalid_value"),
        ({"name": 5}, "name", "invalid_value"),
        ({"name": "ok", "admin": True}, "admin", "unknown_parameter"),
        ({"name": "ok", "limits": {"rpm": "600"}}, "limits.rpm", "invalid_value"),
        ({"name": "ok", "limits": {"rpm": 0}}, "limits.rpm", "invalid_value"),
        ({"name": "ok", "limits": {"rpx": 1}}, "limits.rpx", "unknown_parameter"),
        ({"name": "ok", "models": []}, "models", "invalid_value"),
        ({"name": "ok", "models": "openai/*"}, "models", "invalid_value"),
        ({"name": "ok", "team": "a/b"}, "team", "invalid_value"),
        ({"name": "ok", "metadata": {str(i): "v" for i in range(17)}}, "metadata", "invalid_value"),
        ({"name": "ok", "metadata": {"a": 1}}, "metadata.a", "invalid_value"),
        ({"name": "ok", "expires_at": "2020-01-01T00:00:00Z"}, "expires_at", "invalid_value"),
        ({"name": "ok", "expires_at": "soon"}, "expires_at", "invalid_value"),
    ]
    for body, param, code in cases:
        e = bad(KeyCreate, body)
        assert (e.param, e.code) == (param, code), body
        assert e.body()["error"]["type"] == "invalid_request_error"
    for raw in (b"not json", b"[1, 2]", b'"name"'):
        with pytest.raises(GatewayError) as err:
            _validated(KeyCreate, raw)
        assert err.value.status == 400 and err.value.code == "invalid_json"


def test_patch_and_rotate_bodies() -> None:
    p = _validated(KeyPatch, b'{"disabled": true, "team": null, "expires_at": null}')
    assert p.model_fields_set == {"disabled", "team", "expires_at"} and p.team is None
    assert bad(KeyPatch, {"models": None}).param == "models"
    assert bad(KeyPatch, {"disabled": "yes"}).param == "disabled"
    assert bad(KeyPatch, {"name": "rename"}).param == "name"
    assert _validated(Rotate, b'{"grace_seconds": 3600}').grace_seconds == 3600
    assert bad(Rotate, {"grace_seconds": -1}).param == "grace_seconds"
    assert bad(Rotate, {"grace_seconds": 31 * 86400}).param == "grace_seconds"


# -- the stored form ---------------------------------------------------------------------------------
def test_secrets_are_long_random_and_only_their_digest_is_kept() -> None:
    a, da = new_secret()
    b, _ = new_secret()
    assert a.startswith("sk-sy-") and a != b and len(a) >= len("sk-sy-") + 43  # 32 bytes, urlsafe base64
    assert da == hashlib.sha256(a.encode()).hexdigest()
    k = RuntimeKey(name="svc", digest=da, team="payments", limits=Limits(tpm=10), metadata={"owner": "x"})
    h = k.to_hash()
    assert a not in orjson.dumps(h).decode()
    assert RuntimeKey.from_hash("svc", h) == k
    view = k.public()
    assert da not in orjson.dumps(view).decode() and "digest" not in view and "key" not in view


def test_accepts_checks_expiry_disabled_and_grace_on_the_clock() -> None:
    now = time.time()
    k = RuntimeKey(name="svc", digest="d1", prev_digest="d0", prev_until=now + 10)
    assert k.accepts("d1", now) and k.accepts("d0", now) and not k.accepts("dx", now)
    assert not k.accepts("d0", now + 11) and k.accepts("d1", now + 11)
    assert not RuntimeKey(name="s", digest="d1", disabled=True).accepts("d1", now)
    expiring = RuntimeKey(name="s", digest="d1", expires_at=now + 5)
    assert expiring.accepts("d1", now) and not expiring.accepts("d1", now + 5)
    assert expiring.status(now + 5) == "expired"


# -- the cache's request path ----------------------------------------------------------------------
class FakeRedis:
    """Counts reads; holds an index and hashes like the real layout."""

    def __init__(self, fail: bool = False) -> None:
        self.idx: dict[str, str] = {}
        self.hashes: dict[str, dict[str, str]] = {}
        self.reads = 0
        self.fail = fail

    async def get(self, k: str) -> str | None:
        self.reads += 1
        if self.fail:
            raise ConnectionError("down")
        await asyncio.sleep(0.001)
        return self.idx.get(k.rsplit(":", 1)[1])

    async def hgetall(self, k: str) -> dict[str, str]:
        self.reads += 1
        return self.hashes.get(k.rsplit(":", 1)[1], {})


class FakeStore:
    def __init__(self, r: FakeRedis) -> None:
        self.r = r

    async def client(self) -> FakeRedis:
        return self.r


def synced_store(r: FakeRedis) -> KeyStore:
    s = KeyStore(FakeStore(r), "t:")
    s.synced = True  # as after a full sync (none needed here: the fake has no keys set)
    return s


async def authenticate(s: KeyStore, digest: str) -> str:
    try:
        p = s.find(digest) or await s.look_up(digest)
    except GatewayError as e:
        return str(e.status)
    return p.name


def test_known_key_never_touches_redis_and_unknown_is_looked_up_once() -> None:
    async def run() -> None:
        r = FakeRedis()
        s = synced_store(r)
        _, digest = new_secret()
        s._install(RuntimeKey(name="svc", digest=digest))
        assert await authenticate(s, digest) == "svc" and r.reads == 0

        # Made elsewhere a moment ago: found in Redis at once, then cached.
        _, fresh = new_secret()
        r.idx[fresh] = "fresh"
        r.hashes["fresh"] = RuntimeKey(name="fresh", digest=fresh).to_hash()
        assert await authenticate(s, fresh) == "fresh" and r.reads == 2
        assert await authenticate(s, fresh) == "fresh" and r.reads == 2

        # A wrong key: one read, then remembered (concurrent requests share the lookup).
        wrong = hashlib.sha256(b"nope").hexdigest()
        assert await asyncio.gather(*(authenticate(s, wrong) for _ in range(50))) == ["401"] * 50
        assert r.reads == 3
        assert await authenticate(s, wrong) == "401" and r.reads == 3

    asyncio.run(run())


def test_a_flood_of_distinct_wrong_keys_costs_a_bounded_number_of_reads() -> None:
    async def run() -> tuple[int, float]:
        r = FakeRedis()
        s = synced_store(r)
        t0 = time.monotonic()
        for i in range(10_000):
            assert await authenticate(s, hashlib.sha256(f"guess-{i}".encode()).hexdigest()) == "401"
        return r.reads, time.monotonic() - t0

    reads, elapsed = asyncio.run(run())
    assert reads <= ks.LOOKUP_BURST + ks.LOOKUP_RATE * elapsed + 1, (reads, elapsed)


def test_redis_down_or_not_synced_refuses_unknown_keys_without_waiting() -> None:
    async def run() -> None:
        r = FakeRedis(fail=True)
        s = synced_store(r)
        _, known = new_secret()
        s._install(RuntimeKey(name="svc", digest=known))
        for i in range(20):
            assert await authenticate(s, hashlib.sha256(str(i).encode()).hexdigest()) == "401"
        assert r.reads == 1  # the first failure starts a cooldown
        assert await authenticate(s, known) == "svc"
        s.synced = False
        s._skip_until = 0
        assert await authenticate(s, hashlib.sha256(b"x").hexdigest()) == "401" and r.reads == 1

    asyncio.run(run())


def test_in_process_store_creates_changes_rotates_revokes_and_audits() -> None:
    async def run() -> None:
        s = KeyStore(None, "t:")
        await s.start()
        key, secret = await s.create(RuntimeKey(name="svc", digest="", team="payments"), "ops")
        digest = hashlib.sha256(secret.encode()).hexdigest()
        assert key.created_by == "ops" and await authenticate(s, digest) == "svc"
        with pytest.raises(GatewayError) as e:
            await s.create(RuntimeKey(name="svc", digest=""), "ops")
        assert e.value.status == 409
        await s.update("svc", {"disabled": True}, "ops")
        assert await authenticate(s, digest) == "401"
        await s.update("svc", {"disabled": False, "limits": Limits(rpm=5)}, "ops")
        assert s.find(digest).limits == Limits(rpm=5)  # type: ignore[union-attr]
        _, new = await s.rotate("svc", 60, "ops")
        new_digest = hashlib.sha256(new.encode()).hexdigest()
        assert await authenticate(s, digest) == "svc" and await authenticate(s, new_digest) == "svc"
        await s.rotate("svc", 0, "ops")
        assert await authenticate(s, new_digest) == "401"
        await s.revoke("svc", "ops")
        assert s.get("svc") is None
        with pytest.raises(GatewayError) as e:
            await s.revoke("svc", "ops")
        assert e.value.status == 404
        rows, more = await s.audit(10)
        assert [r["action"] for r in rows] == ["revoke", "rotate", "rotate", "update", "update", "create"]
        assert not more and all(r["admin"] == "ops" and r["key"] == "svc" for r in rows)
        assert secret not in str(rows) and digest not in str(rows)
        older, _ = await s.audit(2, before=rows[1]["id"])
        assert [r["id"] for r in older] == [rows[2]["id"], rows[3]["id"]]

    asyncio.run(run())


# -- auth, teams ---------------------------------------------------------------------------------------
def cfg(**extra: Any) -> Any:
    return parse_config(
        {
            "keys": [
                {"name": "svc", "key": "sk-config", "team": "payments"},
                {"name": "ops", "key": "sk-ops", "admin": True},
            ],
            "providers": {"mock": {"kind": "mock"}},
            **extra,
        },
        env={},
    )


def test_runtime_keys_authenticate_and_config_names_win() -> None:
    async def run() -> None:
        s = KeyStore(None, "t:")
        table = KeyTable(cfg(), s)
        _, secret = await s.create(RuntimeKey(name="app", digest="", team="payments"), "ops")
        p = table.authenticate(f"Bearer {secret}".encode(), None)
        assert p is not None and p.name == "app" and p.team == "payments" and not p.admin
        assert table.authenticate(b"Bearer sk-config", None).name == "svc"  # type: ignore[union-attr]
        # A runtime key sharing a config key's name (made before the config named it) is shadowed.
        _, clash = await s.create(RuntimeKey(name="svc", digest=""), "ops")
        with pytest.raises(GatewayError) as e:
            table.authenticate(None, clash.encode())
        assert e.value.status == 401

    asyncio.run(run())


def test_teams_config() -> None:
    c = cfg(teams={"payments": {"limits": {"rpm": 6000}}, "search": {}})
    assert c.teams["payments"].limits.rpm == 6000 and c.keys[0].team == "payments"
    assert KeyTable(c).team_limits == {"payments": Limits(rpm=6000)}
    for teams, problem in (
        ({"payments": {"limits": {"rpx": 1}}}, "teams.payments.limits.rpx: unknown field"),
        ({"payments": {"budget": 1}}, "teams.payments.budget: unknown field"),
        ({"bad team": {}}, "teams.bad team: team names must be"),
    ):
        with pytest.raises(ConfigError) as e:
            cfg(teams=teams)
        assert any(problem in p for p in e.value.problems), e.value.problems


def test_team_limits_are_shared_by_the_teams_keys() -> None:
    async def run() -> None:
        lim = Limiter("", "t:", "allow")
        team = Limits(rpm=3)
        for name in ("a", "b", "a"):
            adm = await lim.admit(name, Limits(rpm=100), 0, team=TeamLimits("payments", team))
            lim.settle(adm, 0)
        headers = dict(adm.headers)
        assert headers[b"x-ratelimit-remaining-requests"] == b"0"  # the team's, tighter than the key's 97
        with pytest.raises(GatewayError) as e:
            await lim.admit("b", Limits(), 0, team=TeamLimits("payments", team))
        assert e.value.status == 429 and "team 'payments'" in e.value.message
        assert (await lim.admit("c", Limits(), 0, team=TeamLimits("other", team))).key_name == "team:other"
        # A team with token limits: the key's charge is refunded when the team refuses.
        tokens = Limits(tpm=100)
        adm = await lim.admit("t1", Limits(tpm=1000), 80, team=TeamLimits("tok", tokens))
        lim.settle(adm, 90)
        assert lim.memory.keys["team:tok"].buckets and sum(lim.memory.keys["team:tok"].buckets.values()) == 90
        with pytest.raises(GatewayError):
            await lim.admit("t1", Limits(tpm=1000), 50, team=TeamLimits("tok", tokens))
        assert sum(lim.memory.keys["t1"].buckets.values()) == 90

    asyncio.run(run())


def test_usage_is_kept_per_team_too() -> None:
    recs = [make_record(1, key="a", team="payments"), make_record(2, key="b", team="payments"), make_record(3)]
    inc = hash_increments(recs, "sy:")
    assert inc["sy:team:payments:20250615"]["requests"] == 2
    assert inc["sy:team:payments:20250615"]["mock/echo|total_tokens"] == 16
    assert inc["sy:usage:a:20250615"]["requests"] == 1

    async def run() -> Any:
        m = MemoryStore()
        for r in recs:
            m.add(r)
        return await m.team_usage("payments", "20250615")

    totals, models = asyncio.run(run())
    assert totals["requests"] == 2 and models["mock/echo"]["prompt_tokens"] == 6
