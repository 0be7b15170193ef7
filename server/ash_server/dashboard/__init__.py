"""The read-only dashboard's pieces that know nothing of HTTP: sign-in tokens, view models, templates and assets.

The routes are in `api/dashboard.py`; docs/dashboard.md describes what the pages show and how sign-in works.
"""
