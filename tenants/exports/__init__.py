"""Exports of CRM lists (companies, contacts, leads, deals) as CSV or XLSX, streamed."""
