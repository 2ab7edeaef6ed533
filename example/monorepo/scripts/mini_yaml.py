"""A small YAML reader for the files of this monorepo, standard library only (used by doctor.py).

It reads what copier writes (every `<app>/.copier-answers.yml`) and what people write in GitHub
workflows and compose files: block mappings and sequences (also a sequence at its key's indentation),
flow collections (`[a, b]`, `{}`), plain, single- and double-quoted scalars (also over several lines),
block scalars (`|`, `>`, with `-`/`+` and an indentation digit), comments and `---`/`...` markers.
Every scalar is returned as a string, like PyYAML's BaseLoader: GitHub passes action inputs as
strings anyway, and the caller knows which type each value has. Anchors, aliases, tags, `?` keys,
directives and several documents are refused with a YamlError naming the line, never misread.
"""

from __future__ import annotations

import re
from typing import TypeAlias

Value: TypeAlias = "str | list[Value] | dict[str, Value]"

SPACE = " \t"
FLOW_END = ",[]{}"
ESCAPES = {
    "0": "\0",
    "a": "\x07",
    "b": "\x08",
    "t": "\t",
    "\t": "\t",
    "n": "\n",
    "v": "\x0b",
    "f": "\x0c",
    "r": "\r",
    "e": "\x1b",
    " ": " ",
    '"': '"',
    "/": "/",
    "\\": "\\",
    "N": "\x85",
    "_": "\xa0",
    "L": "\u2028",
    "P": "\u2029",
}
HEX_ESCAPES = {"x": 2, "u": 4, "U": 8}
LINE_BREAKS = re.compile(r"\r\n|\r|\n")


