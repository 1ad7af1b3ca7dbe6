"""The deals API: pipelines and stages, deals, stage moves and history, the board and the forecast
(/api/v1; /t/<slug>/api/v1 works too).

Handlers validate input and call one action or query with the caller as Actor; the permission
checks happen there, below the web layer. The deals domain's refusals carry their status (404,
409, 422) and fields, passed on as they are."""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import UTC, datetime
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from pydantic import BaseModel
from starlette.requests import Request

from kith.tenants.deals import actions, board, pipelines, queries
from kith.tenants.deals.errors import DealError
from kith.tenants.deals.schemas import (
    BoardOut,
    DealIn,
    DealOut,
    DealPage,
    DealPatch,
    ForecastOut,
    MoveIn,
    PipelineIn,
    PipelineList,
    PipelineOut,
    PipelinePatch,
    StageChangeOut,
    StageHistory,
    StageIn,
    StageOut,
    StagePatch,
    currency_context,
)
from kith.tenants.deals.spec import SPEC
from kith.web.api.lists import engine_page, list_query
from kith.web.api.registry import QueryParam, endpoint
from kith.web.edge import actor_of
from kith.web.errors import ApiError

TAG = "deals"
T = TypeVar("T")


def _id(request: Request, name: str, noun: str) -> int:
    raw = str(request.path_params[name])
    if not raw.isdigit():
        raise ApiError(404, "not_found", f"There is no such {noun}.")
    return int(raw)


def _query_id(request: Request, name: str) -> int | None:
    raw = request.query_params.get(name)
    if raw in (None, ""):
        return None
    if not raw.isdigit():
        raise ApiError(422, "invalid_input", f"{name} must be a whole number.",
                       fields={name: "Must be a whole number."})
    return int(raw)


async def _run(action: Awaitable[T]) -> T:
    """Run an action; a refusal of the deals domain becomes the API error it means."""
    try:
        return await action
    except DealError as exc:
        raise ApiError(exc.status, exc.code, exc.message, fields=exc.fields) from None


def _currency(request: Request) -> dict[str, str | None]:
    """A new deal without a currency takes the workspace's default currency."""
    return currency_context(request.state.caller.tenant.default_currency)


def pipeline_out(row: dict[str, Any]) -> PipelineOut:
    return PipelineOut(id=row["id"], name=row["name"], position=row["position"], is_default=row["is_default"],
                       deal_count=row.get("deal_count"), stages=[StageOut(**s) for s in row["stages"]])


def _stage_out(row: dict[str, Any]) -> StageOut:
    return StageOut(**{k: row[k] for k in ("id", "pipeline_id", "name", "position", "probability", "kind")},
                    deal_count=row.get("deal_count"))


# --- pipelines and stages ----------------------------------------------------------------

@endpoint("GET", "/pipelines", summary="List pipelines with their stages in order", permission=("deals", "view"),
          response=PipelineList, errors=(401, 403), tag=TAG,
          query=(QueryParam("counts", "true: include how many deals each stage and pipeline holds.", "boolean"),))
async def list_pipelines(request: Request, body: None) -> BaseModel:
    counts = request.query_params.get("counts", "") in ("true", "1")
    rows = await pipelines.list_pipelines(actor_of(request), counts=counts)
    return PipelineList(items=[pipeline_out(r) for r in rows])


@endpoint("POST", "/pipelines", summary="Create a pipeline (default stages: New, Won, Lost)",
          permission=("workspace", "manage_settings"), body=PipelineIn, response=PipelineOut, status=201,
          errors=(400, 401, 403, 422), tag=TAG)
async def create_pipeline(request: Request, body: PipelineIn) -> BaseModel:
    return pipeline_out(await _run(pipelines.create_pipeline(actor_of(request), body)))


@endpoint("PATCH", "/pipelines/{pipeline_id}", summary="Rename, reorder or make a pipeline the default",
          permission=("workspace", "manage_settings"), body=PipelinePatch, response=PipelineOut,
          errors=(400, 401, 403, 404, 422), tag=TAG)
async def update_pipeline(request: Request, body: PipelinePatch) -> BaseModel:
    pipeline_id = _id(request, "pipeline_id", "pipeline")
    return pipeline_out(await _run(pipelines.update_pipeline(actor_of(request), pipeline_id, body)))


@endpoint("DELETE", "/pipelines/{pipeline_id}", summary="Delete a pipeline that holds no deals (not the default)",
          permission=("workspace", "manage_settings"), status=204, errors=(401, 403, 404, 409), tag=TAG)
async def delete_pipeline(request: Request, body: None) -> None:
    await _run(pipelines.delete_pipeline(actor_of(request), _id(request, "pipeline_id", "pipeline")))


@endpoint("POST", "/pipelines/{pipeline_id}/stages", summary="Add a stage to a pipeline",
          permission=("workspace", "manage_settings"), body=StageIn, response=StageOut, status=201,
          errors=(400, 401, 403, 404, 422), tag=TAG)
async def add_stage(request: Request, body: StageIn) -> BaseModel:
    pipeline_id = _id(request, "pipeline_id", "pipeline")
    return _stage_out(await _run(pipelines.add_stage(actor_of(request), pipeline_id, body)))


@endpoint("PATCH", "/stages/{stage_id}", summary="Rename, reorder, re-weight or change the kind of a stage",
          permission=("workspace", "manage_settings"), body=StagePatch, response=StageOut,
          errors=(400, 401, 403, 404, 409, 422), tag=TAG)
async def update_stage(request: Request, body: StagePatch) -> BaseModel:
    stage_id = _id(request, "stage_id", "stage")
    return _stage_out(await _run(pipelines.update_stage(actor_of(request), stage_id, body)))


