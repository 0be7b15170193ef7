"""Fixtures of the distribution tests: the Debian base image, a podman network, the fake model on its gateway."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.distribution import podman
from tests.fakes.anthropic_api import FakeAnthropic, echo


@pytest.fixture(scope="session")
def debian_image() -> str:
    try:
        podman.check_available()
    except podman.Unavailable as exc:
        pytest.fail(f"the distribution tests cannot run: {exc}")
    podman.remove_leftovers()
    return podman.debian_base()


@pytest.fixture(scope="session")
def network(debian_image: str) -> Iterator[podman.Network]:
    net = podman.Network.create("ash-dist")
    # The network's bridge (and so its gateway address, where the fakes listen) exists once a container is on it.
    keeper = podman.podman(
        "run", "-d", "--rm", "--label", podman.LABEL, "--network", net.name, "--name", f"{net.name}-keeper",
        debian_image, "sleep", "infinity",
    )  # fmt: skip
    try:
        yield net
    finally:
        podman.podman("rm", "-f", "-t", "0", keeper.stdout.strip(), check=False)
        net.remove()


@pytest.fixture(scope="session")
def model(network: podman.Network) -> Iterator[FakeAnthropic]:
    """The fake Messages API on the network's gateway: replies repeat what they were asked (`echo`)."""
    with FakeAnthropic(default=echo(), host=network.gateway) as fake:
        yield fake
