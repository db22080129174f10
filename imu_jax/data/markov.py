"""Markov-chain sequences of the paper's synthetic experiment (spec §4), as a TFDS builder.

Three chains share ``num_states`` states: chain 0 (retain) lives on {0,1,2}, chain 1 (forget1) on
{3,4,5}, chain 2 (forget2) on {6,7,8}; the remaining states are reachable only by leakage.
Chain ``c``'s matrices are built as the paper's public generator (``synthetic/data_generation.py``)
builds them (spec §4): start from ``leak / (num_states - 3)`` everywhere, set the rows of the
chain's own states, at the chain's columns, to ``(1 - leak) / 3``, normalise every row. So a state
of the chain stays in it with probability ``1 - leak``, while every state outside it has a uniform
row: once a sequence leaks out it forgets which chain it came from. The initial distribution is the
same vector (``(1 - leak) / 3`` on the chain, ``leak / (num_states - 3)`` elsewhere, normalised), so
about ``leak`` of the sequences start outside the chain. Sampling uses numpy rather than the public
code's torch RNG (same distributions, other draws); generation is a pure function of the config.

Examples:
  >>> cfg = MarkovConfig(name="tiny", num_retain=6, num_forget1=3, num_forget2=3, length=5)
  >>> data = generate(cfg)
  >>> data["train"]["tokens"].shape, data["test"]["tokens"].shape
  ((9, 5), (3, 5))
  >>> bool(np.array_equal(generate(cfg)["train"]["tokens"], data["train"]["tokens"]))
  True
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow_datasets as tfds

CHAIN_NAMES = ("retain", "forget1", "forget2")
CHAIN_SIZE = 3


@dataclasses.dataclass(eq=False)
class MarkovConfig(tfds.core.BuilderConfig):
    """Every parameter of the Markov-chain data; the defaults are the paper's."""

    num_states: int = 10
    leak: float = 0.2
    length: int = 20
    num_retain: int = 10_000
    num_forget1: int = 5_000
    num_forget2: int = 5_000
    seed: int = 0
    train_fraction: float = 0.8

    @property
    def counts(self) -> tuple[int, int, int]:
        return (self.num_retain, self.num_forget1, self.num_forget2)


def chain_states(chain: int) -> np.ndarray:
    """States of chain ``chain`` (0 retain, 1 forget1, 2 forget2).

    >>> chain_states(1).tolist()
    [3, 4, 5]
    """
    return np.arange(CHAIN_SIZE * chain, CHAIN_SIZE * (chain + 1))


def _check(num_states: int, leak: float) -> None:
    if num_states < CHAIN_SIZE * len(CHAIN_NAMES):
        raise ValueError(f"num_states must be >= 9 for three 3-state chains, got {num_states}.")
    if not 0.0 < leak < 1.0:
        raise ValueError(f"leak must lie strictly between 0 and 1, got {leak}.")


def initial_distribution(chain: int, num_states: int = 10, leak: float = 0.2) -> np.ndarray:
    """Start-state distribution ``[S]`` of one chain: ``(1-leak)/3`` on its states, the rest
    ``leak/(S-3)``, normalised (the public generator's ``*_initial_state_probs``).

    >>> p = initial_distribution(1)
    >>> round(float(p[3]), 4), round(float(p[0]), 4), round(float(p[chain_states(1)].sum()), 4)
    (0.2667, 0.0286, 0.8)
    """
    _check(num_states, leak)
    probs = np.full(num_states, leak / (num_states - CHAIN_SIZE))
    probs[chain_states(chain)] = (1.0 - leak) / CHAIN_SIZE
    return probs / probs.sum()


