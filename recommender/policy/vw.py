"""The seam to Vowpal Wabbit: the only module of the project that imports ``vowpalwabbit``.

``VWModel`` owns one VW workspace and speaks in the project's terms: it takes ``ExampleFeatures`` (from
``recommender.policy.examples``) and returns probabilities as numpy arrays. Everything VW-specific is here:
building examples through VW's example API, VW's text format (labels, namespaces, ``cb_text``/``ccb_text``
for the naive path, debugging and exports), multi-line predict/learn, finishing every example, saving and
loading model files, and turning VW's exceptions into ``PolicyError``.

Behaviour of VW (9.x) this module relies on, checked rather than assumed (tests cover each):

- Examples built through the example API hash exactly like VW's text parser does for the same tokens
  (``tests/recommender/policy/test_examples.py`` compares pmfs of both routes).
- Action examples can be reused across predictions: ``cb_explore_adf``/``ccb_explore_adf`` restore every
  example they touch (shared features, labels, offsets of bagging/cover) before returning, so a cached,
  already set-up item example predicts exactly like a freshly parsed one. Building an example is the
  expensive part (each VW example is ~32 KiB of namespace tables): caching one per item turns a
  200-candidate prediction from about a millisecond into VW's scoring time.
- Finishing examples created from Python neither frees nor clears them (Python owns them; VW's
  ``finish_example`` only updates statistics and returns *pool* examples, i.e. parsed text, to VW's
  pool), so every prediction and learn call finishes its whole multi-example, cached items included.
  We call the native finish directly: ``pyvw``'s wrapper silently skips a list once any member has been
  finished before, which would leak the parsed CCB slot examples.
- ``--ccb_explore_adf`` samples each slot itself (its ``cb_sample`` step) and excludes the chosen action
  from later slots. The seed of each slot comes from the slot example's tag ``seed=<...>``, so a given
  event id always gives the same slate.

Thread-safety: a VW workspace is not thread-safe and neither is a ``VWModel``. Use one per worker process
(created after fork) and serialise calls, as ``recommender.policy.Policy`` does with its lock.
"""

from __future__ import annotations

from collections.abc import Sequence
from operator import attrgetter
from pathlib import Path

import numpy as np
import pylibvw
import vowpalwabbit
from pyarrow import csv, float64, py_buffer
from vowpalwabbit import pyvw

from recommender.errors import PolicyError
from recommender.policy.examples import ExampleFeatures, Feature

# --- VW text format (the naive path, debugging, exports) ---------------------------------------------


def _number_text(value: float) -> str:
    return repr(float(value))


def namespaces_text(features: ExampleFeatures) -> str:
    """``|User a=b x:1.5 |Context ...``; namespaces without features are left out. Never empty:
    an empty line would end a VW multi-line example."""
    parts = []
    for namespace, feats in features:
        if feats:
            tokens = " ".join(t if v == 1.0 else f"{t}:{_number_text(v)}" for t, v in feats)
            parts.append(f"|{namespace} {tokens}")
    return " ".join(parts) if parts else "|"


def cb_label(cost: float, probability: float) -> str:
    """The ``cb_explore_adf`` label of the chosen action: ``0:<cost>:<probability>`` (the action
    index is implied by the line in adf format)."""
    return f"0:{_number_text(cost)}:{_number_text(probability)}"


def ccb_slot_label(action: int, cost: float, probability: float) -> str:
    """A labelled CCB slot: ``ccb slot <action>:<cost>:<probability>`` (action indexes the actions)."""
    return f"ccb slot {action}:{_number_text(cost)}:{_number_text(probability)}"


def cb_text(
    shared: ExampleFeatures,
    items: Sequence[ExampleFeatures],
    label: tuple[int, float, float] | None = None,
) -> list[str]:
    """A ``cb_explore_adf`` multi-line example; ``label`` = (chosen index, cost, probability)."""
    lines = [f"shared {namespaces_text(shared)}"]
    for i, item in enumerate(items):
        prefix = f"{cb_label(label[1], label[2])} " if label is not None and label[0] == i else ""
        lines.append(prefix + namespaces_text(item))
    return lines


