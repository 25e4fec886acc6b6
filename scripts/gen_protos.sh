#!/usr/bin/env bash
# Generates Python code for every .proto under protos/ into OUT (default protos/python).
# The tree is package-rooted (protos/scene/depth/v1/depth.proto is package scene.depth.v1), so the
# generated imports (`from scene.common.v1 import common_pb2`) work as they are: no rewriting.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/protos/python}
python=${PYTHON:-$root/.venv/bin/python}
# Absolute, since we cd below.
[[ "$python" == /* ]] || python=$(cd "$(dirname "$python")" && pwd)/$(basename "$python")
[[ "$out" == /* ]] || out=$PWD/$out
cd "$root/protos"
mapfile -t protos < <(find scene -name '*.proto' | sort)
rm -rf "$out/scene"
mkdir -p "$out"
"$python" -m grpc_tools.protoc -I . --python_out="$out" --grpc_python_out="$out" --pyi_out="$out" "${protos[@]}"
# Regular packages (not namespace ones) so setuptools and type checkers see them.
find "$out/scene" -type d -exec sh -c 'printf "" > "$1/__init__.py"' _ {} \;
