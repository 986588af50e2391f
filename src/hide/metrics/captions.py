"""COCO caption metrics (protocol.md, "Scoring"): BLEU-1..4, METEOR, ROUGE-L, CIDEr, as pycocoevalcap.

The numbers are pycocoevalcap's (tests/test_metrics_captions.py compares them to 1e-9), computed
faster: captions are tokenized by `hide.metrics.ptb` (pycocoevalcap's Stanford PTB tokenization
without starting Java) and only the captions it cannot vouch for go to pycocoevalcap's Java
PTBTokenizer, in one call; BLEU, ROUGE-L and CIDEr come from `hide.metrics.coco` (the same formulas
over numpy arrays), METEOR from pycocoevalcap's Java server. Only things that would crash or
silently misalign pycocoevalcap are handled here (see ``_one_line`` and the input checks). SPICE is
not used (it needs a download). bench/caption_scoring.py measures the speed-up.

METEOR runs a Java server with a multi-second start-up (it loads paraphrase tables), so one is
started lazily per process and reused; it is shut down at interpreter exit. Without Java, or if it
fails, METEOR is reported as absent (None, ``METEOR_available: False``) and the mean is over the
other six metrics; a warning says so once. Captions that need the Java PTB tokenizer (see
`hide.metrics.ptb`) cannot be scored without Java: scoring then raises.
"""

from __future__ import annotations

import atexit
import logging
import os
import re
import shutil
import sys
import tempfile
import threading
from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from typing import IO

from hide.metrics import ptb
from hide.metrics.coco import caption_scores

try:
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer
except ImportError as err:  # pragma: no cover - depends on the install
    raise ImportError("caption metrics need pycocoevalcap: pip install 'hide[coco]'") from err

log = logging.getLogger(__name__)

CAPTION_METRICS: tuple[str, ...] = ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr")

# Module-level METEOR server: started on first use, shared by all calls, closed at exit.
_METEOR_LOCK = threading.Lock()
_meteor: _MeteorServer | None = None
_meteor_failed = False  # start (or a later call) failed: don't retry a multi-second start every call
_meteor_warned = False
_atexit_registered = False


def _java() -> str | None:
    """Path of the java executable, or None."""
    return shutil.which("java")


def _java_for_meteor() -> str | None:
    """Java as seen by METEOR; a separate hook so tests can take METEOR away alone."""
    return _java()


def _drain(stream: IO[bytes]) -> None:
    """Read a pipe until EOF so the child can never block on a full stderr buffer."""
    try:
        for _ in iter(lambda: stream.read(65536), b""):
            pass
    except (OSError, ValueError):
        pass


class _MeteorServer(Meteor):
    """pycocoevalcap's Meteor (scoring unchanged) with a safe lifecycle.

    Upstream leaves stderr as an undrained pipe and its ``__del__`` takes a lock that a failed
    ``compute_score`` never releases, which can hang garbage collection at exit. Here stderr is
    drained, ``close`` kills the process without taking locks, and only the creating process
    may kill it (a forked child shares the pipes but must not stop the parent's server).
    """

    def __init__(self) -> None:
        self._owner_pid = os.getpid()
        super().__init__()
        threading.Thread(target=_drain, args=(self.meteor_p.stderr,), name="meteor-stderr", daemon=True).start()

    def close(self) -> None:
        proc = getattr(self, "meteor_p", None)
        if proc is None or os.getpid() != self._owner_pid:
            return
        for pipe in (proc.stdin, proc.stdout):
            try:
                if pipe is not None:
                    pipe.close()
            except OSError:
                pass
        if proc.poll() is None:
            proc.kill()  # no state worth flushing; SIGKILL cannot be ignored, so the wait is short
        try:
            proc.wait(timeout=5)
        except Exception:  # pragma: no cover - the kernel reaps a SIGKILLed child promptly
            pass

    def __del__(self) -> None:
        self.close()


def _warn_no_meteor(reason: str) -> None:
    global _meteor_warned
    if not _meteor_warned:
        _meteor_warned = True
        log.warning(
            "METEOR unavailable (%s): caption scores EXCLUDE METEOR, the mean is over "
            "BLEU-1..4, ROUGE-L and CIDEr only",
            reason,
        )


