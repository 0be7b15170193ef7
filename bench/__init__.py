"""Ash's benchmarks: one module per question, each one command (`python -m bench.<name>`), all against the fake
model (tests/fakes/anthropic_api.py) answering at once, so that only Ash is measured. `python -m bench` runs them all.
"""
