import sys

from ssdlite.apps.cli import main

sys.exit(main())
