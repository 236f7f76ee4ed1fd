#!/usr/bin/env python3
"""fragproxy --check: the shipped config is valid; a bad one is rejected with file:line:col and
exit 1, and nothing starts. Usage: config_check_test.py FRAGPROXY CONFIG"""
import os
import subprocess
import sys
import tempfile

binary, shipped = sys.argv[1], sys.argv[2]
r = subprocess.run([binary, "-c", shipped, "--check"], capture_output=True, text=True)
assert r.returncode == 0 and 'listen: "127.0.0.1:5202"' in r.stdout, r

with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
    f.write("listeners:\n  - name: a\n    listen: 127.0.0.1:5999\n    upstreams: [127.0.0.1:1]\n"
            "    max_inflight_kib: 8\n")
for args in ([], ["--check"]):
    r = subprocess.run([binary, "-c", f.name, *args], capture_output=True, text=True, timeout=10)
    assert r.returncode == 1, r
    assert f"{f.name}:5:23: listeners[0].max_inflight_kib = 8 is out of range" in r.stderr, r.stderr
os.unlink(f.name)
r = subprocess.run([binary, "--version"], capture_output=True, text=True)
assert r.returncode == 0 and r.stdout.startswith("fragproxy "), r
print("ok config check")
