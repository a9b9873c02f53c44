#!/usr/bin/env bash
# The test lanes, one PostgreSQL each, run one after another (2 cores):
#   15        Debian 12's PostgreSQL 15 on this machine: the whole
#             test/run_tests.sh, as CI always ran it
#   17 18 19  Debian's postgresql-N in a debootstrap root of the suite that
#             ships it (17: trixie, 18: sid, 19: experimental over sid), with
#             test/run_tests.sh's TEST_SET=core inside (build with -Werror,
#             installcheck, C unit tests, athena-authd build and unit tests)
#   cassert   PostgreSQL 15 built from Debian's source package with
#             --enable-cassert --enable-debug into a private prefix, with
#             TEST_SET=core against it
# PG_MAJORS picks the lanes (default: all five, in that order):
#   PG_MAJORS=18 bash test/run_majors.sh
#   PG_MAJORS=cassert bash test/run_majors.sh
# Prints one result line per lane and ends with "N passed, N failed" over the
# lanes; exits non-zero when any lane failed, including one that could not be
# set up (an unreachable archive fails its lane).  Roots and the cassert
# build are cached under ATHENA_CACHE (default /var/cache/athena-keys), keyed
# on what they were made from; a fresh machine makes them from scratch.
# Runs as root (debootstrap, chroot, mount, apt-get).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
CACHE=${ATHENA_CACHE:-/var/cache/athena-keys}
export DEBIAN_FRONTEND=noninteractive
# apt_get (waits for another apt run's lock) and, in lane 15, everything else.
. "$HERE/lib.sh"

# Bump when the recipe of a root or of the cassert build changes: a cached
# one made by another recipe is then made again.
ROOT_RECIPE=1
CASSERT_RECIPE=2
# A root older than this is made again, so the lane follows the archive.
ROOT_MAX_AGE_DAYS=${ROOT_MAX_AGE_DAYS:-7}

# Per lane: the suite that ships the major, the server's port (unique per
# lane: chroots share the host's network) and a time limit against hangs.
declare -A SUITE=([17]=trixie [18]=sid [19]=experimental)
declare -A PORT=([15]=54329 [17]=55417 [18]=55418 [19]=55419 [cassert]=55415)
declare -A LIMIT=([15]=1200 [17]=600 [18]=600 [19]=600 [cassert]=1800)

# The host's apt "deb" entries, one per line: URI SUITE COMPONENTS...
# (one-line sources.list files and deb822 .sources files alike).
host_deb_entries() {
  local f
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] && sed -n 's/^deb[[:space:]]\+\(\[[^]]*\][[:space:]]\+\)\?//p' "$f"
  done
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    awk 'BEGIN { RS = ""; FS = "\n" }
      { types = uris = suites = comps = ""; enabled = 1
        for (i = 1; i <= NF; i++) {
          if ($i ~ /^#/) continue
          split($i, kv, ":[ \t]*"); v = substr($i, length(kv[1]) + 2); sub(/^[ \t]+/, "", v)
          if (kv[1] == "Types") types = v; else if (kv[1] == "URIs") uris = v
          else if (kv[1] == "Suites") suites = v; else if (kv[1] == "Components") comps = v
          else if (kv[1] == "Enabled" && v == "no") enabled = 0
        }
        if (!enabled || (" " types " ") !~ / deb /) next
        nu = split(uris, u, " "); ns = split(suites, s, " ")
        for (a = 1; a <= nu; a++) for (b = 1; b <= ns; b++) print u[a], s[b], comps }' "$f"
  done
}

# The Debian mirror the host's apt sources use for the host's own suite:
# taken from there, never written here.
host_mirror() {
  local codename mirror
  codename=$(. /etc/os-release && echo "$VERSION_CODENAME")
  mirror=$(host_deb_entries | awk -v c="$codename" '$2 == c { print $1; exit }')
  [ -n "$mirror" ] || { echo "no apt source for $codename in /etc/apt" >&2; return 1; }
  echo "$mirror"
}

