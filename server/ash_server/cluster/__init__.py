"""Many machines: coordinators serve the public API and route each session to a runner that hosts its sandbox.

signing.py authenticates every request between them (both directions), tls.py adds optional mutual TLS,
registry.py is the coordinator's view of the runners (all of it in the database, so any coordinator can serve any
session), proxy.py forwards a session's requests to its runner, runner.py is the runner's side: registration,
heartbeats with its load, draining. docs/self-hosting/multi-machine.md and docs/decisions/0009-runner-transport.md.
"""
