#!/usr/bin/env bash
# Installs a SIPp that speaks TLS itself (`-t l1`) into target/tools/sipp-tls/, for the TLS and
# sips: integration tests (node/tests/tls_sipp.rs, node/tests/sips.rs). scripts/test.sh runs it
# when target/tools/sipp-tls/sipp is missing; run again, it only checks the installed one.
#
#   scripts/build-sipp-tls.sh            # install (or check) target/tools/sipp-tls/sipp
#   SIPMESH_SIPP_TLS=/path/to/sipp ...   # the test harness uses that binary instead
#
# Why not a build: Debian 12's `sip-tester` (3.6.1) is compiled without TLS (its source package
# Build-Conflicts with libssl-dev), and it cannot be rebuilt here from Debian's source package:
# `apt-get source sip-tester` fetches the .dsc, but the archive answers 404 for
# sip-tester_3.6.1.orig.tar.gz and sip-tester_3.6.1-1.debian.tar.xz (the same for bullseye and
# trixie), and nothing but the package registries may be downloaded.
#
# What this does instead: Debian testing's `sip-tester` (3.8.x; unstable's as a fallback) is
# built with OpenSSL. Its binary package and the libraries it loads (that suite's glibc among
# them: Debian 12's is too old for it) are fetched with apt-get from the Debian archive this
# machine already uses, into a private apt state (the system's package lists and installed
# packages are not touched), unpacked with dpkg-deb (not installed) into
# target/tools/sipp-tls/root, and started through that libc's own dynamic loader with
# `--library-path`, so nothing of the system's libc is mixed in. target/tools/sipp-tls/sipp is
# the wrapper that does this. About 9 MB of packages, 34 MB unpacked, 20-30 s (mostly apt
# reading the suite's package index).
# (Debian 13's 3.7.3 has TLS through wolfSSL, but its TLS writes fail after every handshake.)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

out="target/tools/sipp-tls"
# Tried in order: testing moves less than unstable; either has the OpenSSL build.
suites=(testing unstable)

# `sipp -v` exits non-zero; only its banner matters.
version() { "$out/sipp" -v 2>&1 || true; }
works() { [ -x "$out/sipp" ] && [[ "$(version)" == *"-TLS"* ]]; }

if works; then
	echo "==> $out/sipp already speaks TLS ($(version | grep -o 'SIPp v[^ ]*'))"
	exit 0
fi

