"""gRPC image generation through the OpenAI Images API, with the caller's key passed through."""

__version__ = "0.1.0"
