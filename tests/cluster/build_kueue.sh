#!/usr/bin/env bash
# Build Kueue's controller (sigs.k8s.io/kueue) from its Go module for the test control plane, cached by
# version beside it, and keep its CRDs next to the binary: a second run with the same version is a no-op.
# Prints the directory holding bin/kueue and crds/.
#
# One line of cmd/kueue differs from upstream: without its internal certificate management (which
# wants in-cluster webhook Services the test control plane cannot route to) Kueue reads the metrics
# server's certificate from the fixed path /etc/kueue/metrics/certs; this build reads that directory
# from $KUEUE_METRICS_CERT_DIR instead, so tests can hand it a certificate made by tests/cluster/pki.py.
set -euo pipefail
KUEUE_VERSION="${KUEUE_VERSION:-v0.17.0}"
cache="${EXPBOT_TESTBED_CACHE:-$HOME/.cache/expbot-testbed}"
dir="$cache/kueue-$KUEUE_VERSION"
if [[ -x "$dir/bin/kueue" && -f "$dir/crds/kueue.x-k8s.io_workloads.yaml" ]]; then echo "$dir"; exit 0; fi

echo "[build] kueue $KUEUE_VERSION" >&2
export GOTOOLCHAIN=local GOWORK=off CGO_ENABLED=0 GOFLAGS="-trimpath -buildvcs=false"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
moddir="$(go mod download -json "sigs.k8s.io/kueue@$KUEUE_VERSION" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')"
[[ -f "$moddir/cmd/kueue/main.go" ]] || { echo "no cmd/kueue/main.go in $moddir" >&2; exit 1; }

cd "$work"
go mod init expbot.test/kueue >/dev/null 2>&1
# Kueue's own requirements, so that the build resolves exactly the versions its release was built with.
sed -n '/^require/,$p' "$moddir/go.mod" >> go.mod
echo "require sigs.k8s.io/kueue $KUEUE_VERSION" >> go.mod
patched='metricsCertPath := os.Getenv("KUEUE_METRICS_CERT_DIR")'
sed "s|metricsCertPath := \"/etc/kueue/metrics/certs\"|$patched|" "$moddir/cmd/kueue/main.go" > main.go
grep -qF "$patched" main.go || { echo "cmd/kueue/main.go of $KUEUE_VERSION no longer has the metrics cert path line" >&2; exit 1; }
chmod u+w go.mod main.go
go mod tidy >/dev/null 2>&1 || go mod tidy
ld="-s -w -X sigs.k8s.io/kueue/pkg/version.GitVersion=$KUEUE_VERSION"
mkdir -p "$dir.partial/bin" "$dir.partial/crds"
go build -p 2 -ldflags "$ld" -o "$dir.partial/bin/kueue" .
cp "$moddir"/config/components/crd/bases/*.yaml "$dir.partial/crds/" && chmod -R u+w "$dir.partial"
rm -rf "$dir" && mv "$dir.partial" "$dir"
echo "$dir"
