# Shared by the virtual-machine harnesses (sourced, not run):
#   tests/vm/run      LVM tests in a busybox initramfs (tests/vm_lvm.rs)
#   tests/vm/systemd  the Debian package under systemd as PID 1
# Builds into tests/vm/cache/ (ignored by git), on first use:
#   - vmlinux: the uncompressed kernel of Debian 12's linux-image-amd64
#     (downloaded with apt-get download, unpacked with dpkg -x, never installed),
#     booted directly (no decompression in the guest: ~9 s saved under TCG);
#   - initramfs.cpio.gz: busybox, the kernel modules the tests need, lvm2,
#     thin-provisioning-tools and mke2fs with their libraries, an lvm.conf
#     that does without udev, and an init that either runs /host/run.sh from
#     the 9p share or, with rollpoint.root=DEVICE on the kernel command line,
#     switches to the system on DEVICE.
# The guest prints ROLLPOINT-VM-EXIT=<status> on the serial console; boot_vm
# reads it.
# shellcheck shell=bash

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CACHE=$ROOT/tests/vm/cache
TIMEOUT=${ROLLPOINT_VM_TIMEOUT:-900}
# Bump when the initramfs recipe changes, so old caches are rebuilt.
RECIPE=5

log() { echo "tests/vm/$(basename "$0"): $*" >&2; }

[ "$(id -u)" = 0 ] || { log "run as root (apt-get, and the guest's tools come from the host)"; exit 1; }

need_packages() {
    local missing=() pkg
    for pkg in qemu-system-x86 busybox-static cpio kmod lvm2 thin-provisioning-tools e2fsprogs xz-utils jq; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed' || missing+=("$pkg")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        log "installing ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
}

# The newest 6.1 kernel package Debian 12 offers (what linux-image-amd64 pulls in).
kernel_package() {
    apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-6\.1\.0-[0-9]+-amd64/ {print $2; exit}'
}

