"""Evals: cases, runs and results of an agent's evaluation."""

from __future__ import annotations
