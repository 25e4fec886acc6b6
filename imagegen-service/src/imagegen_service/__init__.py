"""gRPC image generation through the OpenAI Images API, with the caller's key passed through."""

__version__ = "0.1.0"

# The name in its logs and traces (service.name), as dashboards and tests know it.
NAME = "imagegen"
