"""Faster CPU inference of the encoders' transformers: linear layers with fused epilogues.

In inference on a CPU, ``nn.Linear`` copies its bias into the output before the matrix product
(one more pass over the output), and a BERT layer's GELU and residual additions, like a Llama
MLP's SiLU and gating product, are passes of their own. :func:`fuse_for_cpu_inference` gives
the modules of a loaded model forwards that call oneDNN's linear kernel with those operations as
its epilogue (``torch.ops.mkldnn._linear_pointwise``, the kernel behind PyTorch's compiled CPU
graphs):

* every ``nn.Linear``: the bias inside the product;
* an attention's query, key and value projections (BERT's ``query``/``key``/``value``, Llama's
  ``q_proj``/``k_proj``/``v_proj``): one product with the three weight matrices stacked, made
  by the first of the three calls on an input; the other two take their slice of it;
* a BERT-style intermediate (``dense`` then exact GELU): the GELU inside the product;
* a BERT-style output (``LayerNorm(dropout(dense(x)) + residual)``): the residual inside the
  product, then the layer norm;
* a Llama-style MLP (``down(silu(gate(x)) · up(x))``): the SiLU inside the gate's product and the
  gating multiplication inside the up projection's.

Each forward computes what it replaces up to floating-point rounding: the products accumulate in
another order (float32: relative differences of order 1e-7), and the epilogues round once
instead of after every step (bfloat16: more accurate). When gradients are needed, when the
tensors are not on the CPU, in a dtype other than float32 and bfloat16, or in training mode, the
module's own forward runs instead, so the attack's gradients and any training are unchanged.

Used by :mod:`robustir.encode` (chapter "Dense retrieval with encoder-only and decoder-only
models").
"""

from __future__ import annotations

import logging
import types

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["fuse_for_cpu_inference", "widest_output"]

log = logging.getLogger(__name__)

_DTYPES = (torch.float32, torch.bfloat16)


# an attention's query, key and value projections, as BERT and Llama name them
_PROJECTION_NAMES = (("query", "key", "value"), ("q_proj", "k_proj", "v_proj"))


def _available() -> bool:
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


