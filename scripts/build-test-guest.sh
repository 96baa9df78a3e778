#!/bin/sh
# Build the tiny test guest used by the qemu backend's tests and benchmark.
#
# Output (in $HVKUBE_GUEST_CACHE, default ~/.cache/hvkube/test-guest):
#   guest.qcow2    a small empty qcow2 disk: the template (read-only)
#   guest.kernel   a Debian cloud kernel, for direct boot
#   guest.initrd   a busybox initramfs whose /init prints HVKUBE-READY on the serial
#                  console, then answers every line it reads there with "HVKUBE-ECHO <line>"
#                  and every line typed on the keyboard with "HVKUBE-KEY <line>"
#   guest.cmdline  the kernel command line
#
# Needs: apt-get (to download the Debian kernel package), dpkg, cpio, gzip, qemu-img and a
# static busybox (the busybox-static package). Idempotent: a complete cache built by this
# version of the script is left alone.
set -eu

CACHE="${HVKUBE_GUEST_CACHE:-${HOME}/.cache/hvkube/test-guest}"
FILES="guest.qcow2 guest.kernel guest.initrd guest.cmdline"

# The cache is complete when every file is there and was built by this very script.
STAMP="$(sha256sum "$0" | cut -d' ' -f1)"
complete=1
for f in $FILES; do
    [ -s "$CACHE/$f" ] || complete=0
done
[ "$(cat "$CACHE/guest.stamp" 2>/dev/null)" = "$STAMP" ] || complete=0
if [ "$complete" = 1 ]; then
    echo "test guest already built in $CACHE"
    exit 0
fi

for tool in apt-get apt-cache dpkg cpio gzip qemu-img; do
    command -v "$tool" >/dev/null 2>&1 || { echo "missing tool: $tool" >&2; exit 1; }
done
BUSYBOX="${HVKUBE_BUSYBOX:-/bin/busybox}"
if ! [ -x "$BUSYBOX" ] || ! "$BUSYBOX" --help 2>&1 | head -n 1 | grep -q BusyBox; then
    echo "no busybox at $BUSYBOX; install busybox-static" >&2
    exit 1
fi
if ldd "$BUSYBOX" >/dev/null 2>&1; then
    echo "$BUSYBOX is not statically linked; install busybox-static" >&2
    exit 1
fi

mkdir -p "$CACHE"
WORK="$(mktemp -d "$CACHE/.build.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT INT TERM

# 1. The kernel: the package the cloud meta-package points at, unsigned when available.
KPKG="$(apt-cache depends linux-image-cloud-amd64 2>/dev/null \
    | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')"
[ -n "$KPKG" ] || { echo "cannot resolve linux-image-cloud-amd64; run apt-get update" >&2; exit 1; }
cd "$WORK"
if ! apt-get download "${KPKG}-unsigned" >/dev/null 2>&1; then
    apt-get download "$KPKG" >/dev/null
fi
dpkg -x ./*.deb kroot
cp kroot/boot/vmlinuz-* guest.kernel
rm -rf kroot ./*.deb

# 2. The initramfs: busybox and an /init that prints the marker and answers.
mkdir -p root/bin root/dev root/proc root/sys root/tmp
cp "$BUSYBOX" root/bin/busybox
ln -s busybox root/bin/sh
cat > root/init <<'INIT'
#!/bin/sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
# Keyboard: each line typed on the first virtual terminal is reported on the serial console.
# Started before the ready marker, so that keys sent once the guest is ready are read.
( while read -r line; do echo "HVKUBE-KEY $line" > /dev/ttyS0; done < /dev/tty1 ) &
echo "hvkube test guest: ready" > /dev/tty0
echo "HVKUBE-READY"
# Serial console: answer each line.
while true; do
    while read -r line; do
        echo "HVKUBE-ECHO $line"
    done < /dev/ttyS0
    sleep 1
done
INIT
chmod 755 root/init
(cd root && find . | cpio -o -H newc --quiet | gzip -9) > guest.initrd

# 3. The disk template and the command line.
qemu-img create -q -f qcow2 guest.qcow2 64M
echo "console=tty0 console=ttyS0 panic=-1 loglevel=4" > guest.cmdline
chmod 444 guest.qcow2

for f in $FILES; do
    mv -f "$WORK/$f" "$CACHE/$f"
done
echo "$STAMP" > "$CACHE/guest.stamp"
echo "test guest built in $CACHE (kernel from $KPKG)"
