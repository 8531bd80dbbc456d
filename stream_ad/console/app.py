"""The console's web app (Starlette): one page with every camera, pushed by server-sent events.

    GET  /                          the page (page.html)
    GET  /api/state                 the cameras (each with its model's key), recent alarms, each model's facts and
                                    calibration by key, recent teachings, as JSON
    GET  /events                    the same, pushed as server-sent events whenever it changes
    GET  /frame/{camera}.jpg        the camera's latest frame with its anomaly map drawn over it
    GET  /alarms/{id}/thumb.jpg     an alarm: small overlay; overlay.png, frame.png: full size
    POST /alarms/{id}/good          "this part is good" (Authorization: Bearer TOKEN of an operator)

Pictures are drawn when asked for, never per frame: a page nobody looks at costs nothing. Each event stream sends the
newest state only, so a slow browser skips states instead of queueing them.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from stream_ad.console.live import LiveView
from stream_ad.console.operators import OperatorsError, operator_for
from stream_ad.console.teach import TeachDesk
from stream_ad.frames import Frame, judging_model
from stream_ad.overlay import draw_overlay

log = logging.getLogger("stream_ad.console")

PAGE = Path(__file__).with_name("page.html")
EVENT_INTERVAL_S = 0.25
KEEPALIVE_S = 10.0
THUMB_WIDTH = 200
ALARM_PICTURES = ("thumb.jpg", "overlay.png", "frame.png")


def console_app(live: LiveView, desk: TeachDesk, operators_file: Path | None) -> Starlette:
    def state() -> dict[str, Any]:
        return {**live.snapshot(), "teaching": {"recent": desk.recent[-5:]}}

    async def page(_: Request) -> HTMLResponse:
        return HTMLResponse(PAGE.read_text())

    async def api_state(_: Request) -> JSONResponse:
        return JSONResponse(state())

    async def events(request: Request) -> StreamingResponse:
        async def stream() -> AsyncIterator[str]:
            sent, quiet = -1, 0.0
            while not await request.is_disconnected():
                if live.version != sent:
                    sent, quiet = live.version, 0.0
                    yield f"data: {json.dumps(state())}\n\n"
                elif quiet >= KEEPALIVE_S:
                    quiet = 0.0
                    yield ": keep-alive\n\n"
                await asyncio.sleep(EVENT_INTERVAL_S)
                quiet += EVENT_INTERVAL_S

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    def picture(frame: Frame | None, kind: str) -> Response:
        if frame is None or frame.image is None:
            return Response("no such frame (yet)", status_code=404, media_type="text/plain")
        if kind == "frame.png":
            image = frame.image if frame.image.ndim == 2 else cv2.cvtColor(frame.image, cv2.COLOR_RGB2BGR)
            return _encoded(image, ".png")
        amap = frame.anomaly_map if frame.anomaly_map is not None else np.zeros(frame.image.shape[:2], np.float32)
        judged = judging_model(frame)  # the pixel threshold of the frame's own model
        drawn = draw_overlay(frame.image, amap, frame.score or 0.0, frame.threshold,
                             judged.pixel_threshold if judged else None)
        if kind == "thumb.jpg":
            h, w = drawn.shape[:2]
            drawn = cv2.resize(drawn, (THUMB_WIDTH, max(1, round(h * THUMB_WIDTH / w))), interpolation=cv2.INTER_AREA)
        return _encoded(drawn, ".png" if kind.endswith(".png") else ".jpg")

    async def latest_frame(request: Request) -> Response:
        return await run_in_threadpool(picture, live.latest(request.path_params["camera"]), "overlay.jpg")

    async def alarm_picture(request: Request) -> Response:
        alarm = live.alarm(request.path_params["alarm"])
        kind = request.path_params["kind"]
        if kind not in ALARM_PICTURES:
            return Response(f"no {kind}: {', '.join(ALARM_PICTURES)}", status_code=404, media_type="text/plain")
        return await run_in_threadpool(picture, alarm.frame if alarm else None, kind)

    async def mark_good(request: Request) -> JSONResponse:
        alarm_id = request.path_params["alarm"]
        client = request.client.host if request.client else "?"
        token = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        try:
            operator = operator_for(operators_file, token)
        except OperatorsError as exc:
            log.error("console: teaching refused: %s", exc)
            return JSONResponse({"outcome": "refused", "detail": str(exc)}, status_code=500)
        if operator is None:
            why = ("no operators are configured (pipeline.console.operators_file)" if operators_file is None
                   else "no valid operator token")
            desk.audit("teach_refused", None, {"alarm": alarm_id, "client": client, "detail": why})
            log.warning("console: teaching alarm %s refused for %s: %s", alarm_id, client, why)
            return JSONResponse({"outcome": "refused", "detail": why}, status_code=401)
        alarm = live.alarm(alarm_id)
        if alarm is None:
            return JSONResponse({"outcome": "refused", "detail": f"no alarm {alarm_id} among the recent ones"},
                                status_code=404)
        return JSONResponse(await run_in_threadpool(desk.mark_good, alarm, operator))

    routes = [
        Route("/", page),
        Route("/api/state", api_state),
        Route("/events", events),
        Route("/frame/{camera}.jpg", latest_frame),
        Route("/alarms/{alarm:int}/{kind:str}", alarm_picture),
        Route("/alarms/{alarm:int}/good", mark_good, methods=["POST"]),
    ]
    return Starlette(routes=routes)


def _encoded(image: np.ndarray, ext: str) -> Response:
    ok, data = cv2.imencode(ext, image)
    if not ok:
        return Response(f"cannot encode {ext}", status_code=500, media_type="text/plain")
    return Response(data.tobytes(), media_type="image/png" if ext == ".png" else "image/jpeg",
                    headers={"Cache-Control": "no-store"})
