"""Governance: runtime keys (``keystore``) and the times they carry (``timefmt``)."""
