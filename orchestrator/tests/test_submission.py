"""Reading a generation request at the front door: bodies that are bad in every way a parser
can meet are 4xx answers with a JSON ``detail``, and the connection stays usable."""

from __future__ import annotations

import pytest


def local_address(response) -> tuple:
    """The client side of the connection that carried ``response``: equal for two responses
    when they came over one connection (the server did not close it in between)."""
    return response.extensions["network_stream"].get_extra_info("client_addr")


def deep_json(levels: int) -> bytes:
    return b'{"prompt": ' + b"[" * levels + b"]" * levels + b"}"


@pytest.mark.parametrize("path", ["/generate", "/jobs"])
async def test_deeply_nested_json_is_a_4xx_and_the_connection_survives(api, path):
    response = await api.client.post(path, content=deep_json(5000),
                                     headers={"Content-Type": "application/json",
                                              "X-OpenAI-Key": api.key})
    assert response.status_code in (400, 422), response.text
    assert response.json()["detail"]
    # The same client still works, over the same keep-alive connection.
    after = await api.client.get("/jobs")
    assert after.status_code == 200
    assert local_address(after) == local_address(response)
    assert api.fakes.imagegen.calls == []


@pytest.mark.parametrize("body", [
    b'{"prompt": "p", "edges": 1e999}',
    b'{"prompt": "p", "edges": NaN}',
    b'{"prompt": "p", "edges": -Infinity}',
    b'{"prompt": ' + b"9" * 5000 + b"}",
    b'{"prompt": "\\ud800"}',
    b'{"prompt": "p"' + b' ' * 10 + b"}" + b"x",
    b"\xff\xfe\x00",
    b"[]",
    b"null",
    b'"prompt"',
    b'{"prompt": {"a": ' * 200 + b"1" + b"}" * 201,
])
async def test_odd_json_bodies_are_4xx_with_a_detail(api, body):
    response = await api.client.post("/jobs", content=body,
                                     headers={"Content-Type": "application/json",
                                              "X-OpenAI-Key": api.key})
    assert 400 <= response.status_code < 500, response.text
    assert response.json()["detail"]
    assert (await api.client.get("/jobs")).status_code == 200
    assert api.runtime.jobs.stats["queued"] + api.runtime.jobs.stats["running"] == 0


@pytest.mark.parametrize("char", ["\x00", "\x07", "\x1b", "\x7f", "\x85", "\x9b"])
@pytest.mark.parametrize("field", ["prompt", "vibe"])
async def test_control_characters_in_json_text_are_422_naming_the_field(api, field, char):
    body = {"prompt": "a quiet lake", "vibe": "calm", field: f"a quiet{char} lake"}
    response = await api.client.post("/jobs", json=body, headers={"X-OpenAI-Key": api.key})
    assert response.status_code == 422, response.text
    (error,) = response.json()["detail"]
    assert error["loc"] == ["body", field]
    assert f"U+{ord(char):04X}" in error["msg"]
    assert api.runtime.jobs.stats["queued"] + api.runtime.jobs.stats["running"] == 0


@pytest.mark.parametrize("field", ["prompt", "vibe"])
async def test_control_characters_in_upload_fields_are_422_naming_the_field(api, field):
    response = await api.upload("/jobs", api.png(), **{field: "dusk\x00"})
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == ["body", field]
    assert api.fakes.depth.calls == []


async def test_tabs_line_breaks_and_non_ascii_text_pass(api):
    response = await api.generate("a lake\r\nat dusk\twith a café 🌅", vibe="zärtlich\nruhig")
    assert response.status_code == 200, response.text
    assert api.fakes.imagegen.calls[0].request.prompt == "a lake\r\nat dusk\twith a café 🌅"


def part(name: bytes, value: bytes, filename: bytes | None = None) -> bytes:
    disposition = b'form-data; name="' + name + b'"'
    if filename is not None:
        disposition += b'; filename="' + filename + b'"'
    return b"--b\r\nContent-Disposition: " + disposition + b"\r\n\r\n" + value + b"\r\n"


IMAGE_PART = part(b"image", b"not an image", b"a.png")


@pytest.mark.parametrize("body", [
    part(b"vibe", b"\xff\xfe\xfd") + IMAGE_PART + b"--b--\r\n",  # not UTF-8
    b"--b\r\n",  # cut short
    b"garbage" * 100,
    b"--b\r\nContent-Disposition: form-data\r\n\r\nx\r\n--b--\r\n",  # a part with no name
    b"".join(part(b"f%d" % i, b"x") for i in range(20)) + b"--b--\r\n",  # too many fields
    IMAGE_PART + IMAGE_PART + b"--b--\r\n",  # two files
    part(b"vibe", b"xx", b"v.txt") + IMAGE_PART + b"--b--\r\n",  # a text field sent as a file
    part(b"\xff", b"xx") + b"--b--\r\n",
    part(b"edges", b"nan") + IMAGE_PART + b"--b--\r\n",
    part(b"edges", b"9" * 5000) + IMAGE_PART + b"--b--\r\n",
    part(b"vibe", b"v" * 70_000) + IMAGE_PART + b"--b--\r\n",  # over the part size limit
])
async def test_odd_multipart_bodies_are_4xx_with_a_detail(api, body):
    response = await api.client.post("/jobs", content=body,
                                     headers={"Content-Type": "multipart/form-data; boundary=b"})
    assert 400 <= response.status_code < 500, response.text
    assert response.json()["detail"]
    assert api.fakes.depth.calls == []


@pytest.mark.parametrize("path", [
    "/jobs?limit=" + "9" * 5000,
    "/generations?offset=" + "9" * 5000,
    "/jobs/0123456789abcdef0123456789abcdef/events?after=" + "9" * 5000,
    "/generations/0123456789abcdef0123456789abcdef/pointcloud.bin?format=" + "x" * 5000,
])
async def test_huge_numbers_in_queries_are_4xx(api, path):
    response = await api.client.get(path)
    assert 400 <= response.status_code < 500, response.text
