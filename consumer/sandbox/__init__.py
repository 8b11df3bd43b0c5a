"""fboc sandbox: a local stand-in for Meta's Conversions API (docs/meta-api.md). It never calls Meta.

Modules: app (aiohttp app and the Graph endpoint), validate (Meta's checks), faults (fault rules),
errors (error bodies, JSON responses), state (what it records), inspection (the /_sandbox/ API),
runner (run_sandbox, SandboxThread).
"""

from consumer.sandbox.app import create_app
from consumer.sandbox.runner import SandboxThread, run_sandbox

__all__ = ["SandboxThread", "create_app", "run_sandbox"]
