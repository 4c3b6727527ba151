#!/usr/bin/env bash
# Installs every system package the build, the demo and the tests need.
# Idempotent and quiet when everything is already present.
set -euo pipefail

PACKAGES=(
  # build: libbpf-cargo compiles the XDP program with clang; libbpf-sys and
  # libxdp-sys (vendored) need libelf, zlib, pkg-config, make and m4.
  clang llvm libelf-dev zlib1g-dev pkg-config make m4 gcc
  # run and debug the BPF side
  bpftool
  # labs and tests: namespaces, veths, captures, traffic generation
  iproute2 ethtool tcpdump tshark netsniff-ng iputils-ping procps
  # lns-setup-rate --loss: random drops of L2TP datagrams (statistic match)
  iptables
  # interop tests of the control plane: Debian's L2TP daemon as the LAC
  # (nftables counts which ports it sends to, with tunnel_ports)
  xl2tpd nftables
  # lns-load --peer l2tpns: Debian's TUN-based LNS as the benchmark's peer
  l2tpns
  # L2TP/IPsec tests (docs/ipsec.md): strongSwan's charon, one per test
  # namespace, configured over vici with swanctl; ESP in user space by the
  # kernel-libipsec plugin (libcharon-extra-plugins), as this kernel may
  # have no ESP
  charon-systemd strongswan-swanctl libcharon-extra-plugins
  # RADIUS tests: a real FreeRADIUS started by the tests, and radclient
  freeradius freeradius-utils
  # metrics tests: scraped with curl, linted with promtool (in prometheus)
  curl prometheus
  # the package's tests: systemd-analyze verify on the units, dpkg-shlibdeps
  # for cargo-deb's $auto dependencies
  systemd dpkg-dev
  # subscribers as real hosts over lns-lacsim --tun: TCP throughput and a
  # DHCPv6 client asking for a delegated prefix (dhcpcd: ISC dhclient
  # refuses a TUN device, "Unsupported device type 65534")
  iperf3 dhcpcd-base
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  # tshark asks whether non-root users may capture; answer no without a prompt.
  echo "wireshark-common wireshark-common/install-setuid boolean false" | $SUDO debconf-set-selections
  # iperf3 asks whether to run a system daemon; the tests start their own.
  echo "iperf3 iperf3/start_daemon boolean false" | $SUDO debconf-set-selections
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# xl2tpd's package starts a system daemon on UDP 1701; the tests run their
# own copies in namespaces and want no LAC answering in the root namespace.
# The prometheus package (installed for promtool) starts a server: not wanted either,
# nor strongSwan's system charon (the tests start their own).
for unit in xl2tpd l2tpns prometheus prometheus-node-exporter strongswan; do
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active -q "$unit" 2>/dev/null; then
    systemctl disable --now "$unit" >/dev/null 2>&1 || true
  fi
done

# bpffs is needed for pinned maps; most systems mount it already.
if ! mountpoint -q /sys/fs/bpf 2>/dev/null; then
  mount -t bpf bpf /sys/fs/bpf 2>/dev/null || true
fi

# The Debian package (scripts/build-deb.sh, packaging/tests/package.rs) is
# built with cargo-deb, pinned: it says it will refuse the dev profile the
# tests package. About 2 to 3 minutes to build, once.
CARGO_DEB_VERSION=3.8.0
if command -v cargo >/dev/null && ! cargo deb --version 2>/dev/null | grep -qF "$CARGO_DEB_VERSION"; then
  echo "setup: installing cargo-deb $CARGO_DEB_VERSION"
  cargo install --quiet --locked --version "$CARGO_DEB_VERSION" cargo-deb
fi
