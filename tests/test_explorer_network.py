"""The explorer's server makes no network connection of its own: started with the command ``mechinterp
explore`` builds (:func:`mechinterp.cli.explore.streamlit_command`) under ``strace``, asked for its page once on
127.0.0.1 and stopped, every address it connected or sent to is a loopback address or a unix socket (Streamlit
left to itself opens a UDP socket towards 8.8.8.8 to learn its internal IP and asks a web service for its
external one). Skipped only when ``strace`` is missing or not permitted to trace here."""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from mechinterp.cli.explore import LOCAL, is_local, streamlit_command

ROOT = Path(__file__).resolve().parents[1]
STRACE = shutil.which("strace")
CALL = re.compile(r"\b(connect|sendto|sendmsg)\(.*?sa_family=(AF_\w+)(.*)$")
INET = re.compile(r'inet_addr\("([^"]+)"\)|inet_pton\(AF_INET6, "([^"]+)"')


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOCAL, 0))
        return int(s.getsockname()[1])


def _strace_works() -> bool:
    try:
        return subprocess.run([STRACE, "-f", "-qq", "-e", "trace=none", "true"], capture_output=True,
                              timeout=30, check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def remote_addresses(trace: str) -> list[str]:
    """Each address in ``trace`` (strace output) that a connect/sendto/sendmsg went to and that is neither a
    loopback address nor a unix or netlink socket."""
    out = []
    for line in trace.splitlines():
        m = CALL.search(line)
        if m is None or m.group(2) in ("AF_UNIX", "AF_LOCAL", "AF_NETLINK", "AF_UNSPEC"):
            continue
        found = INET.search(m.group(3))
        addr = (found.group(1) or found.group(2)) if found else None
        ip = ipaddress.ip_address(addr) if addr else None
        if ip is not None and getattr(ip, "ipv4_mapped", None):
            ip = ip.ipv4_mapped
        if ip is None or not ip.is_loopback:
            out.append(line.strip())
    return out


def test_remote_addresses_parser():
    trace = "\n".join([
        '12 connect(5, {sa_family=AF_INET, sin_port=htons(1), sin_addr=inet_addr("8.8.8.8")}, 16) = 0',
        '12 connect(6, {sa_family=AF_INET, sin_port=htons(80), sin_addr=inet_addr("127.0.0.1")}, 16) = 0',
        '12 connect(7, {sa_family=AF_UNIX, sun_path="/var/run/nscd/socket"}, 110) = -1',
        '12 sendto(8, "x", 1, 0, NULL, 0) = 1',
        '12 connect(9, {sa_family=AF_INET6, sin6_port=htons(53), inet_pton(AF_INET6, "::1", &sin6_addr)}, 28) = 0',
        ('12 sendto(3, "q", 1, MSG_NOSIGNAL, {sa_family=AF_INET, sin_port=htons(53), '
         'sin_addr=inet_addr("10.0.0.53")}, 16) = 1'),
    ])
    assert [re.search(r'"([\d.]+)"\)', r).group(1) for r in remote_addresses(trace)] == ["8.8.8.8", "10.0.0.53"]


def test_is_local():
    assert is_local("127.0.0.1") and is_local("localhost") and is_local("::1")
    assert not is_local("0.0.0.0") and not is_local("192.0.2.1") and not is_local("::")


def test_default_command_is_local_and_quiet():
    cmd = streamlit_command(8501, headless=True)
    opts = dict(zip(cmd[5::2], cmd[6::2]))
    assert opts["--server.address"] == LOCAL and opts["--browser.serverAddress"] == LOCAL
    assert opts["--browser.gatherUsageStats"] == "false" and opts["--server.showEmailPrompt"] == "false"
    wide = dict(zip(*[iter(streamlit_command(address="0.0.0.0")[5:])] * 2))
    assert wide["--server.address"] == "0.0.0.0" and wide["--browser.serverAddress"] == "localhost"


@pytest.mark.slow
@pytest.mark.skipif(STRACE is None, reason="needs strace (apt-get install strace)")
def test_server_contacts_only_loopback(tmp_path):
    if not _strace_works():
        pytest.skip("strace cannot trace processes here (ptrace not permitted)")
    port = _free_port()
    trace, log = tmp_path / "trace.txt", tmp_path / "server.log"
    env = dict(os.environ, MECHINTERP_EXPLORER_RESULTS=str(tmp_path), MECHINTERP_EXPLORER_SUITE="npz")
    cmd = [STRACE, "-f", "-qq", "-e", "trace=connect,sendto,sendmsg", "-o", str(trace),
           *streamlit_command(port, headless=True)]
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://{LOCAL}:{port}"
    try:
        deadline, page = time.monotonic() + 120, None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"{url}/", timeout=2) as r:
                    page = r.read().decode()
                break
            except OSError:
                time.sleep(0.5)
        assert page is not None and "<html" in page.lower(), log.read_text()[-3000:]
        time.sleep(2)  # anything started with the first request has time to reach out
    finally:
        os.killpg(proc.pid, signal.SIGINT)  # strace and the server it started (their own process group)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    text = trace.read_text()
    assert "Network URL" not in log.read_text() and "External URL" not in log.read_text()
    assert remote_addresses(text) == []
