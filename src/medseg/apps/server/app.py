"""The FastAPI application: models, prediction, health and readiness (docs/serve.md).

Every error is ``{"detail": "one line"}`` with a 4xx/5xx status; nothing in a response names a server path.
The predict endpoint checks the key, takes a place in the queue (429 when full), reads the multipart upload
while counting its bytes (413 past ``--max-upload-mb``), predicts on a worker inside a private temporary
folder and answers the mask (or JSON with ``?format=json``) within ``--timeout-s`` (else 504).
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import json
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Literal

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from fastapi.security import APIKeyHeader
from fastapi.staticfiles import StaticFiles
from medseg_runtime import BundlePredictor
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

import medseg
from medseg.apps.server.config import ServerConfig
from medseg.apps.server.jobs import JobQueue
from medseg.apps.server.uploads import SUFFIXES, Prediction, UploadRejected, predict_upload, upload_suffix
from medseg.apps.server.viewer import STATIC, Examples

__all__ = ["create_app", "load_models", "serve"]

logger = logging.getLogger(__name__)

_KEY = APIKeyHeader(name="X-API-Key", auto_error=False, description="One of the server's API keys.")
_UPLOAD_SCHEMA = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {"file": {"type": "string", "format": "binary", "description": "the scan"}},
                }
            }
        },
    }
}


class _TooLarge(Exception):
    pass


def load_models(paths: tuple[Path, ...]) -> dict[str, BundlePredictor]:
    """Each bundle verified and loaded, named by its file name without ``.medseg``."""
    models: dict[str, BundlePredictor] = {}
    for path in paths:
        name = Path(path).name.removesuffix(".medseg")
        if name in models:
            raise medseg.ConfigError(f"{path}: a second model named {name!r}; rename one of the files")
        models[name] = medseg.load_bundle_predictor(Path(path))
    return models


def _describe(name: str, predictor: BundlePredictor) -> dict[str, Any]:
    manifest = predictor.bundle.manifest
    return {
        "name": name,
        "dimensions": manifest.configurations[0].ndim,
        "channels": list(manifest.channel_names),
        "labels": {str(k): v for k, v in manifest.labels.names.items()},
        "overlapping": manifest.labels.overlapping,
        "format": manifest.format,
        "precision": manifest.precision,
        "card": manifest.card,
    }


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": " ".join(message.split())}, status_code=status, headers=headers)


def create_app(config: ServerConfig, models: dict[str, BundlePredictor] | None = None) -> FastAPI:
    """The application serving ``config.models`` (loaded here unless ``models`` are given)."""
    models = load_models(config.models) if models is None else models
    queue = JobQueue(config.workers, config.max_queue)
    examples = Examples.scan(config.examples, tuple(SUFFIXES))

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        queue.shutdown()

    app = FastAPI(
        title="medseg",
        version=medseg.__version__,
        summary="Segment a scan with a medseg model bundle.",
        lifespan=lifespan,
    )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(exc.status_code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return _error(422, f"invalid request: {where} {first.get('msg', '')}".strip())

    async def check_key(key: str | None = Depends(_KEY)) -> None:
        if not config.auth:
            return
        if key is None:
            raise StarletteHTTPException(401, "missing X-API-Key header", headers={"WWW-Authenticate": "APIKey"})
        if not any(hmac.compare_digest(key.encode(), k.encode()) for k in config.api_keys):
            raise StarletteHTTPException(401, "invalid API key", headers={"WWW-Authenticate": "APIKey"})

    app.mount("/viewer", StaticFiles(directory=STATIC, html=True), name="viewer")

    @app.get("/", include_in_schema=False)
    async def home() -> RedirectResponse:
        return RedirectResponse("/viewer/")

    @app.get("/v1/examples", tags=["viewer"], dependencies=[Depends(check_key)])
    async def list_examples() -> dict[str, list[str]]:
        """The example scans the server offers (``medseg serve --examples DIR``), by file name."""
        return {"examples": sorted(examples.files)}

    @app.get("/v1/examples/{filename}", tags=["viewer"], dependencies=[Depends(check_key)])
    async def get_example(filename: str) -> Response:
        """One example scan's file, to upload to a model like any other."""
        if filename not in examples.files:
            return _error(404, f"no example named {filename!r}; GET /v1/examples lists them")
        return FileResponse(examples.files[filename], filename=filename, media_type="application/octet-stream")

    @app.get("/health", tags=["service"])
    async def health() -> dict[str, str]:
        """The process answers."""
        return {"status": "ok"}

    @app.get("/ready", tags=["service"], responses={503: {"description": "every queue place is taken"}})
    async def ready() -> JSONResponse:
        """Models loaded and a place free in the queue (503 while it is full)."""
        taken = queue.taken
        body = {"ready": taken < queue.capacity, "models": sorted(models), "busy": taken, "capacity": queue.capacity}
        return JSONResponse(body, status_code=200 if body["ready"] else 503)

    @app.get("/v1/models", tags=["models"], dependencies=[Depends(check_key)])
    async def list_models() -> dict[str, list[dict[str, Any]]]:
        """Every model served, with its labels and model card."""
        return {"models": [_describe(n, p) for n, p in sorted(models.items())]}

    @app.post(
        "/v1/models/{name}/predict",
        tags=["models"],
        dependencies=[Depends(check_key)],
        openapi_extra=_UPLOAD_SCHEMA,
        responses={
            200: {"description": "the mask (DICOM-SEG for a zipped DICOM series), or JSON with ?format=json"},
            413: {"description": "upload too large"},
            415: {"description": "unsupported file type"},
            422: {"description": "unreadable or unsuitable scan"},
            429: {"description": "queue full"},
            504: {"description": "timed out"},
        },
    )
    async def predict(name: str, request: Request, format: Literal["file", "json", "viewer"] = "file") -> Response:
        """Segment the uploaded scan (multipart field ``file``). Sizes per class and timing come back in the
        ``X-Medseg-Structures`` (JSON) and ``X-Medseg-Seconds`` headers, or in the JSON body; ``viewer`` adds
        the scan and its labels as arrays for the browser viewer (413 for very large scans)."""
        if name not in models:
            return _error(404, f"no model named {name!r}; GET /v1/models lists them")
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > config.max_upload_bytes:
            return _error(413, f"upload larger than {config.max_upload_mb:g} MB")
        arrived = time.perf_counter()
        if not queue.admit():
            return _error(429, "too many requests at once; try again later", {"Retry-After": "5"})
        submitted = False
        try:
            upload = await _read_upload(request, config.max_upload_bytes)
            view = format == "viewer"
            job = lambda: predict_upload(models[name], upload.file, upload.filename or "", config, view=view)  # noqa: E731
            future = queue.submit(job, on_end=upload.file.close)  # releases the place when the job ends
            submitted = True
            remaining = config.timeout_s - (time.perf_counter() - arrived)
            result = await asyncio.wait_for(asyncio.wrap_future(future), max(remaining, 0))
        except UploadRejected as exc:
            return _error(exc.status, exc.message)
        except _TooLarge:
            return _error(413, f"upload larger than {config.max_upload_mb:g} MB")
        except TimeoutError:
            return _error(504, f"no result within {config.timeout_s:g} s; try again later or a smaller scan")
        except Exception:
            logger.exception("prediction failed")
            return _error(500, "internal error while predicting; the server log has the details")
        finally:
            if not submitted:
                queue.release()
        return _answer(name, result, time.perf_counter() - arrived, as_json=format != "file")

    return app


