"""Diagnostics of trained networks (the aliasing probe)."""
