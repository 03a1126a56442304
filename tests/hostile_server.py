#!/usr/bin/env python3
"""An SFTP server that misbehaves on purpose, for tests/hostile_servers.rs (reached with
`-o directport=PORT`).

Each connection is served by OpenSSH's sftp-server (`-d ROOT`) through a relay that breaks
the protocol as the words in the file CONTROL say (read at every packet, so a test switches a
misbehaviour on and off while the mount runs):

  silent       every request is swallowed and nothing is answered; the socket stays open
               (a stuck server). Requests swallowed are never answered, also after.
  endless      READDIR of a directory named `endless` never reaches EOF: 100 new names per
               reply, for ever.
  wrong-id     the replies to READ carry a request id that was never issued.
  long-status  error STATUS replies carry a message of 1,000,000 bytes.
  bad-names    the first READDIR reply of a directory named `badnames` also holds an empty
               name, a 300-byte name, `.`, `..`, a name with a `/` and the same name twice.
  long-read    DATA replies carry 1000 bytes more than the READ asked for (NULs).

Usage: hostile_server.py ROOT CONTROL. Prints the port it listens on (127.0.0.1), then serves
until killed; each connection's sftp-server ends with its connection. What it did is counted
in files beside CONTROL, for the test to check the server's side: CONTROL.endless (names sent
in endless listings), CONTROL.swallowed (requests swallowed while silent).
"""

import os
import socket
import struct
import subprocess
import sys
import threading

SFTP_SERVER = "/usr/lib/openssh/sftp-server"

INIT, VERSION, OPENDIR, READ, READDIR = 1, 2, 11, 5, 12
STATUS, HANDLE, DATA, NAME = 101, 102, 103, 104


class Control:
    """The misbehaviours switched on: the words of the control file, read at every packet
    (the test replaces the file whole, so a change applies from the next packet on)."""

    def __init__(self, path):
        self.path = path

    def has(self, word):
        try:
            with open(self.path) as f:
                return word in f.read().split()
        except OSError:
            return False


class Counter:
    """A number kept in a file (replaced whole at every change)."""

    def __init__(self, path):
        self.path = path
        self.n = 0
        self.lock = threading.Lock()
        self.add(0)

    def add(self, k):
        with self.lock:
            self.n += k
            tmp = self.path + ".tmp"
            with open(tmp, "w") as f:
                f.write(str(self.n))
            os.replace(tmp, self.path)


def read_exact(f, n):
    out = b""
    while len(out) < n:
        try:
            chunk = f.read(n - len(out)) if hasattr(f, "read") else f.recv(n - len(out))
        except OSError:
            return None
        if not chunk:
            return None
        out += chunk
    return out


def read_packet(f):
    head = read_exact(f, 4)
    if head is None:
        return None
    return read_exact(f, struct.unpack(">I", head)[0])


def string(s):
    return struct.pack(">I", len(s)) + s


def u32_at(b, i):
    return struct.unpack(">I", b[i : i + 4])[0]


def string_at(b, i):
    n = u32_at(b, i)
    return b[i + 4 : i + 4 + n], i + 4 + n


# Attributes of a listed entry: size, uid/gid, permissions, times.
FILE_ATTRS = struct.pack(">IQIIIII", 0xF, 0, 0, 0, 0o100644, 1700000000, 1700000000)
LONG_PREFIX = b"-rw-r--r--    1 root     root            0 Nov 14  2023 "


def name_reply(rid, names):
    body = [bytes([NAME]), struct.pack(">II", rid, len(names))]
    for n in names:
        body.append(string(n) + string(LONG_PREFIX + n) + FILE_ATTRS)
    return b"".join(body)