class YamlError(ValueError):
    """The text is not YAML, or uses a feature this reader leaves out; `line` is 1-based."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}")
        self.line = line


def load(text: str) -> Value | None:
    """The document in `text` (None when it holds no document), every scalar as a string."""
    return _Parser(text).document()


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _is_blank(line: str) -> bool:
    """Only spaces, or spaces and a comment (a tab there is an error, found by the caller)."""
    stripped = line.lstrip(" ")
    return not stripped or stripped.startswith("#")


def _is_marker(line: str) -> bool:
    return line[:3] in ("---", "...") and (len(line) == 3 or line[3] in SPACE)


def _starts_plain(text: str, flow: bool = False) -> bool:
    """Whether a plain scalar may start here (YAML reserves these indicators)."""
    first, second = text[0], text[1:2]
    if first in "?:" and flow:
        return False
    return first not in ",[]{}#&*!|>'\"%@`\t" and not (first in "-?:" and second in ("", " ", "\t"))


def _is_entry(text: str) -> bool:
    return text == "-" or text[:2] in ("- ", "-\t")


def _ends_plain(text: str, at: int, flow: bool) -> bool:
    """Whether a plain scalar ends at text[at]: `: `, ` #`, and in flow context also `,?[]{}`."""
    char = text[at]
    after = text[at + 1] if at + 1 < len(text) else " "
    if char == ":" and (after in SPACE or (flow and after in FLOW_END)):
        return True
    if char == "#" and at > 0 and text[at - 1] in SPACE:
        return True
    return flow and char in FLOW_END + "?"


class _Parser:
    def __init__(self, text: str) -> None:
        if text.startswith("\ufeff"):
            text = text[1:]
        for char in ("\x85", "\u2028", "\u2029"):
            if char in text:
                line = text[: text.index(char)].count("\n") + 1
                raise YamlError(line, f"unsupported line-break character {char!r}")
        self.lines = LINE_BREAKS.split(text)
        self.final_break = self.lines[-1] == ""
        if self.final_break:
            self.lines.pop()
        self.i = 0

    # ---- lines ------------------------------------------------------------------------------

    def error(self, message: str, line: int | None = None) -> YamlError:
        return YamlError((self.i if line is None else line) + 1, message)

    def skip_spaces(self, index: int, column: int) -> int:
        """The first column from `column` on that is not a space; a tab there is refused."""
        text = self.lines[index]
        while column < len(text) and text[column] == " ":
            column += 1
        if column < len(text) and text[column] == "\t":
            raise self.error("tab character outside quotes: use spaces", index)
        return column

    def rest_is_blank(self, index: int, column: int) -> bool:
        column = self.skip_spaces(index, column)
        return column == len(self.lines[index]) or self.lines[index][column] == "#"

    def line_break(self, index: int) -> str:
        return "\n" if index < len(self.lines) - 1 or self.final_break else ""

    def next_content(self) -> int | None:
        """Index of the next line with content (not blank, not only a comment), from self.i."""
        index = self.i
        while index < len(self.lines) and _is_blank(self.lines[index]):
            if "\t" in self.lines[index].split("#", 1)[0]:
                raise self.error("tab character outside quotes: use spaces", index)
            index += 1
        if index == len(self.lines):
            return None
        line = self.lines[index]
        if "\t" in line[: _indent(line) + 1]:
            raise self.error("tab in indentation: indent with spaces", index)
        return index

    # ---- document and block collections -----------------------------------------------------

    def document(self) -> Value | None:
        index = self.next_content()
        if index is not None and self.lines[index].startswith("%"):
            raise self.error("directives (%YAML, %TAG) are not supported", index)
        explicit = index is not None and _is_marker(self.lines[index]) and self.lines[index].startswith("---")
        if explicit and index is not None:
            rest = self.lines[index][3:].strip(SPACE)
            if rest and not rest.startswith("#"):
                self.lines[index] = "   " + self.lines[index][3:]
            else:
                self.i = index + 1
            index = self.next_content()
        value: Value | None = "" if explicit else None
        if index is not None and not _is_marker(self.lines[index]):
            self.i = index
            value = self.node(_indent(self.lines[index]), -1)
        self.finish()
        return value

    def finish(self) -> None:
        index = self.next_content()
        if index is not None and self.lines[index].startswith("..."):
            self.i = index + 1
            index = self.next_content()
        if index is not None:
            what = "a second document" if _is_marker(self.lines[index]) else "content outside the document's structure"
            raise self.error(f"{what} (check the indentation)", index)

    def node(self, indent: int, parent: int) -> Value:
        """The node starting on line self.i at column `indent`, inside a collection indented `parent`."""
        text = self.lines[self.i][indent:]
        if _is_entry(text):
            return self.sequence(indent)
        if self.key(self.i, indent) is not None:
            return self.mapping(indent)
        return self.inline(self.i, indent, parent)

    def mapping(self, indent: int) -> dict[str, Value]:
        result: dict[str, Value] = {}
        while (index := self.next_content()) is not None:
            line = self.lines[index]
            if _indent(line) < indent or (indent == 0 and _is_marker(line)):
                break
            if _indent(line) > indent:
                raise self.error("unexpected indentation", index)
            self.i = index
            found = self.key(index, indent)
            if found is None:
                raise self.error("expected 'key: value' at this indentation", index)
            key, column = found
            result[key] = self.value(index, column, indent, indentless=True)
        return result

    def sequence(self, indent: int) -> list[Value]:
        result: list[Value] = []
        while (index := self.next_content()) is not None:
            line = self.lines[index]
            if _indent(line) != indent or not _is_entry(line[indent:]):
                if _indent(line) > indent:
                    raise self.error("unexpected indentation", index)
                break
            self.i = index
            column = self.skip_spaces(index, indent + 1)
            if self.rest_is_blank(index, column):
                self.i = index + 1
                result.append(self.below(indent, indentless=False))
                continue
            # A compact collection (`- key: value`, `- - item`) starts at the entry's content column.
            self.lines[index] = " " * column + line[column:]
            self.i = index
            inner = line[column:]
            nested = _is_entry(inner) or self.key(index, column) is not None
            result.append(self.node(column, indent) if nested else self.inline(index, column, indent))
        return result

    def key(self, index: int, column: int) -> tuple[str, int] | None:
        """(key, column after its colon) when lines[index] holds `key:` at `column`, else None."""
        text = self.lines[index][column:]
        if text[0] in "'\"":
            try:
                key, end = self.quoted_on_line(text)
            except YamlError:
                return None
        elif _starts_plain(text):
            end = next((at for at in range(len(text)) if _ends_plain(text, at, flow=False)), len(text))
            key = text[:end].rstrip(" ")
            if "\t" in key:
                raise self.error("tab character outside quotes: use spaces", index)
        else:
            return None
        colon = self.skip_spaces(index, column + end)
        line = self.lines[index]
        if line[colon : colon + 1] != ":" or line[colon + 1 : colon + 2] not in ("", " ", "\t"):
            return None
        return key, colon + 1

    def below(self, parent: int, indentless: bool) -> Value:
        """The value on the lines after a `key:` or `-` that has nothing after it on its own line."""
        index = self.next_content()
        if index is None:
            return ""
        line = self.lines[index]
        indent = _indent(line)
        if indent > parent and not (indent == 0 and _is_marker(line)):
            self.i = index
            return self.node(indent, parent)
        if indentless and indent == parent and _is_entry(line[indent:]):
            self.i = index
            return self.sequence(indent)
        return ""

    def value(self, index: int, column: int, parent: int, indentless: bool) -> Value:
        """The value after a key's colon, at lines[index][column:], in a mapping indented `parent`."""
        if self.rest_is_blank(index, column):
            self.i = index + 1
            return self.below(parent, indentless)
        return self.inline(index, self.skip_spaces(index, column), parent)

    # ---- scalars and flow collections -------------------------------------------------------

    def inline(self, index: int, column: int, parent: int) -> Value:
        """A scalar or flow collection starting at lines[index][column]; sets self.i past it."""
        text = self.lines[index][column:]
        if text[0] in "|>":
            return self.block_scalar(index, column, parent)
        if text[0] in "[{'\"":
            value, (end_line, end_column) = self.flow_node(index, column)
            self.after_node(end_line, end_column)
            return value
        if _is_entry(text):
            raise self.error("a sequence cannot start after 'key:' on the same line", index)
        if not _starts_plain(text):
            raise self.error(
                f"a value cannot start with {text[0]!r}: anchors (&), aliases (*) and tags (!) are not supported; "
                "write the value out (quote it if it is text)",
                index,
            )
        return self.plain_block(index, column, parent)

    def after_node(self, index: int, column: int) -> None:
        if not self.rest_is_blank(index, column):
            raise self.error(f"unexpected text after the value: {self.lines[index][column:].strip()!r}", index)
        self.i = index + 1

    def plain_block(self, index: int, column: int, parent: int) -> str:
        """A plain scalar in block context: continues on lines indented more than `parent`."""
        text, ended = self.plain_piece(self.lines[index][column:], index, flow=False)
        breaks = 0
        self.i = index + 1
        look = index + 1
        while not ended and look < len(self.lines):
            line = self.lines[look]
            if not line.strip(" "):
                breaks += 1
                look += 1
                continue
            start = self.skip_spaces(look, 0)
            if start <= parent or line[start] == "#" or (start == 0 and _is_marker(line)):
                break
            piece, ended = self.plain_piece(line[start:], look, flow=False)
            text += ("\n" * breaks if breaks else " ") + piece
            breaks = 0
            look += 1
            self.i = look
        return text

    def plain_piece(self, text: str, index: int, flow: bool) -> tuple[str, bool]:
        """The plain scalar text on one line, and whether a comment ended the scalar there."""
        end = next((at for at in range(len(text)) if _ends_plain(text, at, flow)), len(text))
        if "\t" in text[:end]:
            raise self.error("tab character outside quotes: use spaces (or quote the value)", index)
        if end < len(text) and text[end] != "#" and not flow:
            raise self.error("': ' inside a plain value: quote the value", index)
        return text[:end].rstrip(" "), end < len(text) and text[end] == "#"

    def block_scalar(self, index: int, column: int, parent: int) -> str:
        """`|` or `>` and its indented lines, with PyYAML's indentation and chomping rules."""
        header = self.lines[index][column:]
        match = re.match(r"([|>])([-+]?)([1-9]?)([-+]?)(?: +#.*| *)$", header)
        if not match or (match[2] and match[4]):
            raise self.error(f"bad block scalar header {header!r}: use |, |-, |+, >, >- or >+", index)
        folded, chomp = match[1] == ">", match[2] or match[4]
        lines, first = self.lines, index + 1
        least = max(parent + 1, 1)
        if match[3]:
            indent = least + int(match[3]) - 1
        else:
            look = first
            deepest = 0
            while look < len(lines) and not lines[look].strip(" "):
                deepest = max(deepest, len(lines[look]))
                look += 1
            if look < len(lines):
                deepest = max(deepest, _indent(lines[look]))
            indent = max(least, deepest)

        def is_break(at: int) -> bool:
            return not lines[at].strip(" ") and self.line_break(at) != "" and (not match[3] or len(lines[at]) <= indent)

        def is_content(at: int) -> bool:
            return len(lines[at]) > indent and lines[at][:indent] == " " * indent

        look = first
        breaks: list[str] = []
        while look < len(lines) and (is_break(look) if match[3] else not lines[look].strip(" ")):
            breaks += ["\n"] if self.line_break(look) else []
            look += 1
        chunks: list[str] = []
        line_break = ""
        while look < len(lines) and is_content(look):
            chunks += breaks
            text = lines[look][indent:]
            chunks.append(text)
            line_break = self.line_break(look)
            look += 1
            breaks = []
            while look < len(lines) and len(lines[look]) <= indent and is_break(look):
                breaks.append("\n")
                look += 1
            if look < len(lines) and is_content(look):
                if folded and line_break and text[0] not in SPACE and lines[look][indent] not in SPACE:
                    chunks += [] if breaks else [" "]
                else:
                    chunks.append(line_break)
            else:
                break
        if chomp != "-":
            chunks.append(line_break)
        if chomp == "+":
            chunks += breaks
        self.i = look
        return "".join(chunks)

    def quoted_on_line(self, text: str) -> tuple[str, int]:
        """A quoted scalar that closes on this line (keys): (value, index after the closing quote)."""
        saved = self.lines, self.final_break
        self.lines, self.final_break = [text], False
        try:
            value, (_, end) = self.quoted(0, 0)
        finally:
            self.lines, self.final_break = saved
        return value, end

    def quoted(self, index: int, column: int) -> tuple[str, tuple[int, int]]:
        """A single- or double-quoted scalar, folded over lines as YAML says; returns its end position."""
        quote = self.lines[index][column]
        chunks: list[str] = []
        line, at = index, column + 1
        while True:
            text = self.lines[line]
            if at >= len(text):
                line, at = self.fold(chunks, line, quote, escaped=False)
                continue
            char = text[at]
            if quote == "'" and char == "'":
                if text[at + 1 : at + 2] == "'":
                    chunks.append("'")
                    at += 2
                    continue
                return "".join(chunks), (line, at + 1)
            if quote == '"' and char == '"':
                return "".join(chunks), (line, at + 1)
            if quote == '"' and char == "\\":
                if at + 1 >= len(text):
                    line, at = self.fold(chunks, line, quote, escaped=True)
                    continue
                escape, at = self.escape(text, at + 1, line)
                chunks.append(escape)
                continue
            if char in SPACE:
                end = at
                while end < len(text) and text[end] in SPACE:
                    end += 1
                if end < len(text):
                    chunks.append(text[at:end])
                at = end
                continue
            chunks.append(char)
            at += 1

    def fold(self, chunks: list[str], line: int, quote: str, escaped: bool) -> tuple[int, int]:
        """At the end of a line inside quotes: fold the break(s); returns the next position."""
        if line + 1 >= len(self.lines):
            raise self.error(f"unclosed {quote} quote", line)
        breaks = 0
        line += 1
        while not self.lines[line].strip(SPACE):
            breaks += 1
            if line + 1 >= len(self.lines):
                raise self.error(f"unclosed {quote} quote", line)
            line += 1
        if _is_marker(self.lines[line]):
            raise self.error("document marker inside a quoted value", line)
        if breaks:
            chunks.append("\n" * breaks)
        elif not escaped:
            chunks.append(" ")
        text = self.lines[line]
        return line, len(text) - len(text.lstrip(SPACE))

    def escape(self, text: str, at: int, line: int) -> tuple[str, int]:
        code = text[at]
        if code in ESCAPES:
            return ESCAPES[code], at + 1
        if code in HEX_ESCAPES:
            digits = text[at + 1 : at + 1 + HEX_ESCAPES[code]]
            if len(digits) == HEX_ESCAPES[code] and all(c in "0123456789abcdefABCDEF" for c in digits):
                return chr(int(digits, 16)), at + 1 + len(digits)
        raise self.error(f"unknown escape '\\{code}' in a double-quoted value", line)

    def flow_node(self, index: int, column: int) -> tuple[Value, tuple[int, int]]:
        """A flow collection or a quoted scalar starting at lines[index][column]; returns its end."""
        char = self.lines[index][column]
        if char in "'\"":
            return self.quoted(index, column)
        if char not in "[{":
            raise self.error("expected '[' or '{'", index)
        closing = "]" if char == "[" else "}"
        items: list[Value] = []
        pairs: dict[str, Value] = {}
        position = self.skip_flow_space(index, column + 1)
        while True:
            line, at = position
            text = self.lines[line]
            if text[at] == closing:
                return (items if char == "[" else pairs), (line, at + 1)
            key, position = self.flow_item(line, at)
            line, at = self.skip_flow_space(*position)
            if char == "{":
                value: Value = ""
                if self.lines[line][at] == ":":
                    line, at = self.skip_flow_space(line, at + 1)
                    if self.lines[line][at] not in ",}":
                        value, (line, at) = self.flow_item(line, at)
                        line, at = self.skip_flow_space(line, at)
                if not isinstance(key, str):
                    raise self.error("a flow mapping key must be a scalar", line)
                pairs[key] = value
            else:
                if self.lines[line][at] == ":":
                    raise self.error("'key: value' pairs inside [...] are not supported", line)
                items.append(key)
            if self.lines[line][at] == ",":
                line, at = self.skip_flow_space(line, at + 1)
            elif self.lines[line][at] != closing:
                raise self.error(f"expected ',' or '{closing}' in a flow collection", line)
            position = (line, at)

    def flow_item(self, line: int, at: int) -> tuple[Value, tuple[int, int]]:
        char = self.lines[line][at]
        if char in "[{'\"":
            return self.flow_node(line, at)
        if not _starts_plain(self.lines[line][at:], flow=True):
            raise self.error(f"unexpected {char!r} in a flow collection", line)
        pieces: list[str] = []
        while True:
            text = self.lines[line][at:]
            piece, ended = self.plain_piece(text, line, flow=True)
            pieces.append(piece)
            end = at + len(piece)
            if ended or end < len(self.lines[line].rstrip(SPACE)):
                return " ".join(pieces), (line, end)
            following = self.skip_flow_space(line, end)
            if self.lines[following[0]][following[1]] in ":,]}" or following[0] == line:
                return " ".join(pieces), (line, end)
            line, at = following

    def skip_flow_space(self, line: int, at: int) -> tuple[int, int]:
        """The next position inside a flow collection that is not space, a line break or a comment."""
        while True:
            text = self.lines[line]
            at = self.skip_spaces(line, at)
            if at < len(text) and text[at] != "#":
                return line, at
            line, at = line + 1, 0
            if line >= len(self.lines):
                raise self.error("unclosed flow collection ('[' or '{')", line - 1)
            if _is_marker(self.lines[line]):
                raise self.error("document marker inside a flow collection", line)
