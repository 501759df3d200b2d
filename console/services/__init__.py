"""Business logic, one module per feature. No request objects in here."""
