"""The read-only dashboard: its HTTP layer (`signin.py`: router and sign-in; `pages.py`) on pieces that know nothing
of HTTP (sign-in tokens, view models, templates and assets). docs/dashboard.md describes what the pages show and how
sign-in works.
"""
