#!/bin/sh
# Runs as PID 1 of fresh PID, mount, UTS, IPC and network namespaces (see
# boot_integration_test.go): mounts ROOT as an overlay of the cached Debian
# root (LOWER) and UPPER (test settings), gives it
# what systemd expects of a container, and execs systemd as PID 1.
# Usage: boot.sh LOWER UPPER WORK ROOT
set -eu
lower=$1 upper=$2 work=$3 root=$4

# Nothing mounted here may leak back to the host's namespace.
mount --make-rprivate /
ip link set lo up

mount -t overlay overlay -o "lowerdir=$lower,upperdir=$upper,workdir=$work" "$root"
mount -t proc proc "$root/proc"
mount -t sysfs sysfs "$root/sys"
mount --rbind /dev "$root/dev"
for d in run tmp; do mount -t tmpfs -o mode=1777 tmpfs "$root/$d"; done
# systemd 252 takes the hybrid layout: cgroup2 under unified for its own
# tracking, and a named v1 hierarchy it manages itself.
mount -t tmpfs -o mode=755 tmpfs "$root/sys/fs/cgroup"
mkdir -p "$root/sys/fs/cgroup/unified" "$root/sys/fs/cgroup/systemd"
mount -t cgroup2 cgroup2 "$root/sys/fs/cgroup/unified"
mount -t cgroup -o none,name=systemd cgroup "$root/sys/fs/cgroup/systemd"

exec chroot "$root" /usr/bin/env container=other /lib/systemd/systemd --system
