"""What a federation is, as data: rounds, local epochs, FedAvg or FedProx, how many sites must stay, TLS."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from medseg.errors import ConfigError

__all__ = ["FederatedOptions", "SiteConfig", "TlsFiles"]


@dataclass(frozen=True)
class FederatedOptions:
    """The server's choices (``medseg federated`` flags).

    ``mu`` 0 is FedAvg; ``mu > 0`` FedProx (each site's local loss gets ``mu/2 ||w - w_global||^2``).
    ``min_sites``: a round goes on with at least this many sites (0: every site of the handshake must take
    part in round 1, then rounds go on with whoever is left, at least one). ``plans``: a plans.json shared by
    every site; None: planned from the sites' fingerprints (statistics, not images) merged on the server.
    ``iterations`` (0: as planned), ``model``, ``amp`` and ``seed`` shape that plan.
    """

    rounds: int = 5
    local_epochs: int = 1
    iterations: int = 0
    mu: float = 0.0
    sites: int = 2  # sites the server waits for before round 1
    min_sites: int = 1
    plans: Path | None = None
    model: str = "unet"
    amp: str = ""
    seed: int = 0
    device: str = "auto"  # the server's device for planning ('cpu' / 'cuda' sizes the patch); it never trains
    join_timeout_s: float = 600.0  # how long the server waits for the sites to join
    round_timeout_s: float | None = None  # a site silent this long in a round counts as failed (None: no limit)

    def __post_init__(self) -> None:
        if self.rounds < 1 or self.local_epochs < 1:
            raise ConfigError(f"--rounds ({self.rounds}) and --local-epochs ({self.local_epochs}) must be at least 1")
        if self.mu < 0:
            raise ConfigError(f"--mu {self.mu} must be >= 0 (0: FedAvg, > 0: FedProx)")
        if self.sites < 1 or not 1 <= self.min_sites <= self.sites:
            raise ConfigError(f"--min-sites {self.min_sites} must be between 1 and the number of sites ({self.sites})")

    @property
    def strategy(self) -> str:
        return "fedprox" if self.mu > 0 else "fedavg"


@dataclass(frozen=True)
class SiteConfig:
    """One site: its name (what the server's record calls it), its dataset folder (any layout medseg reads,
    never sent anywhere), and its own work folder (its run: split, preprocessing cache, local checkpoints).
    The site's validation cases are fold 0 of a ``folds``-fold split of its labelled cases."""

    name: str
    dataset: Path
    work_dir: Path
    device: str = "auto"
    folds: int = 5
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.name or not self.name.replace("-", "").replace("_", "").isalnum():
            raise ConfigError(f"site name {self.name!r} must be letters, digits, '-' or '_'")


@dataclass(frozen=True)
class TlsFiles:
    """PEM files of a TLS connection: the server needs all three, a site only ``root_certificate`` (the CA
    that signed the server's certificate)."""

    root_certificate: Path
    certificate: Path | None = None
    private_key: Path | None = None

    def server_bytes(self) -> tuple[bytes, bytes, bytes]:
        if self.certificate is None or self.private_key is None:
            raise ConfigError("a TLS server needs --ca-cert, --server-cert and --server-key")
        return (_read(self.root_certificate), _read(self.certificate), _read(self.private_key))

    def site_bytes(self) -> bytes:
        return _read(self.root_certificate)


def _read(path: Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the certificate file ({exc.strerror}); check the path") from exc
