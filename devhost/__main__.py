"""``python -m devhost --app function_app``: see devhost/host.py and docs/devhost.md."""

import sys

from devhost.host import main

sys.exit(main())
