#!/usr/bin/env bash
# The one test command for sipmesh (see README): installs missing tools, then runs formatting,
# lints, the build and the whole test suite (unit tests, SIPp integration tests, RFC corpus).
#
#   scripts/test.sh
#
# Integration tests start their own sipmesh nodes on loopback addresses and drive them with SIPp.
# To prove the SIPp scenarios against the Kamailio reference instead of sipmesh:
#   SIPMESH_TEST_TARGET=kamailio cargo nextest run -p sipmesh-node -E 'not binary(corpus)'
# (Kamailio itself fails a few corpus records; see ../shared/corpus/README.md.)
# The corpus is found at <workspace>/../shared/corpus, or at $SIPMESH_CORPUS.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ]; }

if ! have sipp || ! have kamailio || ! have redis-server || ! have python3 ||
	! have node || ! have npm; then
	echo "==> installing test tools (sip-tester, redis-server, kamailio, python3, nodejs, npm)"
	sudo=""
	if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
	$sudo apt-get update
	pkgs="sip-tester redis-server kamailio python3"
	# Node.js may come from elsewhere (nodesource ships npm inside its nodejs package).
	if ! have node; then pkgs="$pkgs nodejs"; fi
	if ! have npm; then pkgs="$pkgs npm"; fi
	# shellcheck disable=SC2086
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y $pkgs
fi

# rtpengine for the ng conformance tests (actors/tests/ng.rs): the harness starts its own
# userspace daemons (--table=-1, --config-file=none); the packaged system service is not started
# (policy-rc.d refuses it while installing, and it is never enabled here).
if ! have rtpengine; then
	echo "==> installing rtpengine-daemon"
	sudo=""
	if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
	$sudo apt-get update
	# policy-rc.d exit 101 keeps the package's init script from starting the system service.
	policy=/usr/sbin/policy-rc.d
	made_policy=""
	if [ ! -e "$policy" ]; then
		printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
		$sudo chmod +x "$policy"
		made_policy=1
	fi
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends rtpengine-daemon
	if [ -n "$made_policy" ]; then $sudo rm -f "$policy"; fi
fi

# SIPp with TLS (`-t l1`) for the TLS and sips: tests: Debian 12's sip-tester has none. Cached in
# target/tools/sipp-tls (see scripts/build-sipp-tls.sh): 20-30 s when missing or broken, else
# only a version check.
scripts/build-sipp-tls.sh

# The JsSIP test client (node/tests/jssip.rs): its packages, pinned by package-lock.json.
# `npm ci` only when node_modules is missing or older than the lock file.
jssip=tests/jssip
if [ ! -d "$jssip/node_modules/jssip" ] || [ ! -d "$jssip/node_modules/ws" ] ||
	[ "$jssip/package-lock.json" -nt "$jssip/node_modules/.package-lock.json" ]; then
	echo "==> npm ci in $jssip"
	(cd "$jssip" && npm ci --no-audit --no-fund)
fi

# The browser tests (node/tests/browser.rs): Debian's Chromium (never a downloaded browser;
# puppeteer-core only drives it) and the driver's packages (puppeteer-core, esbuild, jssip),
# pinned by tests/browser/package-lock.json.
if [ ! -x /usr/bin/chromium ]; then
	echo "==> installing chromium"
	sudo=""
	if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
	$sudo apt-get update
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends chromium
fi
browser=tests/browser
if [ ! -d "$browser/node_modules/puppeteer-core" ] || [ ! -d "$browser/node_modules/esbuild" ] ||
	[ ! -d "$browser/node_modules/jssip" ] ||
	[ "$browser/package-lock.json" -nt "$browser/node_modules/.package-lock.json" ]; then
	echo "==> npm ci in $browser"
	(cd "$browser" && npm ci --no-audit --no-fund)
fi

echo "==> cargo fmt --check"
cargo fmt --all --check

echo "==> cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings

echo "==> protocol/ stays sans-IO (no tokio, ractor, redis, mio)"
if cargo tree -p sipmesh-protocol -e normal --prefix none | grep -E '^(tokio|ractor|redis|mio) '; then
	echo "sipmesh-protocol must not depend on an I/O crate" >&2
	exit 1
fi

echo "==> cargo build --bins"
cargo build --workspace --bins

echo "==> tests"
if cargo nextest --version >/dev/null 2>&1; then
	cargo nextest run --workspace --profile ci
else
	echo "cargo-nextest not installed: falling back to cargo test"
	cargo test --workspace
fi