def _shutdown_meteor() -> None:
    """atexit hook: stop the METEOR server; never blocks for long even if a call is in flight."""
    global _meteor
    locked = _METEOR_LOCK.acquire(timeout=2)
    try:
        if _meteor is not None:
            _meteor.close()
            _meteor = None
    finally:
        if locked:
            _METEOR_LOCK.release()


def _get_meteor() -> _MeteorServer | None:
    """The shared METEOR server, started (and probed) on first use; None if unavailable.

    Call with ``_METEOR_LOCK`` held.
    """
    global _meteor, _meteor_failed, _atexit_registered
    if _meteor is not None and _meteor._owner_pid != os.getpid():
        _meteor = None  # inherited through fork: start our own, leave the parent's alone
    if _meteor is not None:
        return _meteor
    if _meteor_failed:
        return None
    if _java_for_meteor() is None:
        _meteor_failed = True
        _warn_no_meteor("no `java` on PATH")
        return None
    server: _MeteorServer | None = None
    try:
        server = _MeteorServer()
        # Probe: a JVM that dies at start (heap, missing jar) only shows up when we read from it.
        # This also pays the paraphrase-table load here rather than inside a timed call.
        server.compute_score({"probe": ["a dog"]}, {"probe": ["a dog"]})
    except Exception as err:  # noqa: BLE001 - any start failure means "no METEOR", said loudly
        if server is not None:
            server.close()
        _meteor_failed = True
        _warn_no_meteor(f"the METEOR Java server failed to start: {err!r}")
        return None
    if not _atexit_registered:
        atexit.register(_shutdown_meteor)
        _atexit_registered = True
    _meteor = server
    return server


def _meteor_score(gts: dict[str, list[str]], res: dict[str, list[str]]) -> float | None:
    """Corpus METEOR from the shared server, or None if it is (or just became) unavailable."""
    global _meteor, _meteor_failed
    with _METEOR_LOCK:
        server = _get_meteor()
        if server is None:
            return None
        try:
            score, _ = server.compute_score(gts, res)
            return float(score)
        except Exception as err:  # noqa: BLE001
            # The protocol with the server is now out of sync (and upstream's lock is stuck):
            # retire it rather than risk misattributed numbers.
            server.close()
            _meteor = None
            _meteor_failed = True
            _warn_no_meteor(f"the METEOR Java server failed: {err!r}")
            return None


def _one_line(text: str) -> str:
    """Join a caption's lines with spaces.

    pycocoevalcap writes one caption per line for the PTB tokenizer and only replaces ``\\n``;
    the tokenizer also breaks lines at ``\\r``, ``\\v``, ``\\f``, U+2028 and U+2029, which shifts
    every later caption onto the wrong image. PTB splits tokens on whitespace anyway, so this
    changes no tokens of a well-formed caption.
    """
    return " ".join(text.splitlines())


_PTB_REPORT = re.compile(r"^PTBTokenizer tokenized \d+ tokens at [\d.]+ tokens per second\.$")


