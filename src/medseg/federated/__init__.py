"""Federated training on Flower: sites train locally, only weights and scalar metrics leave them (docs/federated.md)."""
