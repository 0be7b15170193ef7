"""Evals: run an agent's eval cases as real sessions and score the answers (the reference's eval/)."""
