"""A record-aware relay for migration streams over unix sockets or TCP
(docs/format.md).

The source connects to the relay's path; the relay connects to the
destination's and copies both directions on a thread each, parsing the
framing: the source's 16-byte preamble, then records (12-byte header
u16 type, u16 flags, u32 meta_len, u32 bulk_len; meta; 4-byte CRC; bulk).
Descriptor messages (the byte after MEMFD and after a unix FAULT_CHANNEL)
are passed on with their descriptors; a post-copy fault channel is
interposed (unix: a socketpair of our own goes to the destination; TCP: it
is a second connection to the relay), so that a cut or a stall reaches it
too.

One trigger per relay: a predicate on (channel, direction, record) is
tested before each record is forwarded; the first record it accepts is
held while the trigger's action runs (a kill, a stop, a cut ...), so the
fault lands exactly at that record. The action may ask the relay to
corrupt the held record, to cut every connection, or to stall (forward
nothing, close nothing) for a while and then cut.

A cut ends the connections that exist (a link that broke); connections made
after it pass again (a source settling its doubt reconnects: settle.h). A
stall holds every connection, new ones too, until it ends; a partition is a
stall that never ends.
"""
import array
import os
import socket
import struct
import threading
import time

HELLO, PAGES, STATE, ROUND_END, SWITCHOVER, READY, COMMIT, DONE, ERROR, MEMFD, \
    PAGE_REQ, DISCARD, COMPLETE, EPOCH_END, CANCEL, FAULT_CHANNEL, EPOCH_ACK, SETTLE, SETTLED = range(1, 20)
NAMES = {v: k for k, v in dict(HELLO=1, PAGES=2, STATE=3, ROUND_END=4, SWITCHOVER=5, READY=6,
                                COMMIT=7, DONE=8, ERROR=9, MEMFD=10, PAGE_REQ=11, DISCARD=12,
                                COMPLETE=13, EPOCH_END=14, CANCEL=15, FAULT_CHANNEL=16,
                                EPOCH_ACK=17, SETTLE=18, SETTLED=19).items()}
TO_DST, TO_SRC = "to_dst", "to_src"


