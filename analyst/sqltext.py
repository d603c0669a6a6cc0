"""A small SQL scanner: enough to find `:param` placeholders and to refuse anything but one query.

It knows where strings, quoted identifiers and comments start and end in each dialect
(Spark SQL: backslash escapes, `r'raw'` and `r"raw"` strings, backticks, a `--` comment that
goes on past a backslash at the end of a line; DuckDB: doubled quotes, `E'...'` escapes,
`$tag$...$tag$` strings; nested comments in both), so that a keyword or a `;` inside a string
is never mistaken for code, and code is never mistaken for a string.

This check runs before either engine sees the text. On Spark, `analyst.spark_guard` then reads
the query with Spark's own parser and refuses any plan that is not a plain query.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterator, Literal

Dialect = Literal["spark", "duckdb"]
TokenKind = Literal["word", "string", "quoted", "param", "punct", "number"]

QUERY_STARTS = frozenset({"SELECT", "WITH"})
# Statement keywords that have no business anywhere in a read-only query.
FORBIDDEN_WORDS = frozenset({
    "INSERT", "UPDATE", "DELETE", "MERGE", "UPSERT", "CREATE", "DROP", "ALTER", "TRUNCATE", "COPY",
    "ATTACH", "DETACH", "INSTALL", "PRAGMA", "EXPORT", "IMPORT", "VACUUM", "CHECKPOINT", "GRANT", "REVOKE",
    "CACHE", "UNCACHE", "REFRESH", "MSCK", "LOAD", "SET", "RESET", "CALL", "EXECUTE",
    # Spark functions that call arbitrary static Java methods.
    "REFLECT", "JAVA_METHOD", "TRY_REFLECT",
    # Spark's TRANSFORM (...) USING 'program' runs a program; the array function of that name goes too.
    "TRANSFORM",
})

# A name: an ASCII letter, _ or any non-ASCII character, then those, digits and $ (DuckDB reads
# `é$$` and `€$$` as one name).
_WORD = re.compile(r"[A-Za-z_\u0080-\U0010ffff][\w$\u0080-\U0010ffff]*")
# A number takes the name glued to it (Spark's 1L, 1BD; DuckDB reads `1e$$` as 1 aliased e$$), so
# a `$` after it never opens a $$-string the engine does not see.
_NUMBER = re.compile(r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?(?:[A-Za-z_\u0080-\U0010ffff][\w$\u0080-\U0010ffff]*)?")
_DOLLAR_TAG = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)?\$")


class SqlError(ValueError):
    """The SQL text cannot be scanned (an unterminated string or comment)."""


class ReadOnlyError(ValueError):
    """The SQL is not a single read-only query; `kind` names what was found."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class Token:
    kind: TokenKind
    text: str
    start: int
    end: int


def scan(sql: str, dialect: Dialect) -> Iterator[Token]:
    """The tokens of `sql`, comments and whitespace left out."""
    _check_dialect(dialect)
    i, n = 0, len(sql)
    while i < n:
        ch = sql[i]
        if ch.isspace():
            i += 1
        elif sql.startswith("--", i):
            i = _skip_line_comment(sql, i, dialect)
        elif sql.startswith("/*", i):
            i = _skip_block_comment(sql, i)
        elif ch == "'":
            end = _skip_quoted(sql, i, "'", backslash=dialect == "spark")
            yield Token("string", sql[i:end], i, end)
            i = end
        elif ch == '"':
            # Spark: a string literal; DuckDB: an identifier. Skipped alike.
            end = _skip_quoted(sql, i, '"', backslash=dialect == "spark")
            yield Token("string" if dialect == "spark" else "quoted", sql[i:end], i, end)
            i = end
        elif ch == "`":
            end = _skip_quoted(sql, i, "`", backslash=False)
            yield Token("quoted", sql[i:end], i, end)
            i = end
        elif ch == "$" and dialect == "duckdb" and _DOLLAR_TAG.match(sql, i):
            tag = _DOLLAR_TAG.match(sql, i).group(0)
            close = sql.find(tag, i + len(tag))
            if close < 0:
                raise SqlError(f"unterminated {tag}-quoted string starting at character {i}")
            end = close + len(tag)
            yield Token("string", sql[i:end], i, end)
            i = end
        elif ch == ":" and sql.startswith("::", i):
            yield Token("punct", "::", i, i + 2)
            i += 2
        elif ch == ":" and _WORD.match(sql, i + 1):
            word = _WORD.match(sql, i + 1).group(0)
            yield Token("param", word, i, i + 1 + len(word))
            i += 1 + len(word)
        elif _WORD.match(sql, i):
            word = _WORD.match(sql, i).group(0)
            end = i + len(word)
            prefix = word.upper()
            if end < n and sql[end] in _prefixed_quotes(prefix, dialect):
                # Spark: r'...', r"..." (raw: no escapes), X'..', X"..";
                # DuckDB: E'...' (backslash escapes, and '' still stands for '), X'..', B'..'.
                close = _skip_quoted(sql, end, sql[end], backslash=prefix == "E", doubled=True)
                yield Token("string", sql[i:close], i, close)
                i = close
            else:
                yield Token("word", word, i, end)
                i = end
        elif _NUMBER.match(sql, i):
            number = _NUMBER.match(sql, i).group(0)
            yield Token("number", number, i, i + len(number))
            i += len(number)
        else:
            yield Token("punct", ch, i, i + 1)
            i += 1


