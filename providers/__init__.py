"""Provider adapters: one dialect per module or folder, pure translation with no I/O (see registry.py)."""
