#!/usr/bin/env python3
"""A port forward into a network namespace (tests/it_postcopy_nat.sh).

  netns_forward.py NETNS TARGET_PORT

Listens on 127.0.0.1 (any port) *inside* the network namespace NETNS
(/run/netns/NETNS, made by `ip netns add`) and forwards each connection to
127.0.0.1:TARGET_PORT of the namespace it was started in. A process in
NETNS reaches the target only through this forward, and nothing in the
starting namespace can reach NETNS at all: what a source behind NAT sees.
Prints the port, then "listening"; runs until killed.
"""
import ctypes
import os
import socket
import sys
import threading

CLONE_NEWNET = 0x40000000


def setns(fd):
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


def pump(src, dst):
    try:
        while True:
            b = src.recv(65536)
            if not b:
                break
            dst.sendall(b)
    except OSError:
        pass
    for s in (dst, src):
        try:
            s.shutdown(socket.SHUT_WR if s is dst else socket.SHUT_RD)
        except OSError:
            pass


def main():
    name, tport = sys.argv[1], int(sys.argv[2])
    home = os.open("/proc/self/ns/net", os.O_RDONLY)
    inner = os.open("/run/netns/" + name, os.O_RDONLY)
    setns(inner)  # this thread only: the listening socket is made in NETNS
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(8)
    setns(home)   # the connections to the target are made at home
    print(ls.getsockname()[1], flush=True)
    print("listening", flush=True)
    while True:
        c, _ = ls.accept()
        try:
            d = socket.create_connection(("127.0.0.1", tport))
        except OSError:
            c.close()
            continue
        threading.Thread(target=pump, args=(c, d), daemon=True).start()
        threading.Thread(target=pump, args=(d, c), daemon=True).start()


if __name__ == "__main__":
    main()
