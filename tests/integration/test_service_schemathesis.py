"""Property-based API testing from the live OpenAPI schema: no request may cause a 5xx, and every
answer matches the schema (documented status, content type, body and headers; errors in our
shape), on both backends.

Operations are driven through schemathesis' strategies directly (its pytest plugin does not
support pytest 9 yet); each operation gets a bounded number of generated requests."""

from __future__ import annotations

import httpx
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.integration.servers import Server

EXAMPLES_PER_OPERATION = 15
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          response_headers_conformance]


def test_no_server_error_and_no_contract_mismatch(registry: Server) -> None:
    schema = schemathesis.openapi.from_url(f"{registry.url}/schema/openapi.json")
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10
    # Generated requests may revoke any token: never the session server's own admin token, which
    # the tests after this one use.
    own = [t["id"] for t in httpx.get(f"{registry.url}/api/v1/tokens", headers=registry.headers()).json()
           if t["name"] == "bootstrap"]
    assert own

    def spares_own_token(case: schemathesis.Case) -> bool:
        return str((case.path_parameters or {}).get("token_id")) not in {str(i) for i in own}

    for operation in operations:

        @given(operation.as_strategy().filter(spares_own_token))
        @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def run(case: schemathesis.Case) -> None:
            response = case.call(base_url=registry.url, headers=registry.headers(), timeout=30)
            try:
                case.validate_response(response, checks=CHECKS)
            except Exception as exc:  # noqa: BLE001 - collect every failing operation, then report
                failures.append(f"{case.method} {case.formatted_path}: {str(exc)[:300]}")
            if response.status_code >= 400 and "json" in response.headers.get("content-type", ""):
                assert set(response.json()["error"]) == {"code", "message", "detail"}, response.text

        run()
    assert not failures, "\n".join(failures[:10])
    assert httpx.get(f"{registry.url}/api/v1/tokens", headers=registry.headers()).status_code == 200


def test_schema_is_served_at_the_litestar_default(registry: Server) -> None:
    doc = httpx.get(f"{registry.url}/schema/openapi.json").json()
    assert doc["info"]["title"] == "pseudoword registry"
    for path in ("/api/v1/embeddings", "/api/v1/resolve", "/api/v1/by-hash/{digest}", "/api/v1/blobs/{sha256}",
                 "/api/v1/embeddings/{source}/{model}/{version}/download", "/healthz", "/readyz"):
        assert path in doc["paths"], path
    # Errors are documented in our shape, with the statuses the routes really answer.
    publish = doc["paths"]["/api/v1/embeddings"]["post"]["responses"]
    assert {"200", "201", "400", "401", "403", "409", "413", "422", "429", "503"} <= set(publish)
    schema = publish["401"]["content"]["application/json"]["schema"]
    if "$ref" in schema:
        schema = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    assert set(schema["properties"]) == {"error"}
