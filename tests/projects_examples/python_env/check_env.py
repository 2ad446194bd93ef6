"""Show that this runs in the project's virtualenv, with its dependency installed."""
import sys

import six

print(f"prefix={sys.prefix} six={six.__version__}")
