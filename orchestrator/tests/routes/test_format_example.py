"""pointcloud-lib/FORMAT.md's example header shows the metadata the server writes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from pointcloud import PointCloud, decode, encode

FORMAT_MD = Path(__file__).resolve().parents[3] / "pointcloud-lib" / "FORMAT.md"


def example() -> tuple[dict, int]:
    """The header of FORMAT.md's "Example" section, and the size it states."""
    text = FORMAT_MD.read_text()
    section = text[text.index("## Example"):]
    size = int(re.search(r"(\d+) bytes, header", section).group(1))
    block = re.search(r"```json\n(.*?)\n```", section, re.S).group(1)
    return json.loads(block), size


async def test_the_examples_metadata_is_what_a_stored_cloud_carries(api):
    response = await api.generate("a cat")
    generation_id = response.headers["x-generation-id"]
    stored = (await api.client.get(f"/generations/{generation_id}/pointcloud.bin")).content
    header, _ = example()
    written = decode(stored).header["metadata"]
    assert set(header["metadata"]) == set(written)
    assert written == {"generation_id": generation_id, "source": "prompt",
                       "scene_mode": "standard"}


def test_the_example_encodes_to_the_stated_header_and_size():
    header, size = example()
    positions = np.array([[-1.0, 0.0, -2.0], [0.5, 1.25, -4.0]], np.float32)
    cloud = PointCloud(positions, np.array([[255, 0, 0], [0, 255, 0]], np.uint8),
                       np.array([0, 2], np.uint8))
    data = encode(cloud, mode="planar", cloud_id="demo", metadata=header["metadata"])
    assert decode(data).header == header
    assert len(data) == size
