"""The images the container tests run: Ash's own (the Dockerfile, built with podman on the debootstrapped base) and a
stand-in for `postgres:15-bookworm`, which no registry here can serve."""

from __future__ import annotations

import functools
import re
import shlex

from tests.distribution.podman import HERE, REPO, podman

# The name the CLI and compose use by default: the built image is tagged with it, so they find it locally.
ASH_LOCAL = "localhost/ash:distribution-test"
POSTGRES_CONTEXT = HERE / "postgres-image"


@functools.cache
def build_ash(debian_image: str) -> str:
    """`docker build .` as a user runs it (podman), from the Debian base made here."""
    podman("build", "--build-arg", f"DEBIAN_IMAGE={debian_image}", "-t", ASH_LOCAL, str(REPO), timeout=1800)
    return ASH_LOCAL


def build_postgres(debian_image: str, name: str) -> str:
    """Debian's PostgreSQL 15 behind the official image's interface (POSTGRES_USER/DB/PASSWORD, the data folder,
    pg_isready), tagged as compose names it."""
    podman("build", "--build-arg", f"DEBIAN_IMAGE={debian_image}", "-t", name, str(POSTGRES_CONTEXT), timeout=1200)
    return name


def documented_docker_run(markdown: str) -> list[str]:
    """The `docker run` command of docs/self-hosting/docker.md's `## docker run` section, as argv."""
    section = markdown.split("\n## docker run\n", 1)
    assert len(section) == 2, "docs/self-hosting/docker.md has no '## docker run' section"
    block = re.search(r"```bash\n(.*?)```", section[1], flags=re.DOTALL)
    assert block, "the '## docker run' section has no bash block"
    lines = [line for line in block.group(1).splitlines() if not line.lstrip().startswith("#")]
    argv = shlex.split(" ".join(line.rstrip("\\").strip() for line in lines))
    assert argv[:2] == ["docker", "run"], argv
    return argv
