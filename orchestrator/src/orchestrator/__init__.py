"""The public HTTP API of the 3D scene server: it fans a generation out to the model services
over gRPC, builds the point cloud and stores every generation (``create_app``)."""

__version__ = "0.1.0"
