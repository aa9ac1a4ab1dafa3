"""Start a private ``redis-server`` on 127.0.0.1 (a free port, a random password, no persistence):
the store of the local Lambda runtime and of the tests."""
from __future__ import annotations

import atexit
import secrets
import shutil
import subprocess
import tempfile
import time

from ...net import free_port


class LocalRedisServer:
    """``with LocalRedisServer() as srv: srv.config`` -> store configuration (password inline).

    ``config(password_env=NAME)`` gives the same configuration naming an environment variable
    instead, for processes that receive the password through their environment.
    """

    def __init__(self, exe: str | None = None, start_timeout_s: float = 10.0):
        self.exe = exe or shutil.which("redis-server")
        if self.exe is None:
            raise RuntimeError("redis-server is not installed (Debian: apt-get install redis-server)")
        self.password = secrets.token_hex(16)
        self.start_timeout_s = start_timeout_s
        self._dir = tempfile.TemporaryDirectory(prefix="ra_redis_")
        self.proc = None
        for _ in range(5):  # the probed port may be taken before redis binds it
            self.port = free_port()
            self.proc = self._spawn()
            if self._wait_ready(start_timeout_s):
                atexit.register(self.close)  # never leave an orphaned redis-server behind
                return
            self.proc.kill()
            self.proc.wait()
        raise RuntimeError("could not start redis-server on 127.0.0.1")

    def _spawn(self) -> subprocess.Popen:
        return subprocess.Popen(
            [self.exe, "--bind", "127.0.0.1", "--port", str(self.port), "--requirepass",
             self.password, "--save", "", "--appendonly", "no", "--dir", self._dir.name,
             "--protected-mode", "yes"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def restart(self, down_s: float = 0.0) -> None:
        """Kill the server by its PID (SIGKILL: a crash) and start it again after ``down_s``
        seconds on the same port with the same password. It comes back empty, as a server
        without persistence does: no keys, and no ACL users but the default one."""
        self.proc.kill()
        self.proc.wait()
        time.sleep(down_s)
        self.proc = self._spawn()
        if not self._wait_ready(self.start_timeout_s):
            raise RuntimeError(f"could not restart redis-server on 127.0.0.1:{self.port}")

    def _wait_ready(self, timeout_s: float) -> bool:
        import redis

        r = redis.Redis(host="127.0.0.1", port=self.port, password=self.password)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                return bool(r.ping())
            except redis.exceptions.ConnectionError:
                time.sleep(0.05)
        return False

    def config(self, password_env: str | None = None) -> dict:
        c = {"kind": "redis", "host": "127.0.0.1", "port": self.port}
        if password_env:
            c["password_env"] = password_env
        else:
            c["password"] = self.password
        return c

    def close(self) -> None:
        atexit.unregister(self.close)
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._dir.cleanup()
        self.proc = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
