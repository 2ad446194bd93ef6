"""No MLproject: run with `-e hello.py`; parameters come as --name value."""
import sys

print("hello.py", " ".join(sys.argv[1:]))
