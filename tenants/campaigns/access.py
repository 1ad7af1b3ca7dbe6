"""Campaigns, segments and email templates as object types of the permission engine.

They belong to the workspace's marketing, not to one person (no owner, so no record scope
narrows them): catalogue object types, which every role may view and owners, admins and
managers maintain. Starting, scheduling, pausing and cancelling a campaign (email leaving Kith)
also needs the workspace permission manage_campaigns."""

from __future__ import annotations

from kith.platform.access.rules import ObjectType, register_object_type

CAMPAIGNS = register_object_type(
    ObjectType(name="campaigns", label="Campaigns",
               fields=("name", "subject", "html_body", "text_body", "from_name", "from_email", "reply_to",
                       "segment_id", "scheduled_at"),
               owner_field="", catalogue=True)
)
SEGMENTS = register_object_type(
    ObjectType(name="segments", label="Segments", fields=("name", "definition"), owner_field="", catalogue=True)
)
EMAIL_TEMPLATES = register_object_type(
    ObjectType(name="email_templates", label="Email templates", fields=("name", "subject", "html_body", "text_body"),
               owner_field="", catalogue=True)
)
