"""The stack's secrets in Secret Manager. The server's service account may read each of them (and nothing else in
Secret Manager), the runners' one only those a runner needs; the startup script fetches them by name at boot, so no
value is in instance metadata."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp


@dataclass
class SecretsArgs:
    reader: pulumi.Input[str]  # "serviceAccount:<email>"
    runner_reader: pulumi.Input[str] | None = None  # the runners' service account, in multi-machine mode


class Secrets(pulumi.ComponentResource):
    def __init__(self, name: str, args: SecretsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("ash:gcp:Secrets", name, None, opts)
        self._name = name
        self._reader = args.reader
        self._runner_reader = args.runner_reader
        self.secrets: dict[str, gcp.secretmanager.Secret] = {}
        self.register_outputs({})

    def put(self, key: str, value: pulumi.Input[str], *, runners: bool = False) -> gcp.secretmanager.Secret:
        """The secret `<stack>-<key>`, readable by the server and, with `runners`, by the runners."""
        child = pulumi.ResourceOptions(parent=self)
        secret = gcp.secretmanager.Secret(
            f"{self._name}-{key}",
            secret_id=f"{self._name}-{key}",
            replication=gcp.secretmanager.SecretReplicationArgs(auto=gcp.secretmanager.SecretReplicationAutoArgs()),
            opts=child,
        )
        gcp.secretmanager.SecretVersion(
            f"{self._name}-{key}", secret=secret.id, secret_data=pulumi.Output.secret(value), opts=child
        )
        readers = {f"{self._name}-{key}": self._reader}
        if runners:
            if self._runner_reader is None:
                raise ValueError("no runner service account to grant")
            readers[f"{self._name}-{key}-runner"] = self._runner_reader
        for grant, reader in readers.items():
            gcp.secretmanager.SecretIamMember(
                grant, secret_id=secret.id, role="roles/secretmanager.secretAccessor", member=reader, opts=child
            )
        self.secrets[key] = secret
        return secret
