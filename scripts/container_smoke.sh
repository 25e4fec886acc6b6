#!/usr/bin/env bash
# Build the four CPU images and run the compose stack through an offline end-to-end smoke
# (`make containers`):
#
#   0. as root, what is missing installed with apt (docker.io, docker-compose; debootstrap when a
#      local base must be made): scripts/ensure_docker.sh
#   1. a Docker engine: the one DOCKER_HOST names if it answers, else one started here (root
#      only; its own data root, exec root and socket; stopped at the end)
#   2. the base image: BASE_IMAGE if set, else the official python:3.11-slim-bookworm if present
#      or pullable, else a local Debian bookworm base (deploy/docker/make_local_base.sh)
#   3. the four images built (CPU torch; a local torch wheel handed in when PyTorch's index is
#      not reachable), each under a time limit
#   4. the stack up (docker-compose.yml + deploy/docker/compose.smoke.yml: PROFILE=fast on the
#      tiny models of its architectures, the fake OpenAI server as a fifth container) and every
#      health check healthy
#   5. /health ok, reporting the fast profile's architectures; an upload and a prompt, each to
#      a stored, decodable cloud
#   6. the depth container restarted: the next request succeeds, the orchestrator untouched
#   7. down + up: the stored generations survive on the volume
#   8. everything torn down (containers, network, volumes; the images stay for the next run)
#
# Exit 0 when all of it holds. Any failure stops the run within a bounded time with the reason
# and the failing container's logs, exit 1 (2: no engine and no way to start one).
#
# Environment: BASE_IMAGE, BUILD_NETWORK (default host: the build reaches the package index
# through the host's network), BUILD_TIMEOUT_S (per image, 2400), HEALTH_TIMEOUT_S (600),
# ENGINE_TIMEOUT_S (60), SMOKE_PORT (host port of the orchestrator, 127.0.0.1 only; 18080),
# SCENE_DOCKER_ROOT (/var/lib/scene-docker: data root of an engine started here),
# SMOKE_LOG_DIR (test-artifacts/container-smoke), CA_BUNDLE (copied into a local base only),
# SKIP_BUILD=1 (reuse existing scene/<service>:smoke images instead of building).
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
cd "$REPO"
PY=${PY:-$REPO/.venv/bin/python}
BUILD_NETWORK=${BUILD_NETWORK:-host}
BUILD_TIMEOUT_S=${BUILD_TIMEOUT_S:-2400}
HEALTH_TIMEOUT_S=${HEALTH_TIMEOUT_S:-600}
ENGINE_TIMEOUT_S=${ENGINE_TIMEOUT_S:-60}
SMOKE_PORT=${SMOKE_PORT:-18080}
SCENE_DOCKER_ROOT=${SCENE_DOCKER_ROOT:-/var/lib/scene-docker}
SCENE_DOCKER_SOCK=${SCENE_DOCKER_SOCK:-/run/scene-docker.sock}
LOCAL_BASE=scene-local/python:3.11-bookworm
OFFICIAL_BASE=python:3.11-slim-bookworm
LOG_DIR=${SMOKE_LOG_DIR:-$REPO/test-artifacts/container-smoke}
SERVICES=(depth segment imagegen orchestrator)
export DOCKER_BUILDKIT=0 COMPOSE_DOCKER_CLI_BUILD=0
# Creating a container copies its whole image under vfs: minutes for a model image, past
# docker-compose's default 60 s API timeout. Our own time limits bound each step instead.
export COMPOSE_HTTP_TIMEOUT=${COMPOSE_HTTP_TIMEOUT:-600}
export SCENE_IMAGE_TAG=smoke ORCHESTRATOR_PUBLISH="127.0.0.1:${SMOKE_PORT}"
# The smoke stack runs the fast profile (compose.smoke.yml sets it in the model containers too):
# /health must then report the fast profile's architectures, role=tiny model directory.
export PROFILE=fast
FAST_MODELS=depth=depth-anything,sam=sam2,semantic=segformer
URL="http://127.0.0.1:${SMOKE_PORT}"

