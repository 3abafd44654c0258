#!/usr/bin/env python3
"""Slowloris by hand: opens N connections to a running agentd that send half a request and
stall, checks that /health is still answered meanwhile, then counts how many the server closed
after WAIT seconds (HTTP_IDLE_TIMEOUT_S). Usage: slowloris.py PORT N WAIT"""
import socket, sys, time, urllib.request
port = int(sys.argv[1]); n = int(sys.argv[2])
socks = []
t0 = time.time()
for i in range(n):
    s = socket.socket(); s.setblocking(True)
    try:
        s.connect(("127.0.0.1", port))
        s.send(b"GET /health HTTP/1.1\r\nHost: x\r\n")  # headers never finished
        socks.append(s)
    except OSError as e:
        print("connect failed at", i, e); break
print(f"opened {len(socks)} stalled connections in {time.time()-t0:.1f}s")
lat = []
for i in range(20):
    t = time.time()
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=10) as r:
        assert r.status == 200
    lat.append(time.time() - t)
lat.sort()
print(f"health while stalled: 20/20 ok, p50 {lat[10]*1000:.1f} ms, max {lat[-1]*1000:.1f} ms")
time.sleep(float(sys.argv[3]))
alive = 0
for s in socks:
    try:
        s.settimeout(0.001)
        d = s.recv(1)
        if d: alive += 1
    except socket.timeout:
        alive += 1
    except OSError:
        pass
print(f"after {sys.argv[3]} s: {alive} of {len(socks)} still open (the rest closed by the server)")
