"""EfficientLoFTR, semi-dense local feature matching, as one native PyTorch module.

Wang, He, Peng, Tan, Zhou: "Efficient LoFTR: Semi-Dense Local Feature Matching with Sparse-Like
Speed", CVPR 2024 (https://github.com/zju3dv/EfficientLoFTR). The numerics follow the
Hugging Face transformers port (`EfficientLoFTRForKeypointMatching`), which is the reference
for correctness; its parameter names are the ones used here, so a Hugging Face state dict loads
after a prefix rename and an official checkpoint after the table in
:mod:`loftr_ros.core.models.efficientloftr_weights`.

What differs from the reference, for speed, with the same results:
- the RepVGG blocks (three conv+BN branches) and the fine-pyramid conv+BN are fused into single
  convolutions once the weights are loaded (:meth:`EfficientLoFTR.reparameterize`);
- attention runs through ``torch.nn.functional.scaled_dot_product_attention``;
- only the matched coarse cells are refined (the reference refines all of them), and the fine
  windows sample the half-resolution map's x2 upsampling directly (no full-resolution map);
- the coarse dual softmax is one block-wise pass in the similarity's memory (:func:`dual_softmax`),
  and the large elementwise steps run in place;
- the per-image stages (backbone, first self-attention, the 1x1 projections of the fine pyramid)
  are computed by :meth:`EfficientLoFTR.extract` and can be reused across pairs: a video frame is
  processed once although it takes part in two consecutive pairs.

Where transformers (5.x) departs from the original implementation, this module follows the
original, whose behaviour the published weights were trained with:
- coarse matches: transformers lists image 0's partners per cell of image 1 and image 1's
  partners per cell of image 0, then pairs the two lists slot by slot, so a match is refined
  and returned with the wrong partner unless it sits at the same cell index in both images;
- first refinement stage: transformers gathers the window offsets along the match dimension
  instead of the window dimension, so every stage-1 offset is the window's first pixel;
- first-stage similarity scale: 1/sqrt(C) with C the full fine channel count (transformers
  uses C - slice_dim).
Everything else (backbone, attention, coarse confidences and matches, fine features, second
refinement stage) is the same computation; the tests compare each stage.

Test-time option of the original that transformers lacks: ``rope_npe`` (rotary positions scaled
to the training resolution), off by default.

The module reads bottom-up: helpers, the backbone, the coarse transformer, the fine pyramid,
coarse and fine matching, the model last.
"""
import math
import numbers
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from loftr_ros.core.errors import ConfigError, check_known_keys


