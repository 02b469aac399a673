"""The apps ``flwr run`` loads (``[tool.flwr.app.components]`` of ``app/pyproject.toml``).

The run config (``overrides``, ``config-dir`` and the deployment options) comes from the app's
``[tool.flwr.app.config]`` and ``flwr run --run-config``; each SuperNode's ``--node-config``
names its client and directories (``fedmllm.deploy.flower.node``).
"""

from fedmllm.deploy.flower.client_app import make_client_app
from fedmllm.deploy.flower.server_app import make_server_app

server_app = make_server_app()
client_app = make_client_app()
