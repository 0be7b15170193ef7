"""The `ash` command line: runs the server and talks to it over the REST API."""
