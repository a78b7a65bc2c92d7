import sys

from netvisor.cli import main

sys.exit(main())
