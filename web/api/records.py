"""The generic record API: custom fields (definitions), saved list views, and bulk edit, bulk
assign and bulk delete of companies, contacts, leads and deals.

Handlers validate input and call one action in kith.tenants.records; the permission checks
happen there. Bulk endpoints are declared once per object type, so each declares its own
permission (e.g. "contacts: delete") for the OpenAPI document and the role matrix.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request

from kith.tenants.records import bulk, fields_admin, views
from kith.tenants.records.fields_admin import CustomFieldIn, CustomFieldList, CustomFieldOut, CustomFieldPatch
from kith.tenants.records.refusals import RecordsRefusal
from kith.tenants.records.views import SavedViewIn, SavedViewList, SavedViewOut, SavedViewPatch
from kith.web.api.registry import Handler, QueryParam, endpoint
from kith.web.edge import actor_of
from kith.web.errors import ApiError, validation_fields

T = TypeVar("T")
MANAGE_SETTINGS = ("workspace", "manage_settings")
BULK_TYPES = ("companies", "contacts", "leads", "deals", "tickets")

RecordIds = Annotated[list[int], Field(max_length=bulk.MAX_IDS, description="Record ids, at most 500.")]


async def _run(action: Awaitable[T]) -> T:
    """Await a records action, turning its refusals into API errors."""
    try:
        return await action
    except RecordsRefusal as exc:
        raise ApiError(exc.status, exc.code, exc.message, fields=exc.fields) from None


def _id(request: Request, name: str, what: str) -> int:
    raw = str(request.path_params[name])
    if not raw.isdigit():
        raise ApiError(404, "not_found", f"There is no such {what}.")
    return int(raw)


# --- custom fields -------------------------------------------------------------------------


@endpoint("GET", "/custom-fields", summary="List custom field definitions (any member)", tag="custom fields",
          permission=None, response=CustomFieldList, errors=(401, 422),
          query=(QueryParam("object_type", "companies, contacts, leads or deals; all when absent."),))
async def list_custom_fields(request: Request, body: None) -> BaseModel:
    object_type = request.query_params.get("object_type") or None
    return CustomFieldList(items=await _run(fields_admin.list_custom_fields(actor_of(request), object_type)))


@endpoint("POST", "/custom-fields", summary="Add a custom field to companies, contacts, leads or deals",
          tag="custom fields", permission=MANAGE_SETTINGS, body=CustomFieldIn, response=CustomFieldOut, status=201,
          errors=(400, 401, 403, 409, 422))
async def create_custom_field(request: Request, body: CustomFieldIn) -> BaseModel:
    return await _run(fields_admin.create_custom_field(actor_of(request), body))


@endpoint("PATCH", "/custom-fields/{field_id}",
          summary="Rename, reorder, make required or change the options of a custom field (not its kind)",
          tag="custom fields", permission=MANAGE_SETTINGS, body=CustomFieldPatch, response=CustomFieldOut,
          errors=(400, 401, 403, 404, 409, 422))
async def update_custom_field(request: Request, body: CustomFieldPatch) -> BaseModel:
    field_id = _id(request, "field_id", "custom field")
    return await _run(fields_admin.update_custom_field(actor_of(request), field_id, body))


@endpoint("DELETE", "/custom-fields/{field_id}",
          summary="Delete a custom field and its value in every record", tag="custom fields",
          permission=MANAGE_SETTINGS, status=204, errors=(401, 403, 404))
async def delete_custom_field(request: Request, body: None) -> None:
    await _run(fields_admin.delete_custom_field(actor_of(request), _id(request, "field_id", "custom field")))


# --- saved views ---------------------------------------------------------------------------


@endpoint("GET", "/views", summary="List the saved views of a list: your own and the shared ones",
          tag="saved views", permission=None, response=SavedViewList, errors=(401, 403, 422),
          query=(QueryParam("object_type", "companies, contacts, leads or deals; all you may view when absent."),))
async def list_views(request: Request, body: None) -> BaseModel:
    object_type = request.query_params.get("object_type") or None
    return SavedViewList(items=await _run(views.list_views(actor_of(request), object_type)))


@endpoint("POST", "/views", summary="Save a list view (private, or shared with the workspace)", tag="saved views",
          permission=None, body=SavedViewIn, response=SavedViewOut, status=201, errors=(400, 401, 403, 409, 422))
async def create_view(request: Request, body: SavedViewIn) -> BaseModel:
    return await _run(views.create_view(actor_of(request), body))


@endpoint("PATCH", "/views/{view_id}",
          summary="Change a saved view (its owner; a shared one also with manage_settings)", tag="saved views",
          permission=None, body=SavedViewPatch, response=SavedViewOut, errors=(400, 401, 403, 404, 409, 422))
async def update_view(request: Request, body: SavedViewPatch) -> BaseModel:
    return await _run(views.update_view(actor_of(request), _id(request, "view_id", "saved view"), body))


@endpoint("DELETE", "/views/{view_id}",
          summary="Delete a saved view (its owner; a shared one also with manage_settings)", tag="saved views",
          permission=None, status=204, errors=(401, 403, 404))
async def delete_view(request: Request, body: None) -> None:
    await _run(views.delete_view(actor_of(request), _id(request, "view_id", "saved view")))


# --- bulk changes --------------------------------------------------------------------------


class BulkUpdateIn(BaseModel):
    """The same change for many records: `changes` takes the fields of the record's PATCH."""

    model_config = ConfigDict(extra="forbid")

    ids: RecordIds
    changes: dict[str, Any] = Field(description="Fields and new values, as in the record's PATCH.")


