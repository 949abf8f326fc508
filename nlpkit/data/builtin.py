"""The built-in dataset: deterministic, seeded assistant utterances with intents and slot spans.

It lets ``make train`` and the tests run on a fresh machine with no data at hand, and it carries
both document labels (``intent``) and word labels (``slots``, BIO over whitespace tokens) so the
tagging and joint intent-slot tasks can reuse it. Files are JSONL, one utterance per line::

    {"text": "wake me up at 7 am", "intent": "set_alarm", "tokens": [...], "slots": ["O", ..., "B-time", "I-time"]}

The data is meant to be hard enough that models differ and accuracy checks can fail, the way real
assistant logs are (see README, "The built-in dataset"):

- **held-out phrasings**: every intent has phrasings that only ``valid`` or only ``test`` use
  (never ``train``), and slot values that ``train`` never has;
- **ambiguity**: some phrasings are shared by two or three intents (``remind me at 7 am``);
- **negation** (``don't call mom just text her ...``: the intent after ``don't ...`` counts) and
  **two requests in one sentence** (``turn on the fan and then play jazz``: the first one counts),
  both built from other intents' phrasings, so intent words overlap across classes;
- **typos** in :data:`TYPO_RATE` of the longer words (the slot tags stay on the misspelt word);
- **label noise**: :data:`LABEL_NOISE` of the intents, in every split, are replaced by another
  intent at random, as annotators err (slot tags are not noised).

Generation is pure Python seeded with ``random.Random``: the same seed gives byte-identical files on
every machine, and each split has its own stream, so resizing one split leaves the others unchanged.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass
from pathlib import Path

from nlpkit.utils.io import atomic_open

BUILTIN_VERSION = 3  # 3: rows carry num_slots (task=doc_regression's target)
SPLITS = {"train": 3000, "valid": 500, "test": 1000}

LABEL_NOISE = 0.04  # share of intents replaced by a different, random intent (every split)
TYPO_RATE = 0.03  # share of words of 3+ letters misspelt (swap, drop, double or mistype a letter)
HELD_OUT_PHRASING = 0.2  # share of plain valid/test utterances phrased as train never is
HELD_OUT_VALUE = 0.25  # share of valid/test slot fills taken from values train never has
AMBIGUOUS = 0.07  # share of utterances phrased in a way that several intents share
NEGATED = 0.07  # "don't <other request> just <request>": labelled with the request that is kept
TWO_REQUESTS = 0.07  # "<request> and then <other request>": labelled with the first request

# slot -> (values every split uses, values only valid/test use)
SLOT_VALUES: dict[str, tuple[list[str], list[str]]] = {
    "time": (
        ["7 am", "six thirty", "noon", "8:15 pm", "midnight", "half past nine", "10 o'clock", "5 pm"],
        ["quarter to six", "6:45", "11 pm", "two in the afternoon"],
    ),
    "date": (
        ["tomorrow", "today", "on friday", "next monday", "this weekend", "on june 3rd", "tonight"],
        ["the day after tomorrow", "on tuesday", "next week", "on new year's eve"],
    ),
    "city": (
        ["paris", "new york", "tokyo", "berlin", "san francisco", "lagos", "são paulo", "oslo"],
        ["nairobi", "lisbon", "mexico city", "hanoi"],
    ),
    "artist": (
        ["miles davis", "adele", "the beatles", "beyoncé", "radiohead", "nina simone", "daft punk"],
        ["fela kuti", "billie eilish", "bob marley", "coltrane"],
    ),
    "genre": (
        ["jazz", "rock", "hip hop", "classical", "lo-fi", "reggae", "country"],
        ["blues", "afrobeat", "metal", "salsa"],
    ),
    "contact": (
        ["mom", "alex", "dr. lee", "my boss", "sarah", "the office", "grandpa"],
        ["dad", "priya", "uncle joe", "the landlord"],
    ),
    "item": (
        ["milk", "eggs", "batteries", "coffee beans", "dog food", "paper towels", "olive oil"],
        ["rice", "toothpaste", "oat milk", "light bulbs"],
    ),
    "duration": (
        ["ten minutes", "an hour", "90 seconds", "half an hour", "5 minutes", "two hours"],
        ["three minutes", "45 seconds", "twenty minutes", "a minute"],
    ),
    "device": (
        ["the lights", "the heater", "the tv", "the fan", "the kitchen lights", "the speaker"],
        ["the porch light", "the air conditioner", "the lamp", "the radio"],
    ),
    "cuisine": (
        ["thai", "italian", "sushi", "mexican", "vegan", "indian", "korean"],
        ["ethiopian", "greek", "ramen", "lebanese"],
    ),
}


@dataclass(frozen=True)
class Phrasings:
    """An intent's templates: ``seen`` in every split, ``valid_only`` and ``test_only`` held out."""

    seen: list[str]
    valid_only: list[str]
    test_only: list[str]


