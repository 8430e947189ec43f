"""A local S3-compatible server for the object-storage tests: moto in server mode, on a free port of
127.0.0.1, started once per test session; each test gets its own bucket.

The AWS SDK (inside pyarrow) reads credentials and region from the environment, in every process:
:func:`use_test_credentials` sets dummy ones when the conftest is imported, before any worker process
(the extract pool's forkserver copies the environment it starts with) exists.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator

import pytest

TEST_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                    "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}


def use_test_credentials() -> None:
    for name, value in TEST_CREDENTIALS.items():
        os.environ.setdefault(name, value)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class S3Server:
    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    def new_bucket(self, prefix: str = "rp-test") -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:10]}"
        self.client().create_bucket(Bucket=name)
        return name


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield S3Server(f"http://127.0.0.1:{port}")
    finally:
        server.stop()