def ccb_text(
    shared: ExampleFeatures,
    items: Sequence[ExampleFeatures],
    slots: Sequence[ExampleFeatures],
    *,
    seeds: Sequence[str] | None = None,
    outcomes: Sequence[tuple[int, float, float]] | None = None,
) -> list[str]:
    """A ``ccb_explore_adf`` multi-line example. ``seeds[s]`` (tag-safe strings) fix VW's sampling seed
    for slot ``s``; ``outcomes[s]`` = (chosen action, cost, probability) labels slot ``s``."""
    lines = [f"ccb shared {namespaces_text(shared)}"]
    lines += [f"ccb action {namespaces_text(item)}" for item in items]
    for s, slot in enumerate(slots):
        head = ccb_slot_label(*outcomes[s]) if outcomes is not None else "ccb slot"
        tag = f" 'seed={seeds[s]}" if seeds is not None else ""
        # VW reads a tag as the token glued to the first '|'.
        lines.append(f"{head}{tag}{namespaces_text(slot)}" if tag else f"{head} {namespaces_text(slot)}")
    return lines


_CB = pyvw.LabelType.CONTEXTUAL_BANDIT
_CCB = pyvw.LabelType.CONDITIONAL_CONTEXTUAL_BANDIT


class ActionExample:
    """An item's VW action example, built and set up once, reusable across predictions and learning of the
    ``VWModel`` that built it (and only that one); ``features`` are what it was built from."""

    __slots__ = ("_example", "_owner", "features")

    def __init__(self, example: pylibvw.example, owner: VWModel, features: ExampleFeatures) -> None:
        self._example = example
        self._owner = owner
        self.features = features


_OWNER = attrgetter("_owner")
_EXAMPLE = attrgetter("_example")


