"""`python -m ash_cli`: what `ash start` spawns, and what works without the `ash` script on PATH."""

from .main import app

app(prog_name="ash")
