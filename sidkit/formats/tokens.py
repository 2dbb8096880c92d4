"""SID token strings: the token format, the full token grid, and parsing generated strings back.

A token format is a template with the placeholders ``{level}`` (the level letter: a, b, c, ...,
z, aa, ...) and ``{code}`` (the code): ``<{level}_{code}>`` (the default, LC-Rec / LETTER /
MiniOneRec: ``<a_12>``) or ``<s_{level}_{code}>`` (OpenOneRec: ``<s_a_12>``). The CLI also
accepts an example token for the two known formats (``<a_12>``, ``<s_a_12>``).

The **token grid** is every code of every level, level-major (``<a_0> .. <a_{K0-1}>, <b_0> ..``),
then the suffix level (``suffix_size`` tokens, by default the last codebook size), then, where the
format uses them, the begin/end markers. It depends only on the codebook sizes, the suffix size
and the token format, never on which codes the items use, so token ids stay fixed when a refresh
(``sidkit encode``) adds items or codes.
"""

from __future__ import annotations

import re

from sidkit.errors import ConfigError, opt

DEFAULT_FORMAT = "<{level}_{code}>"
OPENONEREC_FORMAT = "<s_{level}_{code}>"
BEGIN, END = "<|sid_begin|>", "<|sid_end|>"
_EXAMPLES = {"<a_12>": DEFAULT_FORMAT, "<s_a_12>": OPENONEREC_FORMAT}


def level_letter(l: int) -> str:
    """a, b, ..., z, aa, ab, ... for level ``l`` (0-based)."""
    s = ""
    l += 1
    while l > 0:
        l, r = divmod(l - 1, 26)
        s = chr(97 + r) + s
    return s


def letter_level(s: str) -> int:
    """The inverse of :func:`level_letter`."""
    v = 0
    for ch in s:
        v = v * 26 + (ord(ch) - 96)
    return v - 1


def check_token_format(fmt: str | None) -> str:
    """The validated template (an example token of a known format is turned into its template).

    Raises ConfigError unless the template holds ``{level}`` and ``{code}`` once each, no other
    braces, some text besides them, and no whitespace."""
    if fmt is None:
        return DEFAULT_FORMAT
    fmt = _EXAMPLES.get(fmt, fmt)
    name = opt("token_format", "--token-format")
    rest = fmt.replace("{level}", "").replace("{code}", "")
    if fmt.count("{level}") != 1 or fmt.count("{code}") != 1:
        raise ConfigError(f"{name} {fmt!r} must contain {{level}} and {{code}} once each, e.g. '<{{level}}_{{code}}>' "
                          f"(<a_12>) or '<s_{{level}}_{{code}}>' (<s_a_12>)")
    if "{" in rest or "}" in rest:
        raise ConfigError(f"{name} {fmt!r} has braces other than {{level}} and {{code}}; use e.g. '<{{level}}_{{code}}>'")
    if not rest or any(c.isspace() for c in fmt):
        raise ConfigError(f"{name} {fmt!r} needs marker text around the placeholders and no spaces, e.g. '<{{level}}_{{code}}>'")
    return fmt


def token(fmt: str, level: int, code: int) -> str:
    return fmt.replace("{level}", level_letter(level)).replace("{code}", str(int(code)))


def token_regex(fmt: str) -> re.Pattern:
    """A regex matching one token of ``fmt`` (groups ``level`` and ``code``)."""
    parts = re.split(r"(\{level\}|\{code\})", fmt)
    out = []
    for p in parts:
        if p == "{level}":
            out.append(r"(?P<level>[a-z]+)")
        elif p == "{code}":
            out.append(r"(?P<code>\d+)")
        else:
            out.append(re.escape(p))
    return re.compile("".join(out))


def token_grid(codebook_sizes, *, suffix_size: int | None = 0, fmt: str = DEFAULT_FORMAT, markers: bool = False) -> list[str]:
    """The full level-major token list (see the module docstring). ``suffix_size``: tokens of the
    suffix level (0: none)."""
    fmt = check_token_format(fmt)
    sizes = [int(k) for k in codebook_sizes]
    L = len(sizes)
    grid = [token(fmt, l, c) for l in range(L) for c in range(sizes[l])]
    if suffix_size:
        grid += [token(fmt, L, s) for s in range(int(suffix_size))]
    if markers:
        grid += [BEGIN, END]
    return grid
