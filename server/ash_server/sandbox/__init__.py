"""Sandboxes: one isolated process tree per session, running the bridge."""