def check_read_only(sql: str, dialect: Dialect) -> None:
    """Raise `ReadOnlyError` unless `sql` is exactly one SELECT or WITH query."""
    statements: list[list[Token]] = [[]]
    for token in scan(sql, dialect):
        if token.kind == "punct" and token.text == ";":
            statements.append([])
        else:
            statements[-1].append(token)
    statements = [s for s in statements if s]
    if not statements:
        raise ReadOnlyError("empty", "refused: the query is empty")
    if len(statements) > 1:
        raise ReadOnlyError("multiple statements",
                            f"refused: multiple statements ({len(statements)}); only a single SELECT or WITH query "
                            f"is allowed")
    tokens = statements[0]
    first = next((t for t in tokens if not (t.kind == "punct" and t.text == "(")), tokens[0])
    if first.kind != "word" or first.text.upper() not in QUERY_STARTS:
        kind = first.text.upper() if first.kind == "word" else first.text
        raise ReadOnlyError(kind, f"refused: a {kind} statement; only a single read-only SELECT or WITH "
                                  f"query is allowed")
    for previous, token, following in zip([None, *tokens], tokens, [*tokens[1:], None]):
        if token.kind != "word" or (previous is not None and previous.text == "."):
            continue
        word = token.text.upper()
        if word in FORBIDDEN_WORDS:
            raise ReadOnlyError(word, f"refused: the query contains {word}; only a single read-only SELECT or "
                                      f"WITH query is allowed (quote an identifier that is spelled {word})")
        if word == "USING" and following is not None and following.kind == "string":
            raise ReadOnlyError("TRANSFORM USING", "refused: TRANSFORM USING '<script>' runs a program; "
                                                    "only a read-only query is allowed")


def placeholders(sql: str, dialect: Dialect) -> list[str]:
    """The distinct `:name` placeholders of `sql`, in order of first use."""
    names: list[str] = []
    for token in scan(sql, dialect):
        if token.kind == "param" and token.text not in names:
            names.append(token.text)
    return names


def substitute(sql: str, literals: dict[str, str], dialect: Dialect) -> str:
    """Replace every `:name` placeholder by `literals[name]` (already rendered SQL literals)."""
    pieces: list[str] = []
    last = 0
    for token in scan(sql, dialect):
        if token.kind != "param":
            continue
        if token.text not in literals:
            raise KeyError(token.text)
        pieces += [sql[last:token.start], literals[token.text]]
        last = token.end
    pieces.append(sql[last:])
    return "".join(pieces)


def words(sql: str, dialect: Dialect) -> set[str]:
    """The lower-cased names in `sql`: bare words (tables, columns, functions, keywords) and quoted identifiers."""
    return {(t.text if t.kind == "word" else t.text[1:-1]).lower()
            for t in scan(sql, dialect) if t.kind in ("word", "quoted")}


def _check_dialect(dialect: str) -> None:
    if dialect not in ("spark", "duckdb"):
        raise ValueError(f"dialect must be 'spark' or 'duckdb', got {dialect!r}")


def _prefixed_quotes(prefix: str, dialect: Dialect) -> str:
    """The quotes that, right after the word `prefix`, open a prefixed string literal."""
    if dialect == "spark":
        return "'\"" if prefix in ("R", "X") else ""
    return "'" if prefix in ("E", "X", "B") else ""


def _skip_line_comment(sql: str, start: int, dialect: Dialect) -> int:
    """The index just past the `--` comment at `start`.

    Both engines end it at a CR or LF; Spark goes on past a backslash just before an LF.
    """
    i, n = start + 2, len(sql)
    while i < n:
        if dialect == "spark" and sql.startswith("\\\n", i):
            i += 2
        elif sql[i] in "\r\n":
            return i + 1
        else:
            i += 1
    return n


def _skip_quoted(sql: str, start: int, quote: str, *, backslash: bool, doubled: bool | None = None) -> int:
    """The index just past the closing `quote` of the quoted text opening at `start`.

    `backslash`: a backslash escapes the next character; `doubled` (default: not `backslash`):
    a doubled quote stands for one.
    """
    doubled = not backslash if doubled is None else doubled
    i, n = start + 1, len(sql)
    while i < n:
        ch = sql[i]
        if backslash and ch == "\\":
            i += 2
        elif ch == quote:
            if sql.startswith(quote * 2, i) and doubled:
                i += 2  # a doubled quote stands for one
            else:
                return i + 1
        else:
            i += 1
    raise SqlError(f"unterminated {quote}-quoted text starting at character {start}")


def _skip_block_comment(sql: str, start: int) -> int:
    depth, i, n = 0, start, len(sql)
    while i < n:
        if sql.startswith("/*", i):
            depth += 1
            i += 2
        elif sql.startswith("*/", i):
            depth -= 1
            i += 2
            if depth == 0:
                return i
        else:
            i += 1
    raise SqlError(f"unterminated /* comment starting at character {start}")
