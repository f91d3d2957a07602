#!/usr/bin/env bash
# Fails when generated files are stale, when a Go file is not gofmt-ed, or when go vet
# complains. Generated files are regenerated and compared with what is in the tree; the
# tree is left as it was either way.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "${root}"

# The chart's crds/ and files/role.yaml are copies `make manifests` makes of the CRDs and
# the operator's ClusterRole, so the Helm install cannot drift from the kustomize one.
generated=(api/v1alpha1/zz_generated.deepcopy.go config/crd/bases config/rbac/role.yaml
  charts/hookline/crds charts/hookline/files/role.yaml)
snapshot="$(mktemp -d)"
trap 'rm -rf "${snapshot}"' EXIT
cp -a --parents "${generated[@]}" "${snapshot}/" 2>/dev/null || true

make -s generate manifests >/dev/null
if ! diff -r -q "${snapshot}/api/v1alpha1/zz_generated.deepcopy.go" api/v1alpha1/zz_generated.deepcopy.go >/dev/null 2>&1 ||
   ! diff -r -q "${snapshot}/config/crd/bases" config/crd/bases >/dev/null 2>&1 ||
   ! diff -q "${snapshot}/config/rbac/role.yaml" config/rbac/role.yaml >/dev/null 2>&1 ||
   ! diff -r -q "${snapshot}/charts/hookline/crds" charts/hookline/crds >/dev/null 2>&1 ||
   ! diff -q "${snapshot}/charts/hookline/files/role.yaml" charts/hookline/files/role.yaml >/dev/null 2>&1; then
  echo "Generated files are stale; run 'make generate manifests' and commit the result. Differences:" >&2
  { diff -r -u "${snapshot}/config/crd/bases" config/crd/bases; diff -u "${snapshot}/config/rbac/role.yaml" config/rbac/role.yaml; } 2>/dev/null | head -40 >&2 || true
  { diff -r -u "${snapshot}/charts/hookline/crds" charts/hookline/crds
    diff -u "${snapshot}/charts/hookline/files/role.yaml" charts/hookline/files/role.yaml; } 2>/dev/null | head -40 >&2 || true
  diff -u "${snapshot}/api/v1alpha1/zz_generated.deepcopy.go" api/v1alpha1/zz_generated.deepcopy.go 2>/dev/null | head -40 >&2 || true
  # Put the tree back as it was.
  rm -rf config/crd/bases charts/hookline/crds && cp -a "${snapshot}/." .
  exit 1
fi

unformatted="$(gofmt -l $(git ls-files --cached --others --exclude-standard '*.go') 2>/dev/null || true)"
if [ -n "${unformatted}" ]; then
  echo "Not gofmt-ed (run 'gofmt -w' on them):" >&2
  echo "${unformatted}" >&2
  exit 1
fi

go vet ./...
