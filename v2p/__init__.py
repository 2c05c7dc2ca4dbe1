"""V2P: video-to-policy robot learning with a labor-economics reward and ΔMPL data pricing."""

import v2p.envs  # noqa: F401  (registers the gymnasium ids)

__version__ = "0.1.0"
