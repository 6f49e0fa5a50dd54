"""The applications built on the library: the ``ssdlite`` command line (``cli``), the embedded demo
(``demo``; its video step ``demo_video`` and its training launcher ``launch``), live detection on
cameras, streams, videos and folders (the loop ``video``, frame ``sources``, ``draw`` and the output
``sinks``) and the benchmarks (``bench``). ``tools/`` holds their thin entry points."""
