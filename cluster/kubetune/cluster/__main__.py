"""``python -m kubetune.cluster``: see ``kubetune.cluster.cli``."""

from __future__ import annotations

import sys

from kubetune.cluster.cli import main

sys.exit(main())
