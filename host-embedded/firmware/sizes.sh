#!/usr/bin/env bash
# Flash and static RAM of each firmware role and target, and the share of it that is
# Concord's core: `bash sizes.sh` after `cargo build --release` for the targets wanted.
#
# flash  = .vector_table + .text + .rodata (+ .data's initial values)
# static = .data + .bss (the heap arena is a static, so it is counted here)
# core   = symbols named concord_core::… (after LTO inlining, code inlined into another
#          crate's function counts for that crate: the share is a lower bound)
# The peak heap and stack are measured at run time and printed on the console by the
# firmware (heap_peak=, stack_peak=); see host-tokio/tests/firmware_qemu.rs.
set -euo pipefail
cd "$(dirname "$0")"
printf '%-8s %-22s %9s %9s %9s %8s\n' role target flash static core core%
for target in thumbv7m-none-eabi thumbv7em-none-eabihf thumbv6m-none-eabi; do
  for role in client replica; do
    elf=target/$target/release/$role
    [ -f "$elf" ] || continue
    flash=0 static=0
    while read -r name hex; do
      size=$((16#$hex))
      case $name in
        .vector_table|.text|.rodata) flash=$((flash + size)) ;;
        .data) flash=$((flash + size)); static=$((static + size)) ;;
        .bss|.uninit) static=$((static + size)) ;;
      esac
    done < <(readelf -S -W "$elf" | sed -n 's/^ *\[ *[0-9]*\] *//p' | awk '{ print $1, $5 }')
    core=0
    while read -r hex; do core=$((core + 16#$hex)); done < <(nm -S -C "$elf" | awk '$3 ~ /^[tTrR]$/ && /concord_core::/ { print $2 }')
    printf '%-8s %-22s %9d %9d %9d %7s%%\n' "$role" "$target" "$flash" "$static" "$core" "$((core * 1000 / flash / 10)).$((core * 1000 / flash % 10))"
  done
done
