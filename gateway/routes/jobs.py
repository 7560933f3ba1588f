"""Fine-tuning jobs, relayed to the provider of their model (docs/reference.md "Files, fine-tuning jobs and batches").

    POST, GET    /v1/fine_tuning/jobs           create, list
    GET          /v1/fine_tuning/jobs/{id}      and .../events, .../checkpoints;
    POST         .../{id}/cancel, /pause, /resume

A job goes to the provider of its ``model`` (for an alias, its deployment on the training file's
provider), which must be where its training and validation files are. Where the rest goes, who
sees what and how it is accounted: ``routes/object_api.py``.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.errors import invalid, model_not_allowed
from gateway.pipeline.validate import integer, model_of, type_error
from gateway.routes.object_api import (
    Call,
    Collection,
    ObjectAPI,
    Rewrite,
    json_body,
    object_path,
    page_data,
    required_str,
)
from gateway.routes.objects import JOB, rewrite_checkpoint, rewrite_event, rewrite_job

JOBS = "/v1/fine_tuning/jobs"
COLLECTION = Collection(JOB, "/fine_tuning/jobs", rewrite_job, 20)
SUFFIX_MAX = 64
SEED_MAX = 2147483647


def check_job_params(body: dict[str, Any]) -> None:
    """Seed 004's ranges: ``suffix`` 1..64 characters, ``seed`` 0..2147483647."""
    suffix = body.get("suffix")
    if suffix is not None:
        if not isinstance(suffix, str):
            raise type_error("suffix", "a string", suffix)
        if not 1 <= len(suffix) <= SUFFIX_MAX:
            raise invalid(
                f"Invalid 'suffix': string {'too long' if suffix else 'too short'}. Expected a string with "
                f"{'maximum' if suffix else 'minimum'} length {SUFFIX_MAX if suffix else 1}, but got a string "
                f"with length {len(suffix)} instead.",
                "suffix",
                "string_above_max_length" if suffix else "string_below_min_length",
            )
    integer(body, "seed", 0, SEED_MAX)


async def create_job(api: ObjectAPI, call: Call, request: Request) -> Response:
    body = await json_body(call, request)
    model_of(body)  # a model name longer than any is refused before it is recorded
    model = required_str(body, "model")
    call.model = model
    training = required_str(body, "training_file")
    validation = body.get("validation_file")
    if validation is not None and not isinstance(validation, str):
        raise type_error("validation_file", "a string", validation)
    check_job_params(body)
    route = call.state.router.resolve(model)
    if not call.who.allows(model):
        raise model_not_allowed(model)
    provider, body["training_file"] = await api.input_file(call, training, "training_file")
    dep = next((d for d in route.deployments if d.provider == provider), None)
    if dep is None:
        served = ", ".join(sorted({d.provider for d in route.deployments}))
        raise invalid(
            f"The training file is stored on provider '{provider}', but the model '{model}' is served by "
            f"{served}: upload the file to the provider that will train the model.",
            "training_file",
            "file_provider_mismatch",
        )
    if validation is not None:
        vprovider, body["validation_file"] = await api.input_file(call, validation, "validation_file")
        if vprovider != provider:
            raise invalid(
                f"The validation file is stored on provider '{vprovider}', the training file on '{provider}'.",
                "validation_file",
                "file_provider_mismatch",
            )
    body["model"] = dep.target.upstream_model
    target = api.target(call, provider)
    return await api.created(call, await api.send(call, target, "POST", COLLECTION.path, body=body), rewrite_job)


async def _job_list(api: ObjectAPI, call: Call, request: Request, sub: str, rewrite: Rewrite) -> Response:
    """A job's events or checkpoints: one upstream page, relayed with its items rewritten."""
    target, upstream_id, _ = await api.owned(call, JOB, request.path_params["id"])
    params = [(k, v) for k, v in request.query_params.multi_items() if k != "api-version"]
    page = await api.send(call, target, "GET", object_path(COLLECTION.path, upstream_id, sub), params)
    for item in page_data(call, target, page):
        if isinstance(item, dict):
            rewrite(item, target.name)
    return api.json(call, page)


def routes(api: ObjectAPI) -> list[Route]:
    def action(name: str) -> Route:
        handler = partial(api.relay, coll=COLLECTION, method="POST", action="/" + name)
        return api.route(f"{JOBS}/{{id}}/{name}", JOBS, {"POST": handler})

    return [
        api.route(JOBS, JOBS, {"POST": partial(create_job, api), "GET": partial(api.list_objects, coll=COLLECTION)}),
        api.route(JOBS + "/{id}", JOBS, {"GET": partial(api.relay, coll=COLLECTION)}),
        *(action(a) for a in ("cancel", "pause", "resume")),
        api.route(JOBS + "/{id}/events", JOBS, {"GET": partial(_job_list, api, sub="/events", rewrite=rewrite_event)}),
        api.route(
            JOBS + "/{id}/checkpoints",
            JOBS,
            {"GET": partial(_job_list, api, sub="/checkpoints", rewrite=rewrite_checkpoint)},
        ),
    ]
