#!/usr/bin/env python3
"""What an fdatasync after a write costs on this disk, by how the file was made.

`python3 bench/fsync.py [folder]` (default: target/, which is on the disk the
store uses in a clone): ROUNDS rounds of WRITES writes of 8 KiB, each followed
by fdatasync, into a file that was empty (each write appends), written full of
zeros, sized with ftruncate, or allocated with posix_fallocate first. Prints
the mean microseconds a write for each round (docs/performance.md).
"""
import os
import sys
import tempfile
import time

WRITES, SIZE, ROUNDS = 1000, 8192, 4
MODES = ("append", "zeros", "ftruncate", "fallocate")


def one_round(folder, mode):
    fd, path = tempfile.mkstemp(dir=folder, prefix="fsync-probe-")
    try:
        total = WRITES * SIZE
        if mode == "zeros":
            os.pwrite(fd, b"\0" * total, 0)
        elif mode == "ftruncate":
            os.ftruncate(fd, total)
        elif mode == "fallocate":
            os.posix_fallocate(fd, 0, total)
        os.fsync(fd)
        data = os.urandom(SIZE)
        start = time.perf_counter()
        for i in range(WRITES):
            os.pwrite(fd, data, i * SIZE)
            os.fdatasync(fd)
        return (time.perf_counter() - start) / WRITES * 1e6
    finally:
        os.close(fd)
        os.unlink(path)


def main():
    folder = sys.argv[1] if len(sys.argv) > 1 else "target"
    os.makedirs(folder, exist_ok=True)
    results = {mode: [] for mode in MODES}
    for _ in range(ROUNDS):
        for mode in MODES:
            results[mode].append(one_round(folder, mode))
    for mode in MODES:
        print(f"{mode:10} " + " ".join(f"{us:6.0f}" for us in results[mode]) + "  us a write")


if __name__ == "__main__":
    main()
