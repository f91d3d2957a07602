#!/usr/bin/env bash
# Builds the Flux controllers the GitOps suite (test/gitops) runs as host processes
# (source-controller, kustomize-controller, helm-controller) from the Go module proxy, at
# pinned versions, into bin/flux-<versions>/. A binary that is already there is reused, so
# only the first run on a machine pays for the build; seconds afterwards. Measured on 2
# cores shared with other builds (load 10-25), modules already downloaded: 62 minutes with
# an empty Go build cache (source-controller 31, kustomize-controller 20, helm-controller
# 11), 11 minutes with a build cache warm from earlier builds; over 90 minutes at load ~40.
# About 10 minutes on 2 idle cores. CI caches bin/flux-sc* keyed on this script. Prints the
# directory (test/gitops reads FLUX_BIN, or finds bin/flux-current), with each controller's
# CRDs in crds/ (the suite installs them).
#
# Why a wrapper module per controller: each controller's go.mod carries `replace` lines
# (its ./api, go-digest, kustomize, yaml pins), so `go install pkg@version` refuses it. The
# wrapper requires the controller at its released version, drops the `=> ./api` replace (the
# published api module at the version the controller requires is used instead) and copies
# the other replaces. Build with -mod=mod and never `go mod tidy` the wrapper: tidy pulls
# in the controllers' test-only modules, some of which the proxy does not serve.
#
# When the module proxy refuses a version ("not found", "410 Gone", "unknown revision", or a
# dependency of it is refused), do not chase the newest release: pick the newest release
# that `go mod download -json github.com/fluxcd/<controller>@<version>` answers for, and
# that builds here, and pin it below (or override once: KUSTOMIZE_CONTROLLER_VERSION=...).
# Versions known to answer: kustomize-controller v1.9.5, helm-controller v1.6.4,
# source-controller v1.9.0 (v1.9.5 needs a refused dependency). The three must speak the
# same source API: source-controller's GitRepository/HelmRepository/HelmChart v1 and the
# artifact format the other two fetch; releases from the same Flux minor (2.x) do.
set -euo pipefail

SOURCE_CONTROLLER_VERSION="${SOURCE_CONTROLLER_VERSION:-v1.9.0}"
KUSTOMIZE_CONTROLLER_VERSION="${KUSTOMIZE_CONTROLLER_VERSION:-v1.9.5}"
HELM_CONTROLLER_VERSION="${HELM_CONTROLLER_VERSION:-v1.6.4}"

root="$(cd "$(dirname "$0")/.." && pwd)"
name="flux-sc${SOURCE_CONTROLLER_VERSION}-kc${KUSTOMIZE_CONTROLLER_VERSION}-hc${HELM_CONTROLLER_VERSION}"
out="${root}/bin/${name}"
work="${root}/bin/.flux-src"
mkdir -p "${out}" "${work}"
export GOFLAGS="-mod=mod -buildvcs=false"
export CGO_ENABLED=0

log() { printf '[flux] %s\n' "$*" >&2; }

# replaces prints the controller's replace directives, one "old => new" a line, except the
# ones that point into its own tree (./api): those cannot resolve outside the repository.
replaces() {
  awk '
    /^replace \(/ { inblock = 1; next }
    inblock && /^\)/ { inblock = 0; next }
    inblock && /=>/ { print; next }
    /^replace .*=>/ { sub(/^replace /, ""); print }
  ' "$1" | sed -e 's#//.*##' -e 's/^[[:space:]]*//' -e 's/[[:space:]]*$//' | grep -v '=> *\.\.\?/' || true
}

build() {
  local controller="$1" version="$2"
  local module="github.com/fluxcd/${controller}"
  local dir="${work}/${controller}-${version}"
  mkdir -p "${dir}" "${out}/crds"
  local info gomod src
  if ! info="$(cd "${dir}" && go mod download -json "${module}@${version}")"; then
    log "the module proxy refused ${module}@${version}: pin a version it serves (see the top of $0)"
    return 1
  fi
  gomod="$(sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p' <<<"${info}")"
  src="$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p' <<<"${info}")"
  cp "${src}"/config/crd/bases/*.yaml "${out}/crds/"
  chmod u+w "${out}"/crds/*.yaml
  [ -x "${out}/${controller}" ] && return 0
  log "building ${controller} ${version}"
  {
    printf 'module hookline.local/flux/%s\n\ngo 1.26\n\nrequire %s %s\n' "${controller}" "${module}" "${version}"
    local r
    r="$(replaces "${gomod}")"
    if [ -n "${r}" ]; then
      printf '\nreplace (\n'
      printf '%s\n' "${r}" | sed 's/^/\t/'
      printf ')\n'
    fi
  } > "${dir}/go.mod"
  # A tools.go-free wrapper: the package to build is the controller's main package.
  if ! (cd "${dir}" && go build -trimpath -ldflags "-s -w" -o "${out}/${controller}.tmp" "${module}"); then
    log "building ${module}@${version} failed; if a dependency was refused, pin an older release (see the top of $0)"
    return 1
  fi
  mv "${out}/${controller}.tmp" "${out}/${controller}"
}

build source-controller "${SOURCE_CONTROLLER_VERSION}"
build kustomize-controller "${KUSTOMIZE_CONTROLLER_VERSION}"
build helm-controller "${HELM_CONTROLLER_VERSION}"
ln -sfn "${name}" "${root}/bin/flux-current"
echo "${out}"