def _fusable(module: nn.Module, x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether the fused kernel may replace ``module``'s forward for this input: in evaluation
    mode (no dropout), without gradients, on the CPU, in float32 or bfloat16."""
    needs_grad = torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad)
    return (not module.training and not needs_grad and x.device.type == "cpu"
            and x.dtype == weight.dtype and x.dtype in _DTYPES)


def _product(x, linear: nn.Linear, epilogue: str = "none", algorithm: str = ""):
    return torch.ops.mkldnn._linear_pointwise(x, linear.weight, linear.bias, epilogue, [], algorithm)


def _product_then(x, other, linear: nn.Linear, operation: str):
    """``linear(x)`` followed by ``operation`` (``add`` or ``mul``) with ``other``, in one kernel."""
    return torch.ops.mkldnn._linear_pointwise.binary(x, other, linear.weight, linear.bias, operation)


def _linear_forward(self: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    if _fusable(self, x, self.weight):
        return _product(x, self)
    return F.linear(x, self.weight, self.bias)


class _SharedProjection:
    """The query, key and value projections of one attention as one product.

    The first of the three calls on an input computes the stacked product and returns its own
    slice; the next calls on the same input (the same tensor object) return theirs, and the
    product is dropped once all three are taken. A call on another input starts over, so any
    call order gives each projection of its own input. The stacked weights are rebuilt whenever
    a projection's parameters change (moved, cast or updated in place), so they never go stale.
    """

    def __init__(self, linears: tuple[nn.Linear, nn.Linear, nn.Linear]):
        self.linears = linears
        ends = torch.tensor([linear.out_features for linear in linears]).cumsum(0).tolist()
        self.slices = [slice(start, end) for start, end in zip([0, *ends[:-1]], ends)]
        self._stacked_from: tuple | None = None
        self._weight = self._bias = None
        self._input: torch.Tensor | None = None
        self._product: torch.Tensor | None = None
        self._pending: set[int] = set()

    def _parameters(self) -> list[torch.Tensor]:
        return [p for linear in self.linears for p in (linear.weight, linear.bias) if p is not None]

    def _stacked(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        state = tuple((p.data_ptr(), p.dtype, p.device, 0 if p.is_inference() else p._version)
                      for p in self._parameters())
        if state != self._stacked_from:
            with torch.no_grad():
                self._weight = torch.cat([linear.weight for linear in self.linears])
                self._bias = (torch.cat([linear.bias for linear in self.linears])
                              if self.linears[0].bias is not None else None)
            self._stacked_from = state
        return self._weight, self._bias

    def __call__(self, which: int, x: torch.Tensor) -> torch.Tensor:
        if x is not self._input or which not in self._pending:
            weight, bias = self._stacked()
            self._input = x
            self._product = torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")
            self._pending = {0, 1, 2}
        self._pending.discard(which)
        out = self._product[..., self.slices[which]]
        if not self._pending:
            self._input = self._product = None
        return out


def _projection_forward(self: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    if _fusable(self, x, self.weight):
        return self._shared_projection(self._projection_index, x)
    return F.linear(x, self.weight, self.bias)


def _projection_triple(module: nn.Module) -> tuple[nn.Linear, nn.Linear, nn.Linear] | None:
    """``module``'s query, key and value projections (BERT's or Llama's names), if it has them."""
    for names in _PROJECTION_NAMES:
        linears = tuple(getattr(module, name, None) for name in names)
        if all(type(linear) is nn.Linear for linear in linears):
            return linears
    return None


def _fuse_projections(module: nn.Module) -> tuple[nn.Linear, ...]:
    """Stack ``module``'s query, key and value projections when it has them (same input width,
    dtype and device; all with or all without bias); returns the stacked projections."""
    linears = _projection_triple(module)
    if (linears is None
            or len({(linear.in_features, linear.weight.dtype, linear.weight.device) for linear in linears}) != 1
            or len({linear.bias is None for linear in linears}) != 1):
        return ()
    shared = _SharedProjection(linears)
    for index, linear in enumerate(linears):
        linear._shared_projection, linear._projection_index = shared, index
        linear.forward = types.MethodType(_projection_forward, linear)
    return linears


def widest_output(model: nn.Module) -> int:
    """Features per token of the widest product output in ``model``'s forward: its widest
    linear layer, or an attention's query, key and value projections together (stacked by
    :func:`fuse_for_cpu_inference`), whichever is wider; 0 for a model without linear layers."""
    widths = [module.out_features for module in model.modules() if type(module) is nn.Linear]
    for module in model.modules():
        linears = _projection_triple(module)
        if linears is not None:
            widths.append(sum(linear.out_features for linear in linears))
    return max(widths, default=0)


def _intermediate_forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
    if _fusable(self, hidden_states, self.dense.weight):
        return _product(hidden_states, self.dense, "gelu", "none")
    return type(self).forward(self, hidden_states)


def _output_forward(self, hidden_states: torch.Tensor, input_tensor: torch.Tensor) -> torch.Tensor:
    if _fusable(self, hidden_states, self.dense.weight):
        return self.LayerNorm(_product_then(hidden_states, input_tensor, self.dense, "add"))
    return type(self).forward(self, hidden_states, input_tensor)


def _gated_mlp_forward(self, x: torch.Tensor) -> torch.Tensor:
    if _fusable(self, x, self.gate_proj.weight):
        gate = _product(x, self.gate_proj, "swish")
        return _product(_product_then(x, gate, self.up_proj, "mul"), self.down_proj)
    return type(self).forward(self, x)


def _is_bert_intermediate(module: nn.Module) -> bool:
    from transformers.activations import GELUActivation

    return (isinstance(getattr(module, "dense", None), nn.Linear)
            and type(getattr(module, "intermediate_act_fn", None)) is GELUActivation
            and type(module).__name__.endswith("Intermediate"))


def _is_bert_output(module: nn.Module) -> bool:
    return (isinstance(getattr(module, "dense", None), nn.Linear)
            and isinstance(getattr(module, "LayerNorm", None), nn.LayerNorm)
            and type(module).__name__.endswith("Output")
            and list(type(module).forward.__code__.co_varnames[1:3]) == ["hidden_states", "input_tensor"])


def _is_gated_mlp(module: nn.Module) -> bool:
    from transformers.activations import SiLUActivation

    return (all(isinstance(getattr(module, name, None), nn.Linear)
                for name in ("gate_proj", "up_proj", "down_proj"))
            and type(getattr(module, "act_fn", None)) in (nn.SiLU, SiLUActivation)
            and type(module).__name__.endswith("MLP"))


_FUSIONS = (
    (_is_bert_intermediate, _intermediate_forward),
    (_is_bert_output, _output_forward),
    (_is_gated_mlp, _gated_mlp_forward),
    (lambda module: type(module) is nn.Linear, _linear_forward),
)


def fuse_for_cpu_inference(model: nn.Module) -> dict[str, int]:
    """Give ``model``'s modules the fused CPU inference forwards (see the module), in place.

    Modules keep their parameters and names (only their ``forward`` is replaced), so state
    dicts, adapters and gradients are unaffected. Does nothing where PyTorch has no oneDNN.

    Returns:
        How many modules of each kind were given a fused forward.
    """
    counts = {forward.__name__.strip("_").removesuffix("_forward"): 0 for _, forward in _FUSIONS}
    counts["shared_projection"] = 0
    if not _available():
        log.info("oneDNN linear kernels unavailable: the model keeps its own forwards")
        return counts
    projections = set()
    for module in model.modules():
        stacked = _fuse_projections(module)
        counts["shared_projection"] += bool(stacked)
        projections.update(id(linear) for linear in stacked)
    for module in model.modules():
        if id(module) in projections:
            continue
        for matches, forward in _FUSIONS:
            if matches(module):
                module.forward = types.MethodType(forward, module)
                counts[forward.__name__.strip("_").removesuffix("_forward")] += 1
                break
    return counts
