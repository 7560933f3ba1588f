"""Usage accounting: the record each request produces and the stores that keep them."""

from gateway.accounting.usage.record import UsageRecord

__all__ = ["UsageRecord"]
