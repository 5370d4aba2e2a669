"""The `paycenter` console script, in a main module that is slow to import in the server's workers.

Multiprocessing's spawn imports the parent's main module again in each child (as ``__mp_main__``)
before the child runs anything of its own: a uvicorn worker answers its supervisor's health checks
only after that import, which for paycenter's CLI takes seconds on a busy host. Here it takes
``SLOW_WORKER_IMPORT`` seconds, set only by tests/cli/test_workers.py, which runs this file.
"""

import os
import sys
import time

if __name__ == "__mp_main__":  # in a worker only: the supervisor starts at once
    time.sleep(float(os.environ["SLOW_WORKER_IMPORT"]))  # the slow import itself, not a wait

if __name__ == "__main__":
    from paycenter.cli import main

    sys.exit(main())
