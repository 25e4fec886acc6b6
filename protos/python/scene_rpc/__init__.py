"""Runtime shared by the model services and their clients: array and image codecs, the model
lifecycle, error-to-status mapping and the gRPC server bootstrap.

Kept beside the generated contracts so that no service copies these helpers.
"""
