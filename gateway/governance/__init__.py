"""Governance: runtime keys (``keystore``), created and changed through the admin API at run time."""
