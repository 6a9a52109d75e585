#!/usr/bin/env python3
"""A TCP proxy between a migr source and destination that can lose the
post-copy fault channel silently (tests/it_postcopy_links.sh).

  fault_proxy.py LISTEN_PORT TARGET_PORT OUT_ADDR [--stall-fch-after BYTES]
                 [--partition-after SECONDS]

Listens on 127.0.0.2:LISTEN_PORT and forwards each connection to
127.0.0.1:TARGET_PORT from OUT_ADDR (so the destination sees OUT_ADDR as its
peer). The post-copy fault channel is a second connection from the
source the same way (docs/transport.md, "Side connections"; it begins with
the side hello "MIGRSID1"), forwarded like the first. (A revision 1.3
source announced a port to connect back to in FAULT_CHANNEL kind 2: the
proxy parses the record stream for it and forwards that too.) With
--stall-fch-after N, after N bytes of answers
(source to destination) on the fault channel it stops forwarding them, keeping
both connections open: the link looks alive and carries nothing. With
--partition-after T, T seconds after the first connection every connection
stops forwarding both ways (a network partition: nothing closes). Prints
"listening" once ready; runs until killed.
"""
import socket
import struct
import sys
import threading
import time

REC_FAULT_CHANNEL = 16
PARTITION_AT = None  # time.monotonic() after which nothing is forwarded


def partitioned():
    return PARTITION_AT is not None and time.monotonic() >= PARTITION_AT


def pump(src, dst, limit=None):
    """Copy src to dst; after `limit` bytes stop copying (and keep reading)."""
    sent = 0
    try:
        while True:
            b = src.recv(65536)
            if not b:
                break
            if partitioned():
                while src.recv(65536):  # swallow, never close
                    pass
                return
            if limit is not None and sent + len(b) > limit:
                b = b[: max(0, limit - sent)]
            if b:
                dst.sendall(b)
                sent += len(b)
            if limit is not None and sent >= limit:
                while src.recv(65536):  # the silent part: swallow, never answer
                    pass
                return
    except OSError:
        pass
    for s in (dst, src):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def read_exact(s, n, out):
    buf = b""
    while len(buf) < n:
        b = s.recv(n - len(buf))
        if not b:
            raise EOFError
        buf += b
    out.sendall(buf)
    return buf


def fch_forward(out_addr, port, stall):
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((out_addr, port))
    ls.listen(1)

    def serve():
        d, _ = ls.accept()
        s = socket.create_connection(("127.0.0.1", port))
        threading.Thread(target=pump, args=(d, s), daemon=True).start()
        threading.Thread(target=pump, args=(s, d, stall), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()


def main_stream(src, dst, out_addr, stall):
    """Source to destination on the main connection: find FAULT_CHANNEL, then copy."""
    try:
        read_exact(src, 16, dst)  # preamble
        while True:
            hdr = src.recv(12, socket.MSG_PEEK | socket.MSG_WAITALL)
            if len(hdr) < 12:
                break
            rtype, _, meta_len, bulk_len = struct.unpack("<HHII", hdr)
            if rtype == REC_FAULT_CHANNEL:
                meta = src.recv(12 + 8, socket.MSG_PEEK | socket.MSG_WAITALL)[12:]
                kind, port = struct.unpack("<II", meta)
                if kind == 2:  # tcp: be there before the destination connects
                    fch_forward(out_addr, port, stall)
                read_exact(src, 12 + meta_len + 4 + bulk_len, dst)
                break
            read_exact(src, 12 + meta_len + 4 + bulk_len, dst)
    except (EOFError, OSError):
        pass
    pump(src, dst)


def main():
    lport, tport, out_addr = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    global PARTITION_AT
    stall = None
    part = None
    if "--partition-after" in sys.argv:
        part = float(sys.argv[sys.argv.index("--partition-after") + 1])
    if "--stall-fch-after" in sys.argv:
        stall = int(sys.argv[sys.argv.index("--stall-fch-after") + 1])
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.2", lport))
    ls.listen(4)
    print("listening", flush=True)
    while True:
        c, _ = ls.accept()
        if part is not None and PARTITION_AT is None:
            PARTITION_AT = time.monotonic() + part
        d = socket.socket()
        d.bind((out_addr, 0))
        d.connect(("127.0.0.1", tport))
        if c.recv(8, socket.MSG_PEEK | socket.MSG_WAITALL) == b"MIGRSID1":
            # the fault channel: the source's answers travel c -> d
            threading.Thread(target=pump, args=(c, d, stall), daemon=True).start()
            threading.Thread(target=pump, args=(d, c), daemon=True).start()
            continue
        threading.Thread(target=main_stream, args=(c, d, out_addr, stall), daemon=True).start()
        threading.Thread(target=pump, args=(d, c), daemon=True).start()


if __name__ == "__main__":
    main()
