"""Schemathesis hooks for ops/openapi/run.sh (loaded through SCHEMATHESIS_HOOKS).

The image API's PATCH takes Glance's JSON-patch media types, which are JSON but are not
named `application/json` or `*+json`: schemathesis has no serializer for them unless
they are declared aliases of `application/json`.
"""

import schemathesis

schemathesis.serializer.alias(
    [
        "application/openstack-images-v2.1-json-patch",
        "application/openstack-images-v2.0-json-patch",
    ],
    "application/json",
)
