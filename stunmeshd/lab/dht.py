"""A small private OpenDHT network for the lab: two or three ``dhtnode --proxyserver``.

A lone dhtnode answers every put with ``{"err":"Put failed"}`` (HTTP 502), so the lab runs a
few nodes bootstrapped to the first one, all inside one namespace that has no link to the
root namespace. Keep it that way: a DHT node talks to every node it learns of (started
without ``-b`` it sends nothing, as strace showed, but the namespace is the guarantee).
The helper waits until every proxy accepts a put, so a test can use the URLs at once.

    nodes = await start_dht_nodes(lab.wan, host="198.51.100.1")
    ... nodes.urls -> ["http://198.51.100.1:8080", "http://198.51.100.1:8081", ...]
    await nodes.stop()
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from types import TracebackType

import aiohttp

from stunmeshd.lab.netns import LabError, Namespace

DHT_PORT = 4222  # UDP, the DHT itself
PROXY_PORT = 8080  # TCP, the REST proxy the stores talk to
Spawn = Callable[..., Awaitable[asyncio.subprocess.Process]]


@dataclass
class DhtNode:
    index: int
    dht_port: int
    proxy_port: int
    url: str  # the proxy as seen from other namespaces (``host`` given to start_dht_nodes)
    process: asyncio.subprocess.Process = field(repr=False)

    @property
    def running(self) -> bool:
        return self.process.returncode is None


@dataclass
class DhtCluster:
    """The running nodes; ``urls`` in start order. Stop it (or use ``async with``)."""

    namespace: Namespace
    nodes: list[DhtNode]

    @property
    def urls(self) -> list[str]:
        return [n.url for n in self.nodes]

    async def stop_node(self, index: int) -> None:
        """Stop one node (to see a store fail over); the others keep serving."""
        await _terminate(self.nodes[index].process)

    async def stop(self) -> None:
        await asyncio.gather(*(_terminate(n.process) for n in self.nodes))

    async def __aenter__(self) -> DhtCluster:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


async def _terminate(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), 5)


async def start_dht_nodes(
    ns: Namespace,
    *,
    count: int = 3,
    host: str = "127.0.0.1",
    dht_port: int = DHT_PORT,
    proxy_port: int = PROXY_PORT,
    spawn: Spawn | None = None,
    ready_timeout: float = 20.0,
) -> DhtCluster:
    """Start ``count`` dhtnodes in ``ns`` (ports ``dht_port+i``/``proxy_port+i``), ready to use.

    ``host`` is the address the returned URLs name (the namespace's address others reach it
    by; the proxies listen on every address). ``spawn(*argv)`` starts a program in ``ns`` —
    pass the lab's own spawner so the lab owns (and logs) the processes; by default
    ``ns.spawn`` with output discarded. Raises LabError, stopping what it started, when a node
    exits or the proxies are not all accepting puts within ``ready_timeout`` seconds.
    """
    if not 1 <= count <= 16:
        raise ValueError("count must be between 1 and 16")

    async def default_spawn(*argv: str) -> asyncio.subprocess.Process:
        return await ns.spawn(
            *argv, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
        )

    start = spawn or default_spawn
    nodes: list[DhtNode] = []
    cluster = DhtCluster(ns, nodes)
    try:
        for i in range(count):
            argv = ["dhtnode", "-s", "-p", str(dht_port + i), "--proxyserver", str(proxy_port + i)]
            if i > 0:
                argv += ["-b", f"127.0.0.1:{dht_port}"]
            proc = await start(*argv)
            nodes.append(
                DhtNode(i, dht_port + i, proxy_port + i, f"http://{host}:{proxy_port + i}", proc)
            )
        await asyncio.wait_for(_wait_ready(ns, cluster), ready_timeout)
    except TimeoutError:
        await cluster.stop()
        raise LabError(f"dhtnode proxies in {ns.name} not ready in {ready_timeout:g} s") from None
    except BaseException:
        await cluster.stop()
        raise
    return cluster


async def _wait_ready(ns: Namespace, cluster: DhtCluster) -> None:
    """Every node answers and (with company) stores a probe value: the DHT has formed."""
    ports = [n.proxy_port for n in cluster.nodes]
    pending = set(ports)
    while pending:
        for node in cluster.nodes:
            if not node.running:
                raise LabError(
                    f"dhtnode {node.index} exited with {node.process.returncode} in {ns.name} "
                    f"(ports {node.dht_port}/udp, {node.proxy_port}/tcp in use?)"
                )
        pending -= set(await ns.call(_probe, sorted(pending), len(ports) > 1))
        if pending:
            await asyncio.sleep(0.1)


async def _probe(ports: list[int], need_put: bool) -> list[int]:
    """Ports (inside the namespace) whose proxy is up and, if ``need_put``, accepts a put."""
    ready: list[int] = []
    timeout = aiohttp.ClientTimeout(total=2)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        for port in ports:
            base = f"http://127.0.0.1:{port}"
            try:
                async with session.get(base + "/") as resp:
                    if resp.status != 200:
                        continue
                if need_put:
                    key = secrets.token_hex(20)
                    body = json.dumps({"data": base64.b64encode(os.urandom(8)).decode()})
                    async with session.post(f"{base}/key/{key}", data=body) as resp:
                        if resp.status != 200:
                            continue
            except (aiohttp.ClientError, TimeoutError):
                continue
            ready.append(port)
    return ready
