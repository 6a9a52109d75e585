#!/usr/bin/env python3
"""bench/netns/appimage: an application image for the workload's data=app
mode (docs/workload-data.md) from the memory of a real redis-server.

    python3 bench/netns/appimage.py OUT.img [--keys N] [--max-mib M] [--json]

Starts redis-server (Debian's, scripts/install-deps.sh --net) on a unix socket
in a private directory (no TCP port, no persistence), fills it with N keys
(strings holding JSON-like records, hashes of session fields, lists of log
lines), stops it (SIGSTOP) and captures its private writable memory: every
page of an rw-p mapping that is present or swapped (/proc/PID/pagemap), read
through /proc/PID/mem. Then it lets redis take more writes (a fifth of the
records rewritten, some deleted, new ones added, counters bumped), captures
again, and writes the image: the union of both captures' pages in address
order as the first capture (A; a page only the second has is zero in A), and
the second capture's contents of every page that changed (B). Prints the
image's statistics (pages, zero pages, changed pages) as JSON on stdout.
The redis process is killed and reaped whatever happens.
"""
import argparse
import json
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import zlib

PAGE = 4096
MAGIC, VERSION = 0x3150504152474d4d, 1     # "MMGRAPP1", hv-glue/workload/workload.h
ZERO = bytes(PAGE)