class Relay:
    def __init__(self, conn, root, control, counters):
        self.conn = conn
        self.control = control
        self.counters = counters
        self.server = subprocess.Popen(
            [SFTP_SERVER, "-d", root],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        self.send_lock = threading.Lock()
        self.lock = threading.Lock()
        # id -> (type, handle or path, READ length) of requests passed on
        self.asked = {}
        # handles of directories by name (b"endless", b"badnames")
        self.dirs = {}
        self.endless_next = 0

    def to_client(self, body):
        with self.send_lock:
            try:
                self.conn.sendall(struct.pack(">I", len(body)) + body)
            except OSError:
                pass

    def requests(self):
        while True:
            body = read_packet(self.conn)
            if body is None:
                break
            if self.control.has("silent"):
                self.counters["swallowed"].add(1)
                continue
            kind = body[0]
            if kind != INIT:
                rid = u32_at(body, 1)
                field, _ = string_at(body, 5) if len(body) >= 9 else (b"", 0)
                length = u32_at(body, len(body) - 4) if kind == READ else 0
                if kind == READDIR and self.control.has("endless"):
                    with self.lock:
                        endless = self.dirs.get(field) == b"endless"
                    if endless:
                        self.answer_endless(rid)
                        continue
                with self.lock:
                    self.asked[rid] = (kind, field, length)
            try:
                self.server.stdin.write(struct.pack(">I", len(body)) + body)
                self.server.stdin.flush()
            except OSError:
                break
        try:
            self.server.stdin.close()
        except OSError:
            pass

    def answer_endless(self, rid):
        first = self.endless_next
        self.endless_next += 100
        names = [b"e%010d" % i for i in range(first, first + 100)]
        self.to_client(name_reply(rid, names))
        self.counters["endless"].add(len(names))

    def replies(self):
        bad_names_sent = set()
        while True:
            body = read_packet(self.server.stdout)
            if body is None:
                break
            if self.control.has("silent"):
                continue
            kind = body[0]
            if kind == VERSION:
                self.to_client(body)
                continue
            rid = u32_at(body, 1)
            with self.lock:
                asked_kind, field, length = self.asked.pop(rid, (0, b"", 0))
                if kind == HANDLE:
                    # sftp-server reuses handles: each new one says afresh what it is.
                    handle, _ = string_at(body, 5)
                    name = os.path.basename(field.rstrip(b"/"))
                    if asked_kind == OPENDIR and name in (b"endless", b"badnames"):
                        self.dirs[handle] = name
                    else:
                        self.dirs.pop(handle, None)
                bad_dir = asked_kind == READDIR and self.dirs.get(field) == b"badnames"
            if (
                kind == NAME
                and bad_dir
                and self.control.has("bad-names")
                and field not in bad_names_sent
            ):
                bad_names_sent.add(field)
                body = self.with_bad_names(body)
            if kind == STATUS and self.control.has("long-status"):
                code = u32_at(body, 5)
                if code not in (0, 1):
                    body = body[:9] + string(b"x" * 1_000_000) + string(b"en")
            if kind == DATA and asked_kind == READ and self.control.has("long-read"):
                data, _ = string_at(body, 5)
                body = body[:5] + string(data + b"\0" * (length - len(data) + 1000))
            if asked_kind == READ and self.control.has("wrong-id"):
                body = body[:1] + struct.pack(">I", (rid + 0x40000000) & 0xFFFFFFFF) + body[5:]
            self.to_client(body)
        try:
            self.conn.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def with_bad_names(self, body):
        count = u32_at(body, 5)
        bad = [b"", b"a" * 300, b".", b"..", b"a/b", b"twice", b"twice"]
        extra = name_reply(0, bad)[9:]
        return body[:5] + struct.pack(">I", count + len(bad)) + body[9:] + extra

    def run(self):
        t = threading.Thread(target=self.requests, daemon=True)
        t.start()
        self.replies()
        t.join()
        self.server.kill()
        self.server.wait()
        self.conn.close()


def main():
    root, control = sys.argv[1], Control(sys.argv[2])
    counters = {n: Counter(sys.argv[2] + "." + n) for n in ("endless", "swallowed")}
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    print(listener.getsockname()[1], flush=True)
    while True:
        conn, _ = listener.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        relay = Relay(conn, root, control, counters)
        threading.Thread(target=relay.run, daemon=True).start()


if __name__ == "__main__":
    main()
