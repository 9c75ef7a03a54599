"""SPDX license expressions (SPDX 2.3 Annex D) and license deny-lists.

Grammar: ``simple [WITH exception]`` terms combined with ``AND`` and ``OR`` and grouped with parentheses;
``WITH`` binds tighter than ``AND``, which binds tighter than ``OR``. Simple terms are list ids (``MIT``,
``GPL-2.0-or-later``, ``GPL-2.0+``), ``LicenseRef-*`` / ``DocumentRef-*:LicenseRef-*`` and the special values
``NOASSERTION`` and ``NONE``. Operators are accepted in any case (real documents write ``and``).

Judgement against a deny-list:

* a term is denied when the deny-list names it: SPDX ids and free-text names compare case-insensitively; the
  deprecated GNU ids are read as their current form (``GPL-2.0`` = ``GPL-2.0-only``, ``GPL-2.0+`` =
  ``GPL-2.0-or-later``); an or-later licence is denied when the deny-list names the or-later form or the bare
  deprecated id (a deny-list entry ``GPL-3.0`` means every GPL-3.0 licence, ``GPL-3.0-only`` only that one);
  a ``LicenseRef-*`` is also denied through the name its document gives it (SPDX ``hasExtractedLicensingInfos``);
  ``NOASSERTION``/``NONE`` are denied only when listed themselves;
* ``A WITH E`` is denied when ``A`` or the whole ``A WITH E`` is listed;
* ``A AND B`` is denied when any part is denied; ``A OR B`` only when every alternative is denied.

An expression that does not parse (Syft writes ``BSD-2-Clause AND LicenseRef-AND AND BSD-3-Clause``, which
does parse; others write bare prose) is judged conservatively as the AND of all its words, and marked
``malformed``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

_TOKEN = re.compile(r"\(|\)|[^\s()]+")
_OPERATORS = frozenset({"and", "or", "with"})
_SPECIAL = frozenset({"noassertion", "none"})
_WITH = re.compile(r"\s+with\s+", re.IGNORECASE)
_GNU = re.compile(r"^(a?gpl|lgpl|gfdl)-(\d+\.\d+)(\+|-only|-or-later)?$", re.IGNORECASE)


def normalise_license_id(term: str) -> str:
    """Case-folded id with the deprecated GNU forms mapped to ``-only`` / ``-or-later``."""
    folded = term.strip().casefold()
    m = _GNU.match(folded)
    if m:
        suffix = "-or-later" if m.group(3) in ("+", "-or-later") else "-only"
        return f"{m.group(1)}-{m.group(2)}{suffix}"
    return folded


def _deny_forms(entry: str) -> tuple[str, ...]:
    """What one deny-list id covers: a bare deprecated GNU id (``GPL-3.0``) both its -only and -or-later forms."""
    m = _GNU.match(entry.strip())
    if m and m.group(3) is None:
        stem = f"{m.group(1)}-{m.group(2)}".casefold()
        return f"{stem}-only", f"{stem}-or-later"
    return (normalise_license_id(entry),)


@dataclass(frozen=True, slots=True)
class Term:
    """One licence: an SPDX id or ref (``exception`` for ``WITH``), or a free-text ``name`` (CycloneDX)."""

    value: str
    exception: str | None = None
    is_name: bool = False

    def __str__(self) -> str:
        return f"{self.value} WITH {self.exception}" if self.exception else self.value


@dataclass(frozen=True, slots=True)
class Compound:
    """``op`` is ``"and"`` or ``"or"`` over ``children`` (each a :class:`Compound` or :class:`Term`)."""

    op: str
    children: tuple[Compound | Term, ...]


@dataclass(frozen=True, slots=True)
class LicenseExpression:
    """A parsed expression. ``text`` is the source; ``malformed`` marks a conservative fallback reading."""

    text: str
    root: Compound | Term
    malformed: bool = False

    def terms(self) -> tuple[Term, ...]:
        out: list[Term] = []

        def walk(n: Compound | Term) -> None:
            if isinstance(n, Term):
                out.append(n)
            else:
                for child in n.children:
                    walk(child)

        walk(self.root)
        return tuple(out)


class _Parser:
    def __init__(self, tokens: list[str]) -> None:
        self.tokens = tokens
        self.pos = 0

    def peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> str:
        token = self.tokens[self.pos]
        self.pos += 1
        return token

    def is_op(self, word: str) -> bool:
        token = self.peek()
        return token is not None and token.casefold() == word

    def parse(self) -> Compound | Term:
        root = self.or_expr()
        if self.peek() is not None:
            raise ValueError(f"unexpected {self.peek()!r}")
        return root

    def or_expr(self) -> Compound | Term:
        parts = [self.and_expr()]
        while self.is_op("or"):
            self.take()
            parts.append(self.and_expr())
        return parts[0] if len(parts) == 1 else Compound("or", tuple(parts))

    def and_expr(self) -> Compound | Term:
        parts = [self.primary()]
        while self.is_op("and"):
            self.take()
            parts.append(self.primary())
        return parts[0] if len(parts) == 1 else Compound("and", tuple(parts))

    def primary(self) -> Compound | Term:
        token = self.peek()
        if token is None:
            raise ValueError("expression ends early")
        if token == "(":
            self.take()
            inner = self.or_expr()
            if self.peek() != ")":
                raise ValueError("missing )")
            self.take()
            return inner
        if token == ")" or token.casefold() in _OPERATORS:
            raise ValueError(f"unexpected {token!r}")
        self.take()
        if self.is_op("with"):
            self.take()
            exception = self.peek()
            if exception is None or exception in ("(", ")") or exception.casefold() in _OPERATORS:
                raise ValueError("WITH needs an exception id")
            self.take()
            return Term(token, exception)
        return Term(token)


def parse_license_expression(text: str) -> LicenseExpression:
    """Parse ``text``; never raises (unparseable text gives a ``malformed`` conservative reading)."""
    tokens = _TOKEN.findall(text)
    if not tokens:
        return LicenseExpression(text, Term("NOASSERTION"), malformed=bool(text.strip()))
    try:
        return LicenseExpression(text, _Parser(tokens).parse())
    except ValueError:
        words = [t for t in tokens if t not in ("(", ")") and t.casefold() not in _OPERATORS]
        root: Compound | Term = Compound("and", tuple(Term(w) for w in words)) if words else Term("NOASSERTION")
        return LicenseExpression(text, root, malformed=True)


def license_name(name: str) -> LicenseExpression:
    """A free-text licence name (CycloneDX ``license.name``) as a one-term expression."""
    return LicenseExpression(name, Term(name.strip(), is_name=True))


@dataclass(frozen=True, slots=True)
class LicenseDenyList:
    """Disallowed licences: SPDX ids, ``LicenseRef-*`` or free-text names, compared case-insensitively."""

    entries: frozenset[str]

    @classmethod
    def of(cls, entries: Iterable[str]) -> LicenseDenyList:
        out: set[str] = set()
        for entry in entries:
            if not entry.strip():
                continue
            out.add(" ".join(entry.split()).casefold())
            base, *exception = _WITH.split(entry.strip(), maxsplit=1)
            for form in _deny_forms(base):
                out.add(f"{form} with {exception[0].strip().casefold()}" if exception else form)
        return cls(frozenset(out))

    def _term_denied(self, term: Term, ref_names: Mapping[str, str]) -> bool:
        if term.is_name:
            return " ".join(term.value.split()).casefold() in self.entries
        base = normalise_license_id(term.value)
        if base in self.entries:
            return True
        if term.exception and f"{base} with {term.exception.casefold()}" in self.entries:
            return True
        name = ref_names.get(term.value.casefold())
        if name is not None:
            folded = name.strip().casefold()
            return folded not in _OPERATORS | _SPECIAL and folded in self.entries
        return False

    def judge(
        self, expression: LicenseExpression, ref_names: Mapping[str, str] | None = None
    ) -> tuple[bool, tuple[str, ...]]:
        """``(denied, denied terms)`` for ``expression`` under the AND/OR semantics in the module docstring.

        ``ref_names`` maps case-folded ``LicenseRef-*`` ids to the names their document gives them."""
        names = ref_names or {}

        def walk(n: Compound | Term) -> tuple[bool, list[str]]:
            if isinstance(n, Term):
                denied = self._term_denied(n, names)
                return denied, [str(n)] if denied else []
            results = [walk(c) for c in n.children]
            found = [t for _, terms in results for t in terms]
            if n.op == "and":
                return any(d for d, _ in results), found
            return all(d for d, _ in results), found

        if not self.entries:
            return False, ()
        denied, terms = walk(expression.root)
        return denied, tuple(dict.fromkeys(terms)) if denied else ()