def resp(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


class Redis:
    def __init__(self, sock):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.connect(sock)
        self.pending = 0

    def pipe(self, cmds):
        """Send commands in batches and drain the replies (all must be non-errors)."""
        batch = []
        for c in cmds:
            batch.append(resp(*c))
            if len(batch) == 1000:
                self._flush(batch)
                batch = []
        if batch:
            self._flush(batch)

    def _flush(self, batch):
        self.s.sendall(b"".join(batch))
        want, buf = len(batch), b""
        while want:
            d = self.s.recv(1 << 20)
            if not d:
                raise RuntimeError("redis closed the connection")
            buf += d
            # each reply here is one line (+OK, :n) or a bulk ($n ... ) we skip
            while want:
                nl = buf.find(b"\r\n")
                if nl < 0:
                    break
                if buf[:1] == b"-":
                    raise RuntimeError("redis: " + buf[:nl].decode(errors="replace"))
                if buf[:1] == b"$":
                    n = int(buf[1:nl])
                    end = nl + 2 + (n + 2 if n >= 0 else 0)
                    if len(buf) < end:
                        break
                    buf = buf[end:]
                else:
                    buf = buf[nl + 2:]
                want -= 1


WORDS = ("user session cart item price status ok error timeout region eu-west us-east "
         "GET POST /api/v1/orders /api/v1/users 200 404 500 mobile desktop chrome firefox "
         "paid pending shipped refunded alice bob carol dave eve mallory").split()


def record(rng, i):
    return json.dumps({"id": i, "name": f"{rng.choice(WORDS)}-{rng.randrange(10**6)}",
                       "email": f"u{i}@example.org", "status": rng.choice(WORDS),
                       "score": rng.random() * 1000, "tags": rng.sample(WORDS, 3),
                       "ts": 1764633600 + rng.randrange(10**7)})


def fill(r, rng, keys):
    r.pipe(("SET", f"user:{i}", record(rng, i)) for i in range(keys))
    r.pipe(("HSET", f"session:{i}", "uid", rng.randrange(keys), "ip", f"10.{i % 256}.{i // 256 % 256}.7",
            "agent", rng.choice(WORDS), "cart", rng.randrange(50)) for i in range(keys // 4))
    r.pipe(("RPUSH", f"log:{i % 500}", f"{rng.choice(WORDS)} {rng.choice(WORDS)} id={i} t={rng.random():.6f}")
           for i in range(keys // 2))
    r.pipe(("INCRBY", f"counter:{i % 1000}", rng.randrange(100)) for i in range(keys // 10))


def more_writes(r, rng, keys):
    r.pipe(("SET", f"user:{i}", record(rng, i)) for i in rng.sample(range(keys), keys // 5))
    r.pipe(("DEL", f"user:{i}") for i in rng.sample(range(keys), keys // 50))
    r.pipe(("SET", f"user:{keys + i}", record(rng, keys + i)) for i in range(keys // 20))
    r.pipe(("HSET", f"session:{i}", "cart", rng.randrange(50)) for i in rng.sample(range(keys // 4), keys // 20))
    r.pipe(("INCRBY", f"counter:{i % 1000}", 1) for i in range(keys // 20))


def capture(pid):
    """{address: page bytes} of every present or swapped page of the private writable mappings."""
    pages = {}
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/pagemap", "rb") as pm, \
            open(f"/proc/{pid}/mem", "rb") as mem:
        for ln in maps:
            f = ln.split()
            if f[1] != "rw-p" or (len(f) > 5 and f[5] in ("[vvar]", "[vsyscall]", "[vvar_vclock]")):
                continue
            lo, hi = (int(x, 16) for x in f[0].split("-"))
            pm.seek(lo // PAGE * 8)
            ents = pm.read((hi - lo) // PAGE * 8)
            for k in range(len(ents) // 8):
                e = struct.unpack_from("<Q", ents, k * 8)[0]
                if not e & (3 << 62):      # neither present nor swapped: never touched
                    continue
                a = lo + k * PAGE
                mem.seek(a)
                try:
                    pages[a] = mem.read(PAGE)
                except OSError:
                    continue
    return pages


def build(a_pages, b_pages, max_pages):
    addrs = sorted(set(a_pages) | set(b_pages))[:max_pages]
    A = [a_pages.get(x, ZERO) for x in addrs]
    changed = [(i, b_pages.get(x, ZERO)) for i, x in enumerate(addrs) if b_pages.get(x, ZERO) != A[i]]
    body = b"".join(A) + b"".join(p for _, p in changed)
    idx = b"".join(struct.pack("<Q", i) for i, _ in changed)
    idx += bytes(-len(idx) % PAGE)
    body += idx
    total = PAGE + len(body)
    hdr = struct.pack("<QIIQQQ", MAGIC, VERSION, zlib.crc32(body), len(A), len(changed), total)
    return hdr + bytes(PAGE - len(hdr)) + body, {
        "pages": len(A), "changed": len(changed), "zero_pages_a": sum(1 for p in A if p == ZERO),
        "zero_pages_b": sum(1 for _, p in changed if p == ZERO), "image_bytes": total,
        "captured_pages_1": len(a_pages), "captured_pages_2": len(b_pages), "truncated": len(addrs) < len(
            set(a_pages) | set(b_pages))}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("--keys", type=int, default=300000)
    ap.add_argument("--max-mib", type=int, default=256, help="at most this much of the captured memory")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    exe = shutil.which("redis-server")
    if not exe:
        print("SKIP: redis-server is not installed (scripts/install-deps.sh --net)")
        return 77
    rng = random.Random(a.seed)
    with tempfile.TemporaryDirectory(prefix="migr-redis-") as tmp:
        sock = os.path.join(tmp, "redis.sock")
        p = subprocess.Popen([exe, "--port", "0", "--unixsocket", sock, "--save", "", "--appendonly", "no",
                              "--dir", tmp, "--logfile", os.path.join(tmp, "log")],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        try:
            deadline = time.time() + 20
            while not os.path.exists(sock):
                if p.poll() is not None or time.time() > deadline:
                    raise RuntimeError("redis-server did not start: " + open(os.path.join(tmp, "log")).read()[-300:])
                time.sleep(0.05)
            r = Redis(sock)
            fill(r, rng, a.keys)
            time.sleep(0.3)
            os.kill(p.pid, signal.SIGSTOP)
            c1 = capture(p.pid)
            os.kill(p.pid, signal.SIGCONT)
            more_writes(r, rng, a.keys)
            time.sleep(0.3)
            os.kill(p.pid, signal.SIGSTOP)
            c2 = capture(p.pid)
            os.kill(p.pid, signal.SIGCONT)
        finally:
            p.kill()
            p.wait()
    ver = subprocess.run([exe, "--version"], capture_output=True, text=True).stdout.strip()
    img, st = build(c1, c2, a.max_mib << 20 >> 12)
    with open(a.out + ".tmp", "wb") as f:
        f.write(img)
    os.replace(a.out + ".tmp", a.out)
    st.update({"keys": a.keys, "redis": ver})
    print(json.dumps(st))
    return 0


if __name__ == "__main__":
    sys.exit(main())
