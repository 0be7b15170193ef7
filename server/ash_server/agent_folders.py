"""Staging a deploy's files: a folder on the server (checked, then copied) or uploaded files, into a staging folder.

Blocking work: callers run these in a thread. A folder is checked before anything is copied, so a bad deploy
costs one walk, not a copy: it must hold CLAUDE.md, must not hold the server's data dir (deploying `$HOME` once
recursed into `~/.ash`), must stay within the file-count and size caps (413 naming the limit), and its symlinks must
resolve inside it (a loop or a link out is refused rather than copied), and it must hold nothing that looks like a
secret (SSH and cloud credentials, `.env` files, private keys: `SECRET_NAMES`), even inside an allowed root. Only
the tenants the operator names (ASH_PATH_DEPLOY_TENANTS) deploy by path at all.
"""

from __future__ import annotations

import fnmatch
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .errors import Forbidden, Invalid, PayloadTooLarge
from .paths import confine, is_within
from .store.models import DEFAULT_TENANT

SYSTEM_PROMPT_FILE = "CLAUDE.md"
# Names (of files or folders, anywhere in the folder) a path deploy refuses: what a home directory or a project
# keeps its secrets in. Deploying a folder holding one is a mistake or an attack; uploads are the tenant's own files.
SECRET_NAMES = (
    ".ssh",
    ".gnupg",
    ".aws",
    ".azure",
    ".kube",
    ".docker",
    ".ash",
    "gcloud",
    ".netrc",
    ".pgpass",
    ".git-credentials",
    ".npmrc",
    ".pypirc",
    ".env",
    ".env.*",
    "*.env",
    "id_rsa*",
    "id_dsa*",
    "id_ecdsa*",
    "id_ed25519*",
    "*.pem",
    "*.key",
    "*.p12",
    "*.pfx",
    "credentials.json",
    "service-account*.json",
)
# Templates of secrets, not secrets: kept.
SECRET_TEMPLATES = ("*.example", "*.sample", "*.template", "*.dist")


def looks_secret(name: str) -> bool:
    if any(fnmatch.fnmatchcase(name, t) for t in SECRET_TEMPLATES):
        return False
    return any(fnmatch.fnmatchcase(name, p) for p in SECRET_NAMES)


@dataclass(frozen=True, slots=True)
class FolderRules:
    """What a deploy from a server folder may be: under one of `roots`, never holding `data_dir`, and at most
    `max_files` entries of `max_bytes` in all."""

    roots: Sequence[Path]
    data_dir: Path
    max_files: int
    max_bytes: int
    # The one folder inside the data dir that deploys may come from (the default root, `<data dir>/sources`).
    sources: Path | None = None
    # The tenants that may deploy by path (None: all); a path deploy reads the operator's disk.
    tenants: frozenset[str] | None = frozenset({DEFAULT_TENANT})

    def resolve(self, path: str, tenant_id: str) -> Path:
        """A relative path is taken under the first root (the reference resolves it under its data dir; under a
        deploy root it can never reach the server's own files)."""
        if self.tenants is not None and tenant_id not in self.tenants:
            raise Forbidden(
                "this tenant may not deploy agents from a server path (the operator allows it per tenant: "
                "ASH_PATH_DEPLOY_TENANTS); upload the folder's files instead (ash deploy does this)",
                path=path,
            )
        if not self.roots:
            raise Invalid(
                "deploying from a server path is disabled on this server (set ASH_AGENT_ROOTS); upload the "
                "folder's files instead (ash deploy does this)",
                path=path,
            )
        raw = Path(path)
        source = (raw if raw.is_absolute() else self.roots[0] / raw).resolve()
        if not is_within(source, list(self.roots)):
            raise Invalid(
                f"path is outside the folders this server deploys from (ASH_AGENT_ROOTS: "
                f"{', '.join(str(r) for r in self.roots)})",
                path=path,
            )
        return source


def check_folder(source: Path, rules: FolderRules) -> None:
    if not source.is_dir():
        raise Invalid(f"no such folder on the server: {source}", path=str(source))
    if not (source / SYSTEM_PROMPT_FILE).is_file():
        raise Invalid(f"Agent directory must contain {SYSTEM_PROMPT_FILE}: {source} has none", path=str(source))
    data_dir = rules.data_dir.resolve()
    in_sources = rules.sources is not None and is_within(source, [rules.sources.resolve()])
    if is_within(data_dir, [source]) or (is_within(source, [data_dir]) and not in_sources):
        raise Invalid(
            f"{source} holds the server's data dir ({data_dir}) or lies in it: deploy the agent's own folder",
            path=str(source),
        )
    entries = 0
    total = 0
    for folder, dirs, files in os.walk(source, followlinks=False):
        here = Path(folder)
        for name in (*dirs, *files):
            if looks_secret(name):
                relative = (here / name).relative_to(source)
                raise Invalid(
                    f"{relative} looks like a secret (keys, credentials, .env files): a deploy from a server path "
                    "never copies one; remove it from the folder, or upload the agent's files instead",
                    path=str(relative),
                )
            entries += 1
            if entries > rules.max_files:
                raise PayloadTooLarge(
                    f"{source} has more than {rules.max_files} files and folders (ASH_MAX_AGENT_FILES)",
                    limit=rules.max_files,
                )
            path = here / name
            info = path.lstat()
            if path.is_symlink():
                _check_link(path, source)
            elif not path.is_dir():
                total += info.st_size
                if total > rules.max_bytes:
                    raise PayloadTooLarge(
                        f"{source} holds more than {rules.max_bytes} bytes (ASH_MAX_UPLOAD_BYTES)",
                        limit=rules.max_bytes,
                    )


def _check_link(link: Path, source: Path) -> None:
    relative = link.relative_to(source)
    try:
        target = link.resolve(strict=True)
    except FileNotFoundError:
        target = link.resolve(strict=False)  # dangling: harmless if it stays inside
    except (RuntimeError, OSError) as exc:  # a loop: RuntimeError (Python 3.11) or ELOOP
        raise Invalid(f"symlink {relative} loops", path=str(relative)) from exc
    if not is_within(target, [source.resolve()]):
        raise Invalid(f"symlink {relative} points outside the agent folder", path=str(relative))


def copy_folder(source: Path, staging: Path) -> None:
    """Links are copied as links (checked above: they point inside the folder)."""
    shutil.copytree(source, staging, symlinks=True)


def write_files(staging: Path, files: Sequence[tuple[str, bytes]]) -> None:
    staging.mkdir(parents=True, exist_ok=True)
    for rel, data in files:
        target = confine(staging, rel)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)


def ensure_system_prompt(staging: Path, name: str, system_prompt: str | None) -> None:
    """The `systemPrompt` given becomes CLAUDE.md; without either, a placeholder, as the reference writes one."""
    prompt = staging / SYSTEM_PROMPT_FILE
    if system_prompt:
        prompt.write_text(system_prompt)
    elif not prompt.is_file():
        prompt.write_text(f"# {name}\n")
