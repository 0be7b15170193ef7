"""Real object stores on loopback for tests: S3 (moto in server mode) and GCS (gcp-storage-emulator), over HTTP."""

from __future__ import annotations

import logging
from typing import Any

ACCESS = {"AWS_ACCESS_KEY_ID": "test-access-key", "AWS_SECRET_ACCESS_KEY": "test-secret-key"}
REGION = "us-east-1"


class S3Server:
    """moto's S3 in server mode on a free loopback port (what boto3 reaches with an endpoint URL)."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self._server = ThreadedMotoServer(ip_address=host, port=0, verbose=False)

    def start(self) -> S3Server:
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"
        return self

    def stop(self) -> None:
        self._server.stop()

    @property
    def env(self) -> dict[str, str]:
        """What a server (or a test's S3SnapshotStore) needs to use it."""
        return {**ACCESS, "AWS_DEFAULT_REGION": REGION, "ASH_S3_ENDPOINT_URL": self.endpoint}

    def client(self, service: str = "s3") -> Any:
        """A boto3 client of `service` on this endpoint (moto serves S3, SSM and the rest on the same one)."""
        import boto3

        return boto3.session.Session().client(
            service,
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=ACCESS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=ACCESS["AWS_SECRET_ACCESS_KEY"],
        )

    def bucket(self, name: str) -> str:
        self.client().create_bucket(Bucket=name)
        return name


class GcsServer:
    """gcp-storage-emulator on a free loopback port, in memory (the client finds it by STORAGE_EMULATOR_HOST)."""

    def __init__(self) -> None:
        from gcp_storage_emulator.server import create_server

        logging.getLogger("gcp_storage_emulator").setLevel(logging.ERROR)
        self._server = create_server("127.0.0.1", 0, in_memory=True)

    def start(self) -> GcsServer:
        self._server.start()
        port = self._server._api._httpd.server_address[1]
        self.endpoint = f"http://127.0.0.1:{port}"
        return self

    def stop(self) -> None:
        self._server.stop()

    @property
    def env(self) -> dict[str, str]:
        return {"STORAGE_EMULATOR_HOST": self.endpoint}

    def client(self) -> Any:
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        return storage.Client(
            project="test", credentials=AnonymousCredentials(), client_options={"api_endpoint": self.endpoint}
        )

    def bucket(self, name: str) -> str:
        self.client().create_bucket(name)
        return name
