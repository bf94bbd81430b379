"""Property-based API testing from the live OpenAPI schema: no request may cause a 5xx.

Operations are driven through schemathesis' strategies directly (its pytest plugin does not
support pytest 9 yet); each operation gets a bounded number of generated requests."""

from __future__ import annotations

import httpx
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from tests.integration.servers import Server

EXAMPLES_PER_OPERATION = 15


def test_no_request_causes_a_server_error(registry: Server) -> None:
    schema = schemathesis.openapi.from_url(f"{registry.url}/schema/openapi.json")
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10

    for operation in operations:

        @given(operation.as_strategy())
        @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def run(case: schemathesis.Case) -> None:
            response = case.call(base_url=registry.url, headers=registry.headers(), timeout=30)
            try:
                case.validate_response(response, checks=[not_a_server_error])
            except Exception as exc:  # noqa: BLE001 - collect every failing operation, then report
                failures.append(f"{case.method} {case.formatted_path}: {str(exc)[:300]}")
            if response.status_code >= 400 and "json" in response.headers.get("content-type", ""):
                assert set(response.json()["error"]) == {"code", "message", "detail"}, response.text

        run()
    assert not failures, "\n".join(failures[:10])


def test_schema_is_served_at_the_litestar_default(registry: Server) -> None:
    doc = httpx.get(f"{registry.url}/schema/openapi.json").json()
    assert doc["info"]["title"] == "pseudoword registry"
    for path in ("/api/v1/embeddings", "/api/v1/resolve", "/api/v1/by-hash/{digest}", "/api/v1/blobs/{sha256}",
                 "/healthz", "/readyz"):
        assert path in doc["paths"], path
