"""Settings for the test suite: crmhub's own, in the test environment."""

import os

os.environ.setdefault("CRMHUB_ENV", "test")

from crmhub.settings import *  # noqa: E402, F403

# Assertions on messages are written in English; the tests of the Chinese UI switch to it
# explicitly (the product's default stays zh-hans, see crmhub.settings).
LANGUAGE_CODE = "en"
