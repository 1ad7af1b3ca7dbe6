"""What the CRM domain adds to the ORM: model modules living in tenant schemas."""

TENANT_MODEL_MODULES = ["kith.tenants.contacts.models"]
