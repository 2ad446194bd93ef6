"""Page tokens of list and search answers: an opaque encoding of the next page's offset."""
import base64
import json

from services.common.errors import InvalidArgument


def encode_page_token(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"offset": offset}).encode()).decode()


def decode_page_token(token: str) -> int:
    if not token:
        return 0
    try:
        offset = json.loads(base64.urlsafe_b64decode(token.encode()))["offset"]
        if isinstance(offset, int) and offset >= 0:
            return offset
    except (ValueError, KeyError, TypeError):
        pass
    raise InvalidArgument(f"invalid page_token {token!r}: pass the next_page_token of the previous response unchanged")
