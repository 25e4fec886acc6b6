"""Deployment artefacts checked without an engine: Dockerfiles, compose, Kubernetes manifests."""
