"""COCO caption metrics (protocol.md, "Scoring"): BLEU-1..4, METEOR, ROUGE-L, CIDEr, as UCIT's scorer.

The official scorer is HiDe-LLaVA's ``llava/eval/eval_caption.py`` (``eval_single``): pycocotools
``COCO(annotation_file)`` / ``loadRes(predictions)`` and pycocoevalcap's ``COCOEvalCap.evaluate``
(``eval.py``). That puts the references of every image, in ``coco.getImgIds()`` order (the order
of the annotation file's images) and each image's captions in annotation order, into one dict
``gts``, and the predictions, same image order, into ``res`` (eval.py:20-26); tokenizes
``gts`` and then ``res`` in two separate calls of its PTBTokenizer (eval.py:32-34), each one Java
run over all of that dict's captions, one per line; then scores Bleu(4), Meteor, Rouge, Cider
(eval.py:40-53). Here ``references`` plays ``gts`` and ``predictions`` ``res``, both in the order
of ``references``' keys, which the caller keeps in the annotation file's image order.

The numbers are pycocoevalcap's (tests/test_metrics_captions.py compares them to 1e-9), computed
faster. Tokenization is decided per dict, as pycocoevalcap runs it: when every caption of the
dict is in `hide.metrics.ptb`'s safe class (where Stanford's tokens provably do not depend on the
neighbouring lines and are reproduced exactly), the dict is tokenized in Python; otherwise the
whole dict goes to pycocoevalcap's own Java PTBTokenizer, in the official order, so that every
caption has the neighbours it has in the official run. BLEU, ROUGE-L and CIDEr come from
`hide.metrics.coco` (the same formulas over numpy arrays), METEOR from pycocoevalcap's Java
server. SPICE is not used (it needs a download). bench/caption_scoring.py measures the speed-up.

One departure, where the official run misassigns captions: pycocoevalcap replaces only ``\\n``
inside a caption, but the Java lexer also ends a line at ``\\r``, ``\\v``, ``\\f``, U+2028 and
U+2029, so one such caption moves every later caption of the dict onto the wrong image (or drops
the last image, which then fails Bleu's key check). Those characters are turned into spaces here,
with a warning (see ``_one_line``); no other caption is changed.

METEOR runs a Java server with a multi-second start-up (it loads paraphrase tables), so one is
started lazily per process and reused; it is shut down at interpreter exit. Without Java, or if it
fails, METEOR is reported as absent (None, ``METEOR_available: False``) and the mean is over the
other six metrics; a warning says so once. A dict with a caption outside the safe class cannot be
tokenized without Java: scoring then raises.
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
from collections.abc import Hashable, Mapping, Sequence
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


# The characters PTBLexer 3.4.1 ends a line at besides "\n" (its NEWLINE; U+0085 is in it too but
# its LDOTS rule, listed first, takes it as an ellipsis).
_JAVA_LINE_BREAKS = re.compile("[\r\x0b\x0c\u2028\u2029]")


def _one_line(text: str) -> str:
    """A caption as pycocoevalcap writes it on its line (``\\n`` replaced by a space, line 37 of
    its ptbtokenizer.py), with the other line breaks of the Java lexer also made spaces.

    Those would split the caption over two lines of the tokenizer's output and shift every later
    caption onto the wrong image; that is the only change made to any caption.
    """
    text = text.replace("\n", " ")
    if _JAVA_LINE_BREAKS.search(text):
        log.warning("a caption contains a line break other than \\n (%r): scored as a space; pycocoevalcap "
                    "would misassign the captions after it", text[:80])
        text = _JAVA_LINE_BREAKS.sub(" ", text)
    return text


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


def _tokenize_dict(captions: dict[Hashable, list[str]]) -> dict[Hashable, list[str]]:
    """pycocoevalcap's ``PTBTokenizer().tokenize`` of one dict ({image: [caption, ...]}, in its
    order): {image: [tokens joined by spaces, ...]}, lower-cased, punctuation removed.

    In Python when every caption is in `hide.metrics.ptb`'s safe class; otherwise one Java run over
    the whole dict, line for line what pycocoevalcap writes, so that each caption has the same
    neighbours as in the official run (the Java lexer reads across lines).
    """
    lines = [_one_line(c) for caps in captions.values() for c in caps]
    tokens = ptb.tokenize_corpus(lines)
    if tokens is None:
        if _java() is None:
            unsafe = next(line for line in lines if ptb.tokenize(line) is None)
            raise RuntimeError(
                f"score_captions needs Java: a caption (e.g. {unsafe!r}) is outside the captions whose Stanford "
                f"PTB tokens hide.metrics.ptb reproduces, and the COCO caption numbers are defined on pycocoevalcap's "
                f"PTB tokenizer, a Java program. Install a JRE (e.g. openjdk-17-jre-headless).")
        # positions as image ids: pycocoevalcap keys its answer by them, any hashable ids of ours map back
        request, position = {}, 0
        for n, caps in enumerate(captions.values()):
            request[n] = [{"caption": line} for line in lines[position:position + len(caps)]]
            position += len(caps)
        with _without_ptb_report():
            answer = PTBTokenizer().tokenize(request)
        # pycocoevalcap zips lines with captions: a JVM that died early would silently lose captions
        if [len(answer.get(n, ())) for n in request] != [len(caps) for caps in request.values()]:
            raise RuntimeError("the PTB tokenizer returned a different number of captions than it was given")
        tokens = [t for n in request for t in answer[n]]
    out, position = {}, 0
    for key, caps in captions.items():
        out[key] = tokens[position:position + len(caps)]
        position += len(caps)
    return out


def _tokenize(references: dict, predictions: dict) -> tuple[dict, dict]:
    """pycocoevalcap's tokenization of both sides, as COCOEvalCap does it: the references' dict,
    then the predictions' dict, two separate tokenizer calls, same image order."""
    gts = _tokenize_dict(references)
    res = _tokenize_dict({key: [predictions[key]] for key in references})
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

    The order of ``references`` is the order pycocoevalcap's run uses (the annotation file's
    images, each image's captions in file order): the Java tokenizer reads each caption with its
    neighbours, so the same captions in another order can tokenize differently.

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
    when a caption needs the Java PTB tokenizer (see `hide.metrics.ptb`) and there is no Java.
    """
    _check_inputs(predictions, references)
    keys = list(references)  # the official image order, for both sides
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