class VWModel:
    """One VW workspace for ``cb_explore_adf`` or ``ccb_explore_adf`` and the examples it builds.

    ``args`` is the full VW command line as tokens (see ``PolicyConfig.vw_args``); ``initial_model`` is a
    model file to start from (``-i``). Raises ``PolicyError`` when VW refuses the arguments or the file.
    """

    def __init__(self, args: Sequence[str], *, initial_model: str | Path | None = None) -> None:
        arg_list = [str(a) for a in args]
        if initial_model is not None:
            arg_list += ["-i", str(initial_model)]
        try:
            self._vw = pyvw.Workspace(arg_list=arg_list)
        except Exception as exc:  # VW raises plain RuntimeError/ValueError subclasses
            raise PolicyError(f"VW refused {' '.join(arg_list)!r}: {exc}") from exc
        self.args = tuple(arg_list)
        label_type = self._vw.get_label_type()
        if label_type not in (_CB, _CCB):
            self._vw.finish()
            raise PolicyError(f"VW arguments {' '.join(arg_list)!r} do not set up a (conditional) contextual bandit")
        self.multi_slot = label_type == _CCB
        self._label_type = label_type
        self._label_value = int(label_type.value)
        self._shared_label = "ccb shared" if self.multi_slot else "shared"
        self._action_label = "ccb action" if self.multi_slot else None
        self._namespaces: dict[str, tuple[int, int]] = {}
        self._closed = False

    # --- building examples ------------------------------------------------------------------------

    def _namespace(self, name: str) -> tuple[int, int]:
        cached = self._namespaces.get(name)
        if cached is None:
            # VW indexes a namespace by its first character and seeds feature hashes with the hash of
            # its full name -- as its text parser does for "|Name ...".
            cached = self._namespaces[name] = (ord(name[0]), self._vw.hash_space(name))
        return cached

    def _example(self, features: ExampleFeatures, label: str | None) -> pylibvw.example:
        # The binding's own example type, not pyvw.Example: its Python constructor and wrappers cost as much
        # as the features (VW's predict, learn and finish take either). One push_feature_dict call pushes every
        # namespace (VW indexes a namespace by its first character and seeds feature hashes with the hash of
        # its full name -- as its text parser does for "|Name ..."; the tests compare both routes).
        example = pylibvw.example(self._vw, self._label_value)
        by_name: dict[str, list[Feature]] = {}
        for name, feats in features:
            if feats:
                if name in by_name:  # a namespace named twice (JSON objects under the same key): pushed in order
                    return self._example_by_namespace(features, label)
                by_name[name] = list(feats)
        if by_name:
            example.push_feature_dict(self._vw, by_name)
        return self._finish_building(example, label)

    def _example_by_namespace(self, features: ExampleFeatures, label: str | None) -> pylibvw.example:
        example = pylibvw.example(self._vw, self._label_value)
        for name, feats in features:
            if feats:
                index, ns_hash = self._namespace(name)
                pylibvw.example.ensure_namespace_exists(example, index)
                pylibvw.example.push_feature_list(example, self._vw, index, ns_hash, list(feats))
        return self._finish_building(example, label)

    def _finish_building(self, example: pylibvw.example, label: str | None) -> pylibvw.example:
        if label is not None:
            pylibvw.example.set_label_string(example, self._vw, label, self._label_value)
        pylibvw.vw.setup_example(self._vw, example)
        return example

    def action(self, features: ExampleFeatures) -> ActionExample:
        """A reusable action example for one item (cache it per item; see module docstring)."""
        self._check_open()
        return ActionExample(self._example(features, self._action_label), self, features)

    def _actions(self, actions: Sequence[ActionExample]) -> list[pylibvw.example]:
        # In C (attrgetter, set): 200 actions per decision.
        if any(owner is not self for owner in set(map(_OWNER, actions))):
            raise PolicyError("an action example built by another VW model was passed in")
        return list(map(_EXAMPLE, actions))

    def _slots_for_prediction(self, slots: Sequence[ExampleFeatures], seeds: Sequence[str]) -> list[pylibvw.example]:
        # The example API cannot set tags, so slot examples (tiny: one feature) are parsed from text,
        # which gives them the per-slot sampling seed. Parsed examples belong to VW's pool and go back
        # to it when finished.
        lines = [f"ccb slot 'seed={seed}{namespaces_text(slot)}" for slot, seed in zip(slots, seeds, strict=True)]
        parsed = self._vw.parse(lines)
        return parsed if isinstance(parsed, list) else [parsed]

    # --- predict and learn ------------------------------------------------------------------------

    def _run(self, examples: list[pylibvw.example], learn: bool) -> None:
        try:
            if learn:
                pylibvw.vw.learn_multi(self._vw, examples)
            else:
                pylibvw.vw.predict_multi(self._vw, examples)
        except Exception as exc:
            pylibvw.vw._finish_example_multi_ex(self._vw, examples)
            raise PolicyError(f"VW failed to {'learn' if learn else 'predict'}: {exc}") from exc

    def _finish(self, examples: list[pylibvw.example]) -> None:
        pylibvw.vw._finish_example_multi_ex(self._vw, examples)

    def predict_cb(self, shared: ExampleFeatures, actions: Sequence[ActionExample]) -> np.ndarray:
        """Probabilities over ``actions`` (in the given order): shape (K,), float64, summing to 1.

        VW computes them in float32; they are widened and renormalised so that the returned pmf sums
        to 1 to float64 precision (the difference is below 1e-6) -- it is the pmf decisions sample from.
        """
        self._check_open()
        if self.multi_slot:
            raise PolicyError("predict_cb needs a cb_explore_adf model; this one is ccb_explore_adf")
        examples = [self._example(shared, self._shared_label), *self._actions(actions)]
        self._run(examples, learn=False)
        scores = examples[0].get_action_scores()  # the binding orders them by action index
        self._finish(examples)
        return _normalised(np.asarray(scores, dtype=np.float64), len(actions))

    def predict_cb_uncached(self, shared: ExampleFeatures, items: Sequence[ExampleFeatures]) -> np.ndarray:
        """``predict_cb`` with action examples built for this call only (no cache)."""
        return self.predict_cb(shared, [self.action(item) for item in items])

    def predict_ccb(
        self,
        shared: ExampleFeatures,
        actions: Sequence[ActionExample],
        slots: Sequence[ExampleFeatures],
        seeds: Sequence[str],
    ) -> list[list[tuple[int, float]]]:
        """VW's slate: per slot, ``[(action index, probability), ...]`` with the sampled action first.

        Each slot's list is VW's distribution over the actions still available to it (earlier slots'
        choices excluded). ``seeds[s]`` (characters ``[A-Za-z0-9_-]``) fixes slot ``s``'s sampling.
        """
        self._check_open()
        if not self.multi_slot:
            raise PolicyError("predict_ccb needs a ccb_explore_adf model; this one is cb_explore_adf")
        if not 1 <= len(slots) <= len(actions):
            raise PolicyError(f"{len(slots)} slots for {len(actions)} actions: need 1 <= slots <= actions")
        examples = [self._example(shared, self._shared_label), *self._actions(actions)]
        examples += self._slots_for_prediction(slots, seeds)
        self._run(examples, learn=False)
        decisions = examples[0].get_decision_scores()
        self._finish(examples)
        return [[(int(a), float(p)) for a, p in slot] for slot in decisions]

    def learn_cb(
        self,
        shared: ExampleFeatures,
        items: Sequence[ExampleFeatures],
        chosen: int,
        cost: float,
        probability: float,
    ) -> None:
        """One logged cb decision: the item at ``chosen`` was shown with ``probability`` and cost ``cost``."""
        self._check_open()
        if self.multi_slot:
            raise PolicyError("learn_cb needs a cb_explore_adf model; this one is ccb_explore_adf")
        _check_label(chosen, len(items), probability)
        examples = [self._example(shared, self._shared_label)]
        examples += [
            self._example(item, cb_label(cost, probability) if i == chosen else None) for i, item in enumerate(items)
        ]
        self._run(examples, learn=True)
        self._finish(examples)

    def learn_cb_actions(
        self,
        shared: ExampleFeatures,
        actions: Sequence[ActionExample],
        chosen: int,
        cost: float,
        probability: float,
    ) -> None:
        """``learn_cb`` over cached action examples: the same VW input, without rebuilding K examples.

        The chosen action's labelled example is built for this call only (from ``actions[chosen].features``),
        because a label cannot be taken off an example again (VW's cb label parser appends costs and never
        clears them). The others are the cached, unlabelled examples, which VW's learn leaves as it found
        them, as its predict does (the tests compare the learned model bytes with ``learn_cb``'s)."""
        self._check_open()
        if self.multi_slot:
            raise PolicyError("learn_cb_actions needs a cb_explore_adf model; this one is ccb_explore_adf")
        _check_label(chosen, len(actions), probability)
        examples = [self._example(shared, self._shared_label), *self._actions(actions)]
        examples[chosen + 1] = self._example(actions[chosen].features, cb_label(cost, probability))
        self._run(examples, learn=True)
        self._finish(examples)

    def learn_ccb_actions(
        self,
        shared: ExampleFeatures,
        actions: Sequence[ActionExample],
        slots: Sequence[ExampleFeatures],
        outcomes: Sequence[tuple[int, float, float]],
    ) -> None:
        """``learn_ccb`` over cached action examples (every action carries the same ``ccb action`` label
        either way; the labels are on the slot examples, built for this call)."""
        self._check_open()
        if not self.multi_slot:
            raise PolicyError("learn_ccb_actions needs a ccb_explore_adf model; this one is cb_explore_adf")
        if len(slots) != len(outcomes) or not 1 <= len(slots) <= len(actions):
            raise PolicyError(f"{len(slots)} slots, {len(outcomes)} outcomes, {len(actions)} items do not fit")
        for chosen, _, probability in outcomes:
            _check_label(chosen, len(actions), probability)
        examples = [self._example(shared, self._shared_label), *self._actions(actions)]
        examples += [
            self._example(slot, ccb_slot_label(*outcome)) for slot, outcome in zip(slots, outcomes, strict=True)
        ]
        self._run(examples, learn=True)
        self._finish(examples)

    def learn_ccb(
        self,
        shared: ExampleFeatures,
        items: Sequence[ExampleFeatures],
        slots: Sequence[ExampleFeatures],
        outcomes: Sequence[tuple[int, float, float]],
    ) -> None:
        """One logged slate: ``outcomes[s]`` = (chosen item index, cost, probability) of slot ``s``."""
        self._check_open()
        if not self.multi_slot:
            raise PolicyError("learn_ccb needs a ccb_explore_adf model; this one is cb_explore_adf")
        if len(slots) != len(outcomes) or not 1 <= len(slots) <= len(items):
            raise PolicyError(f"{len(slots)} slots, {len(outcomes)} outcomes, {len(items)} items do not fit")
        for chosen, _, probability in outcomes:
            _check_label(chosen, len(items), probability)
        examples = [self._example(shared, self._shared_label)]
        examples += [self._example(item, self._action_label) for item in items]
        examples += [
            self._example(slot, ccb_slot_label(*outcome)) for slot, outcome in zip(slots, outcomes, strict=True)
        ]
        self._run(examples, learn=True)
        self._finish(examples)

    def predict_text(self, lines: Sequence[str]) -> list[float] | list[list[tuple[int, float]]]:
        """Parse VW text lines and predict: the naive path (re-parses everything on every call).

        Used by the benchmark as the baseline and by tests to check the example API against VW's parser.
        Returns VW's raw prediction: probabilities by action index (cb) or the slate (ccb).
        """
        self._check_open()
        examples = self._vw.parse(list(lines))
        self._run(examples, learn=False)
        prediction = examples[0].get_decision_scores() if self.multi_slot else examples[0].get_action_scores()
        self._finish(examples)
        if self.multi_slot:
            return [[(int(a), float(p)) for a, p in slot] for slot in prediction]
        return [float(p) for p in prediction]

    def learn_text(self, lines: Sequence[str]) -> None:
        """Parse labelled VW text lines and learn from them: the naive replay path (benchmark and tests)."""
        self._check_open()
        examples = self._vw.parse(list(lines))
        self._run(examples, learn=True)
        self._finish(examples)

    # --- model files --------------------------------------------------------------------------------

    def save(self, path: str | Path) -> None:
        """Write the model (weights and, by VW's default, the optimiser state needed to keep learning)."""
        self._check_open()
        try:
            self._vw.save(str(path))
        except Exception as exc:
            raise PolicyError(f"VW could not save the model to {path}: {exc}") from exc

    def close(self) -> None:
        """Release the workspace. Cached ``ActionExample`` objects of this model must not be used after."""
        if not self._closed:
            self._closed = True
            self._vw.finish()

    def _check_open(self) -> None:
        if self._closed:
            raise PolicyError("this VW model has been closed")


