"""Celery workers as "hosts" for tests and the cluster demo: network namespaces joined by veth pairs.

Each host is a network namespace with one end of a veth pair (``10.<a>.<b>.2/30``; the machine keeps the
other end, ``.1``). Redis and PostgreSQL listen on 127.0.0.1 only here, and a namespace cannot reach the
machine's loopback (the kernel drops 127/8 arriving on another interface unless ``route_localnet`` and a
DNAT rule are set, which would reconfigure the machine). So a small TCP relay owned by the test listens on
each host's ``.1`` address and forwards to 127.0.0.1: a worker reaches the broker and the database over
its veth link, at an address of its own, as a second machine would. Nothing system-wide is changed; the
namespaces, links and relays are removed by :meth:`Hosts.close`.

Without the right to create namespaces (not root, no ``ip``) every host is the machine itself (127.0.0.1):
separate processes, one network. :attr:`Hosts.isolated` says which.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from report_pipelines.worker_processes import Worker, wait_for  # noqa: F401  (the tests' too)
from report_pipelines.worker_processes import start_worker as start_local_worker

LOOPBACK = "127.0.0.1"


@dataclass
class Host:
    name: str
    namespace: str | None  # None: the machine itself
    address: str  # this host's own address
    gateway: str  # where it reaches the machine's services (the relay), 127.0.0.1 when not isolated

    def command(self, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.namespace, *argv] if self.namespace else argv


class Relay:
    """TCP forwarder: ``listen`` address:port -> 127.0.0.1:``port`` (one thread per direction)."""

    def __init__(self, listen: str, port: int) -> None:
        self.server = socket.create_server((listen, port), reuse_port=False)
        self.port = port
        self.closed = False
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True, name=f"relay-{listen}:{port}").start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection((LOOPBACK, self.port), timeout=10)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            self.sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:  # one side gone (a killed worker): close both, so PostgreSQL ends its session and locks
            for s in (source, sink):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()

    def close(self) -> None:
        self.closed = True
        self.server.close()
        for s in self.sockets:
            try:
                s.close()
            except OSError:
                pass


@dataclass
class Hosts:
    hosts: list[Host]
    isolated: bool
    relays: list[Relay] = field(default_factory=list)
    links: list[str] = field(default_factory=list)

    def close(self) -> None:
        for relay in self.relays:
            relay.close()
        for host in self.hosts:
            if host.namespace:
                subprocess.run(["ip", "netns", "del", host.namespace], capture_output=True)
        for link in self.links:  # gone with its namespace's peer already; make sure
            subprocess.run(["ip", "link", "del", link], capture_output=True)


def can_isolate() -> bool:
    return os.geteuid() == 0 and shutil.which("ip") is not None and sys.platform.startswith("linux")


def make_hosts(count: int, ports: tuple[int, ...] = (6379, 5432)) -> Hosts:
    """``count`` hosts, each reaching 127.0.0.1's ``ports`` through its own relay (see the module docstring)."""
    if not can_isolate():
        return Hosts([Host(f"h{i + 1}", None, LOOPBACK, LOOPBACK) for i in range(count)], isolated=False)
    tag = uuid.uuid4().hex[:6]
    subnet = 100 + int(tag[:2], 16) % 150  # 10.<subnet>.<i>.0/30: unlikely to meet another run's
    made = Hosts([], isolated=True)
    try:
        for i in range(count):
            namespace, outside, inside = f"rp-{tag}-{i + 1}", f"rpo{tag}{i + 1}", f"rpi{tag}{i + 1}"
            gateway, address = f"10.{subnet}.{i + 1}.1", f"10.{subnet}.{i + 1}.2"
            _ip("netns", "add", namespace)
            made.hosts.append(Host(f"h{i + 1}", namespace, address, gateway))
            _ip("link", "add", outside, "type", "veth", "peer", "name", inside)
            made.links.append(outside)
            _ip("link", "set", inside, "netns", namespace)
            _ip("addr", "add", f"{gateway}/30", "dev", outside)
            _ip("link", "set", outside, "up")
            for args in (("addr", "add", f"{address}/30", "dev", inside), ("link", "set", inside, "up"),
                         ("link", "set", "lo", "up")):
                _ip("netns", "exec", namespace, "ip", *args)
            made.relays += [Relay(gateway, port) for port in ports]
    except BaseException:
        made.close()
        raise
    return made


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


def start_worker(host: Host, hostname: str, env: dict[str, str], log: Path, *, concurrency: int = 1) -> Worker:
    """``report-pipelines worker`` on ``host``, its services' addresses replaced by the host's gateway."""
    return start_local_worker(hostname, {k: v.replace(LOOPBACK, host.gateway) for k, v in env.items()}, log,
                              concurrency=concurrency, prefix=host.command([]))