# intent -> phrasings; {slot} marks a slot filled from SLOT_VALUES.
TEMPLATES: dict[str, Phrasings] = {
    "set_alarm": Phrasings(
        seen=[
            "wake me up at {time}",
            "set an alarm for {time} {date}",
            "please set an alarm at {time}",
            "i need an alarm {date} at {time}",
            "alarm for {time}",
            "i have to get up at {time} {date}",
            "make sure i'm up by {time}",
            "new alarm {time}",
        ],
        valid_only=["get me out of bed at {time}", "i want to be woken at {time} {date}"],
        test_only=["ring me awake at {time}", "schedule a wake up call for {time} {date}"],
    ),
    "set_timer": Phrasings(
        seen=[
            "set a timer for {duration}",
            "start a {duration} timer",
            "countdown {duration} please",
            "timer {duration}",
            "let me know when {duration} is up",
            "time {duration} for me",
            "start counting down from {duration}",
            "i need a timer for {duration}",
        ],
        valid_only=["beep after {duration}", "alert me in {duration}"],
        test_only=["give me {duration} on the clock", "tell me when {duration} have passed"],
    ),
    "get_weather": Phrasings(
        seen=[
            "what's the weather in {city} {date}",
            "will it rain in {city} {date}",
            "is it cold in {city}",
            "weather forecast for {city}",
            "do i need an umbrella {date}",
            "how hot will it be in {city} {date}",
            "is it going to snow {date}",
            "what's the temperature in {city}",
        ],
        valid_only=["should i bring a jacket to {city} {date}", "how windy is it in {city}"],
        test_only=["is it sunny in {city} right now", "any storms expected {date}"],
    ),
    "play_music": Phrasings(
        seen=[
            "play some {genre}",
            "play {artist}",
            "put on {genre} by {artist}",
            "i want to hear {artist}",
            "shuffle my {genre} playlist",
            "play the latest album by {artist}",
            "some {genre} music please",
            "start my {genre} station",
        ],
        valid_only=["queue up some {genre}", "let's hear some {artist}"],
        test_only=["i'm in the mood for {artist}", "blast {genre} in here"],
    ),
    "call_contact": Phrasings(
        seen=[
            "call {contact}",
            "phone {contact} {date}",
            "give {contact} a ring",
            "dial {contact} please",
            "get {contact} on the phone",
            "start a call with {contact}",
            "video call {contact}",
            "i need to talk to {contact}",
        ],
        valid_only=["connect me to {contact}", "ring up {contact}"],
        test_only=["can you reach {contact} for me", "put me through to {contact}"],
    ),
    "send_message": Phrasings(
        seen=[
            "text {contact} that i'm running late",
            "send a message to {contact}",
            "tell {contact} i will call {date}",
            "message {contact} about dinner {date}",
            "let {contact} know i'm on my way",
            "send {contact} a text saying happy birthday",
            "write to {contact} that the meeting moved to {time}",
            "drop {contact} a line",
        ],
        valid_only=["shoot {contact} a quick note", "send word to {contact} that i'm home"],
        test_only=["ping {contact} that i'll be there at {time}", "remind {contact} by text about {date}"],
    ),
    "add_to_list": Phrasings(
        seen=[
            "add {item} to my shopping list",
            "put {item} on the list",
            "remind me to buy {item}",
            "we need {item}",
            "we're out of {item}",
            "add {item} to the grocery list",
            "don't let me forget {item}",
            "note down {item} for the store",
        ],
        valid_only=["stock up on {item}", "jot {item} on my list"],
        test_only=["i ran out of {item}", "pick up {item} next time"],
    ),
    "smart_home": Phrasings(
        seen=[
            "turn on {device}",
            "switch off {device}",
            "dim {device} in {duration}",
            "turn {device} off at {time}",
            "can you power on {device}",
            "shut off {device} {date}",
            "set {device} to low",
            "turn {device} up a bit",
        ],
        valid_only=["kill {device}", "brighten {device}"],
        test_only=["{device} on please", "cut the power to {device} at {time}"],
    ),
    "find_restaurant": Phrasings(
        seen=[
            "find a {cuisine} restaurant in {city}",
            "book a table for {cuisine} food {date}",
            "where can i get {cuisine} near me",
            "any good {cuisine} places open at {time}",
            "i'm hungry for {cuisine}",
            "recommend a {cuisine} place in {city}",
            "reserve dinner at a {cuisine} spot {date}",
            "show me {cuisine} restaurants nearby",
        ],
        valid_only=["where should we eat {cuisine} {date}", "is there a decent {cuisine} joint in {city}"],
        test_only=["table for two somewhere {cuisine} at {time}", "i'm craving {cuisine} food"],
    ),
    "get_time": Phrasings(
        seen=[
            "what time is it in {city}",
            "what's the time",
            "tell me the current time in {city}",
            "what day is it {date}",
            "do you know the time",
            "what's the date {date}",
            "how late is it in {city}",
            "current time please",
        ],
        valid_only=["what hour is it over in {city}", "which day of the week is it"],
        test_only=["is it morning in {city} yet", "got the time"],
    ),
}

