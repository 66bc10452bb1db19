#!/bin/bash
# Builds the GKI-shaped guest kernel of integration/vm (see gki.fragment):
# Debian's linux-source-6.1, `make allnoconfig` with gki.fragment merged on
# top (scripts/kconfig/merge_config.sh -n), then a check that the .config
# has every option of the fragment exactly as written, because Kconfig
# drops an option whose dependencies are missing without a word.
#
# usage: build.sh [CACHE]
#   CACHE defaults to integration/vm's CacheDir: $WORKCELL_VM_CACHE, else
#   $XDG_CACHE_HOME/workcell-vm, else /var/cache/workcell-vm. The kernel goes to CACHE/gki-<key>/, where
#   key hashes gki.fragment, this script and the source package's version,
#   so a change to any of them builds anew and an unchanged one is reused at
#   once. That folder gets bzImage, config (the final .config), release
#   (uname -r), build.log and seconds (the make's wall time). The last line
#   on stdout is the folder; progress goes to stderr.
# env: WORKCELL_GKI_SOURCE (default /usr/src/linux-source-6.1.tar.xz, from
#   the Debian package linux-source-6.1), WORKCELL_GKI_JOBS (default nproc).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
fragment=$here/gki.fragment
default_cache=/var/cache/workcell-vm
[ -n "${XDG_CACHE_HOME:-}" ] && default_cache=$XDG_CACHE_HOME/workcell-vm
cache=${1:-${WORKCELL_VM_CACHE:-$default_cache}}
tarball=${WORKCELL_GKI_SOURCE:-/usr/src/linux-source-6.1.tar.xz}
jobs=${WORKCELL_GKI_JOBS:-$(nproc)}

die() { echo "gki/build.sh: $*" >&2; exit 1; }
log() { echo "gki/build.sh: $*" >&2; }

for tool in make gcc bc bison flex xz perl sha256sum flock; do
  command -v "$tool" >/dev/null || die "MISSING: $tool not found (run hack/vm-deps as root)"
done
[ -r "$tarball" ] || die "MISSING: $tarball not found (package linux-source-6.1; run hack/vm-deps as root)"
[ -r /usr/include/libelf.h ] || die "MISSING: libelf.h (package libelf-dev; run hack/vm-deps as root)"
[ -r /usr/include/openssl/ssl.h ] || die "MISSING: openssl/ssl.h (package libssl-dev; run hack/vm-deps as root)"

# The source's identity: the Debian package's version, or for another
# tarball its hash.
if [ -z "${WORKCELL_GKI_SOURCE:-}" ]; then
  srcid="linux-source-6.1 $(dpkg-query -W -f='${Version}' linux-source-6.1 2>/dev/null)" ||
    die "MISSING: package linux-source-6.1 is not installed (run hack/vm-deps as root)"
else
  srcid="$(sha256sum <"$tarball" | cut -d' ' -f1)"
fi
key=$( { cat "$fragment" "${BASH_SOURCE[0]}"; echo "$srcid"; } | sha256sum | cut -c1-16)
dir=$cache/gki-$key
if [ -s "$dir/bzImage" ]; then echo "$dir"; exit 0; fi

mkdir -p "$cache"
# One build at a time per cache; a second caller waits and then reuses it.
exec 9>"$cache/.gki.lock"
flock 9
if [ -s "$dir/bzImage" ]; then echo "$dir"; exit 0; fi
rm -rf "$cache"/.gki-build-*
out=$(mktemp -d "$cache/.gki-build-XXXXXX")
src=$out/src
mkdir -p "$src"
log "building the GKI-shaped kernel ($srcid, key $key) into $dir; this takes a while once"
log "unpacking $tarball"
tar -xJf "$tarball" -C "$src" --strip-components=1

cd "$src"
export ARCH=x86_64
# Reproducible enough to compare builds, and no host name in the image.
export KBUILD_BUILD_USER=workcell KBUILD_BUILD_HOST=workcell-vm
log "allnoconfig + $(basename "$fragment")"
scripts/kconfig/merge_config.sh -n "$fragment" >"$out/merge.log" 2>&1 || {
  cat "$out/merge.log" >&2; die "merge_config.sh failed"; }

# Every option of the fragment must be in the .config as written.
missing=()
while IFS= read -r line; do
  if [[ $line =~ ^CONFIG_[A-Za-z0-9_]+=.*$ ]]; then
    grep -qxF -- "$line" .config || {
      got=$(grep -E "^(# )?${line%%=*}[= ]" .config || echo "absent (dependencies missing)")
      missing+=("$line (got: $got)"); }
  elif [[ $line =~ ^#\ (CONFIG_[A-Za-z0-9_]+)\ is\ not\ set$ ]]; then
    name=${BASH_REMATCH[1]}
    if got=$(grep -E "^$name=" .config); then missing+=("# $name is not set (got: $got)"); fi
  fi
done <"$fragment"
if ((${#missing[@]})); then
  log "the .config lacks these options of $fragment (their dependencies are off or missing):"
  printf '  %s\n' "${missing[@]}" >&2
  die "fix gki.fragment"
fi

log "make -j$jobs bzImage (load before: $(cut -d' ' -f1-3 /proc/loadavg))"
start=$(date +%s)
make -j"$jobs" bzImage >"$out/build.log" 2>&1 || {
  tail -40 "$out/build.log" >&2; die "make bzImage failed (log: $out/build.log)"; }
secs=$(($(date +%s) - start))
log "built in ${secs}s with $jobs jobs (load after: $(cut -d' ' -f1-3 /proc/loadavg))"
echo "$secs" >"$out/seconds"
cp arch/x86/boot/bzImage "$out/bzImage"
cp .config "$out/config"
make -s kernelrelease >"$out/release"
cd "$cache"
rm -rf "$src"
mv "$out" "$dir"
echo "$dir"
