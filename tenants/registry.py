"""What the CRM domain adds to the ORM and the permission engine: model modules living in
tenant schemas, and the object types each domain registers (importing registers them, in this
order, which is the order role editors list them in)."""
# isort: skip_file

import kith.tenants.contacts.access  # noqa: F401
import kith.tenants.companies.access  # noqa: F401
import kith.tenants.leads.access  # noqa: F401
import kith.tenants.deals.access  # noqa: F401
import kith.tenants.activities.access  # noqa: F401 - activities and tasks
import kith.tenants.sales.access  # noqa: F401 - products and orders
import kith.tenants.campaigns.access  # noqa: F401 - campaigns, segments, email templates
import kith.tenants.tickets.access  # noqa: F401 - service tickets

TENANT_MODEL_MODULES = ["kith.tenants.contacts.models"]

# The kinds of record with the generic list features (filters, saved views, bulk changes),
# registered by their domains' modules, in the order the lists appear.
import kith.tenants.companies.actions  # noqa: E402, F401
import kith.tenants.contacts.actions  # noqa: E402, F401
import kith.tenants.leads.actions  # noqa: E402, F401
import kith.tenants.deals.spec  # noqa: E402, F401
import kith.tenants.tickets.actions  # noqa: E402, F401