# deb-src entries for the host's own suites (bookworm, -updates, -security),
# in a file of ours: apt-get source needs them, the host has none.
ensure_host_deb_src() {
  local codename list=/etc/apt/sources.list.d/athena-src.list
  codename=$(. /etc/os-release && echo "$VERSION_CODENAME")
  host_deb_entries | awk -v c="$codename" '$2 == c || index($2, c "-") == 1 { print "deb-src", $0 }' \
    | sort -u >"$list.new"
  [ -s "$list.new" ] || { rm -f "$list.new"; echo "no apt source for $codename to add deb-src for"; return 1; }
  mv "$list.new" "$list"
}

# The packages lib.sh installs for TEST_SET=core with this PG_CONFIG.
core_packages() {
  PG_CONFIG=$1 TEST_SET=core bash -c '. "$1" && echo "$PACKAGES"' _ "$HERE/lib.sh"
}

# chroot into ROOT with /proc, a /dev/shm (PostgreSQL's shared memory) and
# a /dev/pts of its own (apt's terminal log) mounted, and a clean
# environment; all unmounted again whatever happens.  Only new mounts: no
# host directory is ever bound into a root.
in_root() {
  local root=$1; shift
  mountpoint -q "$root/proc" || mount -t proc proc "$root/proc"
  mkdir -p "$root/dev/shm" "$root/dev/pts"
  mountpoint -q "$root/dev/shm" || mount -t tmpfs -o mode=1777 shm "$root/dev/shm"
  mountpoint -q "$root/dev/pts" || mount -t devpts -o newinstance,ptmxmode=0666,mode=620 devpts "$root/dev/pts"
  local rc=0
  chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
    DEBIAN_FRONTEND=noninteractive "$@" || rc=$?
  unmount_root "$root"
  return $rc
}
unmount_root() {
  local m
  for m in "$1/dev/pts" "$1/dev/shm" "$1/proc"; do
    mountpoint -q "$m" && { umount "$m" 2>/dev/null || umount -l "$m"; }
  done
  return 0
}

