"""The applications built on the library: the ``ssdlite`` command line (``cli``), the embedded demo
(``demo``), live detection on cameras, streams, videos and folders (``video``, ``sources``) and the
benchmarks (``bench``). ``tools/`` holds their thin entry points."""
