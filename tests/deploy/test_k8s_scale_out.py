"""deploy/k8s/scale-out rendered (kustomize): two orchestrator replicas over one PostgreSQL (a
StatefulSet, its URL from a Secret) and a ReadWriteMany volume for the generations."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.deploy.kustomize import render

REPO = Path(__file__).resolve().parents[2]
OVERLAY = REPO / "deploy" / "k8s" / "scale-out"
NAMESPACE = "scene"


@pytest.fixture(scope="module")
def objects() -> dict[tuple[str, str], dict]:
    return {(m["kind"], m["metadata"]["name"]): m for m in render(OVERLAY)}


def secret(objects: dict, prefix: str) -> dict:
    """The generated Secret named ``prefix`` plus kustomize's content hash."""
    (found,) = [m for (kind, name), m in objects.items()
                if kind == "Secret" and name.rsplit("-", 1)[0] == prefix]
    return found


def secret_value(objects: dict, ref: dict) -> str:
    import base64

    (found,) = [m for (kind, name), m in objects.items()
                if kind == "Secret" and name == ref["name"]]
    return base64.b64decode(found["data"][ref["key"]]).decode()


def test_two_orchestrators_rolling_over_one_volume_they_all_mount(objects):
    deployment = objects["Deployment", "orchestrator"]
    spec = deployment["spec"]
    assert spec["replicas"] == 2
    assert spec["strategy"]["type"] == "RollingUpdate"
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    claim = objects["PersistentVolumeClaim", "generations"]
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    pod = spec["template"]["spec"]
    assert {v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"]
            if "persistentVolumeClaim" in v} == {"generations"}
    anti = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert anti[0]["podAffinityTerm"]["labelSelector"]["matchLabels"] == {
        "app.kubernetes.io/name": "orchestrator"}


def test_the_orchestrators_database_url_comes_from_a_secret_naming_the_statefulset(objects):
    (container,) = objects["Deployment", "orchestrator"]["spec"]["template"]["spec"][
        "containers"]
    (database,) = [e for e in container["env"] if e["name"] == "DATABASE_URL"]
    ref = database["valueFrom"]["secretKeyRef"]
    # kustomize gave the reference the generated Secret's hashed name.
    assert ref["name"] == secret(objects, "orchestrator-database")["metadata"]["name"]
    url = urlsplit(secret_value(objects, ref))
    assert url.scheme == "postgresql" and url.hostname == "postgres" and url.port == 5432
    service = objects["Service", "postgres"]
    assert service["spec"]["ports"][0]["port"] == 5432
    statefulset = objects["StatefulSet", "postgres"]
    assert statefulset["spec"]["serviceName"] == "postgres"
    assert service["spec"]["selector"] == statefulset["spec"]["selector"]["matchLabels"]
    # The same password on both sides.
    (pg,) = statefulset["spec"]["template"]["spec"]["containers"]
    password_ref = next(e for e in pg["env"] if e["name"] == "POSTGRES_PASSWORD")
    password = secret_value(objects, password_ref["valueFrom"]["secretKeyRef"])
    assert url.password == password
    assert url.username == next(e["value"] for e in pg["env"] if e["name"] == "POSTGRES_USER")
    assert url.path == "/" + next(e["value"] for e in pg["env"] if e["name"] == "POSTGRES_DB")


def test_postgres_keeps_its_data_on_its_own_volume(objects):
    statefulset = objects["StatefulSet", "postgres"]
    (template,) = statefulset["spec"]["volumeClaimTemplates"]
    assert template["spec"]["accessModes"] == ["ReadWriteOnce"]
    (pg,) = statefulset["spec"]["template"]["spec"]["containers"]
    mounts = {m["name"]: m["mountPath"] for m in pg["volumeMounts"]}
    assert mounts[template["metadata"]["name"]] == "/var/lib/postgresql/data"
    pgdata = next(e["value"] for e in pg["env"] if e["name"] == "PGDATA")
    assert pgdata.startswith("/var/lib/postgresql/data/")
    assert pg["readinessProbe"]["exec"]["command"][0] == "pg_isready"


def test_everything_is_in_the_namespace(objects):
    for (kind, name), manifest in objects.items():
        if kind != "Namespace":
            assert manifest["metadata"]["namespace"] == NAMESPACE, (kind, name)
