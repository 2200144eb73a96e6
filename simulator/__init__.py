"""Synthetic marketplace that writes the raw tables (a stand-in for a warehouse export)."""
