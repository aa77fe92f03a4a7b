"""B14's measure: runs a command to its end and reports, on its last
stderr line, its wall time and peak resident memory as JSON
({"seconds": ..., "max_rss_kib": ...}). The command's stdout passes through.

Usage: measure.py COMMAND [ARGS...]
"""

import json
import resource
import subprocess
import sys
import time


def main() -> None:
    start = time.monotonic()
    code = subprocess.call(sys.argv[1:])
    seconds = time.monotonic() - start
    # The only child this process waited for: its peak RSS (KiB on Linux).
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    sys.stderr.write("\n" + json.dumps({"seconds": seconds, "max_rss_kib": peak}) + "\n")
    sys.exit(code)


if __name__ == "__main__":
    main()
