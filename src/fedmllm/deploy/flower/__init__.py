"""fedmllm on Flower: the same methods and aggregators across machines.

``server_app``/``client_app`` live in :mod:`fedmllm.deploy.flower.app` (what ``flwr run``
loads); ``python -m fedmllm.deploy.flower ...`` runs Flower's simulation engine. See
``docs/deploy.md``.
"""

import os

# Flower reports usage to its servers unless told not to; a hospital node must not call home.
# Set before flwr is imported (it reads the variable once); a user's own setting wins.
os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
