"""gateway/accounting/usage/redis_store.py's pure parts: where the idempotency guards live."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.accounting.usage.redis_store import guard_key
from tests.support.usage import DAY


# Hash tag rules and their edge cases ("foo{}{bar}" hashes whole, "foo{{bar}}zap" hashes "{bar"):
# https://redis.io/docs/latest/operate/oss_and_stack/reference/cluster-spec/#hash-tags and
# https://support.huaweicloud.com/intl/en-us/dcs_faq/dcs-faq-211228001.html
@pytest.mark.parametrize(
    "prefix,name",
    [
        ("sy:", "team-a"),
        ("{sy}:", "team-a"),
        ("sy:", "team{a}"),
        ("sy:", "we}ird{"),
        ("sy:", "foo{}{bar}"),
        ("sy:", "foo{{bar}}zap"),
        ("", "k"),
    ],
)
def test_guard_shares_the_data_keys_cluster_slot(prefix: str, name: str) -> None:
    from redis.crc import key_slot

    for data_key in (f"{prefix}usage:{name}:{DAY}", f"{prefix}log"):
        g = guard_key(prefix, data_key, "batch1")
        assert g.startswith(f"{prefix}seen:")
        assert key_slot(g.encode()) == key_slot(data_key.encode()), (data_key, g)


@settings(max_examples=300, deadline=None)
@given(ts=st.floats(min_value=-2e9, max_value=5e9, allow_nan=False))
def test_the_remembered_utc_day_is_strftimes(ts: float) -> None:
    from gateway.accounting.usage.record import utc_day

    assert utc_day(ts) == time.strftime("%Y%m%d", time.gmtime(ts))
