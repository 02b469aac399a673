"""Differential privacy and its audit: settings, accountants, clipping and noise, membership test.

- :mod:`settings` — ``privacy=none|dp_sgd|dp_client`` as a checked dataclass;
- :mod:`accountant` — ε from Opacus's RDP accountant, σ for a target ε;
- :mod:`dp_sgd` — per-sample clipping and Gaussian noise (the maths; the local step that uses
  it is ``methods/dp_sgd_addon.py``);
- :mod:`client_dp` — clipping a client's update and the Gaussian noise of client-level DP;
- :mod:`audit` — a loss-threshold membership-inference test (``python -m fedmllm.privacy.audit``).
"""

from fedmllm.privacy.settings import PrivacyConfig, privacy_config

__all__ = ["PrivacyConfig", "privacy_config"]
