"""bench/netns links: two network namespaces joined by a shaped veth link.

    with Link("1G-10ms", build) as L:   # creates the namespaces, removes them on exit
        L.src_argv(["migr", "run", ...])  # argv prefixed with `ip netns exec SRC`
        L.dst_ip                          # the destination's address (10.77.<n>.2)

What this kernel offers, probed by probe(): namespaces, veth, the tbf qdisc,
the ingress qdisc and cls_bpf in direct-action mode; not netem, not matchall,
not the gact action. So:
  - rate: tbf on each end's egress (both directions shaped);
  - RTT: a middle namespace with a user-space delay line (delayline.c)
    bridging two veth pairs, half the RTT each way;
  - loss: a cls_bpf direct-action filter (drop.bpf.c) on each end's ingress,
    one packet in 1000 at random, with GSO capped at one MTU on the ends so
    a "packet" is a wire-sized segment, not a 64 KiB TSO burst; without
    clang or cls_bpf the delay line drops instead (delay 0).
Addresses are 10.77.N.1 (source) and 10.77.N.2 (destination), only inside
the namespaces; nothing is routed to or from the host's own namespace.
"""
import os
import shutil
import subprocess
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))

# name: (rate in Mbit/s, RTT ms, loss per million)
LINKS = {
    "1G": (1000, 0, 0),
    "10G": (10000, 0, 0),
    "1G-10ms": (1000, 10, 0),
    "1G-loss0.1%": (1000, 0, 1000),
    "10G-10ms": (10000, 10, 0),
    "10G-loss0.1%": (10000, 0, 1000),
}


def sh(*argv, check=True):
    r = subprocess.run(list(argv), capture_output=True, text=True)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {(r.stderr or r.stdout).strip()}")
    return r


def can_admin():
    """None if we may create namespaces and shape links, else why not."""
    if not shutil.which("ip") or not shutil.which("tc"):
        return "ip/tc (iproute2) not installed"
    name = f"migr-probe-{os.getpid()}"
    r = sh("ip", "netns", "add", name, check=False)
    if r.returncode != 0:
        return f"cannot create a network namespace (needs CAP_NET_ADMIN): {r.stderr.strip()}"
    sh("ip", "netns", "del", name, check=False)
    return None


def build_bpf(build, loss_ppm):
    """The loss filter object, or None with why not."""
    clang = shutil.which("clang")
    if not clang:
        return None, "clang not installed (no BPF loss filter)"
    out = os.path.join(build, f"bench/netns/drop{loss_ppm}.o")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    r = sh(clang, "-O2", "-target", "bpf", f"-DLOSS_PER_MILLION={loss_ppm}", "-c",
           os.path.join(HERE, "drop.bpf.c"), "-o", out, check=False)
    if r.returncode != 0:
        return None, "clang -target bpf failed: " + r.stderr.strip()[-200:]
    return out, None