build_kernel() {
    local pkg dl
    pkg=$(kernel_package)
    if [ -z "$pkg" ]; then
        apt-get update -qq
        pkg=$(kernel_package)
    fi
    [ -n "$pkg" ] || { log "cannot find Debian's linux-image-6.1.0-*-amd64"; exit 1; }
    log "fetching $pkg"
    dl=$CACHE/download
    rm -rf "$dl" "$CACHE/kernel"
    mkdir -p "$dl" "$CACHE/kernel"
    (cd "$dl" && apt-get download "$pkg" 2>&1 | grep -v '^W: Download is performed unsandboxed' >&2 || true)
    ls "$dl"/*.deb >/dev/null
    dpkg -x "$dl"/*.deb "$CACHE/kernel"
    rm -rf "$dl"
    # extract-vmlinux: the payload is the first xz stream in the bzImage.
    local vmlinuz offset
    vmlinuz=$(ls "$CACHE"/kernel/boot/vmlinuz-*)
    for offset in $(LC_ALL=C grep -abo $'\xfd7zXZ' "$vmlinuz" | cut -d: -f1); do
        tail -c +$((offset + 1)) "$vmlinuz" | xz -dc 2>/dev/null > "$CACHE/vmlinux.tmp" || true
        if [ "$(head -c 4 "$CACHE/vmlinux.tmp" | od -An -tx1 | tr -d ' ')" = 7f454c46 ]; then
            mv "$CACHE/vmlinux.tmp" "$CACHE/vmlinux"
            break
        fi
    done
    rm -f "$CACHE/vmlinux.tmp"
    [ -f "$CACHE/vmlinux" ] || { log "no xz-compressed ELF kernel found in $vmlinuz"; exit 1; }
    local kver
    kver=$(basename "$(ls -d "$CACHE"/kernel/lib/modules/*)")
    # The package ships no modules.dep (its postinst makes it): make it here.
    depmod -b "$CACHE/kernel" "$kver"
    echo "$kver" > "$CACHE/kernel-version"
}

# Copies a host file and the shared libraries it needs into the image.
copy_with_libs() {
    local image=$1 file lib
    shift
    for file in "$@"; do
        mkdir -p "$image$(dirname "$file")"
        cp -aL "$file" "$image$file"
        for lib in $(ldd "$file" 2>/dev/null | grep -o '/[^ ]*' || true); do
            [ -e "$image$lib" ] && continue
            mkdir -p "$image$(dirname "$lib")"
            cp -L "$lib" "$image$lib"
        done
    done
}

build_initramfs() {
    local kver image moddir mod deps
    kver=$(cat "$CACHE/kernel-version")
    image=$CACHE/initramfs-root
    rm -rf "$image"
    mkdir -p "$image"/{bin,sbin,usr/bin,usr/sbin,etc/lvm,proc,sys,dev,run,tmp,host,mnt,lib64,var/tmp}
    ln -s ../run "$image/var/run"
    cp /bin/busybox "$image/bin/busybox"
    for applet in $(/bin/busybox --list); do
        [ -e "$image/bin/$applet" ] || ln -s busybox "$image/bin/$applet"
    done
    ln -sf ../bin/busybox "$image/sbin/modprobe"
    ln -sf ../bin/busybox "$image/sbin/insmod"

    # Kernel modules: the ones the tests need and everything they depend on.
    moddir=$CACHE/kernel/lib/modules/$kver
    local wanted="virtio virtio_ring virtio_pci virtio_pci_legacy_dev virtio_pci_modern_dev virtio_blk
        dm-mod dm-bufio dm-bio-prison dm-persistent-data dm-thin-pool dm-snapshot libcrc32c crc32c_generic
        ext4 jbd2 mbcache crc16 loop 9pnet 9pnet_virtio 9p netfs fscache btrfs"
    : > "$CACHE/modules.list"
    for mod in $wanted; do
        local path
        path=$(grep -E "(^|/)${mod}\.ko:" "$moddir/modules.dep" | cut -d: -f1 || true)
        [ -n "$path" ] || { log "module $mod not in $kver"; exit 1; }
        deps=$(grep -E "^${path}:" "$moddir/modules.dep" | cut -d: -f2)
        for file in $path $deps; do
            mkdir -p "$image/lib/modules/$kver/$(dirname "$file")"
            cp "$moddir/$file" "$image/lib/modules/$kver/$file"
        done
    done
    cp "$moddir"/modules.{order,builtin,builtin.modinfo} "$image/lib/modules/$kver/" 2>/dev/null || true
    depmod -b "$image" "$kver"

    copy_with_libs "$image" /usr/sbin/lvm /usr/sbin/dmsetup /usr/sbin/pdata_tools /usr/sbin/mke2fs
    for tool in thin_check thin_delta thin_dump thin_ls thin_repair thin_restore; do
        ln -sf pdata_tools "$image/usr/sbin/$tool"
    done
    ln -sf mke2fs "$image/usr/sbin/mkfs.ext4"
    # The test binary needs only libc, libm, libgcc_s and the loader; lvm
    # brought the first and the last.
    for lib in $(ldconfig -p | grep -E 'lib(gcc_s\.so\.1|m\.so\.6|c\.so\.6) .*x86-64' | awk '{print $NF}'); do
        mkdir -p "$image$(dirname "$lib")"
        cp -L "$lib" "$image$lib"
    done
    [ -e "$image/lib64/ld-linux-x86-64.so.2" ] || cp -L /lib64/ld-linux-x86-64.so.2 "$image/lib64/"
    # Debian's usrmerge: /lib -> usr/lib on the host; make both work here.
    if [ -d "$image/usr/lib" ]; then
        cp -a "$image/usr/lib/." "$image/lib/" 2>/dev/null || true
    fi
    if [ -f /etc/mke2fs.conf ]; then cp /etc/mke2fs.conf "$image/etc/"; fi

    cat > "$image/etc/lvm/lvm.conf" <<'CONF'
# No udev in the guest: lvm creates the /dev nodes itself.
devices {
    obtain_device_list_from_udev = 0
    external_device_info_source = "none"
    scan = [ "/dev" ]
}
activation {
    udev_sync = 0
    udev_rules = 0
    monitoring = 0
    verify_udev_operations = 1
}
global {
    thin_check_executable = "/usr/sbin/thin_check"
    thin_dump_executable = "/usr/sbin/thin_dump"
    thin_repair_executable = "/usr/sbin/thin_repair"
    use_lvmpolld = 0
}
backup {
    backup = 0
    archive = 0
}
log {
    verbose = 0
}
CONF
    echo 'root:x:0:0:root:/root:/bin/sh' > "$image/etc/passwd"
    echo 'root:x:0:' > "$image/etc/group"

    cat > "$image/init" <<'INIT'
#!/bin/sh
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /run/lock /run/lvm /sys/fs/cgroup
mount -t tmpfs tmpfs /run
mkdir -p /run/lock /run/lvm
mount -t tmpfs tmpfs /tmp
mount -t cgroup2 cgroup2 /sys/fs/cgroup
echo 1 > /proc/sys/kernel/printk
for mod in crc32c_generic libcrc32c virtio_pci virtio_blk dm-mod dm-thin-pool dm-snapshot ext4 btrfs loop 9pnet_virtio 9p; do
    modprobe "$mod" || echo "init: modprobe $mod failed"
done
# rollpoint.root=DEVICE: boot the system on DEVICE (systemd as PID 1), the
# modules above staying loaded.
root=$(sed -n 's/.*rollpoint\.root=\([^ ]*\).*/\1/p' /proc/cmdline)
if [ -n "$root" ]; then
    mkdir -p /newroot
    if mount -t ext4 -o rw "$root" /newroot; then
        umount /sys/fs/cgroup /tmp /run /dev /sys /proc
        exec switch_root /newroot /sbin/init
    fi
    echo "init: cannot mount $root"
    echo "ROLLPOINT-VM-EXIT=1"
    poweroff -f
fi
status=1
if mount -t 9p -o trans=virtio,version=9p2000.L,ro host0 /host; then
    if [ -x /host/run.sh ]; then
        /host/run.sh
        status=$?
    else
        echo "init: /host/run.sh missing"
    fi
else
    echo "init: cannot mount the host folder"
fi
sync
echo "ROLLPOINT-VM-EXIT=$status"
poweroff -f
INIT
    chmod 755 "$image/init"
    (cd "$image" && find . | cpio -o -H newc --quiet | gzip -1) > "$CACHE/initramfs.cpio.gz.tmp"
    mv "$CACHE/initramfs.cpio.gz.tmp" "$CACHE/initramfs.cpio.gz"
    echo "$RECIPE" > "$CACHE/recipe"
}


