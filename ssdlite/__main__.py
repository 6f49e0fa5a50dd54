import sys

from ssdlite.cli import main

sys.exit(main())
