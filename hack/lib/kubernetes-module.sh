# shellcheck shell=bash
# Sourced by hack/build-control-plane.sh and hack/build-node.sh: both build binaries of
# k8s.io/kubernetes from the Go module proxy through the same wrapper module, so every
# Kubernetes component of the tests comes from one release and shares one build cache.

# kubernetes_wrapper_module DIR VERSION writes DIR/go.mod: a module that requires
# k8s.io/kubernetes@VERSION and points its ./staging/... replaces at the published
# k8s.io/<name> v0.Y.Z modules (outside its own tree those are what exists).
kubernetes_wrapper_module() {
  local dir="$1" version="$2"
  local staging="v0${version#v1}"
  [ -f "${dir}/go.mod" ] && return 0
  mkdir -p "${dir}"
  (cd "${dir}" && go mod download -json "k8s.io/kubernetes@${version}" > module.json)
  local gomod
  gomod="$(sed -n 's/.*"GoMod": "\(.*\)".*/\1/p' "${dir}/module.json")"
  {
    printf 'module hookline.local/controlplane/kubernetes\n\ngo 1.26\n\nrequire k8s.io/kubernetes %s\n\nreplace (\n' "${version}"
    sed -n 's#^[[:space:]]*\(k8s.io/[a-z0-9-]*\) => ./staging/.*#\t\1 => \1 '"${staging}"'#p' "${gomod}"
    printf ')\n'
  } > "${dir}/go.mod.tmp"
  mv "${dir}/go.mod.tmp" "${dir}/go.mod"
}

# kubernetes_build DIR VERSION OUT CMD... builds each k8s.io/kubernetes/cmd/CMD missing
# from OUT, stamped with VERSION as `kubectl version` and friends report it.
kubernetes_build() {
  local dir="$1" version="$2" out="$3"
  shift 3
  local missing=()
  for cmd in "$@"; do [ -x "${out}/${cmd}" ] || missing+=("${cmd}"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  printf '[kubernetes] building %s %s\n' "${missing[*]}" "${version}" >&2
  kubernetes_wrapper_module "${dir}" "${version}"
  local ldflags="-s -w -X k8s.io/component-base/version.gitVersion=${version} -X k8s.io/component-base/version.gitTreeState=clean"
  for cmd in "${missing[@]}"; do
    (cd "${dir}" && go build -trimpath -ldflags "${ldflags}" -o "${out}/${cmd}.tmp" "k8s.io/kubernetes/cmd/${cmd}")
    mv "${out}/${cmd}.tmp" "${out}/${cmd}"
  done
}
