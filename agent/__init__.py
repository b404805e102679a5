"""ShopEdge agent: the composition root at the top of the house (docs/architecture.md).

The daemon, the CLI, config composition and its error reporting, the wiring that builds every
room's capability and maps its health, doctor, provisioning, the ops pages and the demo. No
other room imports it.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
