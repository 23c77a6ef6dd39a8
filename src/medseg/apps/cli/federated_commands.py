"""`medseg federated simulate | server | site`: federated training on Flower (docs/federated.md).
Registered by app.py as a command group."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from medseg import MedsegError
from medseg.apps.cli.flags import FlagCommand, FlagGroup

__all__ = ["app"]

app = typer.Typer(
    cls=FlagGroup,
    help="Federated training on Flower: each site trains on its own data and sends only weights (docs/federated.md).",
    no_args_is_help=True,
)

Rounds = Annotated[int, typer.Option(min=1, help="Federated rounds.")]
LocalEpochs = Annotated[int, typer.Option(min=1, help="Epochs each site trains per round.")]
Iterations = Annotated[int, typer.Option(min=0, help="Iterations per local epoch (0: as planned).")]
Mu = Annotated[
    float,
    typer.Option(min=0.0, help="FedProx's proximal weight mu (0: FedAvg; e.g. 0.01 for sites with different data)."),
]
MinSites = Annotated[
    int, typer.Option(min=1, help="A round goes on with at least this many sites (others may fail or leave).")
]
PlansFile = Annotated[
    Optional[Path],  # noqa: UP045
    typer.Option(help="A plans.json every site uses (default: planned from the sites' merged fingerprints)."),
]
Amp = Annotated[
    str,
    typer.Option(
        help="auto, off, bf16 or fp16 when planning (default: as planned; on CPU 'off' skips the per-round AMP probe)."
    ),
]
CaCert = Annotated[Optional[Path], typer.Option(help="TLS: the CA certificate (PEM) that signed the server's.")]  # noqa: UP045


def _options(**kw: Any) -> Any:
    import medseg

    return medseg.FederatedOptions(**kw)


def _quiet_flower() -> None:
    if not logging.getLogger("medseg").isEnabledFor(logging.DEBUG):  # Flower logs every message at INFO
        logging.getLogger("flwr").setLevel(logging.WARNING)


def _federation() -> Any:
    import medseg

    try:
        return medseg.simulate_federation, medseg.run_federation_server, medseg.run_federation_site
    except ModuleNotFoundError as exc:
        if (exc.name or "").startswith("flwr"):
            raise MedsegError("federated training needs Flower: pip install 'medseg[federated]'") from exc
        raise


def _report(result: Any) -> None:
    rounds = result.record["rounds"]
    for r in rounds:
        g = r["global"]
        dice = "-" if g.get("dice") is None else f"{g['dice']:.4f}"
        failed = f", {len(r['failures'])} failed" if r["failures"] else ""
        typer.echo(f"round {r['round']}: {g.get('sites_aggregated', 0)} site(s){failed}, global Dice {dice}")
    typer.echo(f"global run: {result.run_dir} (federated.json and report.html: per round, per site)")


@app.command(cls=FlagCommand)
def simulate(
    sites: Annotated[
        list[Path], typer.Argument(help="Two or more dataset folders, one per site (any layout medseg reads).")
    ],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Folder for the global run (new); each site works in OUT/sites/NAME.")
    ],
    rounds: Rounds = 5,
    local_epochs: LocalEpochs = 1,
    iterations: Iterations = 0,
    mu: Mu = 0.0,
    min_sites: MinSites = 1,
    plans: PlansFile = None,
    model: Annotated[str, typer.Option(help="Network (`medseg models`), when planning.")] = "unet",
    amp: Amp = "",
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N (every site's).")] = "auto",
    seed: Annotated[int, typer.Option(help="Seed of the initial weights, splits and sampling.")] = 0,
) -> None:
    """Every site on this machine: a Flower server and one client per site over gRPC on 127.0.0.1."""
    import medseg

    simulate_federation, _, _ = _federation()
    _quiet_flower()
    names = [p.name for p in sites]
    if len(set(names)) != len(names):
        names = [f"site{i}" for i in range(len(sites))]
    work = out / "sites"  # inside the global run (created new by the server before any site writes)
    configs = [medseg.SiteConfig(n, p, work / n, device=device, seed=seed) for n, p in zip(names, sites, strict=True)]
    if len(sites) < 2:
        raise MedsegError(f"a federation needs at least 2 site folders, got {len(sites)}")
    if min_sites > len(sites):
        raise MedsegError(f"--min-sites {min_sites} exceeds the {len(sites)} site folders given")
    options = _options(rounds=rounds, local_epochs=local_epochs, iterations=iterations, mu=mu, sites=len(sites),
                       min_sites=min_sites, plans=plans, model=model, amp=amp, seed=seed, device=device)  # fmt: skip
    _report(simulate_federation(configs, out, options))


@app.command(cls=FlagCommand)
def server(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the global run (new).")],
    sites: Annotated[int, typer.Option(min=1, help="Sites to wait for before round 1.")],
    address: Annotated[str, typer.Option(help="HOST:PORT to listen on.")] = "0.0.0.0:8080",
    rounds: Rounds = 5,
    local_epochs: LocalEpochs = 1,
    iterations: Iterations = 0,
    mu: Mu = 0.0,
    min_sites: MinSites = 1,
    plans: PlansFile = None,
    model: Annotated[str, typer.Option(help="Network (`medseg models`), when planning.")] = "unet",
    amp: Amp = "",
    device: Annotated[str, typer.Option(help="The sites' device kind the plan is sized for: cpu or cuda.")] = "cuda",
    seed: Annotated[int, typer.Option(help="Seed of the initial weights.")] = 0,
    join_timeout: Annotated[float, typer.Option(min=1.0, help="Seconds to wait for the sites to join.")] = 600.0,
    ca_cert: CaCert = None,
    server_cert: Annotated[Optional[Path], typer.Option(help="TLS: the server's certificate (PEM).")] = None,  # noqa: UP045
    server_key: Annotated[Optional[Path], typer.Option(help="TLS: the server's private key (PEM).")] = None,  # noqa: UP045
    insecure: Annotated[bool, typer.Option("--insecure", help="Run without TLS (a private network only).")] = False,
) -> None:
    """The federation's server: waits for the sites, plans, runs the rounds, keeps the global run (no images)."""
    import medseg

    _, run_federation_server, _ = _federation()
    _quiet_flower()
    given = [p is not None for p in (ca_cert, server_cert, server_key)]
    if any(given) and not all(given):
        raise MedsegError("TLS needs all of --ca-cert, --server-cert and --server-key")
    if not all(given) and not insecure:
        raise MedsegError("pass --ca-cert, --server-cert and --server-key for TLS, or --insecure on a private network")
    tls = medseg.TlsFiles(ca_cert, server_cert, server_key) if ca_cert is not None else None
    options = _options(rounds=rounds, local_epochs=local_epochs, iterations=iterations, mu=mu, sites=sites,
                       min_sites=min_sites, plans=plans, model=model, amp=amp, seed=seed, device=device,
                       join_timeout_s=join_timeout)  # fmt: skip
    _report(run_federation_server(out, options, address, tls))