# Make (or reuse) the debootstrap root for SUITE with MAJOR's packages;
# sets ROOT.  It is reused only when its stamp says it was made, complete,
# by this recipe from this mirror with these packages, and is not too old.
prepare_root() {
  local suite=$1 major=$2 base=$1 mirror pg_config packages stamp
  [ "$suite" = experimental ] && base=sid
  mirror=$(host_mirror)
  pg_config=/usr/lib/postgresql/$major/bin/pg_config
  packages=$(core_packages "$pg_config")
  stamp="recipe=$ROOT_RECIPE suite=$suite mirror=$mirror packages=$packages"
  ROOT=$CACHE/roots/$suite
  if [ -f "$ROOT/.athena-root" ] && [ "$(cat "$ROOT/.athena-root")" = "$stamp" ] &&
    [ -n "$(find "$ROOT/.athena-root" -mtime -"$ROOT_MAX_AGE_DAYS")" ] && [ -x "$ROOT$pg_config" ]; then
    echo "== reusing the $suite root in $ROOT (made $(date -r "$ROOT/.athena-root" '+%F %T'))"
    return 0
  fi
  command -v debootstrap >/dev/null || { apt_get update -qq && apt_get install -y -qq debootstrap >/dev/null; }
  local new=$ROOT.new
  # Never rm -rf a root with something still mounted in it (a killed run).
  unmount_root "$ROOT"; unmount_root "$new"; rm -rf "$ROOT" "$new"; mkdir -p "$CACHE/roots"
  echo "== debootstrap $base from $mirror into $new"
  debootstrap --variant=minbase "$base" "$new" "$mirror" >"$CACHE/roots/$suite.debootstrap.log" 2>&1 ||
    { tail -20 "$CACHE/roots/$suite.debootstrap.log"; echo "debootstrap of $base failed"; return 1; }
  # The host's apt sources may be a dated snapshot, past a suite's
  # Valid-Until; nothing may start a service (policy-rc.d) or a cluster.
  cat >"$new/etc/apt/apt.conf.d/90athena" <<'APT'
Acquire::Check-Valid-Until "false";
APT::Install-Recommends "false";
APT
  printf '#!/bin/sh\nexit 101\n' >"$new/usr/sbin/policy-rc.d"
  chmod 755 "$new/usr/sbin/policy-rc.d"
  if [ "$suite" = experimental ]; then
    # experimental is NotAutomatic: pin PostgreSQL's packages from it above sid.
    echo "deb $mirror experimental main" >"$new/etc/apt/sources.list.d/experimental.list"
    printf 'Package: postgresql* libpq*\nPin: release a=experimental\nPin-Priority: 990\n' \
      >"$new/etc/apt/preferences.d/athena-experimental"
  fi
  mkdir -p "$new/athena_keys/test"
  cp "$HERE/lib.sh" "$new/athena_keys/test/lib.sh"
  # postgresql-common first, so that createcluster.conf exists to be told
  # not to create a main cluster before postgresql-N is installed.
  echo "== installing postgresql-common, then: $packages"
  in_root "$new" bash -c 'set -e
    apt-get update -qq
    apt-get install -y -qq postgresql-common >/dev/null
    sed -i "s/^#\?[[:space:]]*create_main_cluster.*/create_main_cluster = false/" \
      /etc/postgresql-common/createcluster.conf
    grep -q "^create_main_cluster = false" /etc/postgresql-common/createcluster.conf
    PG_CONFIG='"$pg_config"' TEST_SET=core
    . /athena_keys/test/lib.sh
    ensure_packages' || { echo "installing packages into the $suite root failed"; return 1; }
  clean_root_apt "$new"
  echo "$stamp" >"$new/.athena-root"
  mv "$new" "$ROOT"
}
# Downloaded .debs are not needed once installed: keep the cached root small.
clean_root_apt() { rm -rf "$1"/var/cache/apt/archives/*.deb; }

# Lane 17, 18, 19: test/run_tests.sh with TEST_SET=core in the major's root.
lane_major() {
  local major=$1 pg_config=/usr/lib/postgresql/$1/bin/pg_config
  prepare_root "${SUITE[$major]}" "$major"
  trap 'unmount_root "$ROOT"' EXIT
  echo "== $(chroot "$ROOT" "$pg_config" --version) in $ROOT"
  # A fresh copy of the tree each run; earlier runs' work directories go.
  rm -rf "$ROOT/athena_keys" "$ROOT"/tmp/athena_keys.*
  mkdir -p "$ROOT/athena_keys"
  tar -C "$REPO" --exclude=./.git -cf - . | tar -C "$ROOT/athena_keys" -xf -
  in_root "$ROOT" PG_CONFIG="$pg_config" TEST_SET=core TEST_PORT="${PORT[$major]}" \
    bash /athena_keys/test/run_tests.sh
}

# Lane cassert: PostgreSQL 15 from Debian's source package, with assertions
# (and so CLOBBER_FREED_MEMORY, MEMORY_CONTEXT_CHECKING), debug symbols,
# OpenSSL and TAP support, into a private prefix under $CACHE/cassert named
# from the source version and the flags; test/run_tests.sh against it.
CASSERT_CONFIGURE=(--enable-cassert --enable-debug --with-openssl --enable-tap-tests --without-readline --without-icu)
# -Og: debuggable, and builds faster than -O2 while the tests still run at
# a useful speed.
CASSERT_CFLAGS="-Og"
CASSERT_BUILD_PACKAGES="dpkg-dev xz-utils gcc make bison flex perl libipc-run-perl libssl-dev zlib1g-dev pkg-config"
lane_cassert() {
  local version key prefix build
  ensure_host_deb_src
  apt_get update -qq
  # shellcheck disable=SC2086  # a list of package names
  apt_get install -y -qq $CASSERT_BUILD_PACKAGES >/dev/null
  # The newest source version the archive really serves (a dated snapshot
  # may list one, e.g. a security update, whose files it lacks): its cached
  # build, else its source fetched here.
  build=$CACHE/cassert/build
  key=$(echo "$CASSERT_RECIPE ${CASSERT_CONFIGURE[*]} $CASSERT_CFLAGS" | sha256sum | cut -c1-10)
  rm -rf "$build"; mkdir -p "$build"
  local fetched=""
  for version in $(apt-cache showsrc postgresql-15 | sed -n 's/^Version: //p' | sort -Vr); do
    prefix=$CACHE/cassert/15-$version-$key
    [ -f "$prefix/.athena-complete" ] && break
    echo "== apt-get source postgresql-15=$version"
    if (cd "$build" && apt-get source -qq -d --only-source "postgresql-15=$version" >source.log 2>&1); then
      fetched=$version; break
    fi
    tail -3 "$build/source.log"
    rm -rf "$build"; mkdir -p "$build"
    prefix=""
  done
  [ -n "$prefix" ] || { echo "no source package postgresql-15 could be fetched"; return 1; }
  if [ -z "$fetched" ]; then
    echo "== reusing the assertion-enabled PostgreSQL $version in $prefix"
  else
    rm -rf "$prefix"
    # Upstream's tree without Debian's patches: those pin pkglibdir and the
    # PGXS directory to /usr/lib/postgresql/15, which would make this build
    # load and install modules in the system's PostgreSQL 15.
    local src=$build/src
    (cd "$build" && dpkg-source -q --skip-patches -x ./*.dsc "$src" >>source.log 2>&1) ||
      { tail -20 "$build/source.log"; echo "unpacking postgresql-15 $version failed"; return 1; }
    echo "== configure ${CASSERT_CONFIGURE[*]} CFLAGS=$CASSERT_CFLAGS --prefix=$prefix"
    (cd "$src" && ./configure --prefix="$prefix" "${CASSERT_CONFIGURE[@]}" CFLAGS="$CASSERT_CFLAGS" \
      >"$build/configure.log" 2>&1) || { tail -30 "$build/configure.log"; echo "configure failed"; return 1; }
    # The server, client programs, pg_regress, isolation tester and TAP
    # modules (src/ installs them all for PGXS); no contrib, no docs.
    echo "== make -j$(nproc) and install (src/ only)"
    (make -s -C "$src" -j"$(nproc)" >"$build/make.log" 2>&1 &&
      make -s -C "$src" install >>"$build/make.log" 2>&1) ||
      { tail -30 "$build/make.log"; echo "building PostgreSQL failed"; return 1; }
    local d
    for d in "$("$prefix/bin/pg_config" --pgxs)" "$("$prefix/bin/pg_config" --pkglibdir)" \
      "$("$prefix/bin/pg_config" --sharedir)"; do
      case $d in "$prefix"/*) ;; *) echo "the build points outside $prefix: $d"; return 1 ;; esac
    done
    touch "$prefix/.athena-complete"
  fi
  rm -rf "$build"
  "$prefix/bin/pg_config" --configure | grep -q -- --enable-cassert
  PG_CONFIG=$prefix/bin/pg_config TEST_SET=core TEST_PORT=${PORT[cassert]} bash "$HERE/run_tests.sh"
}

# One lane in this process (run_majors.sh --lane NAME, from the loop below).
if [ "${1:-}" = --lane ]; then
  case $2 in
    15) exec bash "$HERE/run_tests.sh" ;;
    cassert) lane_cassert ;;
    *) [ -n "${SUITE[$2]:-}" ] || { echo "unknown lane $2 (15, 17, 18, 19, cassert)"; exit 2; }
       lane_major "$2" ;;
  esac
  exit
fi

[ "$(id -u)" -eq 0 ] || { echo "run as root: debootstrap, chroot and mount need it"; exit 2; }
mkdir -p "$CACHE/logs"
lanes=${PG_MAJORS:-15 17 18 19 cassert}
results=()
passed=0
failed=0
for lane in $lanes; do
  echo
  echo "######## lane $lane"
  log=$CACHE/logs/lane-$lane.log
  start=$SECONDS
  rc=0
  # Each lane in a process of its own under a time limit, so a hang fails
  # that lane (timeout signals the lane's whole process group).
  timeout -k 30 "${LIMIT[$lane]:-900}" bash "$0" --lane "$lane" </dev/null 2>&1 | tee "$log" || rc=${PIPESTATUS[0]}
  secs=$((SECONDS - start))
  suites=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$log" | tail -1 || true)
  if [ "$rc" -eq 0 ]; then
    passed=$((passed + 1)); line="ok - lane $lane: ${suites:-?}, ${secs} s"
  else
    failed=$((failed + 1)); line="not ok - lane $lane (exit $rc${suites:+: $suites}), ${secs} s; log: $log"
  fi
  echo "$line"
  results+=("$line")
done
echo
echo "######## lanes"
printf '%s\n' "${results[@]}"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
