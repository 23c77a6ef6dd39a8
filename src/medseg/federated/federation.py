"""Running a federation: the server, a site, and the simulation (every site on this machine).

The transport is Flower's gRPC (``flwr.server`` / ``flwr.client``, its bidirectional-stream Fleet API):
the server listens on an address, each site connects to it. With TLS the server presents a certificate
signed by a CA and each site checks it with that CA's certificate (:class:`TlsFiles`); without TLS the
connection is plain and should only be used on a private network or on 127.0.0.1.

The simulation is the same server and the same site clients, the sites in threads of this process, all on
127.0.0.1: a real deployment on loopback (no Ray, no simulated transport), so what is tested is what is
deployed. Flower's own simulation engine needs ``flwr[simulation]`` (Ray), which we avoid.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from flwr.client import NumPyClient
from flwr.server import Server
from flwr.server.client_manager import SimpleClientManager

from medseg.datasets.dataset import load_dataset
from medseg.errors import MedsegError
from medseg.federated.options import FederatedOptions, SiteConfig, TlsFiles
from medseg.federated.site import SiteClient
from medseg.federated.strategy import FEDERATED_JSON, FederatedStrategy

__all__ = ["FederationResult", "free_port", "run_server", "run_site", "simulate"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FederationResult:
    """What the server wrote: the global run folder (predict / evaluate / export it like any run) and
    its record (``federated.json``'s content)."""

    run_dir: Path
    record: dict[str, Any]

    @property
    def record_path(self) -> Path:
        return self.run_dir / FEDERATED_JSON


def run_server(
    run_dir: Path,
    options: FederatedOptions,
    address: str = "0.0.0.0:8080",
    tls: TlsFiles | None = None,
    *,
    strategy: FederatedStrategy | None = None,
    on_listening: Callable[[], None] | None = None,
) -> FederationResult:
    """Listen on ``address``, wait for ``options.sites`` sites, train ``options.rounds`` rounds, write the
    global run into ``run_dir`` (new); return when done (the sites are told to disconnect).
    ``on_listening`` is called once the server accepts connections (the simulation starts its sites then)."""
    from flwr.server.superlink.fleet.grpc_bidi.grpc_server import start_grpc_server

    strategy = strategy or FederatedStrategy(options, run_dir)
    certificates = tls.server_bytes() if tls is not None else None
    manager = SimpleClientManager()
    server = Server(client_manager=manager, strategy=strategy)
    grpc_server = start_grpc_server(client_manager=manager, server_address=address, certificates=certificates)
    logger.info("federation server on %s (TLS %s)", address, "on" if certificates else "off")
    try:
        if on_listening is not None:
            on_listening()
        server.fit(options.rounds, timeout=options.round_timeout_s)
        server.disconnect_all_clients(timeout=options.round_timeout_s)
    finally:
        grpc_server.stop(grace=1)
    return FederationResult(Path(run_dir), strategy.finish())


def run_site(
    site: SiteConfig,
    address: str,
    tls: TlsFiles | None = None,
    *,
    client: NumPyClient | None = None,
    max_wait_s: float | None = 600.0,
) -> None:
    """Connect ``site`` to the server at ``address`` and serve its rounds until the server ends the
    federation (or, unreachable, for ``max_wait_s`` seconds of retries)."""
    from flwr.compat.client.app import start_client_internal

    root = tls.site_bytes() if tls is not None else None
    if client is None:
        client = SiteClient(site)
        client.dataset()  # a missing or broken dataset is one line here, before connecting
    start_client_internal(
        server_address=address,
        node_config={},
        client=client.to_client(),
        root_certificates=root,
        insecure=root is None,
        max_wait_time=max_wait_s,
    )


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` now (the operating system's pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def simulate(
    sites: Sequence[SiteConfig],
    run_dir: Path,
    options: FederatedOptions,
    *,
    client_factory: Callable[[SiteConfig], NumPyClient] = SiteClient,
    tls: TlsFiles | None = None,
    host: str = "127.0.0.1",
) -> FederationResult:
    """Every site on this machine: the server here, one thread per site, over gRPC on ``host`` (loopback).
    A site whose thread fails is logged and left out, as on a real network."""
    if len(sites) < 2 or len({s.name for s in sites}) != len(sites):
        raise MedsegError(f"a federation needs at least 2 sites with different names, got {[s.name for s in sites]}")
    for site in sites:  # every dataset readable before anything starts: one line, not a site thread's traceback
        load_dataset(site.dataset)
    options = replace(options, sites=len(sites), min_sites=min(options.min_sites, len(sites)))
    address = f"{host}:{free_port(host)}"
    threads = [
        threading.Thread(
            target=_site_thread, args=(site, address, tls, client_factory), name=f"site-{site.name}", daemon=True
        )
        for site in sites
    ]

    def start_sites() -> None:
        for thread in threads:
            thread.start()

    try:
        return run_server(run_dir, options, address, tls, on_listening=start_sites)
    finally:
        for thread in threads:
            if thread.is_alive() or thread.ident is not None:
                thread.join(timeout=30)


def _site_thread(
    site: SiteConfig, address: str, tls: TlsFiles | None, factory: Callable[[SiteConfig], NumPyClient]
) -> None:
    try:
        run_site(site, address, tls, client=factory(site), max_wait_s=60.0)
    except Exception:  # a site's crash must not take the federation down
        logger.exception("site %s stopped with an error", site.name)