def _check_label(chosen: int, k: int, probability: float) -> None:
    if not 0 <= chosen < k:
        raise PolicyError(f"chosen index {chosen} is not among {k} candidates")
    if not 0.0 < probability <= 1.0:
        raise PolicyError(f"logged probability {probability} must be in (0, 1]")


def _normalised(scores: np.ndarray, k: int) -> np.ndarray:
    if scores.shape != (k,):
        raise PolicyError(f"VW returned {scores.shape[0]} probabilities for {k} candidates")
    scores = np.maximum(scores, 0.0)  # half the cost of np.clip on a request's few scores
    total = scores.sum()
    if not np.isfinite(total) or total <= 0.0:
        raise PolicyError(f"VW returned an invalid distribution: {scores.tolist()}")
    return scores / total


def model_file_arguments(path: str | Path) -> str:
    """The VW arguments a model file was saved with, as VW reports them after loading it (its stored options
    merged with the loading ones, e.g. ``--bit_precision 18 --cb_adf --cb_explore_adf --cb_type mtr ...
    --initial_regressor PATH --no_stdin --quiet``). Raises ``PolicyError`` when VW cannot load the file."""
    try:
        workspace = pyvw.Workspace(arg_list=["--quiet", "-i", str(path)])
    except Exception as exc:  # VW raises plain RuntimeError/ValueError subclasses
        raise PolicyError(f"VW cannot load the model file {path}: {exc}") from exc
    try:
        return str(workspace.get_arguments()).strip()
    finally:
        workspace.finish()