@contextmanager
def _without_ptb_report():
    """The PTB tokenizer's JVM reports its speed on the process's stderr, which pycocoevalcap leaves
    uncaptured: keep that line off the console and pass on anything else written meanwhile."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            rest = [line for line in captured.read().decode(errors="replace").splitlines()
                    if not _PTB_REPORT.match(line)]
            if rest:
                sys.stderr.write("\n".join(rest) + "\n")


def _tokenize(references: dict[str, list[str]], predictions: dict[str, str]) -> tuple[dict, dict]:
    """pycocoevalcap's tokenization of both sides ({id: [tokens joined by spaces, ...]}, lower-cased,
    punctuation removed): `hide.metrics.ptb` where it can, one Java PTBTokenizer call for the rest."""
    items = [(key, j, _one_line(c)) for key, caps in references.items() for j, c in enumerate(caps)]
    items += [(key, -1, _one_line(predictions[key])) for key in references]
    tokens = {(key, j): ptb.tokenize(text) for key, j, text in items}
    # pycocoevalcap's tokenizer takes string ids; ours may be any hashable (COCO's are ints), so the
    # Java call gets positions as ids and the answers are mapped back through them.
    needs_java = [(key, j, text) for key, j, text in items if tokens[(key, j)] is None]
    rest = {str(n): [{"caption": text}] for n, (_, _, text) in enumerate(needs_java)}
    if rest:
        if _java() is None:
            raise RuntimeError(
                f"score_captions needs Java for {len(rest)} caption(s) outside the rules of hide.metrics.ptb "
                f"(e.g. {next(iter(rest.values()))[0]['caption']!r}): the COCO caption numbers are defined on "
                f"pycocoevalcap's Stanford PTB tokenizer, a Java program. Install a JRE (e.g. openjdk-17-jre-headless).")
        with _without_ptb_report():
            java = PTBTokenizer().tokenize(rest)
        # A crashed JVM gives fewer lines, which pycocoevalcap zips away silently.
        if java.keys() != rest.keys():
            raise RuntimeError("PTB tokenizer returned a different number of captions than it was given")
        for n, (key, j, _) in enumerate(needs_java):
            tokens[(key, j)] = java[str(n)][0]
    gts = {key: [tokens[(key, j)] for j in range(len(caps))] for key, caps in references.items()}
    res = {key: [tokens[(key, -1)]] for key in references}
    return gts, res


def _check_inputs(predictions: Mapping[str, str], references: Mapping[str, Sequence[str]]) -> None:
    if not references:
        raise ValueError("score_captions: no references (nothing to score)")
    if predictions.keys() != references.keys():
        missing = [k for k in references if k not in predictions]
        extra = [k for k in predictions if k not in references]
        parts = []
        if missing:
            parts.append(f"{len(missing)} id(s) without a prediction, e.g. {missing[:5]}")
        if extra:
            parts.append(f"{len(extra)} predicted id(s) not in the references, e.g. {extra[:5]}")
        raise ValueError("score_captions: prediction ids differ from reference ids: " + "; ".join(parts))
    for key, refs in references.items():
        if isinstance(refs, str) or not all(isinstance(r, str) for r in refs):
            raise ValueError(f"score_captions: references[{key!r}] must be a list of strings")
        if len(refs) == 0:
            raise ValueError(f"score_captions: image {key!r} has no reference captions")
        if not isinstance(predictions[key], str):
            raise ValueError(f"score_captions: predictions[{key!r}] must be a string")


def score_captions(
    predictions: Mapping[str, str],
    references: Mapping[str, Sequence[str]],
    *,
    meteor: bool = True,
) -> dict[str, float | bool | None]:
    """COCO caption metrics of one prediction per image against its reference captions.

    Returns ``{"BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr"}`` scaled
    x100, ``"score"`` = the plain mean of the available ones, and ``"METEOR_available"``. With
    ``meteor=False``, or when METEOR cannot run (no Java / its server fails; logged once),
    METEOR is None and the mean is over the other six.

    BLEU is pycocoevalcap's corpus-level BLEU (not a mean of sentence scores); CIDEr's IDF comes
    from the references passed in, so it depends on the whole set scored together. An empty
    prediction is scored as a caption with no words (no matches, exactly as pycocoevalcap scores
    "." which its tokenizer also reduces to nothing).

    Raises ValueError if the id sets differ (naming some ids), an image has no references, or
    every reference is empty after tokenization (CIDEr is undefined then). Raises RuntimeError
    when a caption needs the Java PTB tokenizer and there is no Java.
    """
    _check_inputs(predictions, references)
    keys = list(references)  # one fixed order for both sides
    gts, res = _tokenize({k: list(references[k]) for k in keys}, {k: predictions[k] for k in keys})
    if not any(ref for refs in gts.values() for ref in refs):
        # pycocoevalcap's Cider would die on max() of an empty document-frequency table.
        raise ValueError("score_captions: every reference caption is empty after PTB tokenization")

    scores = caption_scores(gts, res)
    meteor_score = _meteor_score(gts, res) if meteor else None

    raw = {name: meteor_score if name == "METEOR" else scores[name] for name in CAPTION_METRICS}
    out: dict[str, float | bool | None] = {
        name: None if value is None else 100.0 * float(value) for name, value in raw.items()
    }
    available = [v for v in out.values() if v is not None]
    out["score"] = sum(available) / len(available)
    out["METEOR_available"] = meteor_score is not None
    return out
