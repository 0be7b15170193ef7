#!/usr/bin/env python3
"""Write /etc/ash/ash.env at boot: the stack's settings and the secrets read from the cloud's secret store.

The boot scripts of infra/aws, infra/gcp and infra/hetzner run it as root with the system python3 (standard library
only: it runs before Ash and its virtualenv are installed).

    write-env.py OUTPUT ssm --region R --prefix /ash/STACK [--endpoint-url URL] [--setting K=V]... [--secret V=NAME]...
    write-env.py OUTPUT gcp --project P --prefix STACK [--metadata-url URL] [--secret-manager-url URL] [...]
    write-env.py OUTPUT file --path /etc/ash/secrets.json [...]

`--secret ASH_API_KEY=api-key` reads the SSM parameter /ash/STACK/api-key (a SecureString, with the AWS CLI and the
instance role) or the Secret Manager secret STACK-api-key (its latest version, with the metadata server's token), or
the key `api-key` of a JSON object in a root-only file (infra/hetzner, which has no secret store: `pulumi up` writes
that file over SSH).
Every secret is read before anything is written: if one read fails or gives an empty value, the script names each
secret that failed and where it looked, exits 1 and leaves OUTPUT as it was (absent on a first boot). Otherwise it
writes a temporary file beside OUTPUT (mode 0600) and renames it into place. Secret values are never printed and
never put on a command line (the SSM value comes back on the AWS CLI's stdout, the token in a request header).

The endpoint options exist so that tests/distribution/test_cloud_boot.py can point the script at fakes; they default
to the real cloud and the stacks never set them.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

METADATA_URL = "http://metadata.google.internal/computeMetadata/v1"
SECRET_MANAGER_URL = "https://secretmanager.googleapis.com/v1"
# systemd's EnvironmentFile= reads these escaped with a backslash inside double quotes; a line break or another
# control character cannot be written at all (the file is one setting per line).
ESCAPED = '\\"`$'


class ReadError(Exception):
    """A secret could not be read. `where` says which parameter or secret was asked for, `reason` what went wrong."""

    def __init__(self, name: str, where: str, reason: str) -> None:
        super().__init__(f"cannot read secret {name} ({where}): {reason}")
        self.name = name
        self.where = where
        self.reason = reason


class SecretStore(Protocol):
    def where(self, name: str) -> str:
        """The parameter or secret NAME is read from, for the log."""
        ...

    def read(self, name: str) -> str: ...


class ParameterStore:
    """SSM Parameter Store through the AWS CLI (Debian's `awscli`, 2.9 on bookworm: no AWS_ENDPOINT_URL there, so a
    test endpoint comes as --endpoint-url)."""

    def __init__(self, region: str, prefix: str, endpoint_url: str | None = None) -> None:
        self.region = region
        self.prefix = prefix.rstrip("/")
        self.endpoint_url = endpoint_url

    def where(self, name: str) -> str:
        return f"SSM parameter {self.prefix}/{name}"

    def read(self, name: str) -> str:
        path, where = f"{self.prefix}/{name}", self.where(name)
        argv = ["aws", "ssm", "get-parameter", "--region", self.region, "--with-decryption", "--name", path]
        argv += ["--output", "json"]
        if self.endpoint_url:
            argv += ["--endpoint-url", self.endpoint_url]
        try:
            result = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ReadError(name, where, str(exc)) from None
        if result.returncode != 0:
            # The CLI's error says why (ParameterNotFound, AccessDenied...); a failed call carries no value.
            raise ReadError(name, where, last_line(result.stderr) or f"aws exited {result.returncode}")
        try:
            value = json.loads(result.stdout)["Parameter"]["Value"]
        except (ValueError, KeyError, TypeError):
            raise ReadError(name, where, "the AWS CLI's answer has no Parameter.Value") from None
        if not isinstance(value, str):
            raise ReadError(name, where, "the parameter's value is not text")
        return value


class SecretManager:
    """Secret Manager's REST API with the instance service account's token from the metadata server."""

    def __init__(
        self, project: str, prefix: str, metadata_url: str = METADATA_URL, secret_manager_url: str = SECRET_MANAGER_URL
    ) -> None:
        self.project = project
        self.prefix = prefix
        self.metadata_url = metadata_url.rstrip("/")
        self.secret_manager_url = secret_manager_url.rstrip("/")
        self._token: str | None = None

    def where(self, name: str) -> str:
        return f"Secret Manager secret projects/{self.project}/secrets/{self.prefix}-{name}"

    def read(self, name: str) -> str:
        secret = f"projects/{self.project}/secrets/{self.prefix}-{name}"
        where = self.where(name)
        try:
            body = get_json(
                f"{self.secret_manager_url}/{urllib.parse.quote(secret)}/versions/latest:access",
                {"Authorization": f"Bearer {self.token(name, where)}"},
            )
            data = body["payload"]["data"]
            return base64.b64decode(data, validate=True).decode()
        except HttpError as exc:
            raise ReadError(name, where, str(exc)) from None
        except (KeyError, TypeError, ValueError):
            raise ReadError(name, where, "the answer has no base64 payload.data") from None

    def token(self, name: str, where: str) -> str:
        if self._token is None:
            url = f"{self.metadata_url}/instance/service-accounts/default/token"
            try:
                self._token = str(get_json(url, {"Metadata-Flavor": "Google"})["access_token"])
            except HttpError as exc:
                raise ReadError(name, where, f"no access token from the metadata server: {exc}") from None
            except (KeyError, TypeError):
                raise ReadError(name, where, "the metadata server's answer has no access_token") from None
        return self._token


class SecretsFile:
    """A JSON object of secret names to values in a file only root reads, put there over SSH by the stack (Hetzner
    Cloud has no secret store and no instance identity to read one with)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._values: dict[str, object] | None = None

    def where(self, name: str) -> str:
        return f"key {name} of {self.path}"

    def read(self, name: str) -> str:
        where = self.where(name)
        if self._values is None:
            try:
                values = json.loads(self.path.read_text())
            except (OSError, ValueError) as exc:
                raise ReadError(name, where, f"cannot read the file as JSON: {type(exc).__name__}") from None
            if not isinstance(values, dict):
                raise ReadError(name, where, "the file is not a JSON object")
            self._values = values
        value = self._values.get(name)
        if value is None:
            raise ReadError(name, where, "no such key")
        if not isinstance(value, str):
            raise ReadError(name, where, "the value is not text")
        return value


