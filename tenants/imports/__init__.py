"""Imports of contacts, companies and leads from CSV and XLSX files (issue 7)."""