def vw_version() -> str:
    """The VW library version in use (recorded in model metadata)."""
    return str(vowpalwabbit.__version__)


# --- VW's own driver over a data file (replay of learning settings) ----------------------------------


def run_driver(
    args: Sequence[str], data: str | Path | None, predictions: str | Path, *, cache_files: Sequence[str | Path] = ()
) -> None:
    """Run VW's C++ driver over the text data file ``data`` with the arguments ``args`` (no ``-d``/``-p``), or,
    with ``data`` None, over the binary ``cache_files`` in order (each written by a run with ``--cache_file``).

    Every (multi-line) example is predicted and its prediction written to ``predictions`` (``-p``) before
    VW learns from its label: progressive validation. VW's learn returns a prediction made before the
    update (``cb_adf::learn_mtr<true>`` in vowpalwabbit/core/src/reductions/cb/cb_adf.cc predicts, saves the
    scores, learns, and restores them; ``cb_explore_adf`` explores over those); the tests check the pmfs
    against a per-example predict-then-learn loop for every exploration algorithm and cb_type. The
    parsing, predicting and learning all happen in C++: no Python per example. Raises ``PolicyError`` when
    VW refuses the arguments or the file.
    """
    # pyvw runs the driver only when -d, --data or --passes is given: caches come with --passes 1 (no holdout).
    caches = [a for c in cache_files for a in ("--cache_file", c)]
    inputs = ["-d", data] if data is not None else [*caches, "--passes", 1]
    arg_list = [str(a) for a in [*args, *inputs, "-p", predictions]]
    try:
        workspace = pyvw.Workspace(arg_list=arg_list)  # runs the driver over the inputs before returning
    except Exception as exc:  # VW raises plain RuntimeError/ValueError subclasses
        raise PolicyError(f"VW refused {' '.join(arg_list)!r}: {exc}") from exc
    workspace.finish()