class Link:
    count = 0

    def __init__(self, name, build):
        self.name, self.build = name, build
        self.rate, self.rtt, self.loss = LINKS[name]
        Link.count += 1
        n = (os.getpid() + Link.count) % 200 + 20
        tag = f"{os.getpid()}-{Link.count}"
        self.src, self.dst, self.mid = f"migr-src-{tag}", f"migr-dst-{tag}", f"migr-mid-{tag}"
        self.src_ip, self.dst_ip = f"10.77.{n}.1", f"10.77.{n}.2"
        self.created, self.relay, self.notes = [], None, []

    def ns(self, ns, *argv, check=True):
        return sh("ip", "netns", "exec", ns, *argv, check=check)

    def src_argv(self, argv):
        return ["ip", "netns", "exec", self.src] + list(argv)

    def dst_argv(self, argv):
        return ["ip", "netns", "exec", self.dst] + list(argv)

    def __enter__(self):
        try:
            self._create()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *a):
        self.close()

    def _veth(self, a, a_ns, b, b_ns):
        sh("ip", "link", "add", a, "netns", a_ns, "type", "veth", "peer", "name", b, "netns", b_ns)

    def _shape(self, ns, dev):
        # burst: at least 1 ms of the rate (tbf needs rate/HZ) and a 64 KiB GSO frame
        burst = max(self.rate * 1000 // 8, 128 * 1024)
        self.ns(ns, "tc", "qdisc", "add", "dev", dev, "root", "tbf", "rate", f"{self.rate}mbit",
                "burst", str(burst), "latency", "20ms")

    def _create(self):
        for n in (self.src, self.dst) + ((self.mid,) if self.rtt or self.loss_in_relay() else ()):
            sh("ip", "netns", "add", n)
            self.created.append(n)
            self.ns(n, "ip", "link", "set", "lo", "up")
        if self.rtt or self.loss_in_relay():
            self._veth("vs", self.src, "m1", self.mid)
            self._veth("vd", self.dst, "m2", self.mid)
            for d in ("m1", "m2"):
                self.ns(self.mid, "ip", "link", "set", d, "up")
        else:
            self._veth("vs", self.src, "vd", self.dst)
        self.ns(self.src, "ip", "addr", "add", f"{self.src_ip}/24", "dev", "vs")
        self.ns(self.dst, "ip", "addr", "add", f"{self.dst_ip}/24", "dev", "vd")
        for ns, d in ((self.src, "vs"), (self.dst, "vd")):
            if self.loss:
                # one wire-sized segment per skb, so a dropped packet is one segment
                self.ns(ns, "ip", "link", "set", "dev", d, "gso_max_size", "1500", "gro_max_size", "1500",
                        check=False)
            self.ns(ns, "ip", "link", "set", d, "up")
            self._shape(ns, d)
        if self.loss and not self.loss_in_relay():
            for ns, d in ((self.src, "vs"), (self.dst, "vd")):
                self.ns(ns, "tc", "qdisc", "add", "dev", d, "ingress")
                self.ns(ns, "tc", "filter", "add", "dev", d, "parent", "ffff:", "bpf", "da", "obj", self._bpf,
                        "sec", "classifier")
            self.notes.append(f"loss: cls_bpf filter, {self.loss} per million packets, each end's ingress")
        if self.rtt or self.loss_in_relay():
            exe = os.path.join(self.build, "bench/netns/delayline")
            log = tempfile.NamedTemporaryFile(prefix="migr-delayline-", suffix=".log", delete=False)
            self.relay_log = log.name
            argv = ["ip", "netns", "exec", self.mid, exe, "m1", "m2", str(self.rtt * 500)]
            if self.loss_in_relay():
                argv.append(str(self.loss))
                self.notes.append(f"loss: the delay line drops {self.loss} per million frames ({self._why_relay})")
            self.relay = subprocess.Popen(argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
            log.close()
            if self.rtt:
                self.notes.append(f"RTT: user-space delay line, {self.rtt / 2:g} ms each way")
        self._wait_up()

    _bpf_checked = {}

    def loss_in_relay(self):
        """Loss through the delay line only when the BPF filter cannot be built or loaded."""
        if not self.loss:
            return False
        if self.loss not in Link._bpf_checked:
            obj, why = build_bpf(self.build, self.loss)
            if obj and not self._bpf_loads(obj):
                obj, why = None, "tc cls_bpf does not load here"
            Link._bpf_checked[self.loss] = (obj, why)
        self._bpf, self._why_relay = Link._bpf_checked[self.loss]
        return self._bpf is None

    def _bpf_loads(self, obj):
        name = f"migr-bpfprobe-{os.getpid()}"
        try:
            sh("ip", "netns", "add", name)
            sh("ip", "netns", "exec", name, "tc", "qdisc", "add", "dev", "lo", "ingress")
            return sh("ip", "netns", "exec", name, "tc", "filter", "add", "dev", "lo", "parent", "ffff:",
                      "bpf", "da", "obj", obj, "sec", "classifier", check=False).returncode == 0
        except RuntimeError:
            return False
        finally:
            sh("ip", "netns", "del", name, check=False)

    def _wait_up(self):
        """Until a TCP connection crosses the link (the delay line is running, ARP resolved)."""
        code = ("import socket,sys\ns=socket.socket();s.bind(('%s',0));s.listen(1);print(s.getsockname()[1],"
                "flush=True);c,_=s.accept();c.sendall(b'x')" % self.dst_ip)
        srv = subprocess.Popen(self.dst_argv(["python3", "-c", code]), stdout=subprocess.PIPE, text=True)
        try:
            port = int(srv.stdout.readline())
            deadline = time.time() + 10
            while time.time() < deadline:
                r = self.ns(self.src, "python3", "-c", "import socket;s=socket.create_connection(('%s',%d),1);"
                            "assert s.recv(1)==b'x'" % (self.dst_ip, port), check=False)
                if r.returncode == 0:
                    return
                if self.relay and self.relay.poll() is not None:
                    raise RuntimeError("delay line exited: " + open(self.relay_log).read()[-300:])
                time.sleep(0.2)
            raise RuntimeError(f"link {self.name}: no TCP connection across it within 10 s")
        finally:
            srv.kill()
            srv.wait()

    def wire_bytes(self):
        """Bytes the source's end has sent onto the link so far (IP and TCP headers included)."""
        r = self.ns(self.src, "cat", "/sys/class/net/vs/statistics/tx_bytes", check=False)
        return int(r.stdout) if r.returncode == 0 and r.stdout.strip() else 0

    def relay_stats(self):
        if not self.relay:
            return ""
        try:
            return open(self.relay_log).read().strip()
        except OSError:
            return ""

    def close(self):
        if self.relay:
            if self.relay.poll() is None:
                self.relay.terminate()
                try:
                    self.relay.wait(5)
                except subprocess.TimeoutExpired:
                    self.relay.kill()
                    self.relay.wait()
            self.relay_text = self.relay_stats()
            try:
                os.unlink(self.relay_log)
            except OSError:
                pass
            self.relay = None
        for n in reversed(self.created):
            sh("ip", "netns", "del", n, check=False)   # its veths go with it
        self.created = []


def measure(link, seconds=2.0):
    """TCP goodput (MB/s) and connect RTT (ms) across the link, one stream."""
    code_srv = ("import socket,time\ns=socket.socket();s.bind(('%s',0));s.listen(1);print(s.getsockname()[1],"
                "flush=True);c,_=s.accept();n=0;t=time.time()\nwhile True:\n d=c.recv(1<<20)\n if not d: break\n"
                " n+=len(d)\nprint(n/(time.time()-t)/1e6,flush=True)" % link.dst_ip)
    srv = subprocess.Popen(link.dst_argv(["python3", "-c", code_srv]), stdout=subprocess.PIPE, text=True)
    try:
        port = int(srv.stdout.readline())
        code_cli = ("import socket,time\nt=time.time();s=socket.create_connection(('%s',%d));rtt=time.time()-t\n"
                    "b=bytes(1<<20);e=time.time()+%f\nwhile time.time()<e: s.sendall(b)\ns.close();print(rtt*1e3)"
                    % (link.dst_ip, port, seconds))
        r = link.ns(link.src, "python3", "-c", code_cli)
        rtt = float(r.stdout.strip())
        mbps = float(srv.stdout.readline())
        return mbps, rtt
    finally:
        srv.kill()
        srv.wait()