@endpoint("DELETE", "/stages/{stage_id}", summary="Delete a stage that holds no deals",
          permission=("workspace", "manage_settings"), status=204, errors=(401, 403, 404, 409), tag=TAG)
async def delete_stage(request: Request, body: None) -> None:
    await _run(pipelines.delete_stage(actor_of(request), _id(request, "stage_id", "stage")))


# --- board and forecast (declared before /deals/{deal_id}, which would take their names) ---

@endpoint("GET", "/deals/board", summary="The pipeline board: columns per stage, totals and the weighted pipeline",
          permission=("deals", "view"), response=BoardOut, errors=(401, 403, 404, 422), tag=TAG,
          query=(QueryParam("pipeline_id", "The pipeline (default: the default pipeline).", "integer"),
                 QueryParam("limit", "Cards per column, 1-200 (default 50).", "integer")))
async def deal_board(request: Request, body: None) -> BaseModel:
    limit = _query_id(request, "limit") or board.CARDS_PER_COLUMN
    if not 1 <= limit <= 200:
        raise ApiError(422, "invalid_input", "limit must be 1 to 200.", fields={"limit": "Must be 1 to 200."})
    result = await _run(board.board(actor_of(request), _query_id(request, "pipeline_id"), limit=limit))
    return BoardOut(pipeline=pipeline_out(result["pipeline"]), columns=[
        {**c, "stage": _stage_out(c["stage"])} for c in result["columns"]], weighted=result["weighted"])


def workspace_today(request: Request) -> tuple[datetime, str]:
    """Now in the workspace's time zone, and the zone's name."""
    zone = request.state.caller.tenant.time_zone or "UTC"
    try:
        return datetime.now(ZoneInfo(zone)), zone
    except (KeyError, ValueError):
        return datetime.now(UTC), "UTC"


@endpoint("GET", "/deals/forecast", summary="Open deals by expected close month, and won deals by month",
          permission=("deals", "view"), response=ForecastOut, errors=(401, 403, 422), tag=TAG,
          query=(QueryParam("pipeline_id", "Only this pipeline (default: all).", "integer"),))
async def deal_forecast(request: Request, body: None) -> BaseModel:
    now, zone = workspace_today(request)
    result = await _run(board.forecast(actor_of(request), today=now.date(), time_zone=zone,
                                       pipeline_id=_query_id(request, "pipeline_id")))
    return ForecastOut(**result)


# --- deals -------------------------------------------------------------------------------

@endpoint(
    "GET", "/deals", summary="List deals with filters, sort, search and keyset pagination",
    permission=("deals", "view"), response=DealPage, errors=(401, 403, 422), tag=TAG,
    query=(*list_query("the deal's name", "stage_id:eq:3, amount:gte:1000"),
           QueryParam("columns", "Fields to show, comma-separated.")),
)
async def list_deals(request: Request, body: None) -> BaseModel:
    page = await engine_page(request, SPEC)
    return DealPage(items=[DealOut(**item) for item in page.items], next_cursor=page.next_cursor,
                    columns=page.columns)


@endpoint("POST", "/deals", summary="Create a deal", permission=("deals", "create"), body=DealIn,
          response=DealOut, status=201, errors=(400, 401, 403, 422), context=_currency, tag=TAG)
async def create_deal(request: Request, body: DealIn) -> BaseModel:
    return DealOut(**await _run(actions.create_deal(actor_of(request), body)))


@endpoint("GET", "/deals/{deal_id}", summary="Get one deal", permission=("deals", "view"), response=DealOut,
          errors=(401, 403, 404), tag=TAG)
async def get_deal(request: Request, body: None) -> BaseModel:
    return DealOut(**await _run(queries.get_deal(actor_of(request), _id(request, "deal_id", "deal"))))


@endpoint("PATCH", "/deals/{deal_id}", summary="Change some fields of a deal (a new stage_id moves it)",
          permission=("deals", "edit"), body=DealPatch, response=DealOut, errors=(400, 401, 403, 404, 422), tag=TAG)
async def update_deal(request: Request, body: DealPatch) -> BaseModel:
    deal_id = _id(request, "deal_id", "deal")
    return DealOut(**await _run(actions.update_deal(actor_of(request), deal_id, body)))


@endpoint("DELETE", "/deals/{deal_id}", summary="Delete a deal", permission=("deals", "delete"), status=204,
          errors=(401, 403, 404), tag=TAG)
async def delete_deal(request: Request, body: None) -> None:
    await _run(actions.delete_deal(actor_of(request), _id(request, "deal_id", "deal")))


@endpoint("POST", "/deals/{deal_id}/move", summary="Move a deal to another stage (a lost stage needs loss_reason)",
          permission=("deals", "edit"), body=MoveIn, response=DealOut, errors=(400, 401, 403, 404, 422), tag=TAG)
async def move_deal(request: Request, body: MoveIn) -> BaseModel:
    deal_id = _id(request, "deal_id", "deal")
    return DealOut(**await _run(actions.move_deal_to_stage(actor_of(request), deal_id, body.stage_id,
                                                           body.loss_reason)))


@endpoint("GET", "/deals/{deal_id}/stage-history", summary="Every stage change of a deal, newest first",
          permission=("deals", "view"), response=StageHistory, errors=(401, 403, 404), tag=TAG)
async def deal_stage_history(request: Request, body: None) -> BaseModel:
    rows = await _run(queries.stage_history(actor_of(request), _id(request, "deal_id", "deal")))
    return StageHistory(items=[StageChangeOut(**r) for r in rows])
