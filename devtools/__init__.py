"""Development and test tooling: embedded services, the local stack launcher, the SMTP sink.

Nothing here is imported by the application itself.
"""
