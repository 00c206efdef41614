"""Shared settings for the SDK end-to-end tests.

Everything comes from the environment so the same tests run against the real proxy and, to prove the mock
upstream faithful, straight against the mock:

  SWITCHYARD_BASE_URL            OpenAI base URL including /v1, e.g. http://127.0.0.1:8080/v1 (required)
  SWITCHYARD_ANTHROPIC_BASE_URL  Anthropic base URL without /v1 (default: SWITCHYARD_BASE_URL minus /v1);
                                 the anthropic SDK appends /v1/messages itself
  SWITCHYARD_KEY                 the Switchyard key (required)
  SWITCHYARD_E2E_TARGET          "proxy" (default) or "mock"; "mock" skips what only Switchyard does
  SWITCHYARD_MODEL               chat model (default "auto")
  SWITCHYARD_EMBEDDING_MODEL     default "text-embedding-3-small"
  SWITCHYARD_ANTHROPIC_MODEL     default "claude-haiku-4-5"
  SWITCHYARD_UNKNOWN_MODEL       a model that must give 404 (default "no-such-model-e2e")
  SWITCHYARD_SLOW_MODEL          a model whose stream is long and slow (default SWITCHYARD_MODEL)
  SWITCHYARD_OVERSIZE_BYTES      body size that must give 413 (default 16 MiB)
"""

import os

import anthropic
import openai
import pytest

BASE_URL = os.environ.get("SWITCHYARD_BASE_URL", "").rstrip("/")
KEY = os.environ.get("SWITCHYARD_KEY", "")
TARGET = os.environ.get("SWITCHYARD_E2E_TARGET", "proxy")
ANTHROPIC_BASE_URL = os.environ.get("SWITCHYARD_ANTHROPIC_BASE_URL") or (
    BASE_URL[: -len("/v1")] if BASE_URL.endswith("/v1") else BASE_URL
)
MODEL = os.environ.get("SWITCHYARD_MODEL", "auto")
EMBEDDING_MODEL = os.environ.get("SWITCHYARD_EMBEDDING_MODEL", "text-embedding-3-small")
ANTHROPIC_MODEL = os.environ.get("SWITCHYARD_ANTHROPIC_MODEL", "claude-haiku-4-5")
UNKNOWN_MODEL = os.environ.get("SWITCHYARD_UNKNOWN_MODEL", "no-such-model-e2e")
SLOW_MODEL = os.environ.get("SWITCHYARD_SLOW_MODEL", MODEL)
OVERSIZE_BYTES = int(os.environ.get("SWITCHYARD_OVERSIZE_BYTES", str(16 * 1024 * 1024)))

# Must match EXTRA_BODY_PROBE and its value in tests/common/e2e.rs: the Rust side checks that the upstream got it.
EXTRA_BODY_PROBE = "x_switchyard_e2e_probe"
EXTRA_BODY_VALUE = {"nested": [1, 2, 3], "flag": True}

proxy_only = pytest.mark.skipif(TARGET == "mock", reason="Switchyard-only behaviour; SWITCHYARD_E2E_TARGET=mock")


def pytest_configure(config):
    if not BASE_URL or not KEY:
        raise pytest.UsageError("set SWITCHYARD_BASE_URL and SWITCHYARD_KEY (see tests/e2e/conftest.py)")


@pytest.fixture
def client():
    # No retries: a retried 429/5xx would hide what the proxy really answered.
    with openai.OpenAI(base_url=BASE_URL, api_key=KEY, max_retries=0, timeout=30.0) as c:
        yield c


@pytest.fixture
def anthropic_client():
    with anthropic.Anthropic(base_url=ANTHROPIC_BASE_URL, api_key=KEY, max_retries=0, timeout=30.0) as c:
        yield c
