import json
import os
import pathlib

import anthropic
import pytest

FIXTURES = pathlib.Path(__file__).resolve().parent.parent / "fixtures"


@pytest.fixture(scope="session")
def gateway_url() -> str:
    url = os.environ.get("GATEWAY_URL")
    if not url:
        pytest.fail("GATEWAY_URL is not set: run these tests through `cargo test --test python_sdk`")
    return url


@pytest.fixture()
def client(gateway_url: str) -> anthropic.Anthropic:
    # The caller's key is the gateway's business; the vendor key lives in the gateway.
    return anthropic.Anthropic(base_url=gateway_url, api_key="caller-key", max_retries=0)


def expected(name: str) -> dict:
    return json.loads((FIXTURES / "expected" / "anthropic" / f"{name}.json").read_text())


def recorded(rel: str) -> dict:
    return json.loads((FIXTURES / "anthropic" / rel).read_text())
