#!/usr/bin/python3
# SPDX-License-Identifier: MIT
# SPDX-FileCopyrightText: sakura-cpp authors
"""Reads every events.out.tfevents.* file of a log folder the way TensorBoard does and checks that its
scalars are exactly the lines of losses.tsv there (same tags, steps and float32 values, in order).

Independent of the C++ writer: the records are decoded by protobuf's Python runtime from
tensorboard_event.proto (compiled here with protoc), CRC32C is a bitwise implementation checked
against RFC 3720's vectors, and a SessionLog START at step s drops what earlier files logged at steps
>= s, as TensorBoard's purge does. Usage: check_tfevents.py LOG_DIR [EXPECTED_FILES]
"""
import glob
import importlib
import os
import struct
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))


def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def masked(data):
    c = crc32c(data)
    return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def check_rfc3720():
    assert crc32c(bytes(32)) == 0x8A9136AA
    assert crc32c(b"\xff" * 32) == 0x62A8AB43
    assert crc32c(bytes(range(32))) == 0x46DD794E
    assert crc32c(bytes(range(31, -1, -1))) == 0x113FDB5C


_PB = []


def load_proto():
    if _PB:
        return _PB[0]
    out = tempfile.mkdtemp()
    subprocess.run(["protoc", "-I" + HERE, "--python_out=" + out, os.path.join(HERE, "tensorboard_event.proto")],
                   check=True)
    sys.path.insert(0, out)
    _PB.append(importlib.import_module("tensorboard_event_pb2"))
    return _PB[0]


def records(path):
    with open(path, "rb") as f:
        data = f.read()
    pos = 0
    while pos < len(data):
        header = data[pos:pos + 8]
        (length,) = struct.unpack("<Q", header)
        (len_crc,) = struct.unpack("<I", data[pos + 8:pos + 12])
        assert len_crc == masked(header), "%s@%d: bad length CRC" % (path, pos)
        body = data[pos + 12:pos + 12 + length]
        (body_crc,) = struct.unpack("<I", data[pos + 12 + length:pos + 16 + length])
        assert len(body) == length and body_crc == masked(body), "%s@%d: bad data CRC" % (path, pos)
        pos += 16 + length
        yield body


def file_order(path):
    # events.out.tfevents.<time>.<host>.<pid>.<n>: by time, then pid and counter
    parts = os.path.basename(path).split(".")
    return (int(parts[3]), int(parts[-2]), int(parts[-1]))


def check(log_dir, n_files=None):
    check_rfc3720()
    pb = load_proto()
    files = sorted(glob.glob(os.path.join(log_dir, "events.out.tfevents.*")), key=file_order)
    if n_files is not None:
        assert len(files) == n_files, "expected %d event files, found %d" % (n_files, len(files))
    assert files, "no event files in " + log_dir
    scalars = []  # (step, tag, value bits)
    for path in files:
        for i, body in enumerate(records(path)):
            ev = pb.Event()
            ev.ParseFromString(body)
            assert ev.wall_time > 1.5e9, "%s record %d: wall_time %r" % (path, i, ev.wall_time)
            if i == 0:
                assert ev.file_version == "brain.Event:2", "%s: first event is not file_version" % path
                continue
            if ev.HasField("session_log"):
                assert ev.session_log.status == pb.SessionLog.START
                scalars = [s for s in scalars if s[0] < ev.step]
                continue
            assert ev.HasField("summary") and len(ev.summary.value) == 1, "%s record %d" % (path, i)
            v = ev.summary.value[0]
            assert v.HasField("simple_value")
            scalars.append((ev.step, v.tag, struct.pack("<f", v.simple_value)))
    expected = []
    with open(os.path.join(log_dir, "losses.tsv")) as f:
        assert f.readline() == "tick\tname\tvalue\n"
        for line in f:
            tick, name, value = line.rstrip("\n").split("\t")
            expected.append((int(tick), name, struct.pack("<f", float(value))))
    assert scalars == expected, "event files and losses.tsv differ: %d vs %d scalars, first difference %r" % (
        len(scalars), len(expected), next(((a, b) for a, b in zip(scalars, expected) if a != b), None))
    print("%d event files, %d scalars equal to losses.tsv" % (len(files), len(scalars)))


if __name__ == "__main__":
    check(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else None)