def transition_matrix(chain: int, num_states: int = 10, leak: float = 0.2) -> np.ndarray:
    """True transition matrix ``[S, S]`` of one chain (rows sum to 1): the chain's own states'
    rows peak on the chain, every other row is uniform (spec §4, the public generator).

    >>> t = transition_matrix(0)
    >>> round(float(t[0, 1]), 4), round(float(t[0, 9]), 4), round(float(t[5, 1]), 4)
    (0.2667, 0.0286, 0.1)
    >>> bool(np.allclose(t.sum(1), 1))
    True
    """
    _check(num_states, leak)
    matrix = np.full((num_states, num_states), leak / (num_states - CHAIN_SIZE))
    states = chain_states(chain)
    matrix[np.ix_(states, states)] = (1.0 - leak) / CHAIN_SIZE
    return matrix / matrix.sum(axis=1, keepdims=True)


def sample_chain(chain: int, count: int, cfg: MarkovConfig) -> np.ndarray:
    """``count`` sequences ``[count, length]`` (int32) of one chain, seeded by (seed, chain)."""
    rng = np.random.default_rng([cfg.seed, chain])
    trans = transition_matrix(chain, cfg.num_states, cfg.leak)
    cdf = np.cumsum(trans, axis=1)
    seqs = np.empty((count, cfg.length), np.int32)
    seqs[:, 0] = rng.choice(cfg.num_states, size=count,
                            p=initial_distribution(chain, cfg.num_states, cfg.leak))
    for t in range(1, cfg.length):
        u = rng.random(count)[:, None]
        nxt = (u > cdf[seqs[:, t - 1]]).sum(axis=1)
        seqs[:, t] = np.minimum(nxt, cfg.num_states - 1)
    return seqs


def generate(cfg: MarkovConfig) -> dict[str, dict[str, np.ndarray]]:
    """All sequences, split per chain into train/test: ``{"train"|"test": {tokens, chain, id}}``."""
    out = {"train": [], "test": []}
    for chain, count in enumerate(cfg.counts):
        seqs = sample_chain(chain, count, cfg)
        n_train = int(round(cfg.train_fraction * count))
        ids = chain * 10**9 + np.arange(count)
        for split, sl in (("train", slice(None, n_train)), ("test", slice(n_train, None))):
            chains = np.full(len(seqs[sl]), chain, np.int64)
            out[split].append({"tokens": seqs[sl], "chain": chains, "id": ids[sl]})
    return {
        split: {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        for split, parts in out.items()
    }


class ImuMarkovChain(tfds.core.GeneratorBasedBuilder):
    """The Markov-chain data (``imu_markov_chain``); configs ``full`` (paper) and ``small``."""

    VERSION = tfds.core.Version("2.0.0")
    url_infos = None  # nothing to download; also avoids TFDS looking up checksum files
    RELEASE_NOTES = {"1.0.0": "Every state had the chain's row; starts only inside the chain.",
                     "2.0.0": "The public generator's matrices and start distribution (spec §4)."}
    BUILDER_CONFIGS = [
        MarkovConfig(name="full", description="The paper's sizes: 10000/5000/5000."),
        MarkovConfig(
            name="small",
            description="Small, for tests: 600/300/300 sequences of length 12.",
            length=12,
            num_retain=600,
            num_forget1=300,
            num_forget2=300,
        ),
    ]
    DEFAULT_CONFIG_NAME = "full"

    def _info(self) -> tfds.core.DatasetInfo:
        cfg = self.builder_config
        return tfds.core.DatasetInfo(
            builder=self,
            description="Three leaky Markov chains over shared states (IMU spec §4).",
            features=tfds.features.FeaturesDict(
                {
                    "tokens": tfds.features.Tensor(shape=(cfg.length,), dtype=np.int32),
                    "chain": tfds.features.ClassLabel(names=list(CHAIN_NAMES)),
                    "id": np.int64,
                }
            ),
        )

    def _split_generators(self, dl_manager):
        del dl_manager
        data = generate(self.builder_config)
        return {name: self._generate_examples(data[name]) for name in ("train", "test")}

    def _generate_examples(self, arrays):
        for i in range(len(arrays["id"])):
            yield int(arrays["id"][i]), {k: v[i] for k, v in arrays.items()}
