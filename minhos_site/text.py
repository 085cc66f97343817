"""Control characters in what clients send (no Django import: services and commands use it as the API's fields do)."""
import re

# Unicode's control characters (C0, DEL, C1). Python's datetime.fromisoformat read "2026-12-07T16:00:00\x00Z" as a
# time, and a NUL or an escape sequence in a name or a note reaches the logs and the pages as it came.
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# Free text (a reason, a note) may hold tabs and line breaks, nothing else of that kind.
CONTROL_CHARACTERS_IN_TEXT = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def control_character_problem(value: str, *, text: bool = False) -> str | None:
    """What is wrong with a client's string that holds a control character (None if it holds none)."""
    found = (CONTROL_CHARACTERS_IN_TEXT if text else CONTROL_CHARACTERS).search(value)
    if found is None:
        return None
    allowed = " (tabs and line breaks are accepted)" if text else ""
    return f"Control character U+{ord(found.group()):04X} at position {found.start() + 1} is not accepted{allowed}."
