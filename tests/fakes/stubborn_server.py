"""A server that ignores SIGTERM (as a hung SGLang scheduler does) and has a child of its own; it writes both
pids to the file named by its first argument once SIGTERM is ignored, then sleeps."""

import json
import os
import signal
import subprocess
import sys
import time

signal.signal(signal.SIGTERM, signal.SIG_IGN)
signal.signal(signal.SIGINT, signal.SIG_IGN)
child = subprocess.Popen([sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                          "time.sleep(600)"])
with open(sys.argv[1] + ".tmp", "w") as fh:
    json.dump([os.getpid(), child.pid], fh)
os.replace(sys.argv[1] + ".tmp", sys.argv[1])
time.sleep(600)
