"""The ADE20K -> audio category table: complete, consistent, and the same as the models' labels."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from segment_service.categories import (
    ADE20K_CATEGORY_TABLE,
    ADE20K_NAMES,
    CATEGORY_BY_ADE20K_ID,
    CATEGORY_NAMES,
    Category,
    ade20k_id,
    ade20k_lookup,
)

README = Path(__file__).resolve().parents[1] / "README.md"


def test_every_ade20k_class_appears_exactly_once_in_index_order():
    assert [index for index, _, _ in ADE20K_CATEGORY_TABLE] == list(range(150))
    assert len(set(ADE20K_NAMES)) == 150
    assert all(isinstance(category, Category) for _, _, category in ADE20K_CATEGORY_TABLE)
    assert CATEGORY_BY_ADE20K_ID.shape == (150,) and CATEGORY_BY_ADE20K_ID.dtype == np.uint8
    assert set(CATEGORY_BY_ADE20K_ID.tolist()) == {c.value for c in Category}


@pytest.mark.parametrize("model", ["maskformer", "segformer"])
def test_table_matches_the_model_configs_id2label(tiny_models_dir, model):
    # The tiny configs carry the real checkpoints' id2label, written independently of this table.
    config = json.loads((tiny_models_dir / model / "config.json").read_text())
    id2label = {int(i): name for i, name in config["id2label"].items()}
    assert id2label == dict(enumerate(ADE20K_NAMES))
    assert ade20k_lookup(config["id2label"]).tolist() == list(range(150))


@pytest.mark.parametrize(
    ("names", "category"),
    [
        (["person", "animal"], Category.BASS_SUBJECT),
        (["tree", "grass", "plant", "flower", "palm"], Category.MID_ORGANIC),
        (["sky", "lamp", "light", "chandelier", "streetlight", "sconce"], Category.HIGH_SKY),
        (["floor", "road", "water", "sea", "sand", "earth", "mountain", "hill", "river", "lake",
          "land", "field"], Category.BEAT_GROUND),
        (["building", "house", "skyscraper", "car", "bus", "truck", "boat", "airplane",
          "bicycle", "chair", "sofa", "table", "bed ", "cabinet"], Category.MID_STRUCTURE),
        (["wall", "ceiling", "windowpane", "curtain", "painting", "box", "flag"],
         Category.LOW_AMBIENT),
    ],
)
def test_categories_follow_the_issue(names, category):
    for name in names:
        assert CATEGORY_BY_ADE20K_ID[ade20k_id(name)] == category, name


def test_names_match_despite_spelling_noise():
    assert ade20k_id("bed") == ade20k_id("bed ") == ade20k_id(" Bed") == 7
    assert ade20k_id("Swimming  Pool") == 109
    assert ade20k_id("cat") is None


def test_a_model_with_another_class_order_maps_by_name():
    rng = np.random.default_rng(0)
    order = rng.permutation(150)
    id2label = {str(i): ADE20K_NAMES[j] for i, j in enumerate(order)}
    assert ade20k_lookup(id2label).tolist() == order.tolist()


def test_a_model_without_ade20k_labels_is_refused():
    with pytest.raises(ValueError, match="not ADE20K-150"):
        ade20k_lookup({0: "background", 1: "aeroplane", 2: "person"})


def test_category_names_agree_with_pointcloud_lib():
    pointcloud = pytest.importorskip("pointcloud")
    names = getattr(pointcloud, "CATEGORY_NAMES", None)
    if names is None:
        pytest.skip("pointcloud-lib does not export CATEGORY_NAMES yet")
    assert tuple(names) == CATEGORY_NAMES


def test_the_readme_documents_the_same_table():
    rows = re.findall(r"^\|\s*(\d+)\s*\|\s*([^|]*?)\s*\|\s*([A-Z_]+)\s*\|$", README.read_text(),
                      flags=re.MULTILINE)
    documented = {int(i): (name, category) for i, name, category in rows}
    expected = {i: (name.strip(), category.name) for i, name, category in ADE20K_CATEGORY_TABLE}
    assert documented == expected