# The Debian archive this machine's apt already uses (deb822 .sources first, then sources.list).
mirror=""
for f in /etc/apt/sources.list.d/*.sources; do
	[ -f "$f" ] || continue
	mirror=$(awk '/^URIs:/ { for (i = 2; i <= NF; i++) if ($i ~ /\/debian\/?$/) { print $i; exit } }' "$f")
	[ -n "$mirror" ] && break
done
if [ -z "$mirror" ] && [ -f /etc/apt/sources.list ]; then
	mirror=$(awk '/^deb / { for (i = 2; i <= NF; i++) if ($i ~ /^https?:.*\/debian\/?$/) { print $i; exit } }' /etc/apt/sources.list)
fi
if [ -z "$mirror" ]; then
	echo "build-sipp-tls: no Debian archive (a .../debian URI) found in /etc/apt" >&2
	exit 1
fi
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
if [ ! -f "$keyring" ]; then
	echo "build-sipp-tls: $keyring missing (apt-get install debian-archive-keyring)" >&2
	exit 1
fi

started=$(date +%s)
work=$(mktemp -d)
trap 'rm -rf "$work" "$out.new"' EXIT

# Fetches sip-tester and its libraries from `suite` into $out.new; fails (non-zero) on any
# problem, leaving the caller to try the next suite.
fetch() {
	local suite=$1
	rm -rf "$work" "$out.new"
	mkdir -p "$work/lists/partial" "$work/archives/partial" "$work/debs" "$out.new/root"
	echo "deb [signed-by=$keyring] $mirror $suite main" >"$work/sources.list"
	apt_opts=(
		-o "Dir::Etc::sourcelist=$work/sources.list"
		-o "Dir::Etc::sourceparts=/nonexistent"
		-o "Dir::State::Lists=$work/lists"
		-o "Dir::State::status=/dev/null"
		-o "Dir::Cache::archives=$work/archives"
		-o "Dir::Cache::pkgcache="
		-o "Dir::Cache::srcpkgcache="
	)
	# As root, apt would hand downloads to its `_apt` user, who cannot write the private dirs.
	if [ "$(id -u)" -eq 0 ]; then
		apt_opts+=(-o "APT::Sandbox::User=root")
	fi

	echo "==> fetching $suite's sip-tester (TLS) and the libraries it loads"
	apt-get "${apt_opts[@]}" -qq update
	# sip-tester and, recursively, the libraries it depends on (lib*, gcc-*-base); its python3
	# dependency (for a helper script) is left out.
	declare -A seen=([sip-tester]=1)
	queue=(sip-tester)
	while [ ${#queue[@]} -gt 0 ]; do
		pkg=${queue[0]}
		queue=("${queue[@]:1}")
		while read -r dep; do
			if [ -z "${seen[$dep]:-}" ]; then
				seen[$dep]=1
				queue+=("$dep")
			fi
		done < <(apt-cache "${apt_opts[@]}" depends --no-recommends --no-suggests --no-conflicts \
			--no-breaks --no-replaces --no-enhances "$pkg" |
			awk '/^ *\|?(Pre)?Depends:/ { sub(/:any$/, "", $2); print $2 }' | grep -E '^(lib|gcc-)' || true)
	done
	(cd "$work/debs" && apt-get "${apt_opts[@]}" -qq download "${!seen[@]}")

	for deb in "$work"/debs/*.deb; do
		dpkg-deb -x "$deb" "$out.new/root"
	done
	loader=$(find "$out.new/root/usr/lib" -maxdepth 2 -name 'ld-linux*.so.[0-9]' | head -n 1)
	if [ -z "$loader" ]; then
		echo "build-sipp-tls: no dynamic loader in the unpacked libc6" >&2
		return 1
	fi
	libdir=${loader%/*}
	missing=$("$loader" --list --library-path "$libdir" "$out.new/root/usr/bin/sipp" | grep 'not found' || true)
	if [ -n "$missing" ]; then
		echo "build-sipp-tls: libraries missing from the unpacked packages:" >&2
		echo "$missing" >&2
		return 1
	fi
	rel_libdir=${libdir#"$out.new/root/"}
	# (`<<-`: the leading tabs of the lines below are not written.)
	cat >"$out.new/sipp" <<-EOF
	#!/bin/sh
	# SIPp from Debian ${suite} (TLS) with its own loader and libraries: see scripts/build-sipp-tls.sh.
	here=\$(dirname "\$(readlink -f "\$0")")
	exec "\$here/root/${rel_libdir}/${loader##*/}" --library-path "\$here/root/${rel_libdir}" \\
		"\$here/root/usr/bin/sipp" "\$@"
	EOF
	chmod +x "$out.new/sipp"
}

done_suite=""
for suite in "${suites[@]}"; do
	# A subshell with errexit of its own (not inside a condition, where bash would ignore it).
	set +e
	(
		set -e
		fetch "$suite"
	)
	fetched=$?
	set -e
	if [ "$fetched" -eq 0 ] && [[ "$("$out.new/sipp" -v 2>&1 || true)" == *"-TLS"* ]]; then
		done_suite=$suite
		break
	fi
	echo "build-sipp-tls: no working TLS SIPp from $suite" >&2
done
if [ -z "$done_suite" ]; then
	exit 1
fi
rm -rf "$out"
mv "$out.new" "$out"

if ! works; then
	echo "build-sipp-tls: $out/sipp does not report TLS support:" >&2
	version >&2
	exit 1
fi
echo "==> $out/sipp: $(version | grep -o 'SIPp v[^ ]*') in $(($(date +%s) - started)) s"
