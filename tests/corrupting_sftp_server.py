#!/usr/bin/env python3
"""An SFTP server that stores other bytes than it was sent, for tests/integrity.rs: it runs
the command given (OpenSSH's sftp-server) and relays the client's packets to it, and while
the file CONTROL holds the word `flip`, it inverts the first byte of every WRITE at offset 0
before the server sees it. The server then answers OK for data it stores wrongly: a disk or
a server that corrupts silently.

Usage: corrupting_sftp_server.py CONTROL COMMAND ARGS... The server's replies go straight to
this process's standard output. Each flipped byte is counted in CONTROL.flipped (a number,
the file replaced whole), for the test to check the server's side.
"""

import os
import struct
import subprocess
import sys

WRITE = 6


def read_exactly(f, n):
    buf = b""
    while len(buf) < n:
        chunk = f.read(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


def flipping(control):
    try:
        with open(control) as f:
            return "flip" in f.read().split()
    except OSError:
        return False


def count(control):
    path = control + ".flipped"
    try:
        with open(path) as f:
            n = int(f.read() or 0)
    except (OSError, ValueError):
        n = 0
    tmp = "%s.%d" % (path, os.getpid())
    with open(tmp, "w") as f:
        f.write(str(n + 1))
    os.replace(tmp, path)


def main():
    control = sys.argv[1]
    server = subprocess.Popen(sys.argv[2:], stdin=subprocess.PIPE)
    inp = sys.stdin.buffer
    while True:
        head = read_exactly(inp, 4)
        if head is None:
            break
        (length,) = struct.unpack(">I", head)
        body = read_exactly(inp, length)
        if body is None:
            break
        if body[0] == WRITE and flipping(control):
            (hlen,) = struct.unpack(">I", body[5:9])
            at = 9 + hlen
            (offset,) = struct.unpack(">Q", body[at : at + 8])
            data = at + 8 + 4
            if offset == 0 and len(body) > data:
                body = body[:data] + bytes([body[data] ^ 0xFF]) + body[data + 1 :]
                count(control)
        server.stdin.write(head + body)
        server.stdin.flush()
    server.stdin.close()
    server.wait()


if __name__ == "__main__":
    main()
