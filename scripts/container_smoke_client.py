"""The HTTP half of scripts/container_smoke.sh: requests against the containerised stack, each
checked down to a stored, decodable point cloud. Runs on the host with the project's .venv.

    python scripts/container_smoke_client.py health URL [--models depth=depth-anything,...]
    python scripts/container_smoke_client.py generate URL [--out IDS_FILE]  # an upload + a prompt
    python scripts/container_smoke_client.py stored URL IDS_FILE            # still there, intact

Exit status 0 when every check holds; otherwise 1 with the failed check on stderr.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import httpx

from pointcloud import decode

REPO = Path(__file__).resolve().parents[1]
PHOTO = REPO / "scripts" / "demo" / "chelsea.png"
# The fake OpenAI server in the smoke stack takes any key of this shape.
KEY = "sk-container-smoke-0123456789"
TIMEOUT = httpx.Timeout(300.0, connect=10.0)


class CheckFailed(Exception):
    pass


def check(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


def loaded_models(body: dict) -> dict[str, str]:
    """Role ("depth", "sam", "semantic", ...) -> the model each service reports loaded (else the
    one it was asked for), from /health's GetInfo of every service."""
    models = {}
    for service in body["services"].values():
        for model in (service.get("info") or {}).get("models", []):
            models[model["role"]] = model.get("model_id") or model["requested_model_id"]
    return models


def health(client: httpx.Client, expected: dict[str, str] | None = None) -> dict:
    """/health ok; with ``expected`` (role -> model directory name), each role's model is the
    one named: which architectures the containers really run."""
    response = client.get("/health")
    check(response.status_code == 200, f"/health: HTTP {response.status_code} {response.text}")
    body = response.json()
    check(body.get("status") == "ok", f"/health is not ok: {body}")
    models = loaded_models(body)
    for role, name in (expected or {}).items():
        check(Path(models.get(role, "")).name == name,
              f"/health: the {role} model is {models.get(role)!r}, not {name!r}")
    return body


def stored_cloud(client: httpx.Client, generation_id: str) -> tuple[int, str]:
    """The stored cloud decodes and the generation is completed: (point count, sha256)."""
    metadata = client.get(f"/generations/{generation_id}")
    check(metadata.status_code == 200, f"{generation_id}: metadata HTTP {metadata.status_code}")
    check(metadata.json().get("status") == "completed", f"{generation_id}: {metadata.json()}")
    stored = client.get(f"/generations/{generation_id}/pointcloud.bin")
    check(stored.status_code == 200, f"{generation_id}: pointcloud.bin HTTP {stored.status_code}")
    cloud = decode(stored.content)
    check(cloud.count > 0, f"{generation_id}: the stored cloud is empty")
    return cloud.count, hashlib.sha256(stored.content).hexdigest()


def generate(client: httpx.Client) -> list[tuple[str, str]]:
    """One upload and one prompt; each returned buffer equals the stored one."""
    requests = {
        "upload": dict(files={"image": ("chelsea.png", PHOTO.read_bytes(), "image/png")},
                       data={"mode": "standard"}),
        "prompt": dict(json={"prompt": "a quiet courtyard with a fountain", "mode": "standard"},
                       headers={"Authorization": f"Bearer {KEY}"}),
    }
    made = []
    for kind, arguments in requests.items():
        response = client.post("/generate", **arguments)
        check(response.status_code == 200,
              f"{kind}: HTTP {response.status_code} {response.text[:500]}")
        generation_id = response.headers["X-Generation-Id"]
        count, digest = stored_cloud(client, generation_id)
        check(digest == hashlib.sha256(response.content).hexdigest(),
              f"{kind}: the stored cloud differs from the returned one")
        print(f"{kind}: generation {generation_id}, {count} points, stored and decodable")
        made.append((generation_id, digest))
    return made


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["health", "generate", "stored"])
    parser.add_argument("url")
    parser.add_argument("ids_file", nargs="?", type=Path)
    parser.add_argument("--models", default="",
                        help="health: role=model-directory pairs, comma-separated, that /health "
                             "must report")
    args = parser.parse_args(argv)
    expected = dict(pair.split("=", 1) for pair in args.models.split(",") if pair)
    try:
        with httpx.Client(base_url=args.url, timeout=TIMEOUT) as client:
            if args.action == "health":
                print(f"/health: {health(client, expected)}")
            elif args.action == "generate":
                made = generate(client)
                if args.ids_file:
                    args.ids_file.write_text("".join(f"{i} {d}\n" for i, d in made))
            else:
                for line in args.ids_file.read_text().split("\n"):
                    if not line:
                        continue
                    generation_id, digest = line.split()
                    count, now = stored_cloud(client, generation_id)
                    check(now == digest, f"{generation_id}: the stored cloud changed")
                    print(f"generation {generation_id} survived: {count} points, same bytes")
    except (CheckFailed, httpx.HTTPError, KeyError, ValueError) as error:
        print(f"container smoke: {args.action} failed: {type(error).__name__}: {error}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
