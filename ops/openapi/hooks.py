"""Schemathesis hooks for ops/openapi/run.sh: steer part of the generated requests onto
resources that exist, so the run reaches Stratus's real code paths (servers that get
built, resized, shown at every microversion) and not only its input validation.

Also: the image API's PATCH takes Glance's JSON-patch media types, which are JSON but
are not named `application/json` or `*+json`; they are declared aliases of
`application/json` so that schemathesis can serialize their bodies.

The documents stay honest (any flavorRef string is documented as accepted); only these
test-time hooks know that the flavors run.sh creates (`st-tiny`, `st-small`, ids not
worth guessing) and the image `cirros` exist. Two of
three generated create/resize bodies are rewritten; the third stays as generated.
"""
import hashlib
import json
import re

import schemathesis

CIRROS = "70a599e0-31e7-49b7-b260-868f441e862b"

schemathesis.serializer.alias(
    [
        "application/openstack-images-v2.1-json-patch",
        "application/openstack-images-v2.0-json-patch",
    ],
    "application/json",
)


# Microversions that accept the fields the generator puts in bodies (networks "none"
# needs 2.37; description 2.19; tags 2.52; host 2.74; hostname 2.90).
VERSIONS = ["compute 2.37", "compute 2.74", "compute 2.96", "compute 2.100", "compute latest"]


VALID = re.compile(r"^compute (latest|2\.([1-9]|[1-9][0-9]|100))$")


def _digest(body) -> bytes:
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).digest()


def _pick(body) -> bool:
    return _digest(body)[0] % 3 != 0


def _versioned(case):
    """Requests without a valid microversion get a recent one (bodies use recent fields)."""
    if not VALID.match(str(case.headers.get("OpenStack-API-Version", ""))):
        case.headers["OpenStack-API-Version"] = VERSIONS[_digest(case.body)[1] % len(VERSIONS)]


@schemathesis.hook
def map_case(context, case):
    op = context.operation
    if op is None:
        return case
    # The run's flavors stay: deleting them would starve the rest of the run.
    if op.method.upper() == "DELETE" and op.path == "/v2.1/flavors/{id}":
        if str(case.path_parameters.get("id")) in ("st-tiny", "st-small"):
            case.path_parameters["id"] = "not-a-run-flavor"
        return case
    # The live event stream never ends by itself: bound every generated request to one
    # second (any timeout it was given is replaced), so the run reads a finite body.
    if op.method.upper() == "GET" and op.path == "/v1/events/stream":
        case.query = dict(case.query or {})
        case.query["timeout"] = 1
        return case
    if not isinstance(case.body, dict):
        return case
    if op.method.upper() == "POST" and op.path == "/v2.1/servers":
        server = case.body.get("server")
        if isinstance(server, dict) and _pick(case.body):
            server["flavorRef"] = "st-tiny"
            if "block_device_mapping_v2" not in server:
                server["imageRef"] = CIRROS
            for key in ("host", "hypervisor_hostname", "availability_zone"):
                server.pop(key, None)
            _versioned(case)
    elif op.method.upper() == "POST" and op.path == "/v2.1/servers/{id}/action":
        resize = case.body.get("resize")
        if isinstance(resize, dict) and _pick(case.body):
            resize["flavorRef"] = "st-small"
            _versioned(case)
    return case
