"""Load for deploy/profile: begin_sessions with the bench's 8 metrics from new devices,
one keep-alive connection per thread; with LOAD_EVENTS=N in the environment, requests of N
events (key, count, sum, one segmentation value each) from 10,000 devices instead, as the
bench's events rows send them. Usage: profile_load.py PORT WRITE_KEY COUNT TAG"""
import json
import os
import socket
import sys
import threading
import urllib.parse

THREADS = 16
port, write_key, count, tag = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
metrics = urllib.parse.quote(json.dumps({
    "_os": "Android", "_os_version": "14", "_device": "Pixel 8", "_resolution": "1080x2400",
    "_carrier": "Vodafone", "_app_version": "3.2.1", "_density": "2.75", "_locale": "en_US",
}, separators=(",", ":")), safe="")
events_per_request = int(os.environ.get("LOAD_EVENTS", "0"))
events = urllib.parse.quote(json.dumps([
    {"key": f"event{i % 5}", "count": 1, "sum": 1.5,
     "segmentation": {"plan": "free" if i % 2 == 0 else "pro"}}
    for i in range(events_per_request)
], separators=(",", ":")), safe="")
failures = []


def run(t):
    with socket.create_connection(("127.0.0.1", port)) as s, s.makefile("rb") as f:
        for i in range(count // THREADS):
            if events_per_request:
                path = (f"/i?app_key={write_key}&device_id=v{(t * 7919 + i) % 10000}"
                        f"&events={events}")
            else:
                path = (f"/i?app_key={write_key}&device_id={tag}{t}-{i}&begin_session=1"
                        f"&sdk_version=24.10&metrics={metrics}")
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: profile\r\n\r\n".encode())
            status = f.readline()
            length = 0
            while (line := f.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            f.read(length)
            if b" 200 " not in status:
                failures.append(status)
                return


threads = [threading.Thread(target=run, args=(t,)) for t in range(THREADS)]
for t in threads:
    t.start()
for t in threads:
    t.join()
if failures:
    sys.exit(f"a request failed: {failures[0]!r}")
