"""Settings for the test suite: crmhub's own, in the test environment."""

import os

os.environ.setdefault("CRMHUB_ENV", "test")

from crmhub.settings import *  # noqa: E402, F403
