#!/bin/bash
# Builds AOSP's own binder userspace of Android 10 for the VM interop test
# (integration/vm/aosp_linux_test.go): libbinder (libs/binder and
# libs/binderthreadstate), the `service` command (cmds/service), the C
# servicemanager (cmds/servicemanager) and workcell's libbinder test service
# (interop_service.cpp here), from Debian's source package
# android-platform-frameworks-native, against Debian's
# android-lib{utils,cutils,log,base}-dev (hack/aosp-deps installs them).
#
#   build.sh [CACHE]     CACHE defaults to ${WORKCELL_VM_CACHE:-/var/cache/workcell-vm}/aosp
#
# Prints, as its last line, the folder of the finished build; its root/ is a
# tree to copy into the guest as it is: root/aosp/bin holds the programs
# (servicemanager, service, interop_service), and their shared libraries and
# the dynamic loader sit at their host paths (Debian ships these libraries
# only as .so, so the programs are dynamic; the guest runs them unchanged).
#
# Cached: the source tarball is fetched once (private apt configuration; the
# machine's own is not touched), and a build is keyed by the tarball, this
# folder's build inputs (this script, patches, compat, *.cpp), the compiler and
# the Debian library versions; a matching build is reused as it is.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${1:-${WORKCELL_VM_CACHE:-/var/cache/workcell-vm}/aosp}
srcpkg=android-platform-frameworks-native
libpkgs=(android-libutils-dev android-libcutils-dev android-liblog-dev android-libbase-dev)
libdir=/usr/lib/x86_64-linux-gnu/android
loader=/lib64/ld-linux-x86-64.so.2
jobs=$(nproc 2>/dev/null || echo 2)

die() { echo "aosp/build.sh: $*" >&2; exit 1; }
log() { echo "aosp/build.sh: $*" >&2; }

for tool in apt-get dpkg-query g++ gcc ar patch tar sha256sum; do
  command -v "$tool" >/dev/null || die "MISSING: $tool not found (run hack/aosp-deps as root)"
done
for p in "${libpkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
    die "MISSING: package $p is not installed (run hack/aosp-deps as root)"
done
[ -x "$loader" ] || die "MISSING: $loader"
mkdir -p "$cache"
# One build at a time per cache; leftovers of a run that was killed go.
command -v flock >/dev/null && { exec 9>"$cache/.lock"; flock 9; }
rm -rf "$cache"/.build-* "$cache"/.fetch-*

