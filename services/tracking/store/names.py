"""Names for runs created without one, as MLflow's (`able-fox-123`)."""
import random

_ADJECTIVES = "able bold brave bright calm clever crisp eager fair fast gentle glad grand keen kind lucky merry neat noble proud quick quiet rare sharp shy smart swift tidy vast warm wise".split()
_NOUNS = "ant bass bat bear bee carp cat colt crab crow deer dove duck eel elk fawn finch fox frog goat hare hawk hen lark lion lynx mole moth newt owl ram seal shrew slug snail swan toad wasp whale wolf wren yak".split()


def generate_run_name() -> str:
    return f"{random.choice(_ADJECTIVES)}-{random.choice(_NOUNS)}-{random.randint(100, 999)}"
