"""A runner's identity lines of the Hetzner boot script, run by bash against a fake metadata service on loopback that
answers as Hetzner's does (instance-id; private-networks as YAML), the first private-networks read failing."""

from __future__ import annotations

import http.server
import subprocess
import threading
from collections.abc import Iterator

import pytest

PRIVATE_NETWORKS = """- ip: 10.44.1.100
  alias_ips: []
  interface_num: 1
  mac_address: 86:00:00:2a:7d:e0
  network_id: 1234
  network_name: ash-test
  network: 10.44.0.0/16
  subnet: 10.44.1.0/24
  gateway: 10.44.0.1
"""


class Metadata(http.server.BaseHTTPRequestHandler):
    failures_left = 1  # the private network is not there yet at the first read

    def do_GET(self) -> None:
        if self.path == "/hetzner/v1/metadata/instance-id":
            self.answer(200, "48151623")
        elif self.path == "/hetzner/v1/metadata/private-networks":
            if Metadata.failures_left:
                Metadata.failures_left -= 1
                self.answer(503, "not yet")
            else:
                self.answer(200, PRIVATE_NETWORKS)
        else:
            self.answer(404, "no")

    def answer(self, status: int, body: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def metadata_url() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Metadata)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hetzner/v1/metadata"
    finally:
        server.shutdown()
        server.server_close()


def test_a_runner_reads_its_id_and_private_address_and_waits_for_the_network(metadata_url: str) -> None:
    from ash_hetzner.boot import RUNNER_IDENTITY
    from ash_infra.boot import PREAMBLE

    script = PREAMBLE.replace("exec > >(tee -a /var/log/ash-boot.log) 2>&1\n", "") + RUNNER_IDENTITY.replace(
        "@METADATA_URL@", metadata_url
    )
    result = subprocess.run(
        ["bash", "-c", script + 'echo "id=$instance_id ip=$private_ip"'], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines()[-1] == "id=48151623 ip=10.44.1.100"
    assert Metadata.failures_left == 0  # it asked again after the failed read
