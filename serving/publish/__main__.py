"""``python -m serving.publish``: write the online snapshot from a raw export (``serving.publish.run``)."""

import sys

from serving.publish.run import main

if __name__ == "__main__":
    sys.exit(main())