# --- The source package, once -------------------------------------------
fetch_source() {
  local apt="$cache/apt" tmp
  mkdir -p "$apt/lists/partial" "$apt/sources.list.d"
  # A deb-src twin of every deb entry the machine uses, one-line or deb822.
  : > "$apt/sources.list"
  if [ -f /etc/apt/sources.list ]; then
    sed -n -E 's/^[[:space:]]*deb([[:space:]])/deb-src\1/p' /etc/apt/sources.list >> "$apt/sources.list"
  fi
  rm -f "$apt"/sources.list.d/*
  local f
  for f in /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    case $f in
      *.list) sed -n -E 's/^[[:space:]]*deb([[:space:]])/deb-src\1/p' "$f" >> "$apt/sources.list" ;;
      *.sources) grep -q -E '^Types:.*\bdeb\b' "$f" &&
        sed -E 's/^Types:.*$/Types: deb-src/' "$f" > "$apt/sources.list.d/$(basename "$f")" ;;
    esac
  done
  local opts=(-q -o "Dir::Etc::SourceList=$apt/sources.list"
    -o "Dir::Etc::SourceParts=$apt/sources.list.d" -o "Dir::State::Lists=$apt/lists"
    -o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache=
    -o APT::Sandbox::User=root)
  log "fetching the source package $srcpkg (private apt config in $apt)"
  apt-get "${opts[@]}" update >&2 || die "MISSING: apt-get update with the deb-src entries in $apt failed"
  tmp=$(mktemp -d "$cache/.fetch-XXXXXX")
  (cd "$tmp" && apt-get "${opts[@]}" source --tar-only "$srcpkg") >&2 ||
    { rm -rf "$tmp"; die "MISSING: apt-get source --tar-only $srcpkg failed"; }
  mkdir -p "$cache/src"
  mv "$tmp"/*.orig.tar.* "$cache/src/" 2>/dev/null || { rm -rf "$tmp"; die "MISSING: no $srcpkg orig tarball came"; }
  rm -rf "$tmp"
}
tarball=$(ls "$cache"/src/${srcpkg}_*.orig.tar.* 2>/dev/null | sort -V | tail -n1 || true)
if [ -z "$tarball" ]; then
  fetch_source
  tarball=$(ls "$cache"/src/${srcpkg}_*.orig.tar.* | sort -V | tail -n1)
fi

# --- The build key ----------------------------------------------------------
key=$(
  {
    basename "$tarball"
    (cd "$here" && find . -type f \( -name build.sh -o -name '*.cpp' -o -path './patches/*' -o -path './compat/*' \) |
      LC_ALL=C sort | xargs sha256sum)
    g++ --version | head -n1
    dpkg-query -W "${libpkgs[@]}" android-libutils android-libcutils android-liblog android-libbase
  } | sha256sum | cut -c1-16
)
out="$cache/build-$key"
if [ -f "$out/.done" ]; then
  log "cached build $out"
  echo "$out"
  exit 0
fi

# --- Build --------------------------------------------------------------------
start=$(date +%s)
work=$(mktemp -d "$cache/.build-XXXXXX")
trap 'rm -rf "$work"' EXIT
src="$work/src" obj="$work/obj" root="$work/root"
mkdir -p "$src" "$obj" "$root/aosp/bin"
log "unpacking $(basename "$tarball")"
tar -xf "$tarball" -C "$src" include libs/binder libs/binderthreadstate cmds/service cmds/servicemanager
for p in "$here"/patches/*.patch; do
  log "patch $(basename "$p")"
  patch -s -p1 -d "$src" < "$p"
done

compat="$here/compat"
cflags=(-O2 -g0 -fPIC -w -include workcell-compat.h -I "$compat/include" -I /usr/include/android)
cxxflags=(-std=gnu++17 "${cflags[@]}" -I "$src/libs/binder/include"
  -I "$src/libs/binderthreadstate/include" -I "$src/include")

# libbinder: Android.bp's vendor source list (no AIDL-generated sources, no
# IMemory, whose C atomics need libc++) plus IPermissionController, which
# IServiceManager calls.
libbinder=(Binder BpBinder BufferedTextOutput Debug IInterface IPCThreadState
  IPermissionController IResultReceiver IServiceManager IShellCallback Parcel
  ParcelFileDescriptor PersistableBundle ProcessState Static Status TextOutput Value)
{
  for s in "${libbinder[@]}"; do echo "cxx libs/binder/$s.cpp $obj/$s.o"; done
  echo "cxx libs/binderthreadstate/IPCThreadStateBase.cpp $obj/IPCThreadStateBase.o"
  echo "cxx cmds/service/service.cpp $obj/service.o"
  echo "cxx $here/interop_service.cpp $obj/interop_service.o"
  echo "cc cmds/servicemanager/service_manager.c $obj/sm_service_manager.o"
  echo "cc cmds/servicemanager/binder.c $obj/sm_binder.o"
  echo "cc $compat/selinux_stub.c $obj/selinux_stub.o"
  echo "cc $compat/android_stubs.c $obj/android_stubs.o"
} > "$work/units"
export CFLAGS_Q CXXFLAGS_Q
CFLAGS_Q=$(printf '%q ' "${cflags[@]}")
CXXFLAGS_Q=$(printf '%q ' "${cxxflags[@]}" -DXP_UNIX)
log "compiling $(wc -l < "$work/units") units with $jobs jobs"
(cd "$src" && xargs -P "$jobs" -L 1 sh -c '
  case $0 in
    cxx) eval "g++ $CXXFLAGS_Q -c \"\$1\" -o \"\$2\"" ;;
    cc)  eval "gcc $CFLAGS_Q -c \"\$1\" -o \"\$2\"" ;;
  esac || { echo "aosp/build.sh: compiling $1 failed" >&2; exit 255; }' < "$work/units") ||
  die "compilation failed"

ar rcs "$obj/libbinder.a" $(for s in "${libbinder[@]}" IPCThreadStateBase; do echo "$obj/$s.o"; done)
ldflags=(-Wl,-rpath,"$libdir" -L "$libdir")
g++ -o "$root/aosp/bin/service" "$obj/service.o" "$obj/libbinder.a" "$obj/android_stubs.o" \
  "${ldflags[@]}" -lutils -lcutils -llog -lbase -lpthread
g++ -o "$root/aosp/bin/interop_service" "$obj/interop_service.o" "$obj/libbinder.a" "$obj/android_stubs.o" \
  "${ldflags[@]}" -lutils -lcutils -llog -lbase -lpthread
gcc -o "$root/aosp/bin/servicemanager" "$obj/sm_service_manager.o" "$obj/sm_binder.o" \
  "$obj/selinux_stub.o" "$obj/android_stubs.o" "${ldflags[@]}" -lcutils -llog

# The shared libraries they need, resolved by the host's loader, go to the
# same paths in the guest tree: Debian's android libraries find theirs
# through their own RUNPATHs (/usr/lib/x86_64-linux-gnu/android,
# /usr/lib/p7zip for libbacktrace's 7z.so), the rest in the loader's default
# folders.
for b in "$root"/aosp/bin/*; do
  "$loader" --library-path "$libdir" --list "$b" | awk '$2 == "=>" && $3 ~ /^\// { print $3 }'
done | sort -u | while read -r path; do
  mkdir -p "$root$(dirname "$path")"
  cp -L "$path" "$root$path"
done
mkdir -p "$root$(dirname "$loader")"
cp -L "$loader" "$root$loader"
touch "$work/.done"
trap - EXIT
rm -rf "$src" "$work/units"
# Older builds of this cache are stale once a new key is built.
for old in "$cache"/build-*; do
  [ "$old" = "$out" ] || rm -rf "$old"
done
rm -rf "$out"
mv "$work" "$out"
log "built $out in $(( $(date +%s) - start ))s: $(ls "$out/root/aosp/bin" | tr '\n' ' ')"
echo "$out"
