#!/usr/bin/env bash
# Installs what Duet needs on Debian 12, idempotently. Run as root.
#
#   deploy/install-deps.sh           build and run `duet up`
#   deploy/install-deps.sh --test    also what the test suite needs (Chromium, iproute2, moto_server as the
#                                    S3-compatible endpoint of the delivery tests)
#   deploy/install-deps.sh --bench   what --test installs, plus what the load benchmarks need (Janus, the
#                                    reference SFU of `duet-load`; linux-perf where the mirror has it)
#
# Packages already present are left alone; a second run installs nothing.
set -euo pipefail

want_test=0
want_bench=0
for arg in "$@"; do
  case "$arg" in
    --test) want_test=1 ;;
    --bench) want_test=1; want_bench=1 ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "install-deps: unknown option $arg" >&2; exit 2 ;;
  esac
done

packages=(pkg-config ca-certificates
  # GStreamer: the recorder's capture, mixing and encoding, and the simulated RTSP cameras.
  libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev libgstreamer-plugins-bad1.0-dev libgstrtspserver-1.0-dev
  gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly
  gstreamer1.0-libav gstreamer1.0-tools gstreamer1.0-rtsp
  # The 晒课 clip's title card: gstreamer1.0-x carries the Pango overlays (textoverlay), and
  # fonts-wqy-microhei a Chinese font for it (5 MB installed; fonts-noto-cjk would be 90 MB).
  gstreamer1.0-x fonts-wqy-microhei
  # FFmpeg 5.1 for ffmpeg-next (the recorder's delivery remuxes programmes to MP4); clang for its bindgen.
  clang libavcodec-dev libavformat-dev libavutil-dev libavfilter-dev libavdevice-dev libswscale-dev
  libswresample-dev)
if [ "$want_test" = 1 ]; then
  # chromium: the real WebRTC peer of the browser tests; iproute2: their private network namespace;
  # (gstreamer1.0-x, above, also labels the simulated RTSP cameras' picture with clockoverlay.)
  # python3-venv: a private virtualenv for moto_server (Debian 12 has no python3-moto package, and
  # its system pip refuses to install outside a venv, PEP 668).
  packages+=(chromium iproute2 python3-venv)
fi
optional=()
if [ "$want_bench" = 1 ]; then
  # janus (1.1.2): the SFU `duet-load` measures Duet against; the load tool starts its own private
  # instance (VideoRoom plugin, HTTP API on loopback) from a temporary configuration.
  packages+=(janus)
  # linux-perf: CPU profiles of an SFU under load. Optional: not every mirror or architecture has it.
  optional+=(linux-perf)
fi

installed() {
  dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"
}

missing=()
for p in "${packages[@]}"; do
  if ! installed "$p"; then
    missing+=("$p")
  fi
done

updated=0
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "install-deps: need root to install: ${missing[*]}" >&2
    exit 1
  fi
  echo "install-deps: installing ${missing[*]}"
  apt-get update -qq
  updated=1
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

for p in "${optional[@]}"; do
  if installed "$p"; then
    continue
  fi
  if [ "$(id -u)" != 0 ]; then
    echo "install-deps: need root to install $p (optional); skipped" >&2
    continue
  fi
  if [ "$updated" = 0 ]; then
    apt-get update -qq
    updated=1
  fi
  if apt-cache show "$p" >/dev/null 2>&1 \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$p" >/dev/null; then
    echo "install-deps: installed $p"
  else
    echo "install-deps: $p is not available here; skipped (optional)" >&2
  fi
done

# The janus package enables a system-wide Janus (janus.service, /etc/janus, port 8088 and a wide RTP
# range). Benchmarks start their own; a second Janus idling beside them would only skew the numbers.
if [ "$want_bench" = 1 ] && command -v systemctl >/dev/null 2>&1 \
  && systemctl is-enabled --quiet janus.service 2>/dev/null; then
  if [ "$(id -u)" = 0 ]; then
    echo "install-deps: disabling the system janus.service (benchmarks run their own Janus)"
    systemctl disable --now janus.service >/dev/null 2>&1 || true
  else
    echo "install-deps: janus.service is enabled; disable it as root: systemctl disable --now janus" >&2
  fi
fi

# moto_server: the S3-compatible server the recorder's delivery tests start on 127.0.0.1.
moto_venv=/opt/duet-test/moto
if [ "$want_test" = 1 ] && ! command -v moto_server >/dev/null 2>&1; then
  if [ "$(id -u)" != 0 ]; then
    echo "install-deps: need root to install moto_server into $moto_venv" >&2
    exit 1
  fi
  echo "install-deps: installing moto_server (pip, into $moto_venv)"
  python3 -m venv "$moto_venv"
  "$moto_venv/bin/pip" install -q 'moto[server]>=5,<6'
  ln -sf "$moto_venv/bin/moto_server" /usr/local/bin/moto_server
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "install-deps: Rust (cargo, rustc >= 1.94) is required; install it with rustup (https://rustup.rs) and re-run." >&2
  exit 1
fi
rust_minor=$(rustc --version | sed -E 's/^rustc 1\.([0-9]+).*/\1/')
if [ "${rust_minor:-0}" -lt 94 ]; then
  echo "install-deps: rustc $(rustc --version) is too old; Duet needs 1.94 or newer (rustup update)." >&2
  exit 1
fi
echo "install-deps: ready"
