#!/usr/bin/env bash
# Validates the Kubernetes manifests in deploy/kubernetes with kubeconform, offline: kubeconform comes from
# the Go module proxy, the Kubernetes JSON schemas from the kubernetes-validate package on PyPI. Both are
# cached in ~/.cache/tributary.
set -euo pipefail
cd "$(dirname "$0")/.."
cache="${TRIBUTARY_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/tributary}"
kubeconform="$cache/bin/kubeconform"
kubernetes_version="1.31.0"
schemas="$cache/kubernetes-json-schema"

if [ ! -x "$kubeconform" ]; then
  command -v go >/dev/null || { echo "check-manifests: Go is needed to install kubeconform (go install)"; exit 1; }
  GOBIN="$cache/bin" go install github.com/yannh/kubeconform/cmd/kubeconform@v0.6.7
fi
if [ ! -d "$schemas/v$kubernetes_version-local-strict" ]; then
  tmp="$(mktemp -d)"
  python3 -m pip download --quiet --no-deps --dest "$tmp" "kubernetes-validate==1.37.0"
  mkdir -p "$schemas"
  python3 - "$tmp"/kubernetes_validate-*.whl "$schemas" "v$kubernetes_version-local-strict" <<'PY'
import json, os, re, sys, zipfile
wheel, target, version = sys.argv[1:4]
prefix = f"kubernetes_validate/kubernetes-json-schema/{version}/"
os.makedirs(f"{target}/{version}", exist_ok=True)
REF = re.compile(r'"\$ref": "(?:/api/_definitions\.json)?#/\$defs/([^"]+)"')
with zipfile.ZipFile(wheel) as archive:
    definitions = json.loads(archive.read(prefix + "_definitions.json"))["$defs"]
    for name in archive.namelist():
        if not name.startswith(prefix) or not name.endswith(".json") or name.endswith("_definitions.json"):
            continue
        # The package resolves "/api/_definitions.json" itself; for kubeconform, make each schema standalone
        # with just the definitions it reaches.
        text = archive.read(name).decode().replace('"/api/_definitions.json#', '"#')
        needed, queue = {}, REF.findall(text)
        while queue:
            key = queue.pop()
            if key in needed or key not in definitions:
                continue
            needed[key] = definitions[key]
            queue.extend(REF.findall(json.dumps(definitions[key])))
        schema = json.loads(text)
        schema.setdefault("$defs", {}).update(needed)
        with open(f"{target}/{version}/{name[len(prefix):]}", "w") as out:
            json.dump(schema, out)
PY
  rm -rf "$tmp"
fi
"$kubeconform" -strict -summary \
  -schema-location "$schemas/v$kubernetes_version-local-strict/{{ .ResourceKind }}{{ .KindSuffix }}.json" \
  deploy/kubernetes/*.yaml
