"""Synaptic operations and theoretical energy of a Spikformer window (the paper's appendix accounting).

Spikformer (arXiv 2209.15425, appendix) and its successors (Spikingformer, arXiv 2403.18228;
``zhouchenlin2096/Spikingformer`` ``README.md``) estimate energy on neuromorphic hardware as

    E = E_MAC · MACs(layers with non-spike input) + E_AC · Σ SOP(layers with spike input),
    SOP(l) = fr(l) · T · MACs(l),

with fr the firing rate of the layer's *input*, MACs(l) those of the equivalent ANN layer, and
E_MAC = 4.6 pJ, E_AC = 0.9 pJ (45 nm, fp32; Horowitz, ISSCC 2014).

Two accountings (``accounting=``):

- ``"strict"`` (default): a layer is charged as accumulate-only (AC) only when its input is binary.
  The first conv (event-count frames), the Q/K/V convs and MLP fc1 (their input is the SEW residual
  stream, small integers such as 0, 1, 2) and the head (averaged features) are charged dense MACs at
  E_MAC. This is Spikingformer's recount; it raises e.g. ImageNet Spikformer-8-384 from 7.73 to
  12.43 mJ.
- ``"paper"``: the original optimistic accounting: only the first conv is a MAC; every other layer
  is AC with SOP = (fraction of non-zero inputs) · T · MACs.

Layers with spike input: SPS convs 1–3 and the RPE conv (max-pooled spikes), the SSA products,
the projection (after the attention LIF) and MLP fc2. SSA products (Spikingformer's counter): for
``(Q·Kᵀ)·V``, Q·Kᵀ costs N²·D MACs at rate min(fr_Q, fr_K) (an AND of two spike trains), and
``(Q·Kᵀ)·V`` costs N²·D MACs at rate fr_V (V gates accumulations of the integer map); for
``Q·(KᵀV)``, N·D·d_head MACs each at min(fr_K, fr_V) and fr_Q. BN is folded into the convs at
inference; neuron updates, residual additions and the token/time means are not counted (as in the
paper).
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
    for MAC layers); ``ops``: operations charged (MACs for MAC layers, SOPs for AC layers);
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
        accounting: ``"strict"`` (non-binary inputs → MAC) or ``"paper"`` (only the first conv is a MAC).
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
        first = i == 0
        as_mac = first or (accounting == "strict" and layer.input != "spikes")
        if as_mac:
            rate = 1.0
            ops = macs
            energy = ops * e_mac
            mac_ops += ops
        else:
            missing = [k for k in layer.rate_keys if k not in rates]
            if missing:
                raise ModelError(f"layer_rates: key {missing[0]!r} missing (needed for {layer.name})")
            rate = min(float(rates[k]) for k in layer.rate_keys) if layer.rate_keys else 1.0
            ops = macs * rate
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
    )
