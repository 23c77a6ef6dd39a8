"""`medseg serve`: an HTTP inference server for model bundles (FastAPI + uvicorn, the ``serve`` extra).

``config.py`` (ServerConfig, API keys), ``jobs.py`` (the bounded queue and its workers), ``uploads.py``
(an upload into a private temporary folder, and error messages that never name a server path), ``app.py``
(the FastAPI application and its endpoints). Uses only ``import medseg`` and ``medseg_runtime``.
docs/serve.md describes the API.

Example:
    >>> config = ServerConfig(models=(Path("hippocampus.medseg"),), api_keys=load_api_keys(Path("keys.txt")))
    >>> app.serve(config, host="127.0.0.1", port=8000)                     # doctest: +SKIP
"""

from __future__ import annotations

from medseg.apps.server.config import ServerConfig, load_api_keys

__all__ = ["ServerConfig", "load_api_keys"]  # the application: medseg.apps.server.app (needs the serve extra)
