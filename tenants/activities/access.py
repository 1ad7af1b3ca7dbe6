"""Activities (calls, meetings, emails, notes) and tasks as object types of the permission
engine. An activity belongs to whoever logged it, a task to its assignee: an 'own' scope sees
those; the timeline of a record shows what the actor's scope reaches."""

from __future__ import annotations

from kith.platform.access.rules import ObjectType, register_object_type

ACTIVITIES = register_object_type(
    ObjectType(name="activities", label="Activities", fields=("subject", "body"), owner_field="created_by_id")
)
TASKS = register_object_type(
    ObjectType(name="tasks", label="Tasks", fields=("title", "notes"), owner_field="assignee_id")
)
