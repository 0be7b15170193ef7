from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.storage import GcsServer, S3Server


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    server = S3Server().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def gcs_server() -> Iterator[GcsServer]:
    server = GcsServer().start()
    try:
        yield server
    finally:
        server.stop()
