"""The model profiles: one switch (``PROFILE``) that picks every model service's models.

This table is the one place the profiles are defined. The depth and segment services' settings
read ``PROFILE`` (the one environment variable more than one service reads, on purpose: it must
mean the same to all of them) and take a model from here unless their own model setting is set
explicitly. ``scripts/run.py`` prints the expected time per scene from ``expected_scene_s``.

- ``quality``: the spec's models (the default).
- ``balanced``: mid-size models of the same families.
- ``fast``: the smallest members, chosen for a CPU.
- ``open``: only models whose model cards grant a permissive licence (Apache-2.0, MIT), for a
  deployment that may not serve research-only or non-commercial weights.

Each model's licence, as its model card states it, is in :data:`LICENCES`; ``GetInfo`` (and so
the orchestrator's ``/health``) reports it beside the loaded model. Not legal advice: the card is
the source, and the training data of every ADE20K model has terms of its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field

DEFAULT_PROFILE = "quality"


@dataclass(frozen=True)
class ModelLicence:
    """A model's licence as its model card's metadata names it, and where that was read."""

    #: The card's ``license:`` value ("apache-2.0", "cc-by-nc-4.0", "apple-amlr", "other").
    licence: str
    #: The model card.
    source: str
    #: What the licence says beyond its name, where the card's value alone does not tell.
    note: str = ""

    @property
    def commercial_use(self) -> bool:
        """Whether the licence permits commercial use as it stands. Only the permissive licences
        count; "other" counts as restricted until someone has read its terms."""
        return self.licence in PERMISSIVE_LICENCES


# Licences that permit commercial use without further terms.
PERMISSIVE_LICENCES = frozenset({"apache-2.0", "mit"})

_HF = "https://huggingface.co/"
# Read from each model card's metadata on 2026-12-07.
LICENCES: dict[str, ModelLicence] = {
    "apple/DepthPro-hf": ModelLicence(
        "apple-amlr", _HF + "apple/DepthPro-hf",
        "Apple Machine Learning Research Model License: research use only"),
    "depth-anything/Depth-Anything-V2-Large-hf": ModelLicence(
        "cc-by-nc-4.0", _HF + "depth-anything/Depth-Anything-V2-Large-hf", "non-commercial"),
    "depth-anything/Depth-Anything-V2-Base-hf": ModelLicence(
        "cc-by-nc-4.0", _HF + "depth-anything/Depth-Anything-V2-Base-hf", "non-commercial"),
    "depth-anything/Depth-Anything-V2-Small-hf": ModelLicence(
        "apache-2.0", _HF + "depth-anything/Depth-Anything-V2-Small-hf"),
    "facebook/sam2.1-hiera-large": ModelLicence(
        "apache-2.0", _HF + "facebook/sam2.1-hiera-large"),
    "facebook/sam2.1-hiera-small": ModelLicence(
        "apache-2.0", _HF + "facebook/sam2.1-hiera-small"),
    "facebook/sam2.1-hiera-tiny": ModelLicence(
        "apache-2.0", _HF + "facebook/sam2.1-hiera-tiny"),
    "facebook/maskformer-swin-large-ade": ModelLicence(
        "other", _HF + "facebook/maskformer-swin-large-ade",
        "the card names no licence; MaskFormer's own repository (facebookresearch/MaskFormer) "
        "is CC-BY-NC-4.0"),
    "facebook/maskformer-swin-tiny-ade": ModelLicence(
        "other", _HF + "facebook/maskformer-swin-tiny-ade",
        "the card names no licence; MaskFormer's own repository (facebookresearch/MaskFormer) "
        "is CC-BY-NC-4.0"),
    "nvidia/segformer-b0-finetuned-ade-512-512": ModelLicence(
        "other", _HF + "nvidia/segformer-b0-finetuned-ade-512-512",
        "the card names no licence beyond 'other'; SegFormer's own repository (NVlabs/SegFormer) "
        "is under the NVIDIA Source Code License"),
    "openmmlab/upernet-convnext-small": ModelLicence(
        "mit", _HF + "openmmlab/upernet-convnext-small"),
}


def licence_of(model_id: str) -> ModelLicence | None:
    """The licence of a hub model this project knows, else None (a local directory, or a model
    chosen by its own *_MODEL setting: its card is the deployer's to read)."""
    return LICENCES.get(model_id)


@dataclass(frozen=True)
class Profile:
    name: str
    depth_model: str
    # Loaded when depth_model cannot be; "" = none.
    depth_fallback_model: str
    sam_model: str
    semantic_model: str
    # Measured upload -> cloud seconds for a 1 MP photo at quality=standard and =draft, by device
    # kind ("cpu2": this project's 2-core CPU machine, "gpu"), from scripts/bench_scene.py
    # (`make run` prints them); absent = not measured. `measured` says when and how.
    expected_scene_s: dict[str, float] = field(default_factory=dict)
    draft_scene_s: dict[str, float] = field(default_factory=dict)
    measured: str = ""
    summary: str = ""
    # Service defaults the profile sets unless the setting is set explicitly (by field name of
    # the service's settings): what the `standard` quality, which sends no density, tiling or
    # cap of its own, runs with on these models.
    depth_defaults: dict[str, object] = field(default_factory=dict)
    segment_defaults: dict[str, object] = field(default_factory=dict)

    @property
    def models(self) -> list[str]:
        """Every model id the profile may load (fallback included), without repeats."""
        ids = [self.depth_model, self.depth_fallback_model, self.sam_model, self.semantic_model]
        return list(dict.fromkeys(i for i in ids if i))

    @property
    def restricted_models(self) -> list[str]:
        """The profile's models whose licence restricts commercial use (or is not known)."""
        return [m for m in self.models
                if (licence := licence_of(m)) is None or not licence.commercial_use]


PROFILES: dict[str, Profile] = {
    "quality": Profile(
        name="quality",
        depth_model="apple/DepthPro-hf",
        depth_fallback_model="depth-anything/Depth-Anything-V2-Large-hf",
        sam_model="facebook/sam2.1-hiera-large",
        semantic_model="facebook/maskformer-swin-large-ade",
        summary="the spec's models: metric DepthPro, SAM2.1-L, MaskFormer Swin-L",
        # SAM2 prompts from the semantic map at density 16 (8 per crop): about 300 prompts for
        # a 1 MP photo against today's 1,024 + crops, the same regions (segment-service tests).
        segment_defaults={"points_per_side": 16, "crop_points_per_side": 8},
        # On the 2-core CPU DepthPro's one 1536 px pass (about 15 TFLOP in float32) holds the
        # scene at minutes, draft included (DepthPro has one input size).
        expected_scene_s={"gpu": 0.5, "cpu2": 207.0},
        draft_scene_s={"gpu": 0.5},
        measured="GPU: 2026-11-30, one H200, random weights, scripts/bench_scene.py --device "
                 "cuda; CPU: 2026-11-30, quiet 2-core machine, scripts/bench_scene.py "
                 "--profiles quality --qualities standard --no-panorama",
    ),
    "balanced": Profile(
        name="balanced",
        depth_model="depth-anything/Depth-Anything-V2-Base-hf",
        depth_fallback_model="",
        sam_model="facebook/sam2.1-hiera-small",
        # Measured here: MaskFormer Swin-T is faster than SegFormer-B2 on this CPU at a higher
        # published ADE20K mIoU, so it is the middle semantic model.
        semantic_model="facebook/maskformer-swin-tiny-ade",
        summary="mid-size models: Depth Anything V2 Base, SAM2.1-S, MaskFormer Swin-T",
        segment_defaults={"points_per_side": 16, "crop_points_per_side": 8},
        # One run, the first after start (its depth graph for the photo's shape exporting
        # meanwhile): steady state is likely a little faster.
        expected_scene_s={"cpu2": 63.0},
        draft_scene_s={"cpu2": 6.7},
        measured="2026-11-30, quiet 2-core machine, scripts/bench_scene.py --profiles balanced "
                 "(one run)",
    ),
    "fast": Profile(
        name="fast",
        depth_model="depth-anything/Depth-Anything-V2-Small-hf",
        depth_fallback_model="",
        sam_model="facebook/sam2.1-hiera-tiny",
        semantic_model="nvidia/segformer-b0-finetuned-ade-512-512",
        summary="CPU models: Depth Anything V2 Small, SAM2.1-T, SegFormer-B0",
        # Sized for 2 cores: one depth pass (no tiles), SAM2 on the whole image only (no crops)
        # at density 8 from the semantic map (about 55 prompts), models seeing <= 1024 px.
        depth_defaults={"tile_mode": "off"},
        segment_defaults={"points_per_side": 8, "crop_mode": "off", "max_input_side_px": 1024},
        # Steady state (3 runs, the fastest); the first scene after a fresh start took 1.23x
        # (every graph is exported before the services are ready).
        expected_scene_s={"cpu2": 6.6},
        draft_scene_s={"cpu2": 1.24},
        measured="2026-12-08, quiet 2-core machine, scripts/bench_scene.py --quick --repeats 3 "
                 "(bfloat16 segmentation, shape buckets)",
    ),
    "open": Profile(
        name="open",
        depth_model="depth-anything/Depth-Anything-V2-Small-hf",
        depth_fallback_model="",
        sam_model="facebook/sam2.1-hiera-small",
        # UperNet ConvNeXt-S: MIT on its card, and an ADE20K semantic model that the semantic
        # pass loads through AutoModelForSemanticSegmentation like SegFormer.
        semantic_model="openmmlab/upernet-convnext-small",
        summary="permissively licensed models only (Apache-2.0, MIT): Depth Anything V2 Small, "
                "SAM2.1-S, UperNet ConvNeXt-S",
        # balanced's prompt density: SAM2.1-S is balanced's SAM.
        segment_defaults={"points_per_side": 16, "crop_points_per_side": 8},
        # One run on a loaded machine (fast took 15.05 s in it against 9.0 s quiet then): an upper
        # bound; UperNet ConvNeXt-S is the long pole (docs/performance.md).
        expected_scene_s={"cpu2": 74.0},
        draft_scene_s={"cpu2": 16.6},
        measured="2026-12-08, the 2-core machine under heavy load, scripts/bench_scene.py "
                 "--profiles fast,open --qualities standard,draft --no-panorama --repeats 2",
    ),
}


def get_profile(name: str) -> Profile:
    """The profile called ``name`` (case-insensitive); ValueError naming the valid ones."""
    key = name.strip().lower()
    if key not in PROFILES:
        raise ValueError(f"unknown profile {name!r}: valid profiles are "
                         f"{', '.join(PROFILES)}")
    return PROFILES[key]


def model_ids(name: str) -> list[str]:
    """Every model id the profile may load (fallback included), without repeats."""
    return get_profile(name).models


def apply_profile(settings, values: dict[str, object]) -> None:
    """Give each of ``settings``' fields in ``values`` the profile's value, unless the
    environment set that field explicitly (even to its default). For a settings object's
    after-validator: the object is frozen, so the fields are written once, during validation;
    each value is converted to the field's type (an enum from its name)."""
    for name, value in values.items():
        if name not in settings.model_fields_set:
            settings.__dict__[name] = type(getattr(settings, name))(value)