mkdir -p "$LOG_DIR"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/container-smoke.XXXXXX")
SUMMARY="$LOG_DIR/summary.txt"
: > "$SUMMARY"
STARTED_ENGINE_PID=""
STACK_UP=0
LINKED_WHEEL=""

say() { printf '[container-smoke %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
report() { printf '%s\n' "$*" | tee -a "$SUMMARY"; }

compose() {
  timeout "${COMPOSE_TIMEOUT_S:-$HEALTH_TIMEOUT_S}" "${COMPOSE_CMD[@]}" -p scene-smoke \
    -f docker-compose.yml -f deploy/docker/compose.smoke.yml "$@"
}

container_of() {  # the container id of a service (compose v1 and v2 both label them)
  timeout 20 docker ps -aq --filter label=com.docker.compose.project=scene-smoke \
    --filter "label=com.docker.compose.service=$1" 2>/dev/null | head -n1
}

show_logs() {  # the last lines and the health probe's output of each named service
  local service id
  for service in "$@"; do
    id=$(container_of "$service") || true
    [ -n "$id" ] || { echo "--- $service: no container" >&2; continue; }
    echo "--- $service ($(docker inspect -f '{{.State.Status}} health={{if .State.Health}}{{.State.Health.Status}}{{end}} exit={{.State.ExitCode}}' "$id")): last log lines" >&2
    timeout 20 docker logs --tail 60 "$id" 2>&1 | sed "s/^/  $service| /" >&2 || true
    docker inspect -f '{{if .State.Health}}{{range .State.Health.Log}}  probe exit {{.ExitCode}}: {{.Output}}{{end}}{{end}}' "$id" 2>/dev/null | tail -n 6 >&2 || true
  done
}

unhealthy_services() {
  local service id state
  for service in "${SERVICES[@]}" openai-fake; do
    id=$(container_of "$service") || true
    state=$( [ -n "$id" ] && docker inspect -f '{{.State.Status}}/{{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}' "$id" 2>/dev/null || echo missing)
    [ "$state" = running/healthy ] || echo "$service"
  done
}

fail() {  # fail MESSAGE [SERVICE...]: the reason, the logs of the named (or unhealthy) services
  say "FAILED: $1"
  shift
  if [ "$STACK_UP" = 1 ]; then
    local services=("$@")
    [ ${#services[@]} -gt 0 ] || mapfile -t services < <(unhealthy_services)
    [ ${#services[@]} -gt 0 ] || services=("${SERVICES[@]}")
    show_logs "${services[@]}"
  fi
  exit 1
}

cleanup() {
  local status=$?
  if [ "$STACK_UP" = 1 ]; then
    say "tearing the stack down"
    COMPOSE_TIMEOUT_S=120 compose down -v --remove-orphans >/dev/null 2>&1 \
      || say "compose down failed; containers may remain (project scene-smoke)"
  fi
  [ -z "$LINKED_WHEEL" ] || rm -f "$LINKED_WHEEL"
  rm -rf "$WORK"
  if [ -n "$STARTED_ENGINE_PID" ]; then
    say "stopping the Docker engine started here (pid $STARTED_ENGINE_PID)"
    kill "$STARTED_ENGINE_PID" 2>/dev/null || true
    for _ in $(seq 30); do kill -0 "$STARTED_ENGINE_PID" 2>/dev/null || break; sleep 1; done
    kill -9 "$STARTED_ENGINE_PID" 2>/dev/null || true
  fi
  if [ "$status" = 0 ]; then say "PASSED (summary: $SUMMARY)"; else say "exit $status"; fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- 0. the tools ---------------------------------------------------------------------------
# As root, what is missing comes from Debian's packages (as `make test` installs chromium).
if [ "$(id -u)" = 0 ]; then
  "$REPO/scripts/ensure_docker.sh" engine compose \
    || { say "installing docker.io / docker-compose failed"; exit 2; }
fi

# ---- 1. an engine ---------------------------------------------------------------------------
engine_answers() { timeout 10 docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }

command -v docker >/dev/null || { say "no docker client (apt-get install docker.io)"; exit 2; }
if ! engine_answers; then
  if [ -S "$SCENE_DOCKER_SOCK" ] && DOCKER_HOST="unix://$SCENE_DOCKER_SOCK" engine_answers; then
    export DOCKER_HOST="unix://$SCENE_DOCKER_SOCK"
  elif [ "$(id -u)" != 0 ]; then
    say "no Docker engine answers at ${DOCKER_HOST:-the default socket} and this is not root," \
        "so none can be started here: start dockerd (or set DOCKER_HOST) and rerun"
    exit 2
  elif ! command -v dockerd >/dev/null; then
    say "no Docker engine answers and dockerd is not installed (apt-get install docker.io)"
    exit 2
  else
    say "starting a Docker engine (vfs, data root $SCENE_DOCKER_ROOT, socket $SCENE_DOCKER_SOCK)"
    mkdir -p "$SCENE_DOCKER_ROOT" /run/scene-docker
    # vfs and no iptables: works inside an unprivileged-looking VM or container, where overlay
    # mounts and netfilter are unavailable; containers still reach each other on the bridge.
    dockerd --storage-driver=vfs --iptables=false --data-root "$SCENE_DOCKER_ROOT" \
      --exec-root /run/scene-docker --pidfile /run/scene-docker/dockerd.pid \
      -H "unix://$SCENE_DOCKER_SOCK" > "$LOG_DIR/dockerd.log" 2>&1 &
    STARTED_ENGINE_PID=$!
    export DOCKER_HOST="unix://$SCENE_DOCKER_SOCK"
    for _ in $(seq "$ENGINE_TIMEOUT_S"); do
      engine_answers && break
      kill -0 "$STARTED_ENGINE_PID" 2>/dev/null || break
      sleep 1
    done
    engine_answers || { tail -n 20 "$LOG_DIR/dockerd.log" >&2
      say "FAILED: the Docker engine did not answer within ${ENGINE_TIMEOUT_S}s"; exit 2; }
  fi
fi
say "engine: Docker $(docker version --format '{{.Server.Version}}') at ${DOCKER_HOST:-default}"
if docker compose version >/dev/null 2>&1; then COMPOSE_CMD=(docker compose)
elif command -v docker-compose >/dev/null; then COMPOSE_CMD=(docker-compose)
else say "no docker compose (apt-get install docker-compose)"; exit 2; fi

# ---- 2. a base image --------------------------------------------------------------------------
image_exists() { docker image inspect "$1" >/dev/null 2>&1; }
if [ -z "${BASE_IMAGE:-}" ]; then
  if image_exists "$OFFICIAL_BASE"; then BASE_IMAGE=$OFFICIAL_BASE
  elif image_exists "$LOCAL_BASE"; then BASE_IMAGE=$LOCAL_BASE
  elif timeout 60 docker pull -q "$OFFICIAL_BASE" >/dev/null 2>&1; then BASE_IMAGE=$OFFICIAL_BASE
  else
    say "no registry reachable: making the local base $LOCAL_BASE with debootstrap"
    [ "$(id -u)" != 0 ] || "$REPO/scripts/ensure_docker.sh" debootstrap \
      || fail "installing debootstrap failed"
    ca=${CA_BUNDLE-/etc/ssl/certs/ca-certificates.crt}
    [ -f "$ca" ] || ca=""
    CA_BUNDLE=$ca timeout 1200 deploy/docker/make_local_base.sh "$LOCAL_BASE" \
      > "$LOG_DIR/base.log" 2>&1 \
      || { tail -n 30 "$LOG_DIR/base.log" >&2; fail "making the local base image failed"; }
    BASE_IMAGE=$LOCAL_BASE
  fi
fi
image_exists "$BASE_IMAGE" || fail "base image $BASE_IMAGE is not present"
say "base image: $BASE_IMAGE"

# ---- 3. the images ----------------------------------------------------------------------------
torch_pin=$(sed -n 's/^torch==//p' scripts/requirements/constraints.txt)
if ! ls deploy/docker/wheels/torch-"$torch_pin"[-+]*.whl >/dev/null 2>&1 \
    && ! timeout 15 curl -fsS -o /dev/null https://download.pytorch.org/whl/cpu/torch/ 2>/dev/null; then
  # PyTorch's index is out of reach: hand the build this machine's CPU wheel, if pip has one.
  dirs=$("$PY" -m pip config get global.find-links 2>/dev/null || true)
  wheel=$(for d in $dirs; do ls "${d#file://}"/torch-"$torch_pin"+cpu-cp311-*.whl 2>/dev/null; done | head -n1)
  [ -n "$wheel" ] || fail "PyTorch's CPU index is not reachable and no torch $torch_pin CPU wheel was found in pip's find-links; put one in deploy/docker/wheels/"
  LINKED_WHEEL=deploy/docker/wheels/$(basename "$wheel")
  ln "$wheel" "$LINKED_WHEEL" 2>/dev/null || cp "$wheel" "$LINKED_WHEEL"
  say "PyTorch's index is not reachable: building with $wheel"
fi
build_total=0
for service in "${SERVICES[@]}"; do
  if [ "${SKIP_BUILD:-0}" = 1 ] && image_exists "scene/$service:smoke"; then
    report "image scene/$service (cpu): $(docker image inspect -f '{{.Size}}' "scene/$service:smoke" | awk '{printf "%.0f MB", $1/1e6}'), not rebuilt (SKIP_BUILD=1)"
    continue
  fi
  dockerfile=$service-service/Dockerfile
  [ "$service" = orchestrator ] && dockerfile=orchestrator/Dockerfile
  say "building scene/$service:smoke (log: $LOG_DIR/build-$service.log)"
  start=$SECONDS
  if ! timeout "$BUILD_TIMEOUT_S" docker build --network "$BUILD_NETWORK" \
      --build-arg PYTHON_IMAGE="$BASE_IMAGE" --build-arg TORCH_VARIANT=cpu \
      -f "$dockerfile" -t "scene/$service:smoke" . > "$LOG_DIR/build-$service.log" 2>&1; then
    tail -n 40 "$LOG_DIR/build-$service.log" >&2
    fail "the build of $service failed or ran past ${BUILD_TIMEOUT_S}s (log above)"
  fi
  elapsed=$((SECONDS - start)); build_total=$((build_total + elapsed))
  size=$(docker image inspect -f '{{.Size}}' "scene/$service:smoke")
  report "image scene/$service (cpu): $(awk -v s="$size" 'BEGIN{printf "%.0f MB", s/1e6}'), built in ${elapsed}s"
done
report "all four images built in ${build_total}s (base $BASE_IMAGE; layers already cached are not rebuilt)"

# ---- 4. the stack up and healthy ----------------------------------------------------------------
[ -f .cache/tiny-models/.complete ] || make tiny-models >/dev/null \
  || fail "the tiny models could not be built (make tiny-models)"
# A copy readable by the containers' unprivileged user (the cache is private to its owner).
cp -r .cache/tiny-models "$WORK/models" && chmod -R a+rX "$WORK/models"
export SMOKE_MODELS_DIR="$WORK/models"

wait_healthy() {  # wait_healthy LABEL: every container healthy within HEALTH_TIMEOUT_S
  local deadline=$((SECONDS + HEALTH_TIMEOUT_S)) pending
  while :; do
    pending=$(unhealthy_services | tr '\n' ' ')
    [ -n "$pending" ] || return 0
    [ "$SECONDS" -lt "$deadline" ] || fail "$1: not healthy after ${HEALTH_TIMEOUT_S}s: $pending"
    sleep 1
  done
}

up() {
  local start=$SECONDS
  STACK_UP=1
  compose up -d --no-build > "$LOG_DIR/up.log" 2>&1 \
    || { cat "$LOG_DIR/up.log" >&2; fail "compose up failed"; }
  wait_healthy "$1"
  report "$1: every container healthy $((SECONDS - start))s after up"
}

memory() {  # one docker stats sample of every container: "service usage" lines
  local ids
  ids=$(docker ps -q --filter label=com.docker.compose.project=scene-smoke | tr '\n' ' ')
  # shellcheck disable=SC2086
  timeout 30 docker stats --no-stream --format '{{.Name}} {{.MemUsage}}' $ids \
    | sed -E 's/^scene-smoke[_-]([a-z-]+)[_-][0-9]+ ([^ ]+) .*/\1 \2/'
}

client() { "$PY" scripts/container_smoke_client.py "$@"; }

say "compose up (orchestrator on $URL)"
up "first start"
client health "$URL" --models "$FAST_MODELS" \
  || fail "/health through the container failed, or not on the fast profile's models" \
       orchestrator depth segment
report "/health: the fast profile's models loaded ($FAST_MODELS)"
memory > "$WORK/mem-idle"

# ---- 5. the end-to-end smoke, sampling memory while it runs --------------------------------------
: > "$WORK/mem-busy"
( while :; do memory >> "$WORK/mem-busy"; done ) 2>/dev/null &
sampler=$!
if ! client generate "$URL" "$WORK/generations" 2> "$WORK/client.err"; then
  kill "$sampler" 2>/dev/null; cat "$WORK/client.err" >&2
  fail "the end-to-end smoke failed" "${SERVICES[@]}" openai-fake
fi
kill "$sampler" 2>/dev/null; wait "$sampler" 2>/dev/null || true
# docker stats prints 1.5GiB / 230.4MiB / 900KiB: MiB for the report, the peak per service.
mib() { awk '{v=$2; u=v; gsub(/[0-9.]/, "", u); sub(/[A-Za-z]+$/, "", v);
  f = (u == "GiB") ? 1024 : (u == "KiB") ? 1/1024 : (u == "B") ? 1/1048576 : 1;
  printf "%s %.0f\n", $1, v * f}'; }
report "memory per container (MiB): idle / peak during an upload + a prompt"
while read -r service idle; do
  peak=$(mib < "$WORK/mem-busy" | awk -v s="$service" '$1 == s && $2 > m {m = $2} END {print m}')
  report "  $service: $idle / ${peak:-n/a}"
done < <(mib < "$WORK/mem-idle")

# ---- 6. a model container restarted; the orchestrator keeps running ---------------------------
orchestrator_started=$(docker inspect -f '{{.State.StartedAt}}' "$(container_of orchestrator)")
depth_started=$(docker inspect -f '{{.State.StartedAt}}' "$(container_of depth)")
say "restarting the depth container"
compose restart depth >/dev/null 2>&1 || fail "restarting depth failed" depth
wait_healthy "after the depth restart"
[ "$(docker inspect -f '{{.State.StartedAt}}' "$(container_of depth)")" != "$depth_started" ] \
  || fail "the depth container was not restarted" depth
client generate "$URL" "$WORK/after-restart" || fail "the first request after the depth restart failed"
[ "$(docker inspect -f '{{.State.StartedAt}}' "$(container_of orchestrator)")" = "$orchestrator_started" ] \
  || fail "the orchestrator restarted" orchestrator
report "depth restarted: the next upload and prompt succeeded, the orchestrator kept running (started $orchestrator_started)"

# ---- 7. down and up: the generations survive ---------------------------------------------------
say "compose down (volumes kept) and up again"
compose down > "$LOG_DIR/down.log" 2>&1 || { cat "$LOG_DIR/down.log" >&2; fail "compose down failed"; }
STACK_UP=0
up "after down + up"
cat "$WORK/after-restart" >> "$WORK/generations"
client stored "$URL" "$WORK/generations" || fail "stored generations did not survive down + up" orchestrator
report "down + up: $(wc -l < "$WORK/generations") stored generations survived on the volume, byte for byte"
# ---- 8. the trap tears everything down ----------------------------------------------------------
