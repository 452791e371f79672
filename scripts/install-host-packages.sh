#!/bin/sh
# Installs the Debian packages the builder, the jail and the tests need on the host.
# Idempotent: does nothing (and needs no network) when everything is already there.
set -eu

PACKAGES="
python3 python3-venv
apt gpgv debian-archive-keyring
gcc make libc6-dev
qemu-system-x86 qemu-utils ovmf socat
xorriso mtools dosfstools cpio libarchive-tools file
isolinux
zstd xz-utils lz4 squashfs-tools
diffoscope-minimal
binutils lintian mmdebstrap
postgresql-15 libpq-dev
chromium
"

missing=""
for p in $PACKAGES; do
    if ! dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
        missing="$missing $p"
    fi
done
[ -z "$missing" ] && exit 0

echo "install-host-packages: installing:$missing"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get update -q
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends $missing
