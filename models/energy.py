"""Synaptic operations and theoretical energy of a Spikformer window.

The accounting of the Spikformer paper (Zhou et al., ICLR 2023, arXiv 2209.15425, appendix), also
used by its successors (e.g. Spikingformer, arXiv 2304.11954, ``zhouchenlin2096/Spikingformer``
``README.md``; FWformer, Wang et al., arXiv 2403.18228, appendix), estimates energy on
neuromorphic hardware as

    E = E_MAC · MACs(layers with non-spike input) + E_AC · Σ SOP(layers with spike input),
    SOP(l) = fr(l) · T · MACs(l),

with fr the firing rate of the layer's *input*, MACs(l) those of the equivalent ANN layer, and
E_MAC = 4.6 pJ, E_AC = 0.9 pJ (45 nm, fp32; Horowitz, ISSCC 2014).

Two accountings of the layers after the first (``accounting=``):

- ``"strict"`` (default): a layer is charged as accumulate-only (AC) only when its input is binary.
  The Q/K/V convs and MLP fc1 (their input is the SEW residual stream, small integers such as 0,
  1, 2) and the head (averaged features) are charged their dense MACs at E_MAC. This follows
  Spikingformer's recount (non-binary inputs → MAC), which raises e.g. ImageNet Spikformer-8-384
  from 7.73 to 12.43 mJ.
- ``"paper"``: the original optimistic accounting: every layer after the first is AC with
  SOP = (fraction of non-zero inputs) · T · MACs.

Two ways to charge the first conv (``first_layer=``), whose input is event-count frames:

- ``"events"`` (default with ``"strict"``): only the non-zero input pixels cost anything, as in
  the first stage of ``fuse_for_inference`` (its numba kernel skips zero pixels). A
  non-zero pixel of a 3×3 conv (stride 1, pad 1) adds its value times 3 · 3 · C_out weights into
  3 · 3 · C_out outputs, so the layer costs nnz · k² · C_out operations, nnz = non-zero
  (step, sample, polarity, y, x) entries of the window (= ``layer_rates["input"]`` · dense MACs;
  a border pixel reaches fewer outputs and is counted like the SOP convention counts padded
  positions, at k² · C_out). They are **MACs** at E_MAC for count frames (``input_binary=False``):
  a pixel that saw n > 1 events multiplies n by each weight; **ACs** at E_AC only for binary frames
  (``input_binary=True``, e.g. frames binned with ``clip=1``), where each touched output just adds
  a weight. An empty input costs nothing.
- ``"dense"`` (default with ``"paper"``: the Spikformer appendix's E_MAC · FLOPs(first conv)): the
  first conv is charged its dense MACs at every step, H · W · k² · C_in · C_out, whatever the
  input (695 µJ per 16-step window on its own for ``spikformer_2_256`` at 128×128). The FWformer
  appendix says this term "can also be written as" another for event datasets, a symbol its HTML
  rendering loses, so whether its DVS figures charge the first conv densely is not certain.

So ``accounting="paper"`` alone is the papers' formula (compare published figures with it), and
the default (``"strict"``, first conv by events) is what the streaming classifier reports per
window and the dashboard shows.

Layers with spike input: SPS convs 1–3 and the RPE conv (max-pooled spikes), the SSA products,
the projection (after the attention LIF) and MLP fc2. SSA products (Spikingformer's counter): for
``(Q·Kᵀ)·V``, Q·Kᵀ costs N²·D MACs at rate min(fr_Q, fr_K) (an AND of two spike trains), and
``(Q·Kᵀ)·V`` costs N²·D MACs at rate fr_V (V gates accumulations of the integer map); for
``Q·(KᵀV)``, N·D·d_head MACs each at min(fr_K, fr_V) and fr_Q. BN is folded into the convs at
inference; bias additions, neuron updates, residual additions and the token/time means are not
counted (as in the paper).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, NamedTuple

from evstream.errors import ConfigError, ModelError
from models.spikformer import Capture, Spikformer, SpikformerConfig

__all__ = [
    "ENERGY_PRESETS",
    "LayerOps",
    "LayerEnergy",
    "EnergyReport",
    "layer_ops",
    "estimate_energy",
    "accounting_name",
]

# (E_MAC, E_AC) in pJ per operation. fp32 45 nm: Horowitz 2014 as used by Spikformer; fp16 and int8:
# spikingjelly ``activation_based/op_counter/compute_energy.py``.
ENERGY_PRESETS: dict[str, tuple[float, float]] = {
    "fp32_45nm": (4.6, 0.9),
    "fp16_45nm": (1.5, 0.4),
    "int8_45nm": (0.23, 0.03),
}


class LayerOps(NamedTuple):
    """One synaptic layer of a config.

    Attributes:
        name: e.g. ``sps.0.conv``, ``blocks.0.attn.qk``, ``head``.
        macs: multiply-accumulates of the equivalent ANN layer, per time step and sample
            (per sample for the head, which runs once per window).
        input: what the layer's input is: ``"dense"`` (event counts, averaged features),
            ``"integer"`` (the SEW residual stream) or ``"spikes"`` (binary).
        rate_keys: ``Capture.layer_rates`` keys of the input's firing rate (the minimum is used).
        per_step: ``False`` for the head (once per window).
    """

    name: str
    macs: int
    input: Literal["dense", "integer", "spikes"]
    rate_keys: tuple[str, ...]
    per_step: bool = True


class LayerEnergy(NamedTuple):
    """Accounting of one layer for a window: ``(macs, rate, ops, energy_pj)``.

    ``macs``: dense MACs of the window (all steps and samples); ``rate``: input rate applied (1.0
    for layers charged dense; the non-zero input fraction for the first conv by events);
    ``ops``: operations charged, ``macs × rate`` (MACs for MAC layers, SOPs for AC layers);
    ``energy_pj``: ``ops × E_MAC`` or ``ops × E_AC``.
    """

    macs: float
    rate: float
    ops: float
    energy_pj: float


@dataclass
class EnergyReport:
    """Theoretical energy of one window of ``steps`` time steps for ``batch`` samples.

    Attributes:
        per_layer: name → :class:`LayerEnergy`.
        op_type: name → ``"MAC"`` or ``"AC"`` (how it was charged).
        total_uj: energy of the window, all samples, µJ.
        per_sample_uj: ``total_uj / batch``.
        per_step_uj: ``per_sample_uj / steps``.
        sops: synaptic (accumulate) operations of the window.
        mac_ops: multiply-accumulates charged at E_MAC.
        dense_macs: MACs of the equivalent ANN for the same window.
        ann_energy_uj: ``dense_macs × E_MAC``, the ANN comparison of the paper, µJ.
        steps, batch, accounting, e_mac_pj, e_ac_pj: the inputs.
        first_layer: how the first conv was charged, ``"events"`` or ``"dense"``.
        input_binary: whether the first conv's input was taken as binary (events: AC, not MAC).
    """

    per_layer: dict[str, LayerEnergy]
    op_type: dict[str, str]
    total_uj: float
    per_sample_uj: float
    per_step_uj: float
    sops: float
    mac_ops: float
    dense_macs: float
    ann_energy_uj: float
    steps: int
    batch: int
    accounting: str
    e_mac_pj: float
    e_ac_pj: float
    first_layer: str = "dense"
    input_binary: bool = False

    @property
    def name(self) -> str:
        """The accounting in words, e.g. ``"strict, first conv by events (MAC)"``."""
        return accounting_name(self.accounting, self.first_layer, self.input_binary)


def accounting_name(accounting: str, first_layer: str, input_binary: bool = False) -> str:
    """Words for an accounting, as the benchmarks print it: ``"paper, first conv dense (MAC)"``."""
    if first_layer == "events":
        return f"{accounting}, first conv by events ({'AC' if input_binary else 'MAC'})"
    return f"{accounting}, first conv dense (MAC)"


def layer_ops(config: SpikformerConfig) -> list[LayerOps]:
    """Every synaptic layer of ``config`` with its MACs per time step and sample, in forward order."""
    h, w = config.img_size
    d = config.embed_dim
    chans = [config.in_channels, d // 8, d // 4, d // 2, d]
    layers = []
    for i in range(4):
        hi, wi = -(-h // 2**i), -(-w // 2**i)  # stage i convolves at the resolution after i max-pools
        kind = "dense" if i == 0 else "spikes"
        rate = ("input",) if i == 0 else (f"sps.{i - 1}.pool",)
        layers.append(LayerOps(f"sps.{i}.conv", hi * wi * 9 * chans[i] * chans[i + 1], kind, rate))
    n = (h // 16) * (w // 16)
    layers.append(LayerOps("rpe.conv", n * 9 * d * d, "spikes", ("sps.3.pool",)))
    d_head = d // config.num_heads
    hidden = int(d * config.mlp_ratio)
    for b in range(config.depth):
        a, m = f"blocks.{b}.attn", f"blocks.{b}.mlp"
        for key in ("q", "k", "v"):
            layers.append(LayerOps(f"{a}.{key}.conv", n * d * d, "integer", (f"{a}.in",)))
        if config.attn_order == "qk_v":
            layers.append(LayerOps(f"{a}.qk", n * n * d, "spikes", (f"{a}.q", f"{a}.k")))
            layers.append(LayerOps(f"{a}.qk_v", n * n * d, "spikes", (f"{a}.v",)))
        else:
            layers.append(LayerOps(f"{a}.kv", n * d * d_head, "spikes", (f"{a}.k", f"{a}.v")))
            layers.append(LayerOps(f"{a}.q_kv", n * d * d_head, "spikes", (f"{a}.q",)))
        layers.append(LayerOps(f"{a}.proj.conv", n * d * d, "spikes", (f"{a}.attn_lif",)))
        layers.append(LayerOps(f"{m}.fc1.conv", n * d * hidden, "integer", (f"{m}.in",)))
        layers.append(LayerOps(f"{m}.fc2.conv", n * hidden * d, "spikes", (f"{m}.fc1",)))
    layers.append(LayerOps("head", d * config.num_classes, "dense", (), per_step=False))
    return layers


def estimate_energy(
    model: Spikformer | SpikformerConfig,
    capture_or_layer_rates: Capture | Mapping[str, float],
    steps: int,
    batch: int = 1,
    *,
    accounting: Literal["strict", "paper"] = "strict",
    first_layer: Literal["events", "dense"] | None = None,
    input_binary: bool = False,
    preset: str = "fp32_45nm",
    e_mac_pj: float | None = None,
    e_ac_pj: float | None = None,
) -> EnergyReport:
    """Energy of one window from the firing rates a forward pass recorded.

    Args:
        model: the Spikformer (or its config) that ran.
        capture_or_layer_rates: the :class:`Capture` of that forward, or its ``layer_rates``.
        steps: T of the window.
        batch: samples in the window.
        accounting: ``"strict"`` (non-binary inputs → MAC) or ``"paper"`` (every layer after the
            first is AC).
        first_layer: ``"events"`` (nnz · k² · C_out operations, ``layer_rates["input"]`` × dense
            MACs) or ``"dense"`` (dense MACs every step); ``None``: ``"events"`` with ``"strict"``,
            ``"dense"`` with ``"paper"`` (the published accounting).
        input_binary: with ``first_layer="events"``: the frames are 0/1, so the first conv's
            operations are ACs; ``False`` (count frames): MACs.
        preset: a key of :data:`ENERGY_PRESETS`.
        e_mac_pj, e_ac_pj: override the preset's energies per operation, pJ.

    Raises:
        ModelError: a rate the accounting needs is missing from the capture.
        ConfigError: unknown preset or accounting, non-positive steps or batch.
    """
    config = model.config if isinstance(model, Spikformer) else model
    rates = (
        capture_or_layer_rates.layer_rates if isinstance(capture_or_layer_rates, Capture) else capture_or_layer_rates
    )
    if preset not in ENERGY_PRESETS:
        raise ConfigError(f"preset: {preset!r} unknown; known: {', '.join(ENERGY_PRESETS)}")
    if accounting not in ("strict", "paper"):
        raise ConfigError(f"accounting: {accounting!r} is not 'strict' or 'paper'")
    if first_layer is None:
        first_layer = "events" if accounting == "strict" else "dense"
    if first_layer not in ("events", "dense"):
        raise ConfigError(f"first_layer: {first_layer!r} is not 'events' or 'dense'")
    if steps <= 0 or batch <= 0:
        raise ConfigError(f"steps/batch: {steps}/{batch} must be positive")
    e_mac = ENERGY_PRESETS[preset][0] if e_mac_pj is None else e_mac_pj
    e_ac = ENERGY_PRESETS[preset][1] if e_ac_pj is None else e_ac_pj

    per_layer: dict[str, LayerEnergy] = {}
    op_type: dict[str, str] = {}
    sops = mac_ops = dense = 0.0
    for i, layer in enumerate(layer_ops(config)):
        macs = float(layer.macs) * batch * (steps if layer.per_step else 1)
        dense += macs
        if i == 0:  # the first conv: dense, or by the non-zero event pixels it touches
            by_events = first_layer == "events"
            as_mac = not (by_events and input_binary)
            rate = _rate(rates, layer) if by_events else 1.0
        else:
            as_mac = accounting == "strict" and layer.input != "spikes"
            rate = 1.0 if as_mac else _rate(rates, layer)
        ops = macs * rate
        if as_mac:
            energy = ops * e_mac
            mac_ops += ops
        else:
            energy = ops * e_ac
            sops += ops
        per_layer[layer.name] = LayerEnergy(macs, rate, ops, energy)
        op_type[layer.name] = "MAC" if as_mac else "AC"
    total_uj = sum(e.energy_pj for e in per_layer.values()) * 1e-6
    per_sample = total_uj / batch
    return EnergyReport(
        per_layer=per_layer,
        op_type=op_type,
        total_uj=total_uj,
        per_sample_uj=per_sample,
        per_step_uj=per_sample / steps,
        sops=sops,
        mac_ops=mac_ops,
        dense_macs=dense,
        ann_energy_uj=dense * e_mac * 1e-6,
        steps=steps,
        batch=batch,
        accounting=accounting,
        e_mac_pj=e_mac,
        e_ac_pj=e_ac,
        first_layer=first_layer,
        input_binary=bool(input_binary) and first_layer == "events",
    )


def _rate(rates: Mapping[str, float], layer: LayerOps) -> float:
    """The input rate a layer is charged at: the minimum over its ``rate_keys`` (1.0 when it has none)."""
    missing = [k for k in layer.rate_keys if k not in rates]
    if missing:
        raise ModelError(f"layer_rates: key {missing[0]!r} missing (needed for {layer.name})")
    return min(float(rates[k]) for k in layer.rate_keys) if layer.rate_keys else 1.0
