"""Codes for the cluster indices and the compression ratio (Choi et al., 1612.01543, Sec. 2.1 and 4).

* Fixed-length codes: ceil(log2 k) bits per index (at least 1).
* Huffman codes built from the cluster counts |C_i| (a real prefix code: canonical codewords that
  encode and decode), average length  b_bar = sum_i |C_i| b_i / N,  H <= b_bar < H + 1 (Sec. 4.1).
* Compression ratio (Sec. 2.1):  CR = N b / (sum_i |C_i| b_i + sum_i b_i + k b),  b = 32 bits;
  ``sum_i b_i`` stores the code table and ``k b`` the codebook of shared values. Pruned models also
  store the positions of the kept weights as Huffman-coded index differences (Deep Compression,
  Han et al. 2016); parameters left unquantized are stored at b bits each.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass

import numpy as np

VALUE_BITS = 32


def entropy_bits(counts: np.ndarray) -> float:
    """H = -sum p_i log2 p_i with p_i = |C_i| / N (Sec. 4.1); empty clusters contribute nothing."""
    c = np.asarray(counts, dtype=np.float64)
    c = c[c > 0]
    p = c / c.sum()
    return float(-(p * np.log2(p)).sum())


def fixed_length_bits(k: int) -> int:
    """ceil(log2 k) bits per index; one cluster still needs 1 bit in our accounting."""
    return max(1, math.ceil(math.log2(max(k, 1))))


def huffman_code_lengths(counts: np.ndarray) -> np.ndarray:
    """Optimal prefix-code lengths for symbols with positive ``counts`` (Huffman 1952).

    Ties break by symbol order, so the result is deterministic. One symbol gets length 1."""
    counts = np.asarray(counts)
    if counts.ndim != 1 or len(counts) == 0:
        raise ValueError("Huffman code: need a non-empty 1-D array of counts")
    if np.any(counts <= 0):
        raise ValueError("Huffman code: every symbol needs a positive count (drop empty clusters first)")
    n = len(counts)
    if n == 1:
        return np.ones(1, dtype=np.int64)
    lengths = np.zeros(n, dtype=np.int64)
    heap = [(int(c) if float(c).is_integer() else float(c), i, [i]) for i, c in enumerate(counts)]
    heapq.heapify(heap)
    tie = n
    while len(heap) > 1:
        c1, _, s1 = heapq.heappop(heap)
        c2, _, s2 = heapq.heappop(heap)
        merged = s1 + s2
        lengths[merged] += 1  # every symbol under the new node moves one level deeper
        heapq.heappush(heap, (c1 + c2, tie, merged))
        tie += 1
    return lengths


def canonical_codewords(lengths: np.ndarray) -> list[str]:
    """Canonical Huffman codewords (as '0'/'1' strings) for the given code lengths."""
    lengths = np.asarray(lengths, dtype=np.int64)
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    words = [""] * len(lengths)
    code, prev_len = 0, 0
    for i in order:
        code <<= int(lengths[i]) - prev_len
        prev_len = int(lengths[i])
        words[i] = format(code, f"0{prev_len}b")
        code += 1
    return words


def is_prefix_free(words: list[str]) -> bool:
    """No codeword is a prefix of another (checked on the sorted list: a prefix sorts right before)."""
    s = sorted(words)
    return all(not b.startswith(a) for a, b in zip(s, s[1:])) and len(set(words)) == len(words)


def encode(symbols: np.ndarray, words: list[str]) -> str:
    """Concatenate the codewords of ``symbols`` (a bit string)."""
    return "".join(words[int(s)] for s in symbols)


def decode(bits: str, words: list[str]) -> np.ndarray:
    """Decode a bit string produced by :func:`encode` with the same prefix code."""
    table = {w: i for i, w in enumerate(words)}
    out, cur = [], ""
    for b in bits:
        cur += b
        if cur in table:
            out.append(table[cur])
            cur = ""
    if cur:
        raise ValueError(f"decode: {len(cur)} trailing bits do not form a codeword")
    return np.array(out, dtype=np.int64)


@dataclass(frozen=True)
class CodeCost:
    """Bits of one coded index stream: payload sum |C_i| b_i and code table sum b_i."""

    payload_bits: float
    table_bits: float
    mean_length: float  # payload / number of symbols


def fixed_length_cost(counts: np.ndarray) -> CodeCost:
    counts = np.asarray(counts, dtype=np.int64)
    b = fixed_length_bits(len(counts))
    n = int(counts.sum())
    return CodeCost(payload_bits=float(n * b), table_bits=float(len(counts) * b), mean_length=float(b))


def huffman_cost(counts: np.ndarray) -> CodeCost:
    counts = np.asarray(counts, dtype=np.int64)
    lengths = huffman_code_lengths(counts)
    payload = float((counts * lengths).sum())
    return CodeCost(payload_bits=payload, table_bits=float(lengths.sum()), mean_length=payload / float(counts.sum()))


def index_gap_symbols(mask: np.ndarray, max_gap: int = 256) -> np.ndarray:
    """Relative positions of the kept weights (Deep Compression's sparse index), as symbols 1..max_gap.

    Gap d between consecutive kept positions (the first counted from -1) is written as
    ``ceil(d / max_gap) - 1`` skip symbols (0, "advance max_gap, no weight") followed by
    ``d - skips * max_gap``; all symbols are then Huffman coded."""
    pos = np.flatnonzero(np.asarray(mask).ravel())
    if len(pos) == 0:
        return np.zeros(0, dtype=np.int64)
    gaps = np.diff(np.concatenate([[-1], pos]))
    skips = (gaps - 1) // max_gap
    last = gaps - skips * max_gap
    out = np.zeros(int(len(gaps) + skips.sum()), dtype=np.int64)
    where_last = np.cumsum(skips + 1) - 1
    out[where_last] = last
    return out


def index_cost(mask: np.ndarray | None, max_gap: int = 256) -> CodeCost:
    """Bits to store the pruning pattern (zero for an unpruned model)."""
    if mask is None or bool(np.all(mask)):
        return CodeCost(0.0, 0.0, 0.0)
    sym = index_gap_symbols(mask, max_gap)
    _, counts = np.unique(sym, return_counts=True)
    return huffman_cost(counts)


def compression_ratio(
    n_params: int,
    index_code: CodeCost,
    k: int,
    *,
    value_bits: int = VALUE_BITS,
    n_unquantized: int = 0,
    position_code: CodeCost | None = None,
) -> float:
    """CR = N b / (sum |C_i| b_i + sum b_i + k b [+ pruning index bits] [+ unquantized params * b]).

    ``n_params`` is every parameter of the original model (pruned ones included)."""
    denom = index_code.payload_bits + index_code.table_bits + k * value_bits + n_unquantized * value_bits
    if position_code is not None:
        denom += position_code.payload_bits + position_code.table_bits
    return float(n_params * value_bits / denom)
