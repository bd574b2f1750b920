#!/usr/bin/env bash
# Install the Debian packages govtrust needs for a purpose ("run" or "test").
# As root: apt-get installs what is missing. Otherwise: print exactly what is missing and fail.
set -euo pipefail
purpose=${1:-run}
# gcc: gmalglib (SM2, hsm/sm2.py) is built from its source distribution
# fonts-noto-cjk: the seal face (Noto Serif CJK SC, a Song face); fonts-wqy-microhei: licence text
run_pkgs=(openssl gcc fonts-wqy-microhei fonts-noto-cjk)
# haproxy, socat, iproute2: the cluster harness (tests/cluster: hosts in network namespaces behind
# HAProxy, socat forwarding the bridge to PostgreSQL on loopback)
test_pkgs=(openssl gcc softhsm2 poppler-utils libnss3-tools fonts-wqy-microhei fonts-noto-cjk chromium
  haproxy socat iproute2)
# C load generators, so that the two cores go to the servers: h2load (gRPC), wrk (HTTP)
bench_pkgs=("${test_pkgs[@]}" nghttp2-client wrk)
case "$purpose" in
  run) wanted=("${run_pkgs[@]}") ;;
  test) wanted=("${test_pkgs[@]}") ;;
  bench) wanted=("${bench_pkgs[@]}") ;;
  *) echo "usage: $0 run|test|bench" >&2; exit 2 ;;
esac
missing=()
for pkg in "${wanted[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ "$purpose" != run ]; then
  # Node.js may come from Debian or another repackaging; what matters is that node and npm run.
  command -v node >/dev/null || missing+=(nodejs)
  command -v npm >/dev/null || missing+=(npm)
fi
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
  echo "govtrust: installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  exit 0
fi
echo "govtrust: missing Debian packages for '$purpose': ${missing[*]}" >&2
echo "          install them with: sudo apt-get install ${missing[*]}" >&2
exit 1