class HttpError(Exception):
    pass


def get_json(url: str, headers: dict[str, str], attempts: int = 4) -> dict[str, object]:
    """GET a JSON object. Connection errors and 5xx are retried (the metadata server can lag just after boot); a 4xx
    is the answer."""
    for attempt in range(attempts):
        try:
            request = urllib.request.Request(url, headers=headers)  # noqa: S310 (http(s) only: the URLs are ours)
            with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
                body = json.load(response)
            if not isinstance(body, dict):
                raise HttpError(f"{url}: not a JSON object")
            return body
        except urllib.error.HTTPError as exc:
            message = error_message(exc)
            if exc.code < 500 or attempt == attempts - 1:
                raise HttpError(f"HTTP {exc.code}: {message}") from None
        except (urllib.error.URLError, OSError) as exc:
            if attempt == attempts - 1:
                raise HttpError(f"{url}: {exc}") from None
        time.sleep(2**attempt)
    raise AssertionError("unreachable")


def error_message(exc: urllib.error.HTTPError) -> str:
    """Google's error body ({"error": {"message": ...}}) or the status text. Error bodies carry no secret."""
    try:
        body = json.loads(exc.read() or b"{}")
        return str(body["error"]["message"])[:300]
    except (ValueError, KeyError, TypeError):
        return str(exc.reason)


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


