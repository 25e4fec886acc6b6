"""gRPC depth estimation service: one lazily loaded transformers depth model (DepthPro, Depth
Anything V2), tiled high-resolution inference aligned to a global pass."""

__version__ = "0.1.0"

# The name in its logs and traces (service.name), as dashboards and tests know it.
NAME = "depth-service"
