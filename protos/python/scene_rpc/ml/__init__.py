"""The ML runtime of the services that run models: torch device, dtype and thread choices
(``torch_runtime``) and compiled CPU graphs (``accel``).

Imports torch, so only the depth and segment services import it, after their logging is
configured (``scene_rpc.service.main``); the rest of ``scene_rpc``, the image generation service
and the orchestrator never do. The runtime *choice* (:class:`scene_rpc.settings.Runtime`) is
torch-free, so settings load without torch.
"""
