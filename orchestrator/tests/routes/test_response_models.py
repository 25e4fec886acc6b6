"""/openapi.json describes every answer, and the answers of a run on the fake services match it."""

from __future__ import annotations

import asyncio

import jsonschema
import pytest

# Operations answered with something other than JSON (checked by media type, not by schema).
BINARY = {("post", "/generate"), ("get", "/generations/{id}/{asset}"),
          ("get", "/jobs/{id}/events")}


def success(operation: dict) -> tuple[str, dict]:
    code = min(code for code in operation["responses"] if code.startswith("2"))
    return code, operation["responses"][code]


def operations(schema: dict):
    for path, methods in schema["paths"].items():
        for method, operation in methods.items():
            yield method, path, operation


async def test_every_operation_documents_its_success_answer(api):
    schema = (await api.client.get("/openapi.json")).json()
    undocumented = []
    for method, path, operation in operations(schema):
        code, response = success(operation)
        content = response.get("content", {})
        if code == "204":
            continue
        if not content or any(not media.get("schema") for media in content.values()):
            undocumented.append(f"{method.upper()} {path}")
        elif (method, path) not in BINARY:
            assert set(content) == {"application/json"}, (method, path)
            assert "$ref" in content["application/json"]["schema"], (method, path)
    assert undocumented == []


class Checker:
    """Validates an answer against its operation's success schema in /openapi.json."""

    def __init__(self, schema: dict):
        self.schema = schema
        self.seen: set[tuple[str, str]] = set()

    def check(self, method: str, path: str, response) -> None:
        operation = self.schema["paths"][path][method]
        code, documented = success(operation)
        assert str(response.status_code) == code, (method, path, response.text)
        self.seen.add((method, path))
        if code == "204":
            return
        media_type = response.headers["content-type"].split(";")[0]
        assert media_type in documented["content"], (method, path, media_type)
        if (method, path) in BINARY:
            return
        body_schema = {**documented["content"][media_type]["schema"],
                       "components": self.schema["components"]}
        jsonschema.validate(response.json(), body_schema,
                            cls=jsonschema.Draft202012Validator)
        # Keys the schema does not name would be an answer the docs do not describe.
        self._no_undocumented_keys(response.json(), body_schema, (method, path))

    def _resolve(self, schema: dict) -> dict:
        while "$ref" in schema:
            schema = self.schema["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
        return schema

    def _no_undocumented_keys(self, value, schema: dict, where) -> None:
        schema = self._resolve(schema)
        options = schema.get("anyOf") or [schema]
        for option in options:
            option = self._resolve(option)
            if isinstance(value, dict) and "properties" in option:
                extra = set(value) - set(option["properties"])
                if option.get("additionalProperties") is not True:
                    assert not extra, (where, sorted(extra))
                for key, item in value.items():
                    if key in option["properties"]:
                        self._no_undocumented_keys(item, option["properties"][key], where)
            elif isinstance(value, list) and "items" in option:
                for item in value:
                    self._no_undocumented_keys(item, option["items"], where)


async def test_the_answers_of_a_run_match_the_documented_schemas(api):
    schema = (await api.client.get("/openapi.json")).json()
    checker = Checker(schema)
    client = api.client

    generated = await api.generate("a documented scene")
    checker.check("post", "/generate", generated)
    generation_id = generated.headers["x-generation-id"]
    api.fakes.depth.behaviour.fail_code = __import__("grpc").StatusCode.INTERNAL
    failed = await api.generate("a failed scene")
    api.fakes.depth.behaviour.fail_code = None
    assert failed.status_code >= 500

    submitted = await api.submit("a queued scene")
    checker.check("post", "/jobs", submitted)
    job_id = submitted.json()["id"]
    checker.check("get", "/jobs/{id}", await client.get(f"/jobs/{job_id}"))
    await api.wait_status(job_id, "completed")
    checker.check("get", "/jobs/{id}/events", await client.get(f"/jobs/{job_id}/events"))
    checker.check("post", "/jobs/{id}/cancel", await client.post(f"/jobs/{job_id}/cancel"))
    checker.check("delete", "/jobs/{id}", await client.delete(f"/jobs/{job_id}"))
    checker.check("get", "/jobs", await client.get("/jobs"))

    for params in ({}, {"status": "failed"}, {"limit": 1, "offset": 1}):
        checker.check("get", "/generations", await client.get("/generations", params=params))
    checker.check("get", "/generations/{id}", await client.get(f"/generations/{generation_id}"))
    for asset in ("pointcloud.bin", "image.png", "scene.glb"):
        checker.check("get", "/generations/{id}/{asset}",
                      await client.get(f"/generations/{generation_id}/{asset}"))
    grid = await client.get(f"/generations/{generation_id}/pointcloud.bin",
                            params={"format": "grid"})
    checker.check("get", "/generations/{id}/{asset}", grid)
    checker.check("get", "/health", await client.get("/health"))
    checker.check("get", "/limits", await client.get("/limits"))
    checker.check("delete", "/generations/{id}", await client.delete(f"/generations/{job_id}"))

    # A failed record and a running job's view match too.
    checker.check("get", "/generations/{id}",
                  await client.get(f"/generations/{failed.headers['x-generation-id']}"))
    api.fakes.depth.behaviour.delay_s = 0.5
    running = (await api.submit("a running scene")).json()["id"]
    state = await api.wait_stage(running, "depth")
    assert state["status"] == "running"
    checker.check("get", "/jobs", await client.get("/jobs"))
    await asyncio.sleep(0)
    checker.check("post", "/jobs/{id}/cancel", await client.post(f"/jobs/{running}/cancel"))

    every = {(method, path) for method, path, _ in operations(schema)}
    assert every - checker.seen == set()


@pytest.mark.parametrize("asset", ["scene.splat", "gaussians.ply", "pointcloud.ply"])
async def test_derived_files_have_documented_media_types(api, asset):
    schema = (await api.client.get("/openapi.json")).json()
    generated = await api.generate("a scene")
    response = await api.client.get(f"/generations/{generated.headers['x-generation-id']}/{asset}")
    Checker(schema).check("get", "/generations/{id}/{asset}", response)
