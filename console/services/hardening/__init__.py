"""Go-live hardening: security audit, error analysis, performance, slow queries, health, checklist, optimize."""
