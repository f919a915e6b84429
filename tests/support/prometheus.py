"""A strict reader of the Prometheus text exposition format 0.0.4: what /metrics says, or why it is wrong."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
TYPES = ("counter", "gauge", "summary", "histogram", "untyped")
SUFFIXES = {"summary": ("", "_sum", "_count"), "histogram": ("_bucket", "_sum", "_count")}

Series = tuple[str, tuple[tuple[str, str], ...]]


class ExpositionError(AssertionError):
    pass


@dataclass
class Family:
    name: str
    type: str
    help: str | None = None


def _parse_value(text: str) -> float:
    if text in ("NaN", "+Inf", "-Inf"):
        return float(text.replace("Inf", "inf").replace("NaN", "nan"))
    if not re.fullmatch(r"[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?", text):
        raise ExpositionError(f"bad sample value {text!r}")
    return float(text)


def _parse_labels(text: str) -> tuple[tuple[tuple[str, str], ...], str]:
    """Labels of `{...}` at the start of `text`, and what follows the closing brace."""
    labels: list[tuple[str, str]] = []
    i = 1
    while text[i] != "}":
        match = LABEL_NAME.match(text, i)
        if not match or text[match.end() : match.end() + 2] != '="':
            raise ExpositionError(f"bad label at {text[i:]!r}")
        name, i = match.group(), match.end() + 2
        value = []
        while text[i] != '"':
            if text[i] == "\\":
                escaped = text[i + 1]
                if escaped not in '\\"n':
                    raise ExpositionError(f"bad escape \\{escaped} in label {name}")
                value.append("\n" if escaped == "n" else escaped)
                i += 2
            else:
                value.append(text[i])
                i += 1
        labels.append((name, "".join(value)))
        i += 1
        if text[i] == ",":
            i += 1
        elif text[i] != "}":
            raise ExpositionError(f"expected ',' or '}}' at {text[i:]!r}")
    names = [n for n, _ in labels]
    if len(names) != len(set(names)):
        raise ExpositionError(f"repeated label in {text!r}")
    return tuple(sorted(labels)), text[i + 1 :]


def parse_exposition(text: str) -> tuple[dict[str, Family], dict[Series, float]]:
    """Families by name and every sample's value; ExpositionError names the first violation."""
    if not text.endswith("\n"):
        raise ExpositionError("the exposition must end with a newline")
    families: dict[str, Family] = {}
    samples: dict[Series, float] = {}
    current: Family | None = None
    closed: set[str] = set()
    sampled: set[str] = set()
    for number, line in enumerate(text[:-1].split("\n"), 1):
        where = f"line {number}: {line!r}"
        if line.startswith("#"):
            parts = line.split(" ", 3)
            if len(parts) < 3 or parts[1] not in ("HELP", "TYPE"):
                continue  # a plain comment
            name = parts[2]
            if not METRIC_NAME.fullmatch(name):
                raise ExpositionError(f"{where}: bad metric name")
            if current is not None and current.name != name:
                closed.add(current.name)
            if name in closed:
                raise ExpositionError(f"{where}: family {name} appears twice")
            family = families.setdefault(name, Family(name, "untyped"))
            if parts[1] == "TYPE":
                kind = parts[3] if len(parts) == 4 else ""
                if kind not in TYPES or family.type != "untyped" or name in sampled:
                    raise ExpositionError(f"{where}: TYPE bad, repeated, or after samples")
                family.type = kind
            else:
                if family.help is not None:
                    raise ExpositionError(f"{where}: HELP repeated")
                family.help = parts[3] if len(parts) == 4 else ""
            current = family
            continue
        match = METRIC_NAME.match(line)
        if not match:
            raise ExpositionError(f"{where}: no metric name")
        name, rest = match.group(), line[match.end() :]
        labels: tuple[tuple[str, str], ...] = ()
        if rest.startswith("{"):
            labels, rest = _parse_labels(rest)
        fields = rest.split(" ")
        if fields[0] != "" or len(fields) not in (2, 3):
            raise ExpositionError(f"{where}: expected 'name{{labels}} value [timestamp]'")
        value = _parse_value(fields[1])
        if current is None or name not in {current.name + s for s in SUFFIXES.get(current.type, ("",))}:
            raise ExpositionError(f"{where}: sample outside its family's block")
        if current.type == "counter" and (value < 0 or math.isnan(value)):
            raise ExpositionError(f"{where}: counter below zero")
        if (name, labels) in samples:
            raise ExpositionError(f"{where}: duplicate series")
        samples[(name, labels)] = value
        sampled.add(current.name)
    return families, samples
