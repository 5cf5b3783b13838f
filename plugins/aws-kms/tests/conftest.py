"""The session's KMS stand-in (:mod:`kms_stand_in`): moto's server on a free local port, with
test credentials and region in the environment and no AWS configuration of the machine's."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from .kms_stand_in import REGION, Kms, KmsStandIn

AWS_VARIABLES = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_KMS",
)


@pytest.fixture(scope="session")
def kms(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kms]:
    """moto's KMS on 127.0.0.1 (a free port), with test credentials and region set."""
    empty = tmp_path_factory.mktemp("aws") / "none"
    with pytest.MonkeyPatch.context() as env:
        for name in AWS_VARIABLES:
            env.delenv(name, raising=False)
        env.setenv("AWS_ACCESS_KEY_ID", "testing")
        env.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        env.setenv("AWS_DEFAULT_REGION", REGION)
        env.setenv("AWS_CONFIG_FILE", str(empty))
        env.setenv("AWS_SHARED_CREDENTIALS_FILE", str(empty))
        env.setenv("AWS_EC2_METADATA_DISABLED", "true")
        started = time.perf_counter()
        server = KmsStandIn(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        stand_in = Kms(f"http://{host}:{port}", time.perf_counter() - started)
        try:
            yield stand_in
        finally:
            server.stop()
