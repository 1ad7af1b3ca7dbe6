"""The public customer pool (公海): companies and leads nobody owns (owner_id IS NULL).

Members claim records from it (up to their role's limit), owners return them, and a nightly job
(jobs/pool_reclaim.py) returns records nobody followed up within the workspace's rule. Every move
is audited and written on the record's timeline, so its history stays with it.
"""
