"""gunicorn's settings, read from the directory it starts in (the Procfile's ``web``).

Its own lines and, when enabled (``--access-logfile -``), its access log go through the
app's log handler: one JSON object per line (or text, per ``LOG_FORMAT``), with phone
numbers and calendar-feed tokens redacted (``backend.logs``).
"""

import os
from pathlib import Path

from backend.logs import gunicorn_logconfig

logconfig_dict = gunicorn_logconfig(os.environ, Path.cwd())