# Phrasings several intents share, with how often each intent is the one meant: no model can be
# right on all of them, as with real requests that are ambiguous out of context.
AMBIGUOUS_TEMPLATES: list[tuple[str, dict[str, float]]] = [
    ("remind me at {time}", {"set_alarm": 0.6, "add_to_list": 0.4}),
    ("set a reminder for {duration}", {"set_timer": 0.6, "set_alarm": 0.4}),
    ("what about {city} {date}", {"get_weather": 0.6, "get_time": 0.4}),
    ("{contact} {date}", {"call_contact": 0.5, "send_message": 0.5}),
    ("reach out to {contact}", {"call_contact": 0.6, "send_message": 0.4}),
    ("turn on some {genre}", {"play_music": 0.7, "smart_home": 0.3}),
    ("turn up the music", {"play_music": 0.5, "smart_home": 0.5}),
    ("order some {cuisine}", {"find_restaurant": 0.6, "add_to_list": 0.4}),
    ("how long until {time}", {"get_time": 0.6, "set_timer": 0.4}),
    ("check {city} {date}", {"get_weather": 0.5, "find_restaurant": 0.3, "get_time": 0.2}),
]

# "{kept}" is the request whose intent is the label, "{dropped}" another intent's request.
NEGATION_FORMS = {
    "seen": [
        "don't {dropped} just {kept}",
        "{kept} but don't {dropped}",
        "no wait don't {dropped} {kept} instead",
    ],
    "valid_only": ["rather than {dropped} {kept}"],
    "test_only": ["forget about {dropped} i said {kept}"],
}
TWO_REQUEST_FORMS = {
    "seen": ["{kept} and then {dropped}", "{kept} and also {dropped}", "first {kept} then {dropped}"],
    "valid_only": ["{kept} after that {dropped}"],
    "test_only": ["{kept} and once that's done {dropped}"],
}

PREFIXES = [
    "",
    "",
    "",
    "",
    "hey ",
    "please ",
    "could you ",
    "ok ",
    "um ",
    "hey assistant ",
    "quick question ",
]
SUFFIXES = ["", "", "", "", " please", " thanks", " now", "?", " thank you", " if you can"]
_SLOT = re.compile(r"\{(\w+)\}")
_KEYBOARD_ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm")
# each letter -> the letters beside it on a QWERTY keyboard (the typos a slipping finger makes)
_NEIGHBOUR_KEYS = {
    key: row[max(i - 1, 0) : i] + row[i + 1 : i + 2] for row in _KEYBOARD_ROWS for i, key in enumerate(row)
}


def _render(template: str, rng: random.Random, held_out_values: bool) -> tuple[list[str], list[str]]:
    """Fill a template; return whitespace tokens and their BIO slot tags."""
    tokens: list[str] = []
    tags: list[str] = []
    position = 0
    for match in _SLOT.finditer(template):
        for word in template[position : match.start()].split():
            tokens.append(word)
            tags.append("O")
        slot = match.group(1)
        seen, held_out = SLOT_VALUES[slot]
        values = held_out if held_out_values and rng.random() < HELD_OUT_VALUE else seen
        for i, word in enumerate(rng.choice(values).split()):
            tokens.append(word)
            tags.append(("B-" if i == 0 else "I-") + slot)
        position = match.end()
    for word in template[position:].split():
        tokens.append(word)
        tags.append("O")
    return tokens, tags


