"""Wire codecs: each protocol's request to a Payload, and model outputs back to that protocol."""
