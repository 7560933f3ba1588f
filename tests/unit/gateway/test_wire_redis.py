"""The Redis connection helper's options (gateway/wire/redis.py); its connections: tests/e2e/test_redis_wire.py."""

from __future__ import annotations

from redis.asyncio import Redis, RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError

from gateway.wire.redis import ClientOptions


def test_each_user_keeps_its_own_timeouts_and_retries() -> None:
    kw = ClientOptions(2.0, 1.0, retries=1, decode_responses=True).kwargs()
    assert (kw["socket_timeout"], kw["socket_connect_timeout"], kw["decode_responses"]) == (2.0, 1.0, True)
    assert kw["retry"].get_retries() == 1
    assert kw["retry"]._supported_errors == (RedisConnectionError,)  # a timeout is never retried
    assert "driver_info" not in kw and "health_check_interval" not in kw


def test_lean_options_skip_setinfo_and_health_checks_and_suit_the_cluster_client() -> None:
    opts = ClientOptions(0.25, 0.25, lean=True)
    plain, cluster = opts.kwargs(), opts.kwargs(cluster=True)
    assert plain["retry"].get_retries() == 0 and "decode_responses" not in plain
    assert plain["driver_info"] is None and plain["health_check_interval"] == 0
    assert cluster["driver_info"] is None and "health_check_interval" not in cluster
    # Both clients accept them (nothing connects until a command is sent).
    Redis.from_url("redis://127.0.0.1:1/0", **plain)
    RedisCluster.from_url("redis://127.0.0.1:1/0", **cluster)