def _misspell(word: str, rng: random.Random) -> str:
    """One keyboard slip: swap two letters, drop one, double one or hit a neighbouring key."""
    i = rng.randrange(len(word) - 1)
    kind = rng.randrange(4)
    if kind == 0:
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    if kind == 1:
        return word[:i] + word[i + 1 :]
    if kind == 2:
        return word[:i] + word[i] + word[i:]
    neighbours = _NEIGHBOUR_KEYS.get(word[i], "")
    return word[:i] + rng.choice(neighbours) + word[i + 1 :] if neighbours else word


def _pool(forms: dict[str, list[str]], split: str) -> list[str]:
    """The forms ``split`` may draw: the seen ones, plus its own held-out ones in valid/test."""
    return forms["seen"] + (forms[f"{split}_only"] if split in ("valid", "test") else [])


def _request(intent: str, split: str, rng: random.Random) -> tuple[list[str], list[str], bool]:
    """One plain request for ``intent`` (tokens, tags, held out?): a seen phrasing, or in valid/test
    sometimes one of the split's held-out phrasings."""
    phrasings = TEMPLATES[intent]
    held_out = split in ("valid", "test") and rng.random() < HELD_OUT_PHRASING
    template = rng.choice(getattr(phrasings, f"{split}_only") if held_out else phrasings.seen)
    return *_render(template, rng, held_out_values=split != "train"), held_out


def _combine(form: str, kept: tuple, dropped: tuple) -> tuple[list[str], list[str]]:
    """Fill a ``{kept}``/``{dropped}`` form with two rendered requests, keeping their slot tags."""
    tokens: list[str] = []
    tags: list[str] = []
    for word in form.split():
        part = {"{kept}": kept, "{dropped}": dropped}.get(word)
        tokens += part[0] if part else [word]
        tags += part[1] if part else ["O"]
    return tokens, tags


def generate_example(rng: random.Random, split: str = "train") -> dict:
    """One utterance of ``split`` (``train``, ``valid`` or ``test``): text, intent, tokens, slots, and
    for analysis its ``kind`` (``plain``, ``held_out``, ``ambiguous``, ``negated``, ``two_requests``)
    and ``noisy_label`` (the intent is not the one meant), and ``num_slots``: how many slot values it
    names (a number to regress, ``task=doc_regression``)."""
    intents = sorted(TEMPLATES)
    draw = rng.random()
    if draw < AMBIGUOUS:
        kind = "ambiguous"
        template, meanings = rng.choice(AMBIGUOUS_TEMPLATES)
        intent = rng.choices(sorted(meanings), weights=[meanings[name] for name in sorted(meanings)])[0]
        tokens, tags = _render(template, rng, held_out_values=split != "train")
    elif draw < AMBIGUOUS + NEGATED + TWO_REQUESTS:
        kind = "negated" if draw < AMBIGUOUS + NEGATED else "two_requests"
        intent = rng.choice(intents)
        other = rng.choice([name for name in intents if name != intent])
        form = rng.choice(_pool(NEGATION_FORMS if kind == "negated" else TWO_REQUEST_FORMS, split))
        tokens, tags = _combine(form, _request(intent, split, rng), _request(other, split, rng))
    else:
        intent = rng.choice(intents)
        tokens, tags, held_out = _request(intent, split, rng)
        kind = "held_out" if held_out else "plain"
    prefix = rng.choice(PREFIXES).split()
    suffix = rng.choice(SUFFIXES)
    tokens = prefix + tokens
    tags = ["O"] * len(prefix) + tags
    tokens = [
        _misspell(word, rng) if len(word) >= 3 and word.isalpha() and rng.random() < TYPO_RATE else word
        for word in tokens
    ]
    if suffix == "?":
        tokens[-1] = tokens[-1] + "?"
    elif suffix:
        tokens += suffix.split()
        tags += ["O"] * len(suffix.split())
    noisy_label = rng.random() < LABEL_NOISE
    if noisy_label:
        intent = rng.choice([name for name in intents if name != intent])
    return {
        "text": " ".join(tokens),
        "intent": intent,
        "tokens": tokens,
        "slots": tags,
        "kind": kind,
        "noisy_label": noisy_label,
        "num_slots": sum(tag.startswith("B-") for tag in tags),  # slot values the request names
    }


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
    for split, size in SPLITS.items():
        rng = random.Random(f"nlpkit-builtin:{seed}:{split}")
        with atomic_open(directory / f"{split}.jsonl") as handle:
            for _ in range(size):
                handle.write(json.dumps(generate_example(rng, split), ensure_ascii=False) + "\n")
    with atomic_open(marker) as handle:
        handle.write(expected)
    return directory