def read_action_probs(predictions: str | Path, counts: np.ndarray, *, normalise: bool = True) -> np.ndarray:
    """The ``cb_explore_adf`` pmfs of a ``-p`` file, as (n, max(counts)) float64 by action index.

    ``counts[i]`` is the number of actions of example i; VW writes one ``action:probability,...`` line per
    example with every action listed, each rounded to 6 decimal places (an absolute error <= 5e-7).
    ``normalise`` rescales each row to sum to 1 (the rounding leaves a sum off by up to K * 5e-7).
    Raises ``PolicyError`` when the file does not fit.
    """
    counts = np.asarray(counts, dtype=np.int64)
    # One number a line for Arrow's CSV reader: it rounds as float() does, ~5x faster than a Python split.
    text = Path(predictions).read_bytes().translate(bytes.maketrans(b":, \t\r", b"\n" * 5))
    read = csv.ReadOptions(column_names=["v"], use_threads=False)
    convert = csv.ConvertOptions(column_types={"v": float64()})
    try:
        table = csv.read_csv(py_buffer(text), read_options=read, convert_options=convert) if text.strip() else None
    except ValueError as exc:  # pyarrow's ArrowInvalid is a ValueError
        raise PolicyError(f"{predictions}: not a cb_explore_adf prediction file: {exc}") from exc
    flat = np.empty(0) if table is None else table.column("v").to_numpy()
    if flat.shape[0] != 2 * int(counts.sum()):
        raise PolicyError(f"{predictions}: {flat.shape[0] // 2} action probabilities for {int(counts.sum())} actions")
    actions = flat[0::2].astype(np.int64)
    rows = np.repeat(np.arange(counts.shape[0]), counts)
    if np.any(actions < 0) or np.any(actions >= counts[rows]):
        raise PolicyError(f"{predictions}: an action index lies outside its example")
    out = np.zeros((counts.shape[0], int(counts.max())), dtype=np.float64)
    out[rows, actions] = np.maximum(flat[1::2], 0.0)
    total = out.sum(axis=1, keepdims=True)
    if np.any(total <= 0.0):
        raise PolicyError(f"{predictions}: an example has no probability mass")
    return out / total if normalise else out
