"""What the CRM domain adds to the ORM: model modules living in tenant schemas."""

import kith.tenants.contacts.access  # noqa: F401 - registers the contacts object type for permissions

TENANT_MODEL_MODULES = ["kith.tenants.contacts.models"]
