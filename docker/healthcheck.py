"""Container health check: exit 0 only when the service's /readyz answers 200 (models loaded, on a GPU if required).

Run by the image's HEALTHCHECK; the port comes from PKDOT_PORT like the service's own.
"""

import os
import sys
import urllib.error
import urllib.request

url = f"http://127.0.0.1:{os.environ.get('PKDOT_PORT', '8000')}/readyz"
try:
    with urllib.request.urlopen(url, timeout=4) as response:
        sys.exit(0 if response.status == 200 else 1)
except (urllib.error.URLError, OSError) as exc:  # 503 (not ready) raises HTTPError, a URLError
    print(f"{url}: {exc}", file=sys.stderr)
    sys.exit(1)
