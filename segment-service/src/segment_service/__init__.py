"""gRPC segmentation service: SAM2 automatic masks fused with ADE20K semantics into six audio
categories. Run with ``python -m segment_service``."""

__version__ = "0.1.0"

# The name in its logs and traces (service.name), as dashboards and tests know it.
NAME = "segment"
