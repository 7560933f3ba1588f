"""The Switchyard benchmark: what the gateway adds to every request (run ``python -m bench``)."""
