import sys

from lrt.cli import main

sys.exit(main())