class Record:
    def __init__(self, hdr, meta, crc, bulk):
        self.type, self.flags, self.meta_len, self.bulk_len = struct.unpack("<HHII", hdr)
        self.hdr, self.meta, self.crc, self.bulk = hdr, bytearray(meta), crc, bulk

    def pages(self):
        """PAGES: (round, [(pfn, npages)]) of its entries (ZERO runs count n pages)."""
        rnd, count = struct.unpack_from("<II", self.meta, 0)
        out = []
        for i in range(min(count, (len(self.meta) - 8) // 24)):
            pfn, enc, ln = struct.unpack_from("<QB3xI", self.meta, 8 + 24 * i)
            out.append((pfn, ln if enc == 1 else 1))
        return rnd, out

    def wire(self):
        return [self.hdr, bytes(self.meta), self.crc, self.bulk]


class Cut(Exception):
    pass


class Relay:
    def __init__(self, listen_path, target_path, trigger=None, log=None):
        self.listen_path, self.target_path = listen_path, target_path
        self.trigger = trigger          # fn(relay, chan, dir, rec) -> None | action dict
        self.fired = None               # (chan, dir, record name, time) of the trigger
        self.fire_lock = threading.Lock()
        self.socks = []
        self.cut = False
        self.gen = 0                    # cut_all() ends the connections of the generations before
        self.stall_until = None
        self.log = log or (lambda *a: None)
        self.stats = {"records": 0}
        # a path (unix) or a (host, port) pair (TCP; port 0: pick one, self.url says which)
        self.family = socket.AF_INET if isinstance(listen_path, tuple) else socket.AF_UNIX
        self.ls = socket.socket(self.family, socket.SOCK_STREAM)
        self.ls.bind(listen_path)
        self.ls.listen(4)
        if self.family == socket.AF_INET:
            self.url = "tcp:%s:%d" % self.ls.getsockname()
        else:
            self.url = "unix:" + listen_path
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    # -- plumbing -----------------------------------------------------------
    def _accept(self):
        try:
            while True:
                c, _ = self.ls.accept()
                d = socket.socket(self.family, socket.SOCK_STREAM)
                try:
                    d.connect(self.target_path)
                except OSError:
                    c.close()
                    continue
                self.socks += [c, d]
                self.stats["connections"] = self.stats.get("connections", 0) + 1
                # TCP: the fault channel is a second connection from the
                # source, opened the same way; it starts with a side hello
                # (8-byte magic, 8-byte cookie; docs/transport.md)
                first = c.recv(8, socket.MSG_PEEK | socket.MSG_WAITALL) if self.family == socket.AF_INET else b""
                if first == b"MIGRSID1":
                    self._send(d, [self._read(c, 16)], self.gen)
                    self._pump_pair("fch", c, d)
                    continue
                self._pump_pair("main", c, d)
        except OSError:
            pass

    def _pump_pair(self, chan, src_side, dst_side):
        gen = self.gen
        threading.Thread(target=self._pump, args=(chan, TO_DST, src_side, dst_side, chan == "main", gen),
                         daemon=True).start()
        threading.Thread(target=self._pump, args=(chan, TO_SRC, dst_side, src_side, False, gen),
                         daemon=True).start()

    def close(self):
        self.cut_all()
        try:
            self.ls.close()
        except OSError:
            pass
        if self.family == socket.AF_UNIX:
            try:
                os.unlink(self.listen_path)
            except OSError:
                pass

    def cut_all(self):
        self.cut = True
        self.gen += 1
        for s in list(self.socks):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _wait_stall(self, gen):
        while self.stall_until is not None and gen == self.gen:
            if time.monotonic() >= self.stall_until:
                self.stall_until = None
                self.cut_all()
                break
            time.sleep(0.02)
        if gen != self.gen:
            raise Cut()

    def _read(self, s, n):
        buf = bytearray()
        while len(buf) < n:
            b = s.recv(min(n - len(buf), 1 << 20))
            if not b:
                raise EOFError
            buf += b
        return bytes(buf)

    def _send(self, s, parts, gen, fds=None):
        self._wait_stall(gen)
        if fds:
            s.sendmsg([b"".join(parts)], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))])
        else:
            for p in parts:
                if p:
                    s.sendall(p)

    def _recv_fds(self, s):
        fds = array.array("i")
        msg, anc, _, _ = s.recvmsg(1, socket.CMSG_LEN(64 * fds.itemsize))
        if not msg:
            raise EOFError
        for level, typ, data in anc:
            if level == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
                fds.frombytes(data[: len(data) - (len(data) % fds.itemsize)])
        return msg, list(fds)

    def _pump(self, chan, direction, src, dst, preamble, gen):
        try:
            if preamble:
                self._send(dst, [self._read(src, 16)], gen)
            while True:
                self._wait_stall(gen)
                hdr = self._read(src, 12)
                _, _, meta_len, bulk_len = struct.unpack("<HHII", hdr)
                meta = self._read(src, meta_len) if meta_len else b""
                crc = self._read(src, 4)
                bulk = self._read(src, bulk_len) if bulk_len else b""
                rec = Record(hdr, meta, crc, bulk)
                self.stats["records"] += 1
                act = None
                if self.trigger and self.fired is None:
                    with self.fire_lock:
                        if self.fired is None and self.trigger.match(self, chan, direction, rec):
                            self.fired = (chan, direction, NAMES.get(rec.type, str(rec.type)), time.monotonic())
                            act = self.trigger.fire(self, rec)
                if act == "corrupt":
                    if rec.bulk:
                        b = bytearray(rec.bulk)
                        b[len(b) // 2] ^= 0x01
                        rec.bulk = bytes(b)
                    elif rec.meta:
                        rec.meta[len(rec.meta) // 2] ^= 0x01
                    else:
                        rec.crc = bytes([rec.crc[0] ^ 1]) + rec.crc[1:]
                if self.trigger:
                    self.trigger.observe(self, chan, direction, rec)
                self._send(dst, rec.wire(), gen)
                if chan == "main" and direction == TO_DST and rec.type in (MEMFD, FAULT_CHANNEL):
                    kind = struct.unpack_from("<I", rec.meta, 0)[0] if rec.type == FAULT_CHANNEL else 1
                    if kind == 1:
                        self._pass_fds(src, dst, rec.type, gen)
        except (EOFError, OSError, Cut):
            pass
        for s in (dst, src):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _pass_fds(self, src, dst, rtype, gen):
        msg, fds = self._recv_fds(src)
        if rtype == FAULT_CHANNEL and len(fds) == 1:
            # interpose the fault channel: the destination gets our end
            a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            theirs = socket.socket(fileno=fds[0])
            self.socks += [a, theirs]
            self._send(dst, [msg], gen, [b.fileno()])
            b.close()
            self._pump_pair("fch", theirs, a)
            return
        self._send(dst, [msg], gen, fds)
        for fd in fds:
            os.close(fd)
