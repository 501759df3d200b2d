"""placeholder"""


def current_states() -> dict:
    return {}
