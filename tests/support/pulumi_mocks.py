"""What the AWS and GCP Pulumi mocks share: the record of what a program registered, how to look in it, and how to
run a program under mocks (infra/aws/tests/aws_mocks.py and infra/gcp/tests/gcp_mocks.py add each cloud's outputs)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pulumi


@dataclass
class Resource:
    typ: str
    name: str
    inputs: dict[str, Any]
    id: str


@dataclass
class RecordingMocks(pulumi.runtime.Mocks):
    """Pulumi mocks that keep every registered resource (its inputs) for the checks."""

    resources: list[Resource] = field(default_factory=list)
    probes: dict[str, Any] = field(default_factory=dict)  # what a program recorded about its outputs

    def record(self, args: pulumi.runtime.MockResourceArgs, outputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """`new_resource`'s answer for `args` with these outputs, remembered."""
        rid = f"{args.name}-id"
        self.resources.append(Resource(args.typ, args.name, dict(args.inputs), rid))
        return rid, outputs

    def of(self, typ: str) -> list[Resource]:
        return [r for r in self.resources if r.typ == typ]

    def one(self, typ: str, name: str | None = None) -> Resource:
        found = [r for r in self.of(typ) if name is None or r.name == name]
        assert len(found) == 1, (typ, name, [r.name for r in self.of(typ)])
        return found[0]

    def holding(self, secrets: Iterable[str], stores: Iterable[str]) -> list[str]:
        """The types of the resources, other than the secret `stores`, any of whose inputs carries a secret: text
        that could reach an instance, its metadata or the console."""
        values, kept = list(secrets), set(stores)
        return [
            r.typ
            for r in self.resources
            if r.typ not in kept and any(secret in json.dumps(r.inputs, default=str) for secret in values)
        ]


M = TypeVar("M", bound=RecordingMocks)


def run_program(
    mocks: M,
    project: str,
    config: dict[str, str],
    secret_keys: Iterable[str],
    build: Callable[[M], Any],
    monitor: Any = None,
) -> M:
    """Run `build(mocks)` under `mocks` and `config` (preview=False: every output the checks read is known);
    returns the mocks once every resource is registered (Pulumi waits for outstanding RPCs)."""
    pulumi.runtime.set_mocks(mocks, project=project, stack="test", preview=False, monitor=monitor)
    pulumi.runtime.set_all_config(config, secret_keys=[k for k in config if k in set(secret_keys)])

    @pulumi.runtime.test
    def program() -> Any:
        return build(mocks)

    program()
    return mocks
