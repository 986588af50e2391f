"""pycocoevalcap's caption tokenization without starting Java, for the captions where that is safe.

pycocoevalcap runs Stanford's PTBTokenizer 3.4.1 (`-preserveLines -lowerCase`) and then drops the
punctuation tokens. For a caption made only of ASCII letters, digits, spaces and . , ! ? ; : ' "
( ) -, the tokens that survive are fixed by a few rules, implemented here: whitespace splits, the
punctuation at a word's edges is split off, the clitics n't 's 're 've 'll 'd 'm are split from
their word, and everything is lower-cased (pycocoevalcap's command line leaves British spellings
as they are: colour stays colour). Anything outside those rules (other characters,
abbreviations and initials before a full stop, decimals and 1,000-style numbers, quotes made of
apostrophes, words PTB splits such as cannot / gonna, other apostrophe forms) returns None: the
caller sends those captions to the Java tokenizer, so the result is always PTB's.
tests/test_metrics_captions.py checks the rules against the Java tokenizer caption by caption.
"""

from __future__ import annotations

import re

# pycocoevalcap's list of tokens removed after tokenization
PUNCTUATION = {"''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-", ".", "?", "!", ",", ":", "-", "--", "...", ";"}

_SAFE = re.compile(r"[A-Za-z0-9 .,!?;:'\"()\-]*")
_WORD = re.compile(r"[A-Za-z0-9]+(?:-[A-Za-z0-9]+)*")
_CLITIC = re.compile(r"([A-Za-z]+?)(n't|N'T|'s|'S|'re|'RE|'ve|'VE|'ll|'LL|'d|'D|'m|'M)")
# words the PTB lexer splits or treats specially
_SPECIAL = {"cannot", "gonna", "gotta", "wanna", "lemme", "gimme", "gonnae", "dunno", "whaddya", "whatcha"}
_LEADING = {"(": "-LRB-", '"': "``"}
_TRAILING = {",": ",", ";": ";", ":": ":", "!": "!", "?": "?", ")": "-RRB-", '"': "''"}

def _word(core: str) -> list[str] | None:
    if not core:
        return []
    if core in ("-", "--"):
        return [core]
    if _WORD.fullmatch(core):
        if core.lower() in _SPECIAL:
            return None
        return [core]
    clitic = _CLITIC.fullmatch(core)
    if clitic and clitic.group(1).lower() not in _SPECIAL:
        base, suffix = clitic.groups()
        if suffix.lower() == "n't" and base.lower() in ("ca", "wo", "ai", "sha"):
            return [base, suffix]  # can't -> ca n't, as PTB
        return [base, suffix]
    return None


def _chunk(chunk: str) -> list[str] | None:
    """The PTB tokens of one whitespace-separated piece, or None when a rule here may differ."""
    lead = []
    while chunk and chunk[0] in _LEADING:
        lead.append(_LEADING[chunk[0]])
        chunk = chunk[1:]
    trail: list[str] = []
    while chunk:
        if chunk.endswith("...") and chunk != "...":
            if not _plain_word_before_stop(chunk[:-3]):
                return None  # "x..." and "etc..." keep a full stop: x. ..
            trail.insert(0, "...")
            chunk = chunk[:-3]
        elif chunk.endswith("--") and chunk != "--":
            trail.insert(0, "--")
            chunk = chunk[:-2]
        elif chunk[-1] in "!?" and len(chunk) > 1 and chunk[-2] in "!?":
            return None  # PTB keeps "!!" and "?!" as one token
        elif chunk[-1] in _TRAILING and len(chunk) > 1:
            trail.insert(0, _TRAILING[chunk[-1]])
            chunk = chunk[:-1]
        elif chunk.endswith(".") and chunk != "...":
            core = chunk[:-1]
            if core and not _plain_word_before_stop(core):
                return None  # initials, abbreviations (Mr., St., U.S.), numbers, capitalised words
            trail.insert(0, ".")
            chunk = core
        else:
            break
    if chunk in _TRAILING or chunk in (".", "..."):
        return lead + [_TRAILING.get(chunk, chunk)] + trail
    if chunk and not (chunk[0].isalnum() or chunk in ("-", "--")):
        return None
    if chunk.endswith("-") and chunk not in ("-", "--"):
        return None
    core = _word(chunk)
    return None if core is None else lead + core + trail


# Words after which PTB keeps the full stop (an abbreviation: "st." stays "st."), found by running
# the Java tokenizer on "x WORD. y" for every lower-case 2-5 letter WORD, Title- and UPPER-case
# 2-4 letter WORD (and Title-case 5 letter), and known longer abbreviations.
_ABBREVIATIONS = frozenset("""
    adj adm adv al ala alex apr ariz assn assoc asst atty attys aug ave bancorp bhd bldg blvd brig bros calif
    capt cf cie cmdr co col colo comdr conn corp cos cpl ct dak dec dept det dr drs elec ens esq est etc ext
    feb fla fri ft ga gen gimme gonna gotta gov govs hon inc ind insp intl invt jan jos jr jul jun kan kans ky
    lemme lieut lt ltd maj mar md messrs mfg mich minn mlle mme mo mon mont mr mrs ms msgr mt mtg natl neb nev
    nov oct okla penn pfc ph plc ppte pptes ppty pptys pres prof profs pte ptes pty ptys pvt rd rep reps rev
    rt sen sens sep sept seq sfc sgt spc sq sr st ste supt supts sys tel tenn thu thurs treas tue tues univ va
    vs vt wanna wed wis wisc wm wyo
""".split())
# ... and only when not lower-case (lower-case "wash." splits, "Wash." does not)
_CAPITALISED_ABBREVIATIONS = frozenset("ark az del ill la mass miss ore pa tex wash".split())


def _plain_word_before_stop(core: str) -> bool:
    """A word whose full stop PTB splits off: 2+ ASCII letters, lower-, Title- or UPPER-case, and
    not an abbreviation (checked up to 5 letters against the Java tokenizer; longer words are
    abbreviations only in the listed cases)."""
    if not (core.isalpha() and core.isascii() and len(core) > 1):
        return False
    lower = core.lower()
    if core != lower and core not in (lower.capitalize(), lower.upper()):
        return False
    if len(core) > 4 and core == lower.upper():
        return False  # UPPER-case words of 5+ letters were not checked
    return lower not in _ABBREVIATIONS and (core == lower or lower not in _CAPITALISED_ABBREVIATIONS)


def tokenize(caption: str) -> str | None:
    """The caption as pycocoevalcap tokenizes it (lower-cased PTB tokens without punctuation, joined by
    single spaces), or None when only the Java tokenizer can say."""
    if not _SAFE.fullmatch(caption):
        return None
    tokens: list[str] = []
    for chunk in caption.split(" "):
        if not chunk:
            continue
        if chunk.isalnum():  # the common case: a plain word or number (ASCII: checked above)
            if chunk.lower() in _SPECIAL:
                return None
            tokens.append(chunk)
            continue
        piece = _chunk(chunk)
        if piece is None:
            return None
        tokens += piece
    # lower-cased before the punctuation is dropped, as pycocoevalcap does: so its "-LRB-" and "-RRB-"
    # never match and a caption's parentheses stay in as the words "-lrb-" and "-rrb-"
    return " ".join(t for t in (token.lower() for token in tokens) if t not in PUNCTUATION)
