"""``referee attach``: push evidence next to an image the way Referee will look for it.

:mod:`~provider.attach.artifact` builds the OCI 1.1 artifact manifest, :mod:`~provider.attach.session` talks to the
registry through oras-py under Referee's registry settings, :mod:`~provider.attach.tagindex` maintains the referrers
tag schema for registries without the referrers API, :mod:`~provider.attach.registry` and
:mod:`~provider.attach.layout` put it together for a registry and for an OCI layout. Synchronous: CLI only.
"""
