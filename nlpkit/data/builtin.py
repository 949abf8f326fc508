"""The built-in dataset: deterministic, seeded assistant utterances with intents and slot spans.

It lets ``make train`` and the tests run on a fresh machine with no data at hand, and it carries
both document labels (``intent``) and word labels (``slots``, BIO over whitespace tokens) so the
tagging and joint intent-slot tasks can reuse it. Files are JSONL, one utterance per line::

    {"text": "wake me up at 7 am", "intent": "set_alarm", "tokens": [...], "slots": ["O", ..., "B-time", "I-time"]}

Generation is pure Python seeded with ``random.Random(seed)``: the same seed gives byte-identical
files on every machine.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

from nlpkit.utils.io import atomic_open

BUILTIN_VERSION = 1
SPLITS = {"train": 3000, "valid": 400, "test": 400}

SLOT_VALUES: dict[str, list[str]] = {
    "time": ["7 am", "six thirty", "noon", "8:15 pm", "midnight", "half past nine", "10 o'clock", "5 pm"],
    "date": ["tomorrow", "today", "on friday", "next monday", "this weekend", "on june 3rd", "tonight"],
    "city": ["paris", "new york", "tokyo", "berlin", "san francisco", "lagos", "são paulo", "oslo"],
    "artist": ["miles davis", "adele", "the beatles", "beyoncé", "radiohead", "nina simone", "daft punk"],
    "genre": ["jazz", "rock", "hip hop", "classical", "lo-fi", "reggae", "country"],
    "contact": ["mom", "alex", "dr. lee", "my boss", "sarah", "the office", "grandpa"],
    "item": ["milk", "eggs", "batteries", "coffee beans", "dog food", "paper towels", "olive oil"],
    "duration": ["ten minutes", "an hour", "90 seconds", "half an hour", "5 minutes", "two hours"],
    "device": ["the lights", "the heater", "the tv", "the fan", "the kitchen lights", "the speaker"],
    "cuisine": ["thai", "italian", "sushi", "mexican", "vegan", "indian", "korean"],
}

# intent -> templates; {slot} marks a slot filled from SLOT_VALUES.
TEMPLATES: dict[str, list[str]] = {
    "set_alarm": [
        "wake me up at {time}",
        "set an alarm for {time} {date}",
        "please set an alarm at {time}",
        "i need an alarm {date} at {time}",
        "alarm for {time}",
    ],
    "set_timer": [
        "set a timer for {duration}",
        "start a {duration} timer",
        "countdown {duration} please",
        "timer {duration}",
    ],
    "get_weather": [
        "what's the weather in {city} {date}",
        "will it rain in {city} {date}",
        "is it cold in {city}",
        "weather forecast for {city}",
        "do i need an umbrella {date}",
    ],
    "play_music": [
        "play some {genre}",
        "play {artist}",
        "put on {genre} by {artist}",
        "i want to hear {artist}",
        "shuffle my {genre} playlist",
    ],
    "call_contact": [
        "call {contact}",
        "phone {contact} {date}",
        "give {contact} a ring",
        "dial {contact} please",
    ],
    "send_message": [
        "text {contact} that i'm running late",
        "send a message to {contact}",
        "tell {contact} i will call {date}",
        "message {contact} about dinner {date}",
    ],
    "add_to_list": [
        "add {item} to my shopping list",
        "put {item} on the list",
        "remind me to buy {item}",
        "we need {item}",
    ],
    "smart_home": [
        "turn on {device}",
        "switch off {device}",
        "dim {device} in {duration}",
        "turn {device} off at {time}",
    ],
    "find_restaurant": [
        "find a {cuisine} restaurant in {city}",
        "book a table for {cuisine} food {date}",
        "where can i get {cuisine} near me",
        "any good {cuisine} places open at {time}",
    ],
    "get_time": [
        "what time is it in {city}",
        "what's the time",
        "tell me the current time in {city}",
        "what day is it {date}",
    ],
}

PREFIXES = ["", "", "", "hey ", "please ", "could you ", "ok ", "um "]
SUFFIXES = ["", "", "", " please", " thanks", " now", "?"]
_SLOT = re.compile(r"\{(\w+)\}")


def _render(template: str, rng: random.Random) -> tuple[list[str], list[str]]:
    """Fill a template; return whitespace tokens and their BIO slot tags."""
    tokens: list[str] = []
    tags: list[str] = []
    position = 0
    for match in _SLOT.finditer(template):
        for word in template[position : match.start()].split():
            tokens.append(word)
            tags.append("O")
        slot = match.group(1)
        for i, word in enumerate(rng.choice(SLOT_VALUES[slot]).split()):
            tokens.append(word)
            tags.append(("B-" if i == 0 else "I-") + slot)
        position = match.end()
    for word in template[position:].split():
        tokens.append(word)
        tags.append("O")
    return tokens, tags


def generate_example(rng: random.Random) -> dict:
    intent = rng.choice(sorted(TEMPLATES))
    tokens, tags = _render(rng.choice(TEMPLATES[intent]), rng)
    prefix = rng.choice(PREFIXES).split()
    suffix = rng.choice(SUFFIXES)
    tokens = prefix + tokens
    tags = ["O"] * len(prefix) + tags
    if suffix == "?":
        tokens[-1] = tokens[-1] + "?"
    elif suffix:
        tokens += suffix.split()
        tags += ["O"] * len(suffix.split())
    return {"text": " ".join(tokens), "intent": intent, "tokens": tokens, "slots": tags}


def ensure_builtin(directory: str | Path, seed: int = 13) -> Path:
    """Generate the built-in dataset into ``directory`` unless that exact version is already there."""
    directory = Path(directory)
    marker = directory / "VERSION"
    expected = f"nlpkit-builtin v{BUILTIN_VERSION} seed={seed}\n"
    if (
        marker.is_file()
        and marker.read_text() == expected
        and all((directory / f"{split}.jsonl").is_file() for split in SPLITS)
    ):
        return directory
    rng = random.Random(seed)
    for split, size in SPLITS.items():
        with atomic_open(directory / f"{split}.jsonl") as handle:
            for _ in range(size):
                handle.write(json.dumps(generate_example(rng), ensure_ascii=False) + "\n")
    with atomic_open(marker) as handle:
        handle.write(expected)
    return directory
