"""Pure types and rules: payloads, statuses, names, domain rules, tables (activities only)."""