def merge_conf(defaults: Dict[str, Any], conf: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    """`defaults` updated with `conf`; ConfigError naming the valid keys on an unknown one."""
    conf = dict(conf or {})
    check_known_keys(conf, defaults, 'EfficientLoFTR')
    return {**defaults, **conf}


def fuse_conv_bn(weight: torch.Tensor, bn: nn.BatchNorm2d) -> Tuple[torch.Tensor, torch.Tensor]:
    """Kernel and bias of one convolution equal to conv(weight, no bias) followed by `bn` (eval),
    in float64 (the caller rounds once, after summing the branches)."""
    std = (bn.running_var.double() + bn.eps).sqrt()
    scale = bn.weight.double() / std
    return (weight.double() * scale.reshape(-1, 1, 1, 1),
            bn.bias.double() - bn.running_mean.double() * scale)


def upsample2(x: torch.Tensor) -> torch.Tensor:
    """Bilinear x2 upsampling as the reference does it (align_corners=False)."""
    return F.interpolate(x, scale_factor=2.0, mode='bilinear', align_corners=False)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """Rotate interleaved pairs: (x0, x1, x2, x3, ...) -> (-x1, x0, -x3, x2, ...)."""
    x = x.unflatten(-1, (-1, 2))
    return torch.stack((-x[..., 1], x[..., 0]), dim=-1).flatten(-2)


def rotary_embedding(height: int, width: int, dim: int, theta: float, device: torch.device,
                     scale: Tuple[float, float] = (1.0, 1.0)
                     ) -> Tuple[torch.Tensor, torch.Tensor]:
    """cos and sin, [H*W x dim], of the 2D rotary position encoding of EfficientLoFTR.

    Row (i) and column (j) positions start at 1, are multiplied by `scale` (row, column; the
    original's NPE) and alternate over the dim/2 frequency slots; each angle is repeated for
    both members of its rotated pair.
    """
    inv_freq = 1.0 / theta ** (torch.arange(0, dim // 2, 2, dtype=torch.float32, device=device)
                               / (dim // 2))
    rows = torch.arange(1, height + 1, dtype=torch.float32, device=device) * scale[0]
    cols = torch.arange(1, width + 1, dtype=torch.float32, device=device) * scale[1]
    angles = torch.empty(height, width, dim // 2, device=device)
    angles[..., 0::2] = rows[:, None, None] * inv_freq
    angles[..., 1::2] = cols[None, :, None] * inv_freq
    angles = angles.repeat_interleave(2, dim=-1).reshape(height * width, dim)
    return angles.cos(), angles.sin()


# ----------------------------------------------------------------------------------------------
# Backbone: RepVGG, outputs at 1/2, 1/4 and 1/8 resolution


class ConvBN(nn.Module):
    """Convolution without bias followed by batch normalization (one RepVGG branch)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int,
                 eps: float):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride,
                              padding=kernel_size // 2, bias=False)
        self.norm = nn.BatchNorm2d(out_channels, eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(x))


class RepVGGBlock(nn.Module):
    """relu(conv3x3+BN + conv1x1+BN + BN identity), or relu(fused conv3x3) once re-parameterized."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, eps: float):
        super().__init__()
        self.conv1 = ConvBN(in_channels, out_channels, 3, stride, eps)
        self.conv2 = ConvBN(in_channels, out_channels, 1, stride, eps)
        self.identity = (nn.BatchNorm2d(in_channels)
                         if in_channels == out_channels and stride == 1 else None)
        self.fused: Optional[nn.Conv2d] = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fused is not None:
            return F.relu(self.fused(x), inplace=True)
        out = self.conv1(x) + self.conv2(x)
        if self.identity is not None:
            out = out + self.identity(x)
        return F.relu(out)

    @torch.no_grad()
    def reparameterize(self):
        """Replace the three branches by the one 3x3 convolution they sum to (eval-mode BN)."""
        if self.fused is not None:
            return
        conv = self.conv1.conv
        kernel, bias = fuse_conv_bn(conv.weight, self.conv1.norm)
        kernel_1x1, bias_1x1 = fuse_conv_bn(self.conv2.conv.weight, self.conv2.norm)
        kernel = kernel + F.pad(kernel_1x1, [1, 1, 1, 1])
        bias = bias + bias_1x1
        if self.identity is not None:
            # The identity is a 3x3 kernel with a single 1 at the centre of channel i -> i.
            identity = torch.zeros_like(kernel)
            channels = torch.arange(kernel.shape[0], device=kernel.device)
            identity[channels, channels, 1, 1] = 1.0
            kernel_id, bias_id = fuse_conv_bn(identity, self.identity)
            kernel, bias = kernel + kernel_id, bias + bias_id
        self.fused = nn.Conv2d(conv.in_channels, conv.out_channels, 3, conv.stride, padding=1,
                               bias=True, device=conv.weight.device, dtype=conv.weight.dtype)
        self.fused.weight.copy_(kernel)
        self.fused.bias.copy_(bias)
        self.conv1 = self.conv2 = self.identity = None


class RepVGGStage(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, num_blocks: int, stride: int,
                 eps: float):
        super().__init__()
        self.blocks = nn.ModuleList(
            RepVGGBlock(in_channels if i == 0 else out_channels, out_channels,
                        stride if i == 0 else 1, eps)
            for i in range(num_blocks))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x


class RepVGGBackbone(nn.Module):
    """Four RepVGG stages on a grayscale image; returns the outputs of the last three."""

    def __init__(self, conf: Dict[str, Any]):
        super().__init__()
        channels = [1] + list(conf['stage_channels'])
        self.stages = nn.ModuleList(
            RepVGGStage(channels[i], channels[i + 1], blocks, stride, conf['batch_norm_eps'])
            for i, (blocks, stride) in enumerate(zip(conf['stage_blocks'], conf['stage_strides'])))

    def forward(self, image: torch.Tensor) -> List[torch.Tensor]:
        outputs = []
        x = image
        for stage in self.stages:
            x = stage(x)
            outputs.append(x)
        return outputs[1:]


# ----------------------------------------------------------------------------------------------
# Coarse transformer: self/cross attention on aggregated (4x downsampled) 1/8 features


class Aggregation(nn.Module):
    """Query: depthwise strided conv; key/value: max pooling; both layer-normalized, [B,h,w,C]."""

    def __init__(self, dim: int, q_size: int, kv_size: int):
        super().__init__()
        self.q_aggregation = nn.Conv2d(dim, dim, q_size, stride=q_size, bias=False, groups=dim)
        self.kv_size = kv_size
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, source: torch.Tensor
                ) -> Tuple[torch.Tensor, torch.Tensor]:
        query = self.q_aggregation(x).permute(0, 2, 3, 1)
        kv = F.max_pool2d(source, self.kv_size, self.kv_size).permute(0, 2, 3, 1)
        return self.norm(query), self.norm(kv)


class MultiHeadAttention(nn.Module):
    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.q_proj = nn.Linear(dim, dim, bias=False)
        self.k_proj = nn.Linear(dim, dim, bias=False)
        self.v_proj = nn.Linear(dim, dim, bias=False)
        self.o_proj = nn.Linear(dim, dim, bias=False)

    def forward(self, query: torch.Tensor, kv: torch.Tensor,
                rope: Optional[Tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        """query [B x L x C], kv [B x S x C]; rope: cos, sin [L x C] (self-attention, L == S)."""
        q, k, v = self.q_proj(query), self.k_proj(kv), self.v_proj(kv)
        if rope is not None:
            # The rotation acts on the whole C-dim vector before the split into heads; in float32
            # as in the reference, so that half precision does not lose the positions.
            cos, sin = rope
            dtype = q.dtype
            q, k = q.float(), k.float()
            q = (q * cos + rotate_half(q) * sin).to(dtype)
            k = (k * cos + rotate_half(k) * sin).to(dtype)
        batch = q.shape[0]
        q, k, v = (t.unflatten(-1, (self.num_heads, -1)).transpose(1, 2) for t in (q, k, v))
        out = F.scaled_dot_product_attention(q, k, v)
        return self.o_proj(out.transpose(1, 2).reshape(batch, -1, self.num_heads * out.shape[-1]))


class FeedForward(nn.Module):
    """MLP on [x, message] followed by a layer norm (the residual is added by the caller).

    The reference upsamples the low-resolution message, concatenates it to x and applies fc1.
    Bilinear upsampling is linear, so fc1's message half is applied BEFORE upsampling here, on
    16x fewer positions: a third fewer operations for the whole block, same result up to
    rounding.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.fc1 = nn.Linear(2 * dim, 2 * dim, bias=False)
        self.fc2 = nn.Linear(2 * dim, dim, bias=False)
        self.layer_norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, message: torch.Tensor, scale: int) -> torch.Tensor:
        """x [B x C x H x W]; message [B x h x w x C] with H = scale*h, W = scale*w.
        Returns the update [B x C x H x W]."""
        weight_x, weight_message = self.fc1.weight.chunk(2, dim=1)
        hidden_message = F.linear(message, weight_message).permute(0, 3, 1, 2)
        hidden = F.interpolate(hidden_message, scale_factor=scale, mode='bilinear',
                               align_corners=False).permute(0, 2, 3, 1)
        batch, height, width, hidden_dim = hidden.shape
        # fc1's x half accumulates into the upsampled message and the activation runs in place:
        # no further [H*W x 2C] matrices (a view when x is channels-last, as the backend runs).
        # In-place ops escape autocast: the operands are cast to the message's dtype by hand.
        hidden = hidden.reshape(-1, hidden_dim)
        tokens = x.permute(0, 2, 3, 1).reshape(hidden.shape[0], -1)
        hidden.addmm_(tokens.to(hidden.dtype), weight_x.t().to(hidden.dtype))
        update = self.layer_norm(self.fc2(F.leaky_relu(hidden, inplace=True)))
        return update.reshape(batch, height, width, -1).permute(0, 3, 1, 2)


class AggregatedAttention(nn.Module):
    """One EfficientLoFTR attention block: x + norm(mlp([x, upsample(attention)]))."""

    def __init__(self, conf: Dict[str, Any]):
        super().__init__()
        dim = conf['hidden_size']
        self.q_size = conf['q_aggregation']
        self.aggregation = Aggregation(dim, conf['q_aggregation'], conf['kv_aggregation'])
        self.attention = MultiHeadAttention(dim, conf['num_heads'])
        self.mlp = FeedForward(dim)

    def forward(self, x: torch.Tensor, source: torch.Tensor,
                rope: Optional[Tuple[torch.Tensor, torch.Tensor]] = None) -> torch.Tensor:
        """x [B x C x H x W] attends to source [B x C x H' x W']; both sides multiples of 4."""
        query, kv = self.aggregation(x, source)
        batch, height, width, dim = query.shape
        message = self.attention(query.reshape(batch, -1, dim), kv.reshape(batch, -1, dim), rope)
        update = self.mlp(x, message.reshape(batch, height, width, dim), self.q_size)
        # In place when the types agree. Under autocast they may not (a half-precision update on
        # a float32 stream, or the reverse where CUDA runs the layer norm in float32): then the
        # sum takes the wider type, as the reference's x + update does.
        return update.add_(x) if update.dtype == x.dtype else x + update


class TransformerLayer(nn.Module):
    def __init__(self, conf: Dict[str, Any]):
        super().__init__()
        self.self_attention = AggregatedAttention(conf)
        self.cross_attention = AggregatedAttention(conf)


class LocalFeatureTransformer(nn.Module):
    """Interleaved self- and cross-attention layers on the coarse features of a pair."""

    def __init__(self, conf: Dict[str, Any]):
        super().__init__()
        self.layers = nn.ModuleList(TransformerLayer(conf) for _ in range(conf['num_layers']))

    def forward(self, feat0: torch.Tensor, feat1: torch.Tensor, rope0, rope1,
                first_self_done: bool) -> Tuple[torch.Tensor, torch.Tensor]:
        """feat0/1 [B x C x h x w] (sizes may differ); rope0/1 for each image's aggregated grid.
        `first_self_done`: the first self-attention already ran per image (in `extract`)."""
        for index, layer in enumerate(self.layers):
            if index > 0 or not first_self_done:
                feat0 = layer.self_attention(feat0, feat0, rope0)
                feat1 = layer.self_attention(feat1, feat1, rope1)
            # Sequential on purpose: image 1 attends to the already updated image 0, as in the
            # original implementation (zju3dv/MatchAnything issue 26) and the reference port.
            feat0 = layer.cross_attention(feat0, feat1)
            feat1 = layer.cross_attention(feat1, feat0)
        return feat0, feat1


# ----------------------------------------------------------------------------------------------
# Fine pyramid: half-resolution features from the coarse output and the backbone's 1/4, 1/2
# maps (the windows sample their x2 upsampling, see gather_windows)


class OutConvBlock(nn.Module):
    """conv3(act(bn(conv2(conv1(residual) + x)))) (the reference upsamples the result by 2)."""

    def __init__(self, dim: int, inner: int):
        super().__init__()
        self.out_conv1 = nn.Conv2d(dim, inner, 1, bias=False)
        self.out_conv2 = nn.Conv2d(inner, inner, 3, padding=1, bias=False)
        self.batch_norm = nn.BatchNorm2d(inner)
        self.out_conv3 = nn.Conv2d(inner, dim, 3, padding=1, bias=False)
        self.fused: Optional[nn.Conv2d] = None

    def forward(self, x: torch.Tensor, projected_residual: torch.Tensor) -> torch.Tensor:
        """x: the upsampled coarser level (overwritten); projected_residual: out_conv1(backbone
        map)."""
        # In place: the maps are large (40 MB per image at half resolution, 640x480).
        x = x.add_(projected_residual)
        if self.fused is not None:
            x = self.fused(x)
        else:
            x = self.batch_norm(self.out_conv2(x))
        return self.out_conv3(F.leaky_relu(x, inplace=True))

    @torch.no_grad()
    def reparameterize(self):
        """Fold the batch norm into out_conv2."""
        if self.fused is not None:
            return
        kernel, bias = fuse_conv_bn(self.out_conv2.weight, self.batch_norm)
        conv = self.out_conv2
        self.fused = nn.Conv2d(conv.in_channels, conv.out_channels, 3, padding=1, bias=True,
                               device=conv.weight.device, dtype=conv.weight.dtype)
        self.fused.weight.copy_(kernel)
        self.fused.bias.copy_(bias)
        self.out_conv2 = self.batch_norm = None


class FinePyramid(nn.Module):
    def __init__(self, conf: Dict[str, Any]):
        super().__init__()
        # Channels from coarse to fine: 256 (1/8), 128 (1/4), 64 (1/2 -> full resolution).
        dims = list(reversed(conf['stage_channels']))[:-1]
        self.out_conv = nn.Conv2d(dims[0], dims[0], 1, bias=False)
        self.out_conv_layers = nn.ModuleList(
            OutConvBlock(dims[i], dims[i - 1]) for i in range(1, len(dims)))

    def project_residuals(self, residuals: List[torch.Tensor]) -> List[torch.Tensor]:
        """The per-image 1x1 projections of the backbone maps, finest last ([1/4, 1/2])."""
        return [layer.out_conv1(residual)
                for layer, residual in zip(self.out_conv_layers, residuals)]

    def forward(self, coarse: torch.Tensor, projected: List[torch.Tensor]) -> torch.Tensor:
        """Fine features at HALF resolution [B x 64 x H/2 x W/2]. The reference upsamples them
        bilinearly to full resolution; `gather_windows` samples that upsampling at the windows it
        needs, so the full-resolution map (80 MB at 640x480) is never made."""
        x = coarse
        for index, (layer, residual) in enumerate(zip(self.out_conv_layers, projected)):
            x = upsample2(self.out_conv(x) if index == 0 else x)
            x = layer(x, residual)
        return x


# ----------------------------------------------------------------------------------------------
# Matching


def mutual_nearest_matches(confidence: torch.Tensor, grid0: Tuple[int, int],
                           grid1: Tuple[int, int], threshold: float, border: int
                           ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Coarse matches of a [B x L0 x L1] confidence matrix: mutual nearest neighbours above
    `threshold`, cells within `border` of a grid edge excluded (the maxima are taken over all
    cells, as in the reference). Returns batch ids, cell ids in image 0 and 1, confidences."""
    row_max, row_arg = confidence.max(dim=2)
    # amax: a column maximum without its index is ~10x faster on CPU than max(dim=1).
    col_max = confidence.amax(dim=1)
    keep = (row_max > threshold) & (col_max.gather(1, row_arg) == row_max)
    if border > 0:
        keep = keep & _inside_border(grid0, border, confidence.device)[None]
        keep = keep & _inside_border(grid1, border, confidence.device)[row_arg]
    batch_ids, ids0 = keep.nonzero(as_tuple=True)
    ids1 = row_arg[batch_ids, ids0]
    return batch_ids, ids0, ids1, row_max[batch_ids, ids0]


# Exponents are clamped here before exp: PyTorch's vectorized CPU exp takes a ~40x slower path
# for results that underflow (e^-87 is about float32's smallest normal), and most entries of a
# confidence matrix do. A result changes by less than 2e-38.
_EXP_FLOOR = -87.0
# Rows of the similarity matrix per block on a CPU: ~1 MB blocks stay in the cache between the
# operations on them.
_BLOCK_ELEMENTS = 2 ** 18


def _traced_or_compiled() -> bool:
    """True inside an ONNX/TorchScript trace or a torch.compile graph (torch.compiler.is_compiling
    exists from torch 2.3; older versions compile only the stages this is not called from)."""
    is_compiling = getattr(torch.compiler, 'is_compiling', None)
    return torch.jit.is_tracing() or (is_compiling is not None and is_compiling())


def dual_softmax(similarity: torch.Tensor, block_rows: Optional[int] = None) -> torch.Tensor:
    """softmax(S, dim=2) * softmax(S, dim=1) of a float32 [B x L0 x L1] matrix S, computed in
    S's memory (S is overwritten) where it can.

    The matrix is large (4800^2 at 640x480): two softmaxes and their product cost ~180 ms per
    pair on 2 CPU cores, ~60 ms this way. With r = logsumexp over each row and c over each
    column, the product is exp(2 S - r - c); the sums come from block-wise exponentials of
    S - rowmax and S - colmax, and the product is written over S. The two softmaxes are used
    under tracing or compilation (an ONNX graph, torch.compile: the block loop would be unrolled)
    and on a GPU (fewer passes over the matrix, and its exp has no slow underflow path).
    `block_rows`: rows per block, by default ~1 MB blocks.
    """
    if _traced_or_compiled() or similarity.device.type != 'cpu':
        confidence = similarity.softmax(dim=2)
        return confidence.mul_(similarity.softmax(dim=1))
    batch, rows, cols = similarity.shape
    block = block_rows or max(1, _BLOCK_ELEMENTS // cols)
    row_max = similarity.amax(dim=2, keepdim=True)                      # [B x L0 x 1]
    col_max = similarity.amax(dim=1, keepdim=True)                      # [B x 1 x L1]
    row_sums = torch.empty_like(row_max)
    col_sums = torch.zeros_like(col_max)
    buffer = similarity.new_empty(batch, min(block, rows), cols)
    for start in range(0, rows, block):
        part = slice(start, start + block)
        values = similarity[:, part]
        work = buffer[:, :values.shape[1]]
        torch.sub(values, row_max[:, part], out=work).clamp_(min=_EXP_FLOOR).exp_()
        torch.sum(work, dim=2, keepdim=True, out=row_sums[:, part])
        torch.sub(values, col_max, out=work).clamp_(min=_EXP_FLOOR).exp_()
        col_sums += work.sum(dim=1, keepdim=True)
    row_log_sums, col_log_sums = row_sums.log_(), col_sums.log_()
    for start in range(0, rows, block):
        # 2 S - r - c with r = rowmax + log(row sum): the maxima are subtracted first, which is
        # exact near a maximum; r itself would round to ~3e-5 at the similarities of ~1000 that
        # peaked coarse features reach.
        values, part = similarity[:, start:start + block], slice(start, start + block)
        values.mul_(2).sub_(row_max[:, part]).sub_(col_max)
        values.sub_(row_log_sums[:, part]).sub_(col_log_sums).clamp_(min=_EXP_FLOOR).exp_()
    return similarity


def _inside_border(grid: Tuple[int, int], border: int, device: torch.device) -> torch.Tensor:
    """[h*w] bool: cell at least `border` cells away from every edge of an h x w grid."""
    height, width = grid
    rows = torch.arange(height, device=device)
    cols = torch.arange(width, device=device)
    row_ok = (rows >= border) & (rows < height - border)
    col_ok = (cols >= border) & (cols < width - border)
    return (row_ok[:, None] & col_ok[None, :]).reshape(-1)


def _upsampling_taps(positions: torch.Tensor, source_size: int
                     ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Source indices (low, high) and weight of `high` with which ``upsample2`` computes the
    output pixels `positions` (align_corners=False: the source coordinate is clamped at 0 and
    the upper neighbour at the last pixel, as PyTorch does)."""
    source = ((positions.float() + 0.5) * 0.5 - 0.5).clamp(min=0)
    low = source.floor()
    weight = source - low
    low = low.long()
    return low, (low + 1).clamp(max=source_size - 1), weight


def gather_windows(half: torch.Tensor, batch_ids: torch.Tensor, cell_ids: torch.Tensor,
                   grid_width: int, stride: int, size: int, padding: int) -> torch.Tensor:
    """[N x size*size x C] windows of the full-resolution fine map ``upsample2(half)`` (`half`:
    [B x C x H/2 x W/2]) at the given coarse cells: the same as F.unfold(upsample2(half), size,
    stride=stride, padding=padding) followed by indexing, for N cells only, bilinear taps
    computed at the window pixels (zeros outside the map). Window pixels are row-major, as
    unfold orders them."""
    half_height, half_width = half.shape[-2:]
    height, width = 2 * half_height, 2 * half_width
    offsets = torch.arange(size, device=half.device) - padding
    rows = (cell_ids // grid_width * stride)[:, None] + offsets
    cols = (cell_ids % grid_width * stride)[:, None] + offsets
    inside = (((rows >= 0) & (rows < height))[:, :, None]
              & ((cols >= 0) & (cols < width))[:, None, :])
    top, bottom, weight_y = _upsampling_taps(rows.clamp(0, height - 1), half_height)
    left, right, weight_x = _upsampling_taps(cols.clamp(0, width - 1), half_width)
    features = half.permute(0, 2, 3, 1)
    batch = batch_ids[:, None, None]

    def taps(row_ids, col_ids):
        return features[batch, row_ids[:, :, None], col_ids[:, None, :]]

    weight_y = weight_y[:, :, None, None].to(half.dtype)
    weight_x = weight_x[:, None, :, None].to(half.dtype)
    upper = taps(top, left) * (1 - weight_x) + taps(top, right) * weight_x
    lower = taps(bottom, left) * (1 - weight_x) + taps(bottom, right) * weight_x
    windows = (upper * (1 - weight_y) + lower * weight_y) * inside[..., None].to(half.dtype)
    # Explicit sizes (no -1): N may be 0, and an ONNX trace keeps N symbolic.
    return windows.reshape(cell_ids.shape[0], size * size, half.shape[1])


def window_grid(size: int, device: torch.device) -> torch.Tensor:
    """[size*size x 2] (x, y) offsets of a window's pixels from its centre, row-major."""
    coords = torch.arange(size, device=device, dtype=torch.float32) - size // 2 + 0.5
    ys, xs = torch.meshgrid(coords, coords, indexing='ij')
    return torch.stack([xs, ys], dim=-1).reshape(-1, 2)


def fine_refinement(windows0: torch.Tensor, windows1: torch.Tensor, slice_dim: int,
                    temperature: float) -> Tuple[torch.Tensor, torch.Tensor]:
    """Two-stage sub-pixel refinement of N coarse matches.

    windows0: [N x W*W x C] fine features around each match in image 0; windows1:
    [N x (W+2)^2 x C] around its match in image 1 (one more pixel each side).
    Returns (x, y) offsets in fine pixels of both keypoints from their coarse positions.
    Stage 1: dual softmax over the first C - slice_dim channels, best pixel pair of the inner
    W x W windows. Stage 2: softmax expectation over the 3x3 neighbourhood in image 1 from the
    last slice_dim channels (the 3x3 is centred one pixel up-left of the stage-1 pixel in the
    padded window, as in the original implementation).
    """
    num, window_area, dim = windows0.shape
    window = math.isqrt(window_area)
    first0, second0 = windows0.float().split(dim - slice_dim, dim=-1)
    first1, second1 = windows1.float().split(dim - slice_dim, dim=-1)
    # Scaled by the full channel count, as the original (transformers uses C - slice_dim).
    scale = dim ** -0.5
    similarity = (first0 * scale) @ (first1 * scale).transpose(1, 2)
    confidence = similarity.softmax(dim=1) * similarity.softmax(dim=2)
    confidence = confidence.reshape(num, window_area, window + 2, window + 2)[..., 1:-1, 1:-1]
    best = confidence.reshape(num, window_area * window_area).argmax(dim=1)
    index0, index1 = best // window_area, best % window_area
    grid = window_grid(window, windows0.device)
    offset0, offset1 = grid[index0], grid[index1]

    # Stage 2 only needs the similarities of pixel index0 to its 3x3 neighbourhood in image 1.
    # A row or column of -1 wraps to the last one of the padded window: the original indexes
    # with negative numbers there, and the reference port inherits it.
    row1, col1 = index1 // window, index1 % window
    steps = torch.arange(-1, 2, device=windows0.device)
    rows = (row1[:, None, None] + steps[:, None]) % (window + 2)
    cols = (col1[:, None, None] + steps[None, :]) % (window + 2)
    neighbours = (rows * (window + 2) + cols).reshape(num, 9)
    query = second0[torch.arange(num, device=windows0.device), index0]
    keys = second1.gather(1, neighbours[..., None].expand(-1, -1, slice_dim))
    logits = (keys @ query[..., None]).squeeze(-1) * slice_dim ** -0.5
    heatmap = (logits / temperature).softmax(dim=-1)
    # Expected (x, y) offset under the 3x3 heatmap: a product with the [9 x 2] offsets, which
    # also holds for zero matches in an ONNX graph.
    ys, xs = torch.meshgrid(steps.float(), steps.float(), indexing='ij')
    expected = heatmap @ torch.stack([xs, ys], dim=-1).reshape(9, 2)
    return offset0, offset1 + expected


# ----------------------------------------------------------------------------------------------
# The model


@dataclass
class ImageFeatures:
    """The per-image part of EfficientLoFTR, reusable in every pair the image takes part in.

    coarse: [B x C x H/8 x W/8] backbone output after the first self-attention layer.
    projected: out_conv1 projections of the backbone's 1/4 and 1/2 maps (fine pyramid inputs).
    image_size: (H, W) of the model input (multiples of 32).
    """

    coarse: torch.Tensor
    projected: List[torch.Tensor]
    image_size: Tuple[int, int]


# The training resolution the original's NPE suggestion refers to ([832, 832, L, L]).
NPE_TRAIN_SIZE = 832


def check_rope_npe(npe: Any):
    """ConfigError unless `npe` is a valid 'rope_npe' setting (see EfficientLoFTR.default_conf)."""
    sizes = (isinstance(npe, (list, tuple)) and len(npe) == 4
             and all(isinstance(v, numbers.Real) and not isinstance(v, bool) and v > 0
                     for v in npe))
    if not (sizes or npe in ('off', 'long_side')):
        msg = (f"rope_npe must be 'off', 'long_side' or four positive sizes [train_h, train_w, "
               f"test_h, test_w], got {npe!r}")
        raise ConfigError(msg)


class EfficientLoFTR(nn.Module):
    default_conf = {
        # --- architecture (from the weights' config; these are the published models') ---
        'stage_blocks': (1, 2, 4, 14),       # RepVGG blocks per backbone stage
        'stage_strides': (2, 1, 2, 2),       # stride of each stage's first block
        'stage_channels': (64, 64, 128, 256),  # output channels per stage (last = hidden_size)
        'hidden_size': 256,                  # coarse feature dimension
        'num_heads': 8,                      # attention heads
        'num_layers': 4,                     # (self, cross) attention layer pairs
        'q_aggregation': 4,                  # query aggregation: depthwise conv, kernel = stride
        'kv_aggregation': 4,                 # key/value aggregation: max pool, kernel = stride
        'rope_theta': 10000.0,               # rotary position encoding base
        # The original's NPE, a test-time option: rotary positions scaled by train/test size,
        # [train_h, train_w, test_h, test_w]; 'long_side': [832, 832, L, L] for an input of long
        # side L, what the original suggests (above all for L > 832, where positions leave the
        # trained range); 'off': unscaled, as transformers and the original's default.
        'rope_npe': 'off',
        'batch_norm_eps': 1e-5,              # eps of the backbone's conv branch batch norms
        'fine_window': 8,                    # fine window side (pixels) around a coarse match
        'fine_slice_dim': 8,                 # fine channels of the second refinement stage
        'fine_temperature': 10.0,            # softmax temperature of the second stage
        # --- matching ---
        'coarse_threshold': 0.2,             # min dual-softmax confidence of a coarse match
        'coarse_temperature': 0.1,           # similarity temperature before the dual softmax
        'border_removal': 2,                 # coarse cells dropped at each grid edge
        'skip_softmax': False,               # 'optimized' model: threshold the raw similarity
                                             # (coarse_threshold ~25) instead of the dual
                                             # softmax; scores are still dual-softmax values
    }
    # Side multiple of the model input: 8 (coarse) x 4 (aggregation).
    stride = 32
    coarse_stride = 8

    def __init__(self, conf: Optional[Dict[str, Any]] = None):
        super().__init__()
        self.conf = conf = merge_conf(self.default_conf, conf)
        if conf['hidden_size'] != conf['stage_channels'][-1]:
            msg = (f"hidden_size {conf['hidden_size']} must equal the last stage's channels "
                   f"{conf['stage_channels'][-1]}")
            raise ConfigError(msg)
        check_rope_npe(conf['rope_npe'])
        self.backbone = RepVGGBackbone(conf)
        self.local_feature_transformer = LocalFeatureTransformer(conf)
        self.refinement_layer = FinePyramid(conf)
        self._rope_cache: Dict[Tuple, Tuple[torch.Tensor, torch.Tensor]] = {}
        self.eval()

    def reparameterize(self) -> 'EfficientLoFTR':
        """Fuse every conv+BN branch into one convolution (after loading the weights)."""
        for module in self.modules():
            if isinstance(module, (RepVGGBlock, OutConvBlock)):
                module.reparameterize()
        return self

    def _rope(self, coarse: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        size = self.conf['q_aggregation']
        # Plain ints (also under an ONNX trace): the encoding is a constant per input size.
        height, width = int(coarse.shape[-2]) // size, int(coarse.shape[-1]) // size
        key = (height, width, coarse.device)
        if key not in self._rope_cache:
            self._rope_cache[key] = rotary_embedding(
                height, width, self.conf['hidden_size'], self.conf['rope_theta'], coarse.device,
                self._rope_scale(tuple(int(side) * self.coarse_stride
                                       for side in coarse.shape[-2:])))
        return self._rope_cache[key]

    def _rope_scale(self, input_size: Tuple[int, int]) -> Tuple[float, float]:
        """(row, column) position scale of the rotary encoding for a model input (H, W)."""
        npe = self.conf['rope_npe']
        if npe == 'off':
            return 1.0, 1.0
        if npe == 'long_side':
            npe = (NPE_TRAIN_SIZE, NPE_TRAIN_SIZE) + (max(input_size),) * 2
        return npe[0] / npe[2], npe[1] / npe[3]

    def _check_input(self, image: torch.Tensor):
        if image.ndim != 4 or image.shape[1] != 1:
            msg = ('EfficientLoFTR expects [B x 1 x H x W] grayscale images, got '
                   f'{tuple(image.shape)}')
            raise ValueError(msg)
        if image.shape[-2] % self.stride or image.shape[-1] % self.stride:
            msg = (f'EfficientLoFTR input sides must be multiples of {self.stride}, got '
                   f'{image.shape[-1]}x{image.shape[-2]} (pad right/bottom with zeros)')
            raise ValueError(msg)

    def extract(self, image: torch.Tensor) -> ImageFeatures:
        """Per-image stages of a [B x 1 x H x W] image in [0, 1], sides multiples of 32."""
        self._check_input(image)
        half, quarter, coarse = self.backbone(image)
        layer = self.local_feature_transformer.layers[0]
        coarse = layer.self_attention(coarse, coarse, self._rope(coarse))
        projected = self.refinement_layer.project_residuals([quarter, half])
        return ImageFeatures(coarse, projected, tuple(image.shape[-2:]))

    def coarse_features(self, feats0: ImageFeatures, feats1: ImageFeatures
                        ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Coarse features of a pair after the whole transformer, [B x C x h x w] each."""
        return self.local_feature_transformer(
            feats0.coarse, feats1.coarse, self._rope(feats0.coarse), self._rope(feats1.coarse),
            first_self_done=True)

    def coarse_confidence(self, coarse0: torch.Tensor, coarse1: torch.Tensor) -> torch.Tensor:
        """[B x L0 x L1] dual-softmax confidence (or scaled similarity with skip_softmax)."""
        dim = coarse0.shape[1]
        # <d0 / sqrt(C), d1 / sqrt(C)> / temperature, with every scale applied to the L0 x C
        # side: scaling the L0 x L1 product would be one more pass over 23 M values.
        desc0 = coarse0.flatten(2).transpose(1, 2).float() / (dim * self.conf['coarse_temperature'])
        # In float32 under autocast too, as the original (its fp16matmul option is off): half
        # precision would quantize similarities of ~50 to steps of 0.03 before the softmax.
        with torch.autocast(coarse0.device.type, enabled=False):
            similarity = desc0 @ coarse1.flatten(2).float()
        if self.conf['skip_softmax']:
            return similarity
        return dual_softmax(similarity)

    def match_features(self, feats0: ImageFeatures, feats1: ImageFeatures,
                       intermediates: Optional[Dict[str, torch.Tensor]] = None,
                       coarse_threshold: Optional[float] = None) -> Dict[str, torch.Tensor]:
        """Match two images from their `extract` features.

        Returns keypoints0, keypoints1 [N x 2] (x, y) in model-input pixels (sub-pixel),
        scores [N] coarse confidences in [0, 1], batch_indices [N]; ordered by batch, then by
        coarse cell of image 0. `intermediates`, when a dict, receives the coarse features
        after the transformer, the confidence matrix, the coarse matches and the fine windows
        (for tests). `coarse_threshold` replaces the configured one for this call.
        """
        if coarse_threshold is None:
            coarse_threshold = self.conf['coarse_threshold']
        coarse0, coarse1 = self.coarse_features(feats0, feats1)
        grid0, grid1 = tuple(coarse0.shape[-2:]), tuple(coarse1.shape[-2:])
        confidence = self.coarse_confidence(coarse0, coarse1)
        batch_ids, ids0, ids1, scores = mutual_nearest_matches(
            confidence, grid0, grid1, coarse_threshold, self.conf['border_removal'])
        if self.conf['skip_softmax']:
            scores = self._dual_softmax_scores(confidence, batch_ids, ids0, ids1)
        if intermediates is not None:
            intermediates.update(coarse0=coarse0, coarse1=coarse1, confidence=confidence,
                                 batch_ids=batch_ids, ids0=ids0, ids1=ids1)

        scale0 = feats0.image_size[0] / grid0[0]
        scale1 = feats1.image_size[0] / grid1[0]
        keypoints0 = self._cell_positions(ids0, grid0[1]) * scale0
        keypoints1 = self._cell_positions(ids1, grid1[1]) * scale1
        # An ONNX trace must contain the refinement whatever the example's match count.
        if ids0.numel() or torch.jit.is_tracing():
            # The reference scales the coarse features by 1/sqrt(C) before the fine pyramid.
            dim = coarse0.shape[1]
            half0 = self.refinement_layer(coarse0 / dim ** 0.5, feats0.projected)
            half1 = self.refinement_layer(coarse1 / dim ** 0.5, feats1.projected)
            window = self.conf['fine_window']
            # Fine pixels (full resolution) per coarse cell.
            stride0 = 2 * half0.shape[-2] // grid0[0]
            stride1 = 2 * half1.shape[-2] // grid1[0]
            windows0 = gather_windows(half0, batch_ids, ids0, grid0[1], stride0, window, 0)
            windows1 = gather_windows(half1, batch_ids, ids1, grid1[1], stride1, window + 2, 1)
            if intermediates is not None:
                intermediates.update(windows0=windows0, windows1=windows1)
            offset0, offset1 = fine_refinement(windows0, windows1, self.conf['fine_slice_dim'],
                                               self.conf['fine_temperature'])
            keypoints0 = keypoints0 + offset0 * (feats0.image_size[0] / (2 * half0.shape[-2]))
            keypoints1 = keypoints1 + offset1 * (feats1.image_size[0] / (2 * half1.shape[-2]))
        return {'keypoints0': keypoints0, 'keypoints1': keypoints1, 'scores': scores.float(),
                'batch_indices': batch_ids}

    @staticmethod
    def _cell_positions(ids: torch.Tensor, grid_width: int) -> torch.Tensor:
        """(x, y) of coarse cells in coarse units (the cell's top-left corner, as the original)."""
        return torch.stack([ids % grid_width, ids // grid_width], dim=-1).float()

    @staticmethod
    def _dual_softmax_scores(similarity: torch.Tensor, batch_ids: torch.Tensor,
                             ids0: torch.Tensor, ids1: torch.Tensor) -> torch.Tensor:
        """Dual-softmax confidence of the selected entries only, from their rows and columns."""
        row_lse = similarity[batch_ids, ids0].logsumexp(dim=-1)
        col_lse = similarity.transpose(1, 2)[batch_ids, ids1].logsumexp(dim=-1)
        values = similarity[batch_ids, ids0, ids1]
        return torch.exp(2 * values - row_lse - col_lse)

    def forward(self, image0: torch.Tensor, image1: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Match [B x 1 x H x W] images in [0, 1] (sides multiples of 32); see match_features."""
        return self.match_features(self.extract(image0), self.extract(image1))
