"""Batches, relayed to their input file's provider (docs/reference.md "Files, fine-tuning jobs and batches").

    POST, GET    /v1/batches                    create, list
    GET          /v1/batches/{id}               and POST .../{id}/cancel

Who sees what and how it is accounted: ``routes/object_api.py``.
"""

from __future__ import annotations

from functools import partial

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.errors import GatewayError
from gateway.routes.object_api import Call, Collection, ObjectAPI, json_body, required_str
from gateway.routes.objects import BATCH, rewrite_batch

BATCHES = "/v1/batches"
COLLECTION = Collection(BATCH, "/batches", rewrite_batch, 20)


async def create_batch(api: ObjectAPI, call: Call, request: Request) -> Response:
    body = await json_body(call, request)
    provider, body["input_file_id"] = await api.input_file(call, required_str(body, "input_file_id"), "input_file_id")
    if not call.who.admin and not call.who.may_reach_vendor(provider):
        raise GatewayError(
            403,
            f"This API key may not use provider '{provider}', where the input file is stored.",
            param="input_file_id",
            code="provider_not_allowed",
        )
    target = api.target(call, provider)
    return await api.created(call, await api.send(call, target, "POST", COLLECTION.path, body=body), rewrite_batch)


def routes(api: ObjectAPI) -> list[Route]:
    cancel = partial(api.relay, coll=COLLECTION, method="POST", action="/cancel")
    return [
        api.route(
            BATCHES, BATCHES, {"POST": partial(create_batch, api), "GET": partial(api.list_objects, coll=COLLECTION)}
        ),
        api.route(BATCHES + "/{id}", BATCHES, {"GET": partial(api.relay, coll=COLLECTION)}),
        api.route(BATCHES + "/{id}/cancel", BATCHES, {"POST": cancel}),
    ]