class BulkAssignIn(BaseModel):
    """Give many records to one member (an active member of the workspace)."""

    model_config = ConfigDict(extra="forbid")

    ids: RecordIds
    owner_id: int = Field(description="The identity id of the new owner.")


class BulkDeleteIn(BaseModel):
    """Delete many records; `confirm` must repeat how many (a second look before a big deletion)."""

    model_config = ConfigDict(extra="forbid")

    ids: RecordIds
    confirm: int = Field(description="The number of records to delete: must equal the number of ids.")


class BulkResultOut(BaseModel):
    """What a bulk change did: every record of `ids` changed (all or nothing)."""

    object_type: str
    count: int
    ids: list[int]


def _result(result: bulk.BulkResult) -> BulkResultOut:
    return BulkResultOut(object_type=result.object_type, count=result.count, ids=result.ids)


def _changes_error(exc: ValidationError) -> ApiError:
    fields = {f"changes.{k}": v for k, v in validation_fields(exc).items()}
    return ApiError(422, "invalid_input", "Some changes are not valid.", fields=fields)


def _bulk_endpoints(object_type: str) -> None:
    """Declare bulk-update, bulk-assign and bulk-delete for one object type."""

    async def bulk_update(request: Request, body: BulkUpdateIn) -> BaseModel:
        try:
            return _result(await _run(bulk.bulk_update(actor_of(request), object_type, body.ids, body.changes)))
        except ValidationError as exc:
            raise _changes_error(exc) from None

    async def bulk_assign(request: Request, body: BulkAssignIn) -> BaseModel:
        return _result(await _run(bulk.bulk_assign(actor_of(request), object_type, body.ids, body.owner_id)))

    async def bulk_delete(request: Request, body: BulkDeleteIn) -> BaseModel:
        return _result(await _run(bulk.bulk_delete(actor_of(request), object_type, body.ids, body.confirm)))

    declared: list[tuple[str, str, str, Handler, type[BaseModel]]] = [
        ("update", "edit", f"Change the same fields of many {object_type} (all or nothing)", bulk_update,
         BulkUpdateIn),
        ("assign", "edit", f"Give many {object_type} to one member (all or nothing)", bulk_assign, BulkAssignIn),
        ("delete", "delete", f"Delete many {object_type} (all or nothing; confirm with the count)", bulk_delete,
         BulkDeleteIn),
    ]
    for verb, action, summary, handler, model in declared:
        handler.__name__ = f"bulk_{verb}_{object_type}"
        endpoint("POST", f"/{object_type}/bulk-{verb}", summary=summary, tag=object_type,
                 permission=(object_type, action), body=model, response=BulkResultOut,
                 errors=(400, 401, 403, 404, 409, 422))(handler)


for _object_type in BULK_TYPES:
    _bulk_endpoints(_object_type)
