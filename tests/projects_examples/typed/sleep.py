"""Say it started, then wait to be stopped."""
import time

print("sleeping", flush=True)
time.sleep(60)