def _answer(name: str, result: Prediction, total: float, *, as_json: bool) -> Response:
    """The mask as the body with sizes and timing in headers, or all of it as JSON (the mask in base64)."""
    if as_json:
        body = {
            "model": name,
            "filename": result.filename,
            "media_type": result.media_type,
            "seconds": round(result.seconds, 4),
            "total_seconds": round(total, 4),
            "structures": result.structures,
            "mask_base64": base64.b64encode(result.body).decode("ascii"),
        }
        return JSONResponse(body if result.view is None else {**body, "view": result.view})
    headers = {
        "Content-Disposition": f'attachment; filename="{result.filename}"',
        "X-Medseg-Structures": json.dumps(result.structures, ensure_ascii=True),
        "X-Medseg-Seconds": f"{result.seconds:.4f}",
        "X-Medseg-Total-Seconds": f"{total:.4f}",
    }
    return Response(result.body, media_type=result.media_type, headers=headers)


async def _read_upload(request: Request, limit: int) -> UploadFile:
    """The multipart field ``file``, its bytes counted as they arrive (:class:`_TooLarge` past ``limit``)."""
    received = 0
    receive = request.receive

    async def counted() -> Any:
        nonlocal received
        message = await receive()
        received += len(message.get("body", b""))
        if received > limit:
            raise _TooLarge
        return message

    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise UploadRejected(415, "send the scan as multipart/form-data in the field 'file'")
    try:
        form = await Request(request.scope, counted).form(max_files=1, max_fields=4)
    except _TooLarge:
        raise
    except Exception as exc:  # starlette's parser: malformed multipart, too many files or fields
        raise UploadRejected(422, f"malformed multipart upload ({' '.join(str(exc).split())})") from None
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        await form.close()
        raise UploadRejected(422, "no file in the multipart field 'file'")
    try:
        upload_suffix(upload.filename or "")
    except UploadRejected:
        await form.close()
        raise
    return upload


def serve(config: ServerConfig, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Load the models and serve them with uvicorn until interrupted."""
    import uvicorn

    app = create_app(config)
    if not config.auth and host not in ("127.0.0.1", "localhost", "::1"):
        logger.warning("no API keys (--no-auth) while listening on %s: anyone who reaches it can use it", host)
    logger.info("serving %d model(s) on http://%s:%d (API docs: /docs)", len(config.models), host, port)
    uvicorn.run(app, host=host, port=port, log_level="info")
