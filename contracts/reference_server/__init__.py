"""A second, independent fal-like queue server (written from fal's documentation) that the contract suite must pass.

python -m contracts.reference_server --port 8770 --key reference-key
"""

from contracts.reference_server.app import ReferenceConfig, create_app

__all__ = ["ReferenceConfig", "create_app"]