# Fetches the kernel and builds the initramfs unless the cache has them.
prepare_kernel_and_initramfs() {
    local started
    started=$(date +%s)
    mkdir -p "$CACHE"
    if [ ! -f "$CACHE/vmlinux" ] || [ ! -f "$CACHE/kernel-version" ]; then
        build_kernel
    fi
    if [ ! -f "$CACHE/initramfs.cpio.gz" ] || [ "$(cat "$CACHE/recipe" 2>/dev/null)" != "$RECIPE" ]; then
        log "building the initramfs"
        build_initramfs
    fi
    log "kernel and initramfs ready ($(( $(date +%s) - started )) s)"
}

# vm_test_binary: builds tests/vm_lvm.rs (`cargo test --no-run`) and prints
# the test binary's path.
vm_test_binary() {
    local binary
    export PATH="$HOME/.cargo/bin:$PATH"
    binary=$(cargo test --no-run --test vm_lvm --message-format=json 2>/dev/null \
        | jq -r 'select(.reason == "compiler-artifact" and .target.name == "vm_lvm" and .executable != null) | .executable' \
        | tail -1 || true)
    if [ -z "$binary" ] || [ ! -x "$binary" ]; then
        cargo test --no-run --test vm_lvm >&2
        log "no vm_lvm test binary"
        exit 1
    fi
    echo "$binary"
}

# boot_vm CONSOLE APPEND [QEMU ARGS...]: boots the cached kernel and
# initramfs under TCG (one CPU, 1 GiB), the serial console to CONSOLE, with
# APPEND added to the kernel command line; sets vm_status to the guest's
# ROLLPOINT-VM-EXIT status, empty when it never came.
boot_vm() {
    local console=$1 append=$2 booted qemu_status
    shift 2
    log "booting ($(cat "$CACHE/kernel-version"), TCG)"
    booted=$(date +%s)
    set +e
    timeout --kill-after=10 "$TIMEOUT" qemu-system-x86_64 \
        -accel tcg -smp 1 -m 1024 \
        -display none -monitor none -serial "file:$console" -no-reboot \
        -kernel "$CACHE/vmlinux" -initrd "$CACHE/initramfs.cpio.gz" \
        -append "console=ttyS0 panic=-1 loglevel=3 rdinit=/init $append" \
        "$@" </dev/null
    qemu_status=$?
    set -e
    log "virtual machine ran $(( $(date +%s) - booted )) s (qemu status $qemu_status)"
    # shellcheck disable=SC2034 # read by the caller
    vm_status=$(tr -d '\r' < "$console" | sed -n 's/^ROLLPOINT-VM-EXIT=\([0-9]*\)$/\1/p' | tail -1)
}
