"""``python -m brainviz`` entry point."""

import sys

from brainviz.cli import main

if __name__ == "__main__":
    sys.exit(main())
