#!/usr/bin/env bash
# Build helm (the chart tests' `helm lint` / `helm template`) from its Go module, cached by version
# beside the test control plane: a second run with the same version is a no-op. Prints the binary.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=versions.env
source "$here/versions.env"
cache="${EXPBOT_TESTBED_CACHE:-$HOME/.cache/expbot-testbed}"
bin="$cache/helm-$HELM_VERSION/bin"
if [[ -x "$bin/helm" ]]; then echo "$bin/helm"; exit 0; fi

echo "[build] helm $HELM_VERSION" >&2
export GOTOOLCHAIN=local GOWORK=off CGO_ENABLED=0 GOFLAGS="-trimpath"
mkdir -p "$bin"
# `helm version` reports the module's version rather than its source default ("v4.3").
GOBIN="$bin.partial" go install -ldflags "-s -w -X helm.sh/helm/v4/internal/version.version=$HELM_VERSION" \
  "helm.sh/helm/v4/cmd/helm@$HELM_VERSION"
mv "$bin.partial/helm" "$bin/helm" && rmdir "$bin.partial"
echo "$bin/helm"