@app.command(cls=FlagCommand)
def site(
    dataset: Annotated[Path, typer.Argument(help="This site's dataset folder (never sent; any layout medseg reads).")],
    server_address: Annotated[str, typer.Option("--server", help="The server's HOST:PORT.")],
    name: Annotated[str, typer.Option(help="This site's name in the server's record (letters, digits, - and _).")],
    work: Annotated[Path, typer.Option(help="This site's own run folder (split, cache, local checkpoints).")],
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    seed: Annotated[int, typer.Option(help="Seed of this site's validation split.")] = 0,
    ca_cert: CaCert = None,
    insecure: Annotated[bool, typer.Option("--insecure", help="Connect without TLS (a private network only).")] = False,
) -> None:
    """One site: connects to the server, trains each round on DATASET, sends back weights and metrics only."""
    import medseg

    _, _, run_federation_site = _federation()
    _quiet_flower()
    if ca_cert is None and not insecure:
        raise MedsegError(
            "pass --ca-cert (the CA that signed the server's certificate), or --insecure on a private network"
        )
    tls = medseg.TlsFiles(ca_cert) if ca_cert is not None else None
    run_federation_site(medseg.SiteConfig(name, dataset, work, device=device, seed=seed), server_address, tls)
    typer.echo(f"site {name}: the federation ended; local run in {work}")
