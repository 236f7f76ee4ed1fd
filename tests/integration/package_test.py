#!/usr/bin/env python3
"""The Debian package: cpack -G DEB builds it from the build tree; it holds the binary, the systemd
unit (which systemd-analyze verifies), the config as a conffile, and the man page (which groff
renders without a warning); the packaged binary accepts the packaged config.
Usage: package_test.py BUILD_DIR"""
import glob
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import require  # noqa: E402

BUILD = os.path.abspath(sys.argv[1])


def run(*cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    assert r.returncode == 0, f"{' '.join(cmd)}: exit {r.returncode}\n{r.stdout}{r.stderr}"
    return r.stdout + r.stderr


def main():
    require("cpack", "dpkg-deb", "systemd-analyze", "groff")
    with tempfile.TemporaryDirectory() as tmp:
        run("cpack", "-G", "DEB", "-B", tmp, "--config", os.path.join(BUILD, "CPackConfig.cmake"))
        deb, = glob.glob(os.path.join(tmp, "fragproxy_*.deb"))
        files = run("dpkg-deb", "-c", deb)
        for f in ("./usr/bin/fragproxy", "./usr/lib/systemd/system/fragproxy.service",
                  "./etc/fragproxy/fragproxy.yaml", "./usr/share/man/man1/fragproxy.1.gz"):
            assert f in files, f"{f} not in the package:\n{files}"
        control = os.path.join(tmp, "control")
        run("dpkg-deb", "-e", deb, control)
        with open(os.path.join(control, "conffiles")) as f:
            assert f.read().split() == ["/etc/fragproxy/fragproxy.yaml"]
        with open(os.path.join(control, "control")) as f:
            fields = f.read()
        assert "Depends: adduser" in fields and "liburing2" in fields, fields
        assert os.access(os.path.join(control, "postinst"), os.X_OK)

        root = os.path.join(tmp, "root")
        run("dpkg-deb", "-x", deb, root)
        binary = os.path.join(root, "usr/bin/fragproxy")
        out = run(binary, "--check", "-c", os.path.join(root, "etc/fragproxy/fragproxy.yaml"))
        assert ": valid" in out, out
        # The unit as installed, its binary where the package was unpacked (the man page is
        # checked on its own: man: links need it installed).
        unit_dir = os.path.join(tmp, "unit")
        os.mkdir(unit_dir)
        with open(os.path.join(root, "usr/lib/systemd/system/fragproxy.service")) as f:
            unit = f.read()
        for key in ("Type=notify", "ExecReload=/bin/kill -HUP $MAINPID", "LimitNOFILE=",
                    "LimitMEMLOCK=", "User=fragproxy", "AmbientCapabilities=CAP_NET_BIND_SERVICE",
                    "ProtectSystem=strict", "NoNewPrivileges=yes"):
            assert key in unit, key
        with open(os.path.join(unit_dir, "fragproxy.service"), "w") as f:
            f.write(unit.replace("/usr/bin/fragproxy", binary))
        out = run("systemd-analyze", "verify", "--man=no", os.path.join(unit_dir, "fragproxy.service"))
        assert out.strip() == "", f"systemd-analyze verify says:\n{out}"
        security = subprocess.run(["systemd-analyze", "security", "--offline=yes",
                                   os.path.join(unit_dir, "fragproxy.service")],
                                  capture_output=True, text=True).stdout
        exposure = [line for line in security.splitlines() if "Overall exposure" in line]
        man = os.path.join(tmp, "fragproxy.1")
        with open(man, "w") as f:
            f.write(subprocess.run(["gzip", "-dc", os.path.join(root, "usr/share/man/man1/fragproxy.1.gz")],
                                   capture_output=True, text=True, check=True).stdout)
        warnings = run("groff", "-man", "-ww", "-z", man)
        assert warnings.strip() == "", warnings
        print(f"  {os.path.basename(deb)}: {len(files.splitlines())} entries; unit verified; "
              f"{exposure[0].strip() if exposure else 'no security summary'}")
    print("ok package")


if __name__ == "__main__":
    main()