def quoted(name: str, value: str) -> str:
    if any(ord(c) < 0x20 or c == "\x7f" for c in value):
        raise ValueError(f"{name}: a control character (a line break?) cannot be written to an EnvironmentFile")
    return '"' + "".join(f"\\{c}" if c in ESCAPED else c for c in value) + '"'


def pairs(items: Sequence[str], what: str) -> list[tuple[str, str]]:
    result = []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"write-env.py: {what} must be NAME=VALUE, not {item!r}")
        result.append((key, value))
    return result


def read_all(store: SecretStore, secrets: list[tuple[str, str]]) -> tuple[dict[str, str], list[ReadError]]:
    """The values by variable, and an error for each secret that failed: all are tried, so one boot log names every
    missing secret. An empty value is an error too (the server would start with it)."""
    values: dict[str, str] = {}
    errors: list[ReadError] = []
    for variable, name in secrets:
        try:
            value = store.read(name)
        except ReadError as exc:
            errors.append(exc)
            continue
        if not value:
            errors.append(ReadError(name, store.where(name), "its value is empty"))
            continue
        values[variable] = value
    return values, errors


def write_atomically(output: Path, text: str) -> None:
    output.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{output.name}.", dir=output.parent)  # mode 0600
    try:
        with os.fdopen(descriptor, "w") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, output)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def parse(argv: Sequence[str]) -> argparse.Namespace:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--setting", action="append", default=[], metavar="NAME=VALUE", help="a plain setting")
    common.add_argument("--secret", action="append", default=[], metavar="VARIABLE=SECRET", help="a secret to read")
    parser = argparse.ArgumentParser(prog="write-env.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("output", type=Path)
    backends = parser.add_subparsers(dest="backend", required=True)
    ssm = backends.add_parser("ssm", parents=[common], help="AWS SSM Parameter Store")
    ssm.add_argument("--prefix", required=True, help="the parameter path")
    ssm.add_argument("--region", required=True)
    ssm.add_argument("--endpoint-url", default=None, help="tests only; default: the region's SSM endpoint")
    gcp = backends.add_parser("gcp", parents=[common], help="Google Cloud Secret Manager")
    gcp.add_argument("--project", required=True)
    gcp.add_argument("--prefix", required=True, help="the secret id prefix")
    gcp.add_argument("--metadata-url", default=METADATA_URL, help=f"tests only; default {METADATA_URL}")
    gcp.add_argument(
        "--secret-manager-url", default=SECRET_MANAGER_URL, help=f"tests only; default {SECRET_MANAGER_URL}"
    )
    file = backends.add_parser("file", parents=[common], help="a root-only JSON file (infra/hetzner)")
    file.add_argument("--path", type=Path, required=True)
    return parser.parse_args(argv)


def main(argv: Sequence[str]) -> int:
    args = parse(argv)
    settings = pairs(args.setting, "--setting")
    secrets = pairs(args.secret, "--secret")
    store: SecretStore
    if args.backend == "ssm":
        store = ParameterStore(args.region, args.prefix, args.endpoint_url)
    elif args.backend == "file":
        store = SecretsFile(args.path)
    else:
        store = SecretManager(args.project, args.prefix, args.metadata_url, args.secret_manager_url)
    values, errors = read_all(store, secrets)
    for error in errors:
        print(f"write-env.py: {error}", file=sys.stderr)
    if errors:
        print(f"write-env.py: {args.output} not written", file=sys.stderr)
        return 1
    try:
        lines = [f"{key}={quoted(key, value)}" for key, value in [*settings, *values.items()]]
    except ValueError as exc:
        print(f"write-env.py: {exc}", file=sys.stderr)
        return 1
    header = "# Written at boot by infra/boot/write-env.py: the stack's settings and secrets. Mode 0600.\n"
    write_atomically(args.output, header + "\n".join(lines) + "\n")
    names = ", ".join(name for _, name in secrets) or "none"
    print(f"write-env.py: wrote {args.output} ({len(settings)} settings; secrets: {names})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
