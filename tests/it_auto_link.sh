#!/bin/bash
# auto on a 1 Gbit/s link: a guest of compressible pages (data=text) migrated
# with the default codec between two network namespaces joined by a veth pair
# shaped with tbf to 1 Gbit/s (bench/netns/links.py). The link is ~10x slower
# than lz4 on a page, so auto must compress: at most three quarters of the pages
# it sends may go RAW (the old estimator, flush bytes over flush time, read the
# socket buffer at memory speed and sent nearly all of them RAW), and the link
# estimate it reports must be within 0.5-12x of 125 MB/s (the old one read 4 400 MB/s and
# sent 98% RAW; the new one, on a loaded machine, 210 MB/s and ~50% RAW:
# the first rounds go before TCP has said the link is the limit). --mode precopy:
# the default tail mode's fault channel fails between these namespaces.
# Exit 0 pass, 1 fail, 77 skip (no CAP_NET_ADMIN, no /dev/kvm).
set -u
. "$(dirname "$0")/itlib.sh"
need_kvm
it_setup auto-link
python3 - "$MIGR" "$DIR" "$(dirname "$0")/../bench/netns" "$(dirname "$MIGR")" <<'PY'
import json, os, subprocess, sys, time
migr, d, netns, build = sys.argv[1:5]
sys.path.insert(0, netns)
import links
why = links.can_admin()
if why:
    print(f"SKIP: {why}")
    sys.exit(77)
procs = []
key = f"{d}/link.key"
fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
os.write(fd, os.urandom(32).hex().encode())
os.close(fd)
try:
    with links.Link("1G", build) as L:
      # one stream, and four channels: then each socket carries a quarter of the
      # link, and the estimate must be their sum (engine/encode.c, delivery_rate)
      for run, query in enumerate(("", "?channels=4")):
          sctl, dctl = f"{d}/src{run}.ctl", f"{d}/dst{run}.ctl"
          slog, dlog = open(f"{d}/src{run}.log", "w"), open(f"{d}/dst{run}.log", "w")
          src = subprocess.Popen(L.src_argv([migr, "run", "--mem", "128M", "--workload",
                                             "rate=8M,data=text,seed=3", "--ctl", sctl]), stderr=slog)
          procs.append(src)
          url = f"tcp:{L.dst_ip}:{7399 + run}{query}"
          procs.append(subprocess.Popen(L.dst_argv([migr, "recv", "--listen", url, "--ctl", dctl,
                                                    "--key-file", key, "--timeout", "60"]), stderr=dlog))
          for _ in range(300):
              if "listening on" in open(f"{d}/dst{run}.log").read():
                  break
              time.sleep(0.05)
          for _ in range(300):
              s = subprocess.run([migr, "status", "--ctl", sctl], capture_output=True, text=True)
              if s.returncode == 0 and json.loads(s.stdout or "{}").get("writes", 0) > 0:
                  break
              if src.poll() is not None:
                  print("SKIP: migr run cannot start a guest here: " + open(f"{d}/src{run}.log").read()[-200:])
                  sys.exit(77)
              time.sleep(0.1)
          else:
              sys.exit("FAIL: the guest did not start")
          time.sleep(0.5)
          r = subprocess.run([migr, "send", "--ctl", sctl, "--to", url, "--key-file", key, "--json", "--mode", "precopy"], capture_output=True, text=True,
                             timeout=120)
          js = json.loads(r.stdout.strip().splitlines()[-1]) if r.stdout.strip() else {}
          if not js.get("ok"):
              sys.exit(f"FAIL: migr send: {js.get('error') or r.stderr[-300:]}")
          pages = {k: v.get("pages", 0) for k, v in (js.get("codecs") or {}).items()}
          sent = sum(n for k, n in pages.items() if k != "zero")
          raw = pages.get("raw", 0)
          link = js.get("link_mbps") or 0
          print(f"auto on 1G{query}: codecs {pages}, link estimate {link:.0f} MB/s, total {js.get('total_ms')} ms")
          if sent == 0 or raw > sent * 3 / 4:
              sys.exit(f"FAIL: auto sent {raw} of {sent} non-zero pages RAW on a 1 Gbit/s link")
          # The reported estimate is TCP's last delivery-rate sample: on a loaded
          # machine one ACK burst has read ~1 000 MB/s (twice in ~20 runs) while the
          # codec mix stayed right; the old estimator read ~4 400. The decisive
          # check is the RAW share above.
          if not 62 <= link <= 1500:
              sys.exit(f"FAIL: link estimate {link:.0f} MB/s on a 125 MB/s link ({query or 'one stream'})")
          v = subprocess.run([migr, "verify", "--ctl", dctl], capture_output=True, text=True, timeout=60)
          if v.returncode != 0:
              sys.exit(f"FAIL: the guest does not verify on the destination: {v.stdout[-200:]}{v.stderr[-200:]}")
          subprocess.run([migr, "stop", "--ctl", dctl], capture_output=True, timeout=20)
finally:
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait()
PY
exit $?
