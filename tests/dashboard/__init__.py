"""The read-only dashboard at /dashboard: sign-in, tenant scoping, escaping, and live pages in headless Chromium."""
