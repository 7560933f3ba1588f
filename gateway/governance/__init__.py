"""Governance: runtime keys (``keys`` the model, ``keycache`` the per-replica cache, ``keystore`` the
changes made through the admin API at run time), the catalog of models and prices, and costs."""
