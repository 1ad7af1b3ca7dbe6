"""The CRM benchmark: one big tenant loaded with COPY, then measured over HTTP (`kith crm-bench`).

`generate` makes the workspace (signup, sales members, an API token) and loads its CRM tables;
`http` starts the real web server against it and times the list, search, 360 and board endpoints.
"""
