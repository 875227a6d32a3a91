"""Development tooling: the reference PIM server (Akeneo's REST API over a catalog of our
choosing, with switchable faults), the catalog generator (and the embedded sample catalog it
writes) and the in-process dispatcher the service tests and benchmarks drive.

Production code never imports this package; the one exception is opening the embedded
default source (``sample``, ``generated:N``), which is this package's catalog (see
``app.pim.sources.open_source``). import-linter holds both rules.
"""
